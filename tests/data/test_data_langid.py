"""Language identification through the cached, unpacked py3langid model."""

import numpy as np
import py3langid
import pytest

from core.data import langid

TEXTS = ["The quick brown fox jumps over the lazy dog and runs into the woods.",
         "Der schnelle braune Fuchs springt über den faulen Hund und läuft in den Wald.",
         "Le renard brun rapide saute par-dessus le chien paresseux et court dans la forêt."]


@pytest.mark.slow  # unpacks the model twice (~1 CPU-s each)
def test_cached_model_answers_as_py3langid_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(langid, "_IDENTIFIER", None)
    assert [langid.language(t) for t in TEXTS] == [py3langid.classify(t)[0] for t in TEXTS] == ["en", "de", "fr"]
    folder = langid.cache_path()
    assert folder.parent == tmp_path / "llmlab" and {p.name for p in folder.iterdir()} == \
        {f"{k}.npy" for k in langid._NAMES}
    assert langid.language("123 456 !!!") == "?"
    (folder / "nextmove.npy").write_bytes(b"not an array")  # damaged: unpacked again, answers unchanged
    monkeypatch.setattr(langid, "_IDENTIFIER", None)
    assert [langid.language(t) for t in TEXTS] == ["en", "de", "fr"]
    assert np.load(folder / "nextmove.npy", mmap_mode="r").size > 1000
