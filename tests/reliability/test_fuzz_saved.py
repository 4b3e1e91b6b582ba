"""Fuzzing the readers of saved files: hypothesis mutates real files byte- and field-wise and the readers
run on them. A committed checkpoint's model.json, COMMITTED manifest and tokenizer files (with the
manifest rewritten after the mutation, so it reaches the parser behind the hash check), a run's
status.json and events.jsonl, a report.json and a saved chat. The only acceptable outcomes: success
(then the model also generates), or the project's own error (UserError, exit 2 from the CLI); never
another exception, a traceback, a hang past the subprocess bound, or a change to any other file.

Counts: LLMLAB_FUZZ_EXAMPLES in-process examples per test (faultkit; CI keeps the default small) and
LLMLAB_FUZZ_CLI_EXAMPLES real `llmlab` subprocesses per CLI test (default 3). GGUF headers are fuzzed in
test_fuzz_gguf.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import checkpoint as ckpt_io
from core import runs
from core.errors import UserError
from core.sampling import check_sampling

from faultkit import FUZZ_EXAMPLES, child_env
from savedkit import copy_tree, make_checkpoint, make_run, make_tokenizer, recommit, snapshot

CLI_EXAMPLES = int(os.environ.get("LLMLAB_FUZZ_CLI_EXAMPLES", "3"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
FUZZ_CLI = settings(FUZZ, max_examples=CLI_EXAMPLES)

# ------------------------------------------------------------------------------------ strategies

odd_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**9, 65536, 1_000_000]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "lm", "classify", "rmsnorm", "rope", "../x", "/dev/zero", "tokenizer", "chatml",
                     "(unclosed", "\x00", "llmlab-checkpoint", "running", "finished", "created"]),
)
odd_value = st.recursive(odd_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                         max_leaves=6)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a JSON document (the root is ())."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:8]):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_json(draw: Any, doc: Any) -> str:
    """`doc` with one to three fields deleted, replaced by an odd value, or added; dumped as JSON."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(odd_value)
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(odd_value)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(odd_value)
        if not isinstance(doc, (dict, list)):
            break
    return json.dumps(doc, allow_nan=True)


