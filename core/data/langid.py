"""Language identification for the data report: py3langid, with its model unpacked once into a cache.

py3langid (the maintained fork of langid.py: BSD, numpy only, its 97-language model inside the
wheel) ships the model LZMA-compressed, and unpacking it costs 2-5 s in every process that asks.
The first use here writes the same arrays uncompressed to `$XDG_CACHE_HOME/llmlab/` (files any
process can rebuild, keyed by the model file's size and time); later processes
memory-map them. Nothing is loaded until a document's language is asked for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

_IDENTIFIER: Any = None


_NAMES = ("ptc", "pc", "classes", "nextmove", "row", "out")


def cache_path() -> Path:
    """The folder of the unpacked model: one .npy file per array, memory-mapped when read."""
    from py3langid import langid

    packed = langid.MODEL_DIR / langid.MODEL_FILE
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmlab"
    st = packed.stat()  # (importlib.metadata's version() scans every installed package: seconds)
    return root / f"py3langid-{st.st_size}-{st.st_mtime_ns}"


def _arrays() -> dict[str, np.ndarray]:
    """The model's arrays: from the cache, else unpacked from the wheel and cached (a folder written
    aside and renamed into place, so a reader never sees half of it)."""
    from py3langid import langid, modelio

    path = cache_path()
    try:
        return {k: np.load(path / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in _NAMES}
    except (OSError, ValueError, EOFError):
        pass  # absent or damaged: unpack again
    ptc, pc, classes, nextmove, row, out = modelio.load_model(langid.MODEL_DIR / langid.MODEL_FILE)
    arrays = {"ptc": np.asarray(ptc), "pc": np.asarray(pc), "classes": np.array(classes),
              "nextmove": np.frombuffer(nextmove, dtype=np.dtype(nextmove.typecode)),
              "row": np.frombuffer(row, dtype=np.dtype(row.typecode)), "out": np.asarray(out, dtype=np.int32)}
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for k, v in arrays.items():
            np.save(tmp / f"{k}.npy", v, allow_pickle=False)
        shutil.rmtree(path, ignore_errors=True)  # a damaged copy
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a read-only home, or another process won: fine
    return arrays


def identifier() -> Any:
    """py3langid's LanguageIdentifier over the cached model (built once per process)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid import langid, modelio

        a = _arrays()
        _IDENTIFIER = langid.LanguageIdentifier(
            np.asarray(a["ptc"]), np.asarray(a["pc"]), a["classes"].tolist(), modelio._to_array(a["nextmove"]),
            a["out"].tolist(),
            tk_row=modelio._to_array(a["row"]))
    return _IDENTIFIER


def language(text: str) -> str:
    """ISO 639-1 code of the text's language (on its first 1,000 characters), "?" without letters."""
    if not any(ch.isalpha() for ch in text[:500]):
        return "?"
    return str(identifier().classify(text[:1000])[0])
