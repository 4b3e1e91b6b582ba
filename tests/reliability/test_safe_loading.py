"""Safe loading: nothing llmlab reads can run code, and the judge's API key is never written down.

- Checkpoints are read as safetensors and as tensors with torch.load(weights_only=True): a trainer.pt
  or model.safetensors holding a pickle that would run a shell command is refused, and the command
  never runs (the test first proves the pickle is live by loading it unsafely in a subprocess).
- Datasets never run remote code: no call in the code base can enable it, and a local dataset folder
  with a loading script is refused without running the script.
- The judge's key is read from the environment for each request and appears in no file of the
  workspace after a real eval run against a local judge server.
"""

from __future__ import annotations

import ast
import functools
import http.server
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from core import checkpoint as ckpt_io
from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT

from faultkit import REPO, child_env, tiny_preset

SOURCE_DIRS = [REPO / "core", REPO / "tui"]


class RunsShell:
    """Unpickling this calls os.system(command): the classic malicious checkpoint."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def bpe():
    from core.data.synthetic import iter_stories
    from core.tokenizer import train_bpe

    return train_bpe(list(iter_stories(3, 60_000)), 300, name="safe-bpe")


@pytest.fixture
def checkpoint(tmp_path, bpe) -> Path:
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=16, vocab_size=bpe.n_vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    state = {"version": 1, "step": 1, "optimizer": opt.state_dict(), "rng": ckpt_io.capture_rng_state()}
    return ckpt_io.write_checkpoint(tmp_path / "ckpt", 1, model, tokenizer=bpe, trainer_state=state)


def recommit(ckpt: Path) -> None:
    """Rewrite COMMITTED for the files as they are now: a hostile checkpoint carries a valid manifest."""
    files = {p.relative_to(ckpt).as_posix(): {"bytes": p.stat().st_size, "sha256": ckpt_io._sha256(p)}
             for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != "COMMITTED"}
    (ckpt / "COMMITTED").write_text(json.dumps({"step": 1, "files": files}))


def plant(path: Path, marker: Path, kind: str) -> None:
    payload = RunsShell(f"touch {marker}")
    if kind == "torch.save":
        torch.save({"optimizer": payload}, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))


def prove_live(path: Path, tmp_path: Path) -> None:
    """Loading the planted file unsafely, in a child process, does run the command."""
    probe = tmp_path / "probe-marker"
    plant(path, probe, "torch.save" if path.suffix == ".pt" else "pickle")
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, timeout=120)
    assert probe.exists(), "the planted pickle is not live: the test would prove nothing"
    probe.unlink()


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_trainer_state_that_would_run_code_is_refused(checkpoint, tmp_path, kind):
    marker = tmp_path / f"pwned-{kind}"
    trainer = checkpoint / "trainer.pt"
    if kind == "torch.save":
        prove_live(trainer, tmp_path)
    plant(trainer, marker, kind)
    recommit(checkpoint)
    with pytest.raises(UserError, match="trainer.pt: cannot load the trainer state"):
        ckpt_io.load_trainer_state(checkpoint)
    assert not marker.exists(), "loading the trainer state ran code"


def test_weights_that_are_a_pickle_are_refused(checkpoint, tmp_path):
    marker = tmp_path / "pwned-weights"
    weights = checkpoint / "model.safetensors"
    plant(weights, marker, "torch.save")
    recommit(checkpoint)
    with pytest.raises(UserError, match="model.safetensors: cannot load the weights"):
        ckpt_io.load_model(checkpoint)
    assert not marker.exists()


def test_resume_skips_a_trainer_state_that_would_run_code(checkpoint, tmp_path, bpe):
    """The training loop's resume goes through the same loader: the hostile checkpoint is skipped."""
    from core.train.state import load_resume_state

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    os.replace(checkpoint, run_dir / "checkpoints" / "step-00000001")
    ck = run_dir / "checkpoints" / "step-00000001"
    marker = tmp_path / "pwned-resume"
    plant(ck / "trainer.pt", marker, "torch.save")
    recommit(ck)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=16, vocab_size=bpe.n_vocab))
    warnings = []

    class Log:
        def log(self, ev):
            warnings.append(ev.get("message", ""))

    with pytest.raises(UserError, match="none can be resumed"):
        load_resume_state(run_dir, model, bpe, Log())
    assert any("skipping checkpoint step-00000001" in w for w in warnings), warnings
    assert not marker.exists()


# ------------------------------------------------------------------------------ static checks

@functools.lru_cache(maxsize=1)
def _all_calls() -> list[tuple[Path, str, ast.Call]]:
    """(file, called name, call node) for every call in core/ and tui/."""
    out = []
    for d in SOURCE_DIRS:
        for path in sorted(d.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call):
                    f = node.func
                    called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                    out.append((path.relative_to(REPO), called, node))
    return out


def _calls(name: str):
    """(file, call node) for every call of a function or method named `name`."""
    return [(p, n) for p, called, n in _all_calls() if called == name]


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value
    return None