@st.composite
def mutated_bytes(draw: Any, data: bytes) -> bytes:
    """`data` with one to four byte flips, deletions, insertions or a truncation."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            out += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(out) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if op == "flip":
            out[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del out[i: i + draw(st.integers(1, 16))]
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del out[i:]
    return bytes(out)


# ------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    tok = make_tokenizer()
    return make_checkpoint(tmp_path_factory.mktemp("fuzz-base") / "ck", tok)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-scratch")


def _fresh(base: Path, scratch: Path) -> Path:
    return copy_tree(base, Path(tempfile.mkdtemp(dir=scratch)) / "ck")


def _load_and_generate(ck: Path) -> None:
    """The readers of a checkpoint; success must be usable: it generates two tokens."""
    from core.generate import generate_text

    try:
        model, tok, meta = ckpt_io.load_model(ck)
    except UserError:
        return
    if tok is not None and (meta.get("head") or {}).get("kind", "lm") == "lm":
        try:  # a loaded tokenizer may still be useless (a pattern matching nothing): our own error, then
            "".join(generate_text(model, tok, "Once", max_new_tokens=2, temperature=0))
        except UserError:
            pass


def _tok_meta(ck: Path) -> Path:
    return next(p for p in (ck / "tokenizer").iterdir() if p.suffix == ".json")


def _check_only(ck: Path, mutate, reader) -> None:
    """Mutate one file of a fresh copy, run the reader, and prove no other file changed."""
    target = mutate(ck)
    before = snapshot(ck.parent, skip=target)
    reader(ck)
    assert snapshot(ck.parent, skip=target) == before
    shutil.rmtree(ck.parent, ignore_errors=True)


# --------------------------------------------------------------------------------- checkpoints

@FUZZ
@given(data=st.data())
def test_fuzz_model_json(base, scratch, data):
    ck = _fresh(base, scratch)
    meta = json.loads((ck / "model.json").read_text())
    raw = data.draw(st.one_of(mutated_json(meta).map(str.encode),
                              mutated_bytes((ck / "model.json").read_bytes())))

    def mutate(c: Path) -> Path:
        (c / "model.json").write_bytes(raw)
        recommit(c)
        return c / "model.json"

    _check_only(ck, mutate, _load_and_generate)


@FUZZ
@given(data=st.data())
def test_fuzz_manifest(base, scratch, data):
    ck = _fresh(base, scratch)
    manifest = json.loads((ck / "COMMITTED").read_text())
    raw = data.draw(st.one_of(mutated_json(manifest).map(str.encode),
                              mutated_bytes((ck / "COMMITTED").read_bytes())))

    def mutate(c: Path) -> Path:
        (c / "COMMITTED").write_bytes(raw)
        return c / "COMMITTED"

    def read(c: Path) -> None:
        _load_and_generate(c)
        try:
            ckpt_io.verify(c)
        except UserError:
            pass

    _check_only(ck, mutate, read)


@FUZZ
@given(data=st.data())
def test_fuzz_tokenizer_files(base, scratch, data):
    ck = _fresh(base, scratch)
    meta_path, ranks_path = _tok_meta(ck), ck / "tokenizer" / "tokenizer.tiktoken"
    which = data.draw(st.sampled_from(["meta-fields", "meta-bytes", "ranks-bytes"]))
    if which == "meta-fields":
        target, raw = meta_path, data.draw(mutated_json(json.loads(meta_path.read_text()))).encode()
    elif which == "meta-bytes":
        target, raw = meta_path, data.draw(mutated_bytes(meta_path.read_bytes()))
    else:
        target, raw = ranks_path, data.draw(mutated_bytes(ranks_path.read_bytes()))

    def mutate(c: Path) -> Path:
        target.write_bytes(raw)
        recommit(c)
        return target

    _check_only(ck, mutate, _load_and_generate)


# ------------------------------------------------------------------------------------ run folders

def _runs_home(scratch: Path) -> Path:
    home = Path(tempfile.mkdtemp(dir=scratch))
    make_run(home, "20260101-000001-tiny-pretrain", "finished")
    make_run(home, "20260101-000002-tiny-pretrain", "failed")
    make_run(home, "20260101-000003-tiny-pretrain", "stopped")
    return home


def _read_runs(home: Path) -> None:
    from core.cli import format_event

    listed = runs.list_runs(home / "runs")
    assert len(listed) == 3  # one bad run never hides the others
    for r in listed:
        st_ = r.status()
        assert isinstance(st_.get("state"), str)
        for ev in r.events():
            format_event(ev)
        list(runs.tail(r, follow=False))


@FUZZ
@given(data=st.data())
def test_fuzz_status_and_events(scratch, data):
    home = _runs_home(scratch)
    run = home / "runs" / "20260101-000002-tiny-pretrain"
    which = data.draw(st.sampled_from(["status-fields", "status-bytes", "events-fields", "events-bytes"]))
    if which.startswith("status"):
        target = run / "status.json"
        doc = json.loads(target.read_text())
        raw = data.draw(mutated_json(doc)).encode() if which == "status-fields" else data.draw(
            mutated_bytes(target.read_bytes()))
    else:
        target = run / "events.jsonl"
        lines = target.read_bytes().splitlines(keepends=True)
        i = data.draw(st.integers(0, len(lines) - 1))
        new = (data.draw(mutated_json(json.loads(lines[i]))).encode() + b"\n" if which == "events-fields"
               else data.draw(mutated_bytes(lines[i])))
        raw = b"".join(lines[:i]) + new + b"".join(lines[i + 1:])
    target.write_bytes(raw)
    before = snapshot(home, skip=target)
    _read_runs(home)
    others = [r for r in runs.list_runs(home / "runs") if r.path != run]
    assert sorted(r.status()["state"] for r in others) == ["finished", "stopped"]
    assert snapshot(home, skip=target) == before
    shutil.rmtree(home, ignore_errors=True)


@FUZZ
@given(data=st.data())
def test_fuzz_report_and_chat_files(base, scratch, data):
    from core.chat import Conversation
    from core.eval.report import read_report

    home = Path(tempfile.mkdtemp(dir=scratch))
    report = {"stage": "eval", "model": {"checkpoint": "/x"}, "tasks": {"choice": {"acc": 0.5, "n": 4}},
              "samples": [{"prompt": "a", "text": "b"}], "complete": True}
    chat = [{"format": "llmlab-conversation", "system_prompt": "be kind",
             "sampling": {"temperature": 0.5, "top_k": 3, "top_p": 0.9, "max_new_tokens": 4, "stop": [], "seed": None}},
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    (home / "report.json").write_bytes(data.draw(st.one_of(mutated_json(report).map(str.encode),
                                                           mutated_bytes(json.dumps(report).encode()))))
    text = "\n".join(json.dumps(x) for x in chat).encode()
    i = data.draw(st.integers(0, len(chat) - 1))
    lines = text.splitlines()
    lines[i] = data.draw(st.one_of(mutated_json(chat[i]).map(str.encode), mutated_bytes(lines[i])))
    (home / "chat.jsonl").write_bytes(b"\n".join(lines))
    assert read_report(home) is None or isinstance(read_report(home), dict)
    model, tok, meta = _model_of(base)
    conv = Conversation(model, tok, meta)
    conv.add_user("keep me")
    try:
        conv.load(home / "chat.jsonl")
        assert all(isinstance(m["content"], str) for m in conv.messages)
        check_sampling(dataclasses.asdict(conv.sampling), "sampling")  # what loaded is in bounds
    except UserError:
        assert [m["content"] for m in conv.messages] == ["keep me"]  # a bad file changes nothing
    shutil.rmtree(home, ignore_errors=True)


_models: dict[str, Any] = {}


def _model_of(ck: Path) -> Any:
    if str(ck) not in _models:
        _models[str(ck)] = ckpt_io.load_model(ck)
    return _models[str(ck)]


# ------------------------------------------------------------------------------- real commands

def _llmlab(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**child_env(), "LLMLAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env=env, cwd=home, capture_output=True,
                          text=True, timeout=120)


def _acceptable(p: subprocess.CompletedProcess) -> None:
    assert p.returncode in (0, 2), p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    if p.returncode == 2:
        assert p.stderr.startswith("error: "), p.stderr[-500:]


@FUZZ_CLI
@given(data=st.data())
def test_fuzz_cli_generate_on_a_mutated_checkpoint(base, scratch, data):
    ck = _fresh(base, scratch)
    which = data.draw(st.sampled_from(["model.json", "tokenizer"]))
    target = ck / "model.json" if which == "model.json" else _tok_meta(ck)
    target.write_text(data.draw(mutated_json(json.loads(target.read_text()))))
    recommit(ck)
    before = snapshot(ck.parent)
    _acceptable(_llmlab(ck.parent, "generate", str(ck), "Once", "--max-new-tokens", "2"))
    assert snapshot(ck.parent) == before


@FUZZ_CLI
@given(data=st.data())
def test_fuzz_cli_runs_on_a_mutated_run(scratch, data):
    home = _runs_home(scratch)
    run = home / "runs" / "20260101-000002-tiny-pretrain"
    target = run / data.draw(st.sampled_from(["status.json", "events.jsonl"]))
    target.write_bytes(data.draw(mutated_bytes(target.read_bytes())))
    before = snapshot(home)
    listed = _llmlab(home, "runs", "list")
    _acceptable(listed)
    assert "000001" in listed.stdout and "000003" in listed.stdout
    _acceptable(_llmlab(home, "runs", "show", run.name))
    assert snapshot(home) == before
