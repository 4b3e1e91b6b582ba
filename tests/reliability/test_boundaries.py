"""Every file llmlab reads is validated where it is read, nothing hangs, nothing saved is destroyed.

The cases of issue #16, one test each where they differ: damaged checkpoints (manifest, model.json,
weights, tokenizer files) give the project's own error naming the file and key; run folders with a
damaged status or event line still list, show and tail; a device, FIFO or dying worker never hangs;
sampling inputs are checked with the preset's bounds; writing commands refuse targets that would destroy
what they read; the chat REPL keeps its conversation through bad commands.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import checkpoint as ckpt_io
from core import cli, runs
from core.errors import StageFailed, UserError

from faultkit import REPO, child_env
from savedkit import make_checkpoint, make_run, make_tokenizer, recommit, snapshot


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture
def ckpt(tmp_path, tok) -> Path:
    return make_checkpoint(tmp_path / "ck", tok)


def llmlab(*args: str, home: Path, timeout: float = 120, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**child_env(), "LLMLAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env=env, cwd=home, capture_output=True,
                          text=True, timeout=timeout, input=stdin)


# ------------------------------------------------------------------------------------ checkpoints

def test_a_manifest_that_is_not_utf8_falls_back_on_resume_and_is_named_elsewhere(tmp_path, tok):
    run = tmp_path / "run"
    old = make_checkpoint(run / "checkpoints" / "step-00000001", tok)
    new = make_checkpoint(run / "checkpoints" / "step-00000002", tok)
    (new / "COMMITTED").write_bytes(b"\xff\xfe{not utf-8")
    assert ckpt_io.resumable_checkpoint(run) == old
    with pytest.raises(UserError, match=r"step-00000002/COMMITTED: line 1: not UTF-8"):
        ckpt_io.load_model(new)


@pytest.mark.parametrize("change, key", [
    (lambda a: a.pop("n_embd"), "architecture.n_embd: is missing"),
    (lambda a: a.update(n_layer="2"), "architecture.n_layer: expected an integer"),
    (lambda a: a.update(context_length=10**9), "architecture.context_length: must be <="),
    (lambda a: a.update(norm="batchnorm"), "architecture.norm: 'batchnorm' is not one of"),
    (lambda a: a.update(n_head=3), "architecture.n_embd: 16 is not divisible by model.n_head = 3"),
    (lambda a: a.update(vocab_size=0), "architecture.vocab_size: must be >= 1"),
])
def test_model_json_is_checked_with_the_preset_bounds(ckpt, change, key):
    meta = json.loads((ckpt / "model.json").read_text())
    change(meta["architecture"])
    (ckpt / "model.json").write_text(json.dumps(meta))
    recommit(ckpt)
    with pytest.raises(UserError, match="model.json: " + key.replace("(", r"\(").replace(")", r"\)")):
        ckpt_io.load_model(ckpt)


def test_a_bigger_architecture_than_the_weights_is_refused_before_allocating(ckpt):
    meta = json.loads((ckpt / "model.json").read_text())
    meta["architecture"].update(context_length=1_000_000, n_embd=4096, n_head=4)  # ~16 GB of positions alone
    (ckpt / "model.json").write_text(json.dumps(meta))
    recommit(ckpt)
    with pytest.raises(UserError, match="does not match the architecture in model.json"):
        ckpt_io.load_model(ckpt)


def test_head_and_tokenizer_entries_are_checked(ckpt):
    meta = json.loads((ckpt / "model.json").read_text())
    meta["head"] = {"kind": "classify"}
    (ckpt / "model.json").write_text(json.dumps(meta))
    recommit(ckpt)
    with pytest.raises(UserError, match="head.out_features: is missing"):
        ckpt_io.load_model(ckpt)
    meta["head"] = {"kind": "lm"}
    meta["tokenizer"]["folder"] = "../../elsewhere"
    (ckpt / "model.json").write_text(json.dumps(meta))
    recommit(ckpt)
    with pytest.raises(UserError, match="tokenizer.folder"):
        ckpt_io.load_model(ckpt)


def _tok_meta(ckpt: Path) -> tuple[Path, dict]:
    path = next(p for p in (ckpt / "tokenizer").iterdir() if p.suffix == ".json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(pattern="(unclosed"), "pattern: not a regular expression"),
    (lambda m: m["special_tokens"].update({"<|endoftext|>": -1}), "special_tokens.<|endoftext|>: must be >= 0"),
    (lambda m: m["special_tokens"].update({"<|endoftext|>": 5}), "is an ordinary token's rank"),
    (lambda m: m.pop("pattern"), "pattern: is missing"),
    (lambda m: m.update(special_tokens=[1, 2]), "special_tokens: expected an object"),
])
def test_tokenizer_meta_is_checked(ckpt, change, match):
    path, meta = _tok_meta(ckpt)
    change(meta)
    path.write_text(json.dumps(meta))
    recommit(ckpt)
    with pytest.raises(UserError, match=match.replace("|", r"\|")):
        ckpt_io.load_model(ckpt)


def test_ranks_missing_a_byte_are_refused_not_a_panic(ckpt):
    ranks = ckpt / "tokenizer" / "tokenizer.tiktoken"
    lines = ranks.read_bytes().splitlines(keepends=True)
    # drop the single byte "a" and renumber, so the ranks stay 0..n-1 without gaps
    import base64
    kept = [ln for ln in lines if base64.b64decode(ln.split()[0]) != b"a"]
    ranks.write_bytes(b"".join(f"{ln.split()[0].decode()} {i}\n".encode() for i, ln in enumerate(kept)))
    recommit(ckpt)
    with pytest.raises(UserError, match="ranks miss 1 of the 256 single bytes"):
        ckpt_io.load_model(ckpt)


def test_a_manifest_entry_that_is_a_device_is_never_hashed(ckpt):
    manifest = json.loads((ckpt / "COMMITTED").read_text())
    (ckpt / "zeros").symlink_to("/dev/zero")
    manifest["files"]["zeros"] = {"bytes": 0, "sha256": "0" * 64}
    (ckpt / "COMMITTED").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="zeros: missing or not a regular file"):
        ckpt_io.verify(ckpt)


# ------------------------------------------------------------------------------------- run folders

def test_runs_list_show_and_tail_carry_on_past_damaged_files(tmp_path):
    good = make_run(tmp_path, "20260101-000001-tiny-pretrain")
    bad_status = make_run(tmp_path, "20260101-000002-tiny-pretrain")
    (bad_status / "status.json").write_text("[1, 2, 3]")
    bad_bytes = make_run(tmp_path, "20260101-000003-tiny-pretrain")
    (bad_bytes / "status.json").write_bytes(b'{"state": "fin\xffished"}')
    with (good / "events.jsonl").open("ab") as f:
        f.write(b'{"kind": "train", "step": 2, "loss": "high"}\n{"kind": "log", "message": "\xff\xfe"}\n')
        f.write(b'{"kind": "train", "step": 3, "loss": 4.0}\n')
    before = snapshot(tmp_path)
    listed = llmlab("runs", "list", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    for name in ("000001", "000002", "000003"):
        assert name in listed.stdout
    assert listed.stdout.count("invalid") >= 2 and "finished" in listed.stdout
    shown = llmlab("runs", "show", good.name, home=tmp_path)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "line skipped" in shown.stdout and "step      3" in shown.stdout
    tailed = llmlab("runs", "tail", good.name, home=tmp_path)
    assert tailed.returncode == 0 and "upon [/] a time" in tailed.stdout, tailed.stderr
    assert snapshot(tmp_path) == before


def test_runs_delete_and_stop_reach_a_run_that_is_still_created(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = make_run(tmp_path, "20260101-000004-tiny-pretrain", state="created", pid=sleeper.pid)
        r = runs.Run(run)
        assert runs.is_live(r)
        deleted = llmlab("runs", "delete", run.name, "--yes", home=tmp_path)
        assert deleted.returncode == 2 and "is alive" in deleted.stderr and run.is_dir()
        stopped = llmlab("runs", "stop", run.name, home=tmp_path)
        assert stopped.returncode == 0 and "stop requested" in stopped.stdout
        assert (run / runs.STOP_FILE).is_file()
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert not runs.is_live(runs.Run(run))


def test_an_input_fault_inside_a_detached_run_is_exit_2(tmp_path):
    from faultkit import tiny_preset

    (tmp_path / "tokenizers").write_text("a file where the tokenizer cache belongs")
    handle = runs.launch("tokenizer", tiny_preset(), root=tmp_path / "runs", extra_env={**child_env(),
                                                                                         "LLMLAB_HOME": str(tmp_path)})
    assert handle.wait(300) == 2
    st = handle.run.status()
    assert st["state"] == "failed" and st["error_kind"] == "input" and "tokenizers" in st["error"]
    assert "Traceback" not in (handle.run.path / "stderr.log").read_text()


# ------------------------------------------------------------------------------------ no hangs

def test_sources_refuse_devices_and_fifos(tmp_path):
    from core.data.sources import expand_paths

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    for spec in ("/dev/zero", str(fifo)):
        with pytest.raises(UserError, match="not a regular file"):
            expand_paths(spec)


def test_a_panic_in_a_shard_worker_fails_the_run_instead_of_hanging(tmp_path):
    import tiktoken

    from core.data.shards import write_shards
    from core.tokenizer import Tokenizer

    ranks = {bytes([i]): i for i in range(256) if i != ord("a")}
    ranks = {k: j for j, k in enumerate(ranks)}
    enc = tiktoken.Encoding(name="no-a", pat_str=r"\w+|\s", mergeable_ranks=ranks, special_tokens={})
    t0 = time.monotonic()
    with pytest.raises(StageFailed, match="PanicException"):
        write_shards([("a story about a cat", 0, i == 3) for i in range(4)], tmp_path, Tokenizer(enc), workers=2)
    assert time.monotonic() - t0 < 120


# ---------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("flag, value, match", [
    ("--top-p", "0", "top_p: must be > 0"), ("--top-p", "2", "top_p: must be <= 1"),
    ("--top-k", "-5", "top_k: must be >= 0"), ("--temperature", "nan", "temperature: must be a finite number"),
    ("--temperature", "-1", "temperature: must be >= 0"), ("--max-new-tokens", "-3", "max_new_tokens: must be >= 1"),
    ("--seed", str(2**70), "seed: must be <="),
])
def test_generate_checks_sampling_with_the_preset_bounds(flag, value, match, capsys):
    assert cli.main(["generate", "/nonexistent-checkpoint", "hi", flag, value]) == 2
    err = capsys.readouterr().err
    assert f"llmlab generate: {match}" in err and "Traceback" not in err


def test_generate_on_an_empty_prompt_and_a_classifier(tmp_path, tok, capsys):
    lm = make_checkpoint(tmp_path / "lm", tok)
    assert cli.main(["generate", str(lm), "", "--max-new-tokens", "3", "--seed", "1"]) == 0
    clf = make_checkpoint(tmp_path / "clf", tok, head="classify")
    assert cli.main(["generate", str(clf), "hi"]) == 2
    assert "a classify checkpoint predicts labels" in capsys.readouterr().err


def test_check_sampling_names_where_and_key():
    from core.sampling import check_sampling

    assert check_sampling({"temperature": 0, "top_k": 3}, "x").temperature == 0.0
    with pytest.raises(UserError, match="the settings: colour: unknown key"):
        check_sampling({"colour": 1}, "the settings")


# ------------------------------------------------------------------------------ output targets

def test_writing_commands_refuse_to_destroy_what_they_read(tmp_path, ckpt, capsys):
    before = snapshot(ckpt)
    assert cli.main(["export-hf", str(ckpt), str(ckpt)]) == 2
    assert cli.main(["export-hf", str(ckpt), str(ckpt / "tokenizer")]) == 2
    assert cli.main(["export-hf", str(ckpt), str(ckpt.parent)]) == 2  # contains the checkpoint
    assert cli.main(["report", str(ckpt), "--html", str(ckpt / "card.html")]) == 2
    (tmp_path / "cards").mkdir()
    assert cli.main(["report", str(ckpt), "--html", str(tmp_path / "cards")]) == 2  # a folder, not a file
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert cli.main(["export-hf", str(ckpt), str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert "is " in err and "which this command reads" in err and "add --force" in err and "is a folder" in err
    assert snapshot(ckpt) == before and (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_refuse_unsafe_target_cases(tmp_path):
    from core.safety import refuse_unsafe_target

    run = make_run(tmp_path, "20260101-000005-tiny-pretrain")
    ck = run / "checkpoints" / "step-00000001"
    ck.mkdir(parents=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="lies inside"):
        refuse_unsafe_target(run / "out", [ck], True)  # inside the run that holds the checkpoint
    with pytest.raises(UserError, match="is a file"):
        refuse_unsafe_target(tmp_path / "afile", [ck], False)
    with pytest.raises(UserError, match="is a file, not a folder"):
        refuse_unsafe_target(tmp_path / "afile" / "x.html", [ck], True, file=True)
    refuse_unsafe_target(tmp_path / "new", [ck], False)
    refuse_unsafe_target(tmp_path / "afile", [ck], True, file=True)
    with pytest.raises(UserError, match="add --force"):
        refuse_unsafe_target(tmp_path / "afile", [ck], False, file=True)


def test_an_unwritable_html_path_is_one_line_and_exit_2(tmp_path, ckpt, capsys):
    target = tmp_path / "ro" / "card.html"
    target.parent.mkdir()
    target.parent.chmod(0o500)
    try:
        if os.access(target.parent, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert cli.main(["report", str(ckpt), "--html", str(target)]) == 2
        assert "Permission denied" in capsys.readouterr().err
    finally:
        target.parent.chmod(0o700)


# -------------------------------------------------------------------------------------- chat REPL

def test_the_repl_keeps_its_conversation_through_bad_commands(tmp_path, ckpt):
    from core.cli_chat import chat_repl

    (tmp_path / "bad.jsonl").write_bytes(b'{"role": "user", "content": "\xff"}\n')
    (tmp_path / "folder").mkdir()
    script = "\n".join(["/set temperature=0", "/set max_new_tokens=2", "hello", f"/save {tmp_path / 'folder'}",
                        f"/load {tmp_path / 'bad.jsonl'}", f"/set seed={2**80}", "/set top_k=lots",
                        f"/save {ckpt / 'chat.jsonl'}", f"/load {tmp_path}", f"/save {tmp_path / 'ok.jsonl'}",
                        "/quit"]) + "\n"
    out = io.StringIO()
    assert chat_repl(str(ckpt), [], stdin=io.StringIO(script), stdout=out, device="cpu") == 0
    text = out.getvalue()
    assert "is a folder; give a file name" in text
    assert "line 1: not UTF-8" in text
    assert "seed: must be <=" in text and "top_k: expected an integer" in text
    assert "which this command reads" in text
    saved = [json.loads(x) for x in (tmp_path / "ok.jsonl").read_text().splitlines()]
    assert saved[1] == {"role": "user", "content": "hello"} and saved[2]["role"] == "assistant"
    assert not (ckpt / "chat.jsonl").exists()


# ------------------------------------------------------------------------------------------ judge

def test_a_judge_that_answers_bytes_that_are_not_http_counts_failed_requests():
    from core.eval.judge import JudgeClient, score_answers
    from core.stages.eval import _no_valid_judgement

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.recv(65536)
            conn.sendall(b"\x00\x01 garbage, not HTTP\r\n\r\n")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        client = JudgeClient(f"http://127.0.0.1:{srv.getsockname()[1]}/v1", "judge", retries=0, timeout_s=5)
        items = [{"instruction": "say hi", "answer": "hi"}] * 2
        result = score_answers(client, items, max_consecutive_failures=5)
    finally:
        stop.set()
        t.join(5)
        srv.close()
    assert result["n_failed"] == 2 and result["n_scored"] == 0
    assert "not an HTTP reply" in result["error"] or "not an HTTP reply" in str(result["samples"])
    assert "no valid answer" in _no_valid_judgement("judge", result)
    assert _no_valid_judgement("judge", {**result, "n_scored": 1}) == ""



def test_a_file_where_runs_belongs_and_extreme_mixture_weights(tmp_path, monkeypatch, capsys):
    from core import config

    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    (tmp_path / "runs").write_text("not a folder")
    assert cli.main(["data", "tiny", "--detach"]) == 2
    assert "is a file, where the runs folder belongs" in capsys.readouterr().err
    for w in ("1e-300", "1e300"):
        with pytest.raises(config.PresetError, match=r"data.mixture\[1\].weight: must be"):
            config.load("tiny", [f'data.mixture=[{{source = "embedded:tinyworld"}}, {{source = "x.txt", weight = {w}}}]'])
