"""Fuzzing the GGUF reader: hypothesis mutates a real GGUF file (written by the gguf package's own
writer, as llama.cpp's converter writes one) field-wise (the header's version and counts, every
metadata key's length, value type, string length, array count and value, every tensor's name length,
dimension count, dimensions, type and data offset) and byte-wise in the header, then reads it the way
`llmlab import X.gguf` does (weights, then the tokenizer through transformers' converter). The only
acceptable outcomes: success (the model then runs a forward pass), or UserError (exit 2 from the CLI);
never another exception, a hang past a bound (SIGALRM), an allocation past a bound (RLIMIT_AS), or a
change to another file.

Counts: LLMLAB_FUZZ_EXAMPLES in-process examples (faultkit; CI's default is small) and
LLMLAB_FUZZ_CLI_EXAMPLES real `llmlab import` subprocesses (default 3).
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "model"))

from faultkit import FUZZ_EXAMPLES  # noqa: E402
from savedkit import snapshot  # noqa: E402
from test_fuzz_saved import CLI_EXAMPLES, _acceptable, _llmlab, mutated_bytes  # noqa: E402
from test_gguf_import import write_gguf  # noqa: E402

from core.errors import UserError  # noqa: E402

# no explain phase: its line tracing slows torch's reference code enough to trip the hang bound
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, phases=[p for p in Phase if p != Phase.explain],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
FUZZ_CLI = settings(FUZZ, max_examples=CLI_EXAMPLES)
HANG_S = 30  # one read of a 60 KB file takes well under a second; past this it is a hang
EXTRA_BYTES = 3 << 30  # address space a read may add: the file's model needs a few MB


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf-base") / "m.gguf"
    write_gguf(path, quant=gguf.GGMLQuantizationType.Q8_0)
    return path


@pytest.fixture(scope="module")
def slots(base) -> dict[str, list[tuple[str, int, np.dtype]]]:
    """Every integer in the file's header, (what, byte offset, dtype), as "structure" (lengths, counts,
    value types) and "value" (metadata values, tensor dimension counts, dimensions, types, offsets)."""
    reader = gguf.GGUFReader(base)
    start = reader.data.ctypes.data
    out: dict[str, list[tuple[str, int, np.dtype]]] = {"structure": [], "value": []}
    tensor_fields = {id(t.field) for t in reader.tensors}
    for f in [*reader.fields.values(), *(t.field for t in reader.tensors)]:
        for i, part in enumerate(f.parts):
            if part.dtype.kind not in "ui":
                continue
            kind = "value" if (i >= 2 if id(f) in tensor_fields else i == len(f.parts) - 1 and part.size == 1) \
                else "structure"
            for j in range(min(part.size, 4)):
                out[kind].append((f"{f.name}[{i}][{j}]", int(part.ctypes.data - start) + j * part.itemsize,
                                  part.dtype))
    assert len(out["value"]) > 100 and len(out["structure"]) > 100
    return out


def _odd_int(dtype: np.dtype, now: int) -> st.SearchStrategy[int]:
    """Near the value it replaces (a count one too many, a dimension doubled), small, or extreme."""
    info = np.iinfo(dtype)
    near = [now - 1, now + 1, now * 2, now // 2, now + 32, 0, 1, 2, 3, 7, 13, 255, 65535, 2**31 - 1, 2**32 - 1, 2**63 - 1]
    return st.one_of(st.sampled_from([v for v in near if info.min <= v <= info.max]), st.integers(0, 64),
                     st.integers(int(info.min), int(info.max)))


@st.composite
def mutated_gguf(draw: Any, data: bytes, slots: dict[str, list[tuple[str, int, np.dtype]]]) -> bytes:
    """The file with one to three header integers replaced by odd values, or a few header bytes changed."""
    header_end = max(off + dt.itemsize for kind in slots.values() for _, off, dt in kind)
    how = draw(st.sampled_from(["value", "value", "structure", "bytes"]))
    if how != "bytes":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            _, off, dt = draw(st.sampled_from(slots[how]))
            le = dt.newbyteorder("<")
            now = int(np.frombuffer(bytes(out[off: off + dt.itemsize]), dtype=le)[0])
            out[off: off + dt.itemsize] = np.array([draw(_odd_int(dt, now))], dtype=le).tobytes()
        return bytes(out)
    header = draw(mutated_bytes(data[4:header_end]))  # past the magic: a wrong one is refused at once
    return data[:4] + header + data[header_end:]


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """A hang raises TimeoutError (SIGALRM) and an allocation past EXTRA_BYTES fails, for one read."""
    def alarm(*_: Any) -> None:
        raise TimeoutError(f"the read took over {HANG_S} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vsize = int(f.read().split()[0]) * resource.getpagesize()
    limit = vsize + EXTRA_BYTES if hard == resource.RLIM_INFINITY else min(hard, vsize + EXTRA_BYTES)
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _import_reads(path: Path) -> None:
    """What `llmlab import X.gguf` reads; a success must be usable."""
    import torch

    from core.model.gguf_import import read_gguf
    from core.model.hf_tokenizer import HFTokenizerFiles

    try:
        with bounded():
            model, _ = read_gguf(path)
            HFTokenizerFiles.from_gguf(path, model.config.vocab_size)
            with torch.no_grad():
                ids = [i % model.config.vocab_size for i in (1, 2, 3)][: model.config.context_length]
                logits, _ = model(torch.tensor([ids]))
            assert logits.shape[-1] == model.config.vocab_size
        event("read")
    except UserError as e:
        assert str(path) in str(e)
        event(f"refused: {str(e).removeprefix(str(path)).split(':')[1][:40]}")  # --hypothesis-show-statistics


@FUZZ
@given(data=st.data())
def test_fuzz_gguf_header(base, slots, tmp_path_factory, data):
    folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    shutil.copy(base.parent / "m.gguf", folder / "other.gguf")  # a neighbour that must not change
    path = folder / "m.gguf"
    path.write_bytes(data.draw(mutated_gguf(base.read_bytes(), slots)))
    before = snapshot(folder)
    _import_reads(path)
    assert snapshot(folder) == before
    shutil.rmtree(folder, ignore_errors=True)


@FUZZ_CLI
@given(data=st.data())
def test_fuzz_cli_import_of_a_mutated_gguf(base, slots, tmp_path_factory, data):
    home = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    path = home / "m.gguf"
    path.write_bytes(data.draw(mutated_gguf(base.read_bytes(), slots)))
    before = snapshot(home)
    p = _llmlab(home, "import", str(path), "fuzzed")
    _acceptable(p)
    if p.returncode == 2:
        assert snapshot(home) == before and not (home / "models" / "fuzzed").exists()
    shutil.rmtree(home, ignore_errors=True)
