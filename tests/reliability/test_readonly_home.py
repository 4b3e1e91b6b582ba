"""A read-only $LLMLAB_HOME, tried by a process that file permissions bind: every command that writes
exits 2 with a one-line message naming the path it could not write, and changes nothing; the commands
that only read still work. Root ignores file permissions, so as root the commands run with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from the capability bounding set (`setpriv`): uid 0
still, so the interpreter under /root stays reachable, but bound by the modes like any user.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultkit import child_env
from savedkit import make_checkpoint, make_run, make_tokenizer, snapshot

RUN = "20260101-000001-tiny-pretrain"


def _unprivileged() -> list[str]:
    """The command prefix that makes file permissions apply to the child."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): file permissions cannot be made to apply")
    locked = Path(tempfile.mkdtemp())
    locked.chmod(0o555)
    probe = subprocess.run([setpriv, "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c",
                            f"import os; print(os.access({str(locked)!r}, os.W_OK))"], capture_output=True, text=True)
    locked.rmdir()
    if probe.returncode != 0 or probe.stdout.strip() != "False":
        pytest.skip(f"setpriv cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.strip()[:200]}")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def _lock(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def prefix() -> list[str]:
    return _unprivileged()


@pytest.fixture(scope="module")
def home(tmp_path_factory, prefix) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("ro")
    root = base / "home"
    make_checkpoint(root / "models" / "ck", make_tokenizer())
    make_run(root, RUN, "finished")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "model"))
    from test_gguf_import import write_gguf

    write_gguf(base / "m.gguf")
    _lock(root, writable=False)
    yield root
    _lock(root, writable=True)


def _llmlab(prefix: list[str], home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`llmlab ARGS` bound by file permissions, from a writable folder: only the workspace is read-only."""
    env = {**child_env(), "LLMLAB_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*prefix, sys.executable, "-m", "core.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


WRITERS = [
    ("data", "tiny"), ("tokenizer", "tiny"), ("pretrain", "tiny"), ("eval", "ck", "--tasks", "perplexity"),
    ("import", "{gguf}", "fresh"), ("export-hf", "ck", "{home}/out"), ("export-gguf", "ck", "{home}/out.gguf"),
    ("runs", "delete", RUN, "--yes"),
]
READERS = [("runs", "list"), ("runs", "show", RUN), ("generate", "ck", "Once", "--max-new-tokens", "2"),
           ("report", "ck"), ("presets", "list")]
if os.environ.get("CI"):  # CI's reduced count: one command of each kind of write, and two readers
    WRITERS = [w for w in WRITERS if w[0] in ("data", "pretrain", "import", "export-gguf", "runs")]
    READERS = READERS[:1] + READERS[2:3]


@pytest.mark.slow
@pytest.mark.parametrize("args", WRITERS, ids=lambda a: " ".join(a[:2]))
def test_a_command_that_writes_says_which_path_is_read_only(prefix, home, tmp_path, args):
    args = tuple(a.format(home=home, gguf=home.parent / "m.gguf") for a in args)
    before = snapshot(home)
    p = _llmlab(prefix, home, tmp_path, *args)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ") and len(p.stderr.splitlines()) == 1
    assert str(home) in p.stderr and ("Permission denied" in p.stderr or "not writable" in p.stderr)
    assert snapshot(home) == before


@pytest.mark.slow
@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_a_command_that_only_reads_still_works(prefix, home, tmp_path, args):
    before = snapshot(home)
    p = _llmlab(prefix, home, tmp_path, *args)
    assert p.returncode == 0, p.stderr[-2000:]
    assert snapshot(home) == before
