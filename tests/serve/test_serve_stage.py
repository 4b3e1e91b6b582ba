"""`llmlab serve` as a run: detached, listed, answering, stopped by `llmlab runs stop`; a port in use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from openai import OpenAI

from core import runs
from core.serve import server_url


def llmlab(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def wait_for(predicate, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def words(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


@pytest.mark.slow
def test_a_serve_run_is_listed_answers_and_stops_cleanly(workspace, ckpt, monkeypatch):
    monkeypatch.setenv("LLMLAB_TEST_SERVE_KEY", "sk-stage-secret")
    code, out, err = llmlab("serve", str(ckpt), "--port", "0", "--api-key-env", "LLMLAB_TEST_SERVE_KEY", "--detach")
    assert code == 0, err
    (run,) = runs.list_runs()
    url = wait_for(lambda: server_url(run.path) or (run.state == "failed" and run.status()))
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:"), url
    c = OpenAI(base_url=url, api_key="sk-stage-secret", max_retries=0, timeout=60)
    stream = c.chat.completions.create(model=str(ckpt), messages=[{"role": "user", "content": "Hi"}], max_tokens=500,
                                       temperature=0, stream=True)
    next(iter(stream))
    stream.close()  # a client that leaves mid-stream
    r = c.chat.completions.create(model=str(ckpt), messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert r.usage.completion_tokens == 5
    code, out, _ = llmlab("runs", "list")
    assert code == 0 and "serve" in out and "running" in out
    code, out, _ = llmlab("runs", "stop", run.name)
    assert code == 0 and "stop requested" in out
    wait_for(lambda: run.state == "stopped", 30)
    kinds = [e["kind"] for e in run.events()]
    assert "serving" in kinds and kinds.count("request") == 2
    assert [e["finish_reason"] for e in run.events() if e["kind"] == "request"] == ["cancelled", "length"]
    assert "sk-stage-secret" not in run.events_path.read_text() + (run.path / "preset.toml").read_text()
    assert "Traceback" not in (run.path / "stderr.log").read_text()


def test_a_port_in_use_is_bad_input_from_the_command_and_in_the_stage(workspace, ckpt, tmp_path):
    import threading

    from core import config
    from core.errors import UserError
    from core.stages.serve import run

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, out, err = llmlab("serve", str(ckpt), "--port", str(port))
        assert code == 2 and f"127.0.0.1:{port} is already in use" in err and "Traceback" not in err
        assert runs.list_runs() == []  # refused before a run is created
        preset = config.load("tiny", [f"serve.model={json.dumps(str(ckpt))}", f"serve.port={port}"])
        events: list[dict] = []
        log = type("Log", (), {"log": lambda self, e: events.append(e), "close": lambda self: None})()
        with pytest.raises(UserError, match=f"serve.port: 127.0.0.1:{port} is already in use"):
            run(preset, tmp_path, log, threading.Event())  # a run launched from the TUI checks the same
    assert events == []


def test_an_unset_key_variable_and_a_model_that_is_not_one(workspace, ckpt, tmp_path):
    code, _, err = llmlab("serve", str(tmp_path / "nothing"))
    assert code == 2 and "not a checkpoint" in err and "Traceback" not in err
    code, out, err = llmlab("serve", str(ckpt), "--port", "0", "--api-key-env", "LLMLAB_NO_SUCH_VAR_SET")
    assert code == 2 and "LLMLAB_NO_SUCH_VAR_SET is not set" in err and runs.list_runs() == []