def test_every_torch_load_is_weights_only():
    loads = list(_calls("load"))
    torch_loads = [(p, n) for p, n in loads if isinstance(n.func, ast.Attribute)
                   and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"]
    assert torch_loads, "expected the trainer-state loader to call torch.load"
    for path, node in torch_loads:
        v = _kw(node, "weights_only")
        assert isinstance(v, ast.Constant) and v.value is True, f"{path}:{node.lineno}: torch.load without weights_only=True"
        assert not any(k.arg is None for k in node.keywords), f"{path}:{node.lineno}: **kwargs could override it"


def test_no_unpickling_anywhere():
    for path, node in list(_calls("loads")) + list(_calls("load")) + list(_calls("Unpickler")):
        f = node.func
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        assert owner not in ("pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"), \
            f"{path}:{node.lineno}: {owner}.{f.attr} can run code"
    for name in ("eval", "exec"):
        bare = [(p, n.lineno) for p, n in _calls(name) if isinstance(n.func, ast.Name)]
        assert not bare, f"builtin {name}() in {bare}"


def test_no_code_path_enables_remote_code():
    for name in ("load_dataset", "load_dataset_builder", "from_pretrained", "snapshot_download", "pipeline"):
        for path, node in _calls(name):
            v = _kw(node, "trust_remote_code")
            assert v is None or (isinstance(v, ast.Constant) and v.value is False), \
                f"{path}:{node.lineno}: {name}(trust_remote_code=...) is not the constant False"
            assert not any(k.arg is None for k in node.keywords), \
                f"{path}:{node.lineno}: {name}(**kwargs) could pass trust_remote_code=True"
    text = "\n".join(p.read_text() for d in SOURCE_DIRS for p in d.rglob("*.py"))
    assert "trust_remote_code=True" not in text and "HF_DATASETS_TRUST_REMOTE_CODE" not in text


def test_a_dataset_with_a_loading_script_is_refused_without_running_it(tmp_path, monkeypatch):
    """A hub-style dataset folder whose loading script would write a marker: reading it through the
    hf: source (the same `datasets` call as the hub) fails with a UserError and never runs the script."""
    from core.config import DataConfig
    from core.data import Documents

    marker = tmp_path / "pwned-dataset"
    folder = tmp_path / "evilset"
    folder.mkdir()
    (folder / "evilset.py").write_text(
        "import pathlib, datasets\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "class Evilset(datasets.GeneratorBasedBuilder):\n"
        "    def _info(self): return datasets.DatasetInfo(features=datasets.Features({'text': datasets.Value('string')}))\n"
        "    def _split_generators(self, dl): return [datasets.SplitGenerator(name='train')]\n"
        "    def _generate_examples(self): yield 0, {'text': 'hello'}\n")
    monkeypatch.setenv("HF_DATASETS_TRUST_REMOTE_CODE", "1")  # even a user's environment cannot enable it
    with pytest.raises(UserError):
        list(Documents(DataConfig(source=f"hf:{folder}")))
    assert not marker.exists(), "the dataset's loading script ran"


# ------------------------------------------------------------------------------ judge API key

class JudgeServer(http.server.ThreadingHTTPServer):
    """A local OpenAI-compatible judge: records each request's Authorization header; the first
    `broken` replies are not JSON and echo the headers back (a misconfigured proxy would)."""

    def __init__(self, broken: int = 0):
        self.auth: list[str | None] = []
        self.broken = broken

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.auth.append(self.headers.get("Authorization"))
                if server.broken > 0:
                    server.broken -= 1
                    body = f"Authorization: {self.headers.get('Authorization')} (upstream error)".encode()
                else:
                    body = json.dumps({"choices": [{"message": {"role": "assistant",
                                                                "content": "Fine answer.\nScore: 70"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def test_judge_reads_the_key_from_the_environment_per_request(monkeypatch):
    from core.eval.judge import JudgeClient

    server = JudgeServer()
    try:
        client = JudgeClient(base_url=server.base_url, model="judge", api_key_env="LLMLAB_TEST_JUDGE_KEY")
        monkeypatch.setenv("LLMLAB_TEST_JUDGE_KEY", "sk-first")
        client.chat([{"role": "user", "content": "hi"}])
        monkeypatch.setenv("LLMLAB_TEST_JUDGE_KEY", "sk-rotated")
        client.chat([{"role": "user", "content": "hi"}])
        monkeypatch.delenv("LLMLAB_TEST_JUDGE_KEY")
        client.chat([{"role": "user", "content": "hi"}])
        assert server.auth == ["Bearer sk-first", "Bearer sk-rotated", None]
        assert "sk-" not in repr(client) and "sk-" not in json.dumps(vars(client), default=str)
    finally:
        server.shutdown()


@pytest.mark.fault
def test_judge_key_is_in_no_file_the_eval_run_writes(workspace, checkpoint):
    """A real eval run (detached process) with the judge task against a local server; one reply is a
    broken page echoing the request headers. Afterwards no file under the workspace holds the key."""
    from core import runs

    key = "sk-llmlab-test-7f3a9c0e51d2b4a6"
    server = JudgeServer(broken=2)  # both attempts of the first answer
    try:
        preset = tiny_preset('eval.tasks=["judge"]', "eval.limit=3", "eval.max_new_tokens=4",
                             f'eval.model="{checkpoint}"', f'eval.judge.base_url="{server.base_url}"',
                             'eval.judge.api_key_env="LLMLAB_TEST_JUDGE_KEY"', "eval.judge.retries=1",
                             "eval.judge.timeout_s=20")
        env = child_env()
        env["LLMLAB_TEST_JUDGE_KEY"] = key
        handle = runs.launch("eval", preset, extra_env={"LLMLAB_TEST_JUDGE_KEY": key})
        handle.wait(timeout=240)
        st = handle.run.status()
        assert st["state"] == "finished", (st, (handle.run.path / "stderr.log").read_text()[-3000:])
    finally:
        server.shutdown()
    assert server.auth and all(a == f"Bearer {key}" for a in server.auth), server.auth
    report = json.loads((handle.run.path / "report.json").read_text())
    assert report["tasks"]["judge"]["n_scored"] >= 2
    leaks = [str(p) for p in workspace.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    leaks += [str(p) for p in checkpoint.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert not leaks, f"the API key was written to {leaks}"
    assert "LLMLAB_TEST_JUDGE_KEY" in (handle.run.path / "preset.toml").read_text()  # the name, not the key
