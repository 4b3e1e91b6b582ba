"""The hub path offline, for real: a Hugging Face cache built here (models--ORG--NAME/ with blobs/,
refs/main and snapshots/REV/ of symlinks, as huggingface_hub writes it) holds random tiny models
under the real presets' hub names; with HF_HUB_OFFLINE=1 huggingface_hub resolves them from it for
`llmlab import ORG/NAME NAME`, for `finetune.base`, and for the four real-model presets up to
their weights. A name the cache lacks fails at once with the command that fetches it."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.model.export_helpers import LLAMA3_JINJA, hf_tokenizer_folder

transformers = pytest.importorskip("transformers")

REAL_PRESETS = {"smollm2-135m-sft": "HuggingFaceTB/SmolLM2-135M-Instruct", "qwen3-0.6b-sft": "Qwen/Qwen3-0.6B",
                "smollm2-360m-dpo": "HuggingFaceTB/SmolLM2-360M-Instruct", "smollm2-135m-spam": "HuggingFaceTB/SmolLM2-135M"}


def add_to_cache(hub: Path, repo: str, folder: Path) -> Path:
    """Put `folder`'s files into the cache `hub` as revision main of model `repo`; returns the snapshot."""
    root = hub / ("models--" + repo.replace("/", "--"))
    rev = hashlib.sha1(repo.encode()).hexdigest()
    snap = root / "snapshots" / rev
    (root / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(rev)
    return snap


def tiny_model_folder(tmp: Path, repo: str, tok: Path) -> Path:
    """A random SmolLM2-shaped (Llama) or Qwen3 model with the tokenizer folder `tok`'s files."""
    out = tmp / repo.replace("/", "--")
    vocab = len(transformers.AutoTokenizer.from_pretrained(tok))
    kind = transformers.Qwen3Config if repo.startswith("Qwen/") else transformers.LlamaConfig
    cfg = kind(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, max_position_embeddings=128, tie_word_embeddings=True)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    for f in tok.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("hub")
    hub = tmp / "hf-home" / "hub"
    tok = hf_tokenizer_folder(tmp, LLAMA3_JINJA)  # a byte-level BPE trained with `tokenizers`, chat template
    for repo in REAL_PRESETS.values():
        add_to_cache(hub, repo, tiny_model_folder(tmp, repo, tok))
    return hub


def _run(args: list[str], hub: Path, home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hub.parent), "HF_HUB_CACHE": str(hub),
           "LLMLAB_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=home, timeout=timeout)


def test_import_of_a_hub_name_reads_the_offline_cache(hub_cache, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    r = _run(["-m", "core.cli", "import", "HuggingFaceTB/SmolLM2-135M-Instruct", "smol"], hub_cache, home)
    assert r.returncode == 0, r.stderr
    assert "family llama" in r.stdout and "chat template found" in r.stdout
    from core.checkpoint import load_model

    os.environ["LLMLAB_HOME"], old = str(home), os.environ.get("LLMLAB_HOME")
    try:
        model, tok, _ = load_model("smol")
    finally:
        os.environ.pop("LLMLAB_HOME") if old is None else os.environ.update(LLMLAB_HOME=old)
    snap = next((hub_cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots").iterdir())
    ref = transformers.AutoModelForCausalLM.from_pretrained(snap, dtype=torch.float32).eval()
    ids = torch.tensor([tok.encode("Sam saw a dog at the beach.")])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids)[0], ref(ids).logits, atol=1e-4, rtol=0)
    start = time.monotonic()
    r = _run(["-m", "core.cli", "import", "hf:HuggingFaceTB/SmolLM2-1.7B-Instruct", "big"], hub_cache, home)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "hf download HuggingFaceTB/SmolLM2-1.7B-Instruct --local-dir DIR" in r.stderr
    assert time.monotonic() - start < 120  # at once: no retries against an unreachable hub (generous: a loaded CI)
    assert sorted(p.name for p in (home / "models").iterdir()) == ["smol"]


SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from core import config
    from core.runs import NullLogger
    from core.stages.finetune import load_base, resolve_base
    out = {}
    for name in sys.argv[1:]:
        p = config.load(name)
        run_dir = Path(name)
        run_dir.mkdir()
        path = resolve_base("hf:" + p.finetune.base if name.endswith("spam") else p.finetune.base, run_dir, NullLogger())
        model, tok, meta = load_base(path, p)
        out[name] = {"path": str(path), "family": meta["lineage"]["family"], "tokenizer": type(tok).__name__,
                     "template": tok.chat_template, "n_vocab": tok.n_vocab, "rows": model.config.vocab_size}
    print(json.dumps(out))
""")


def test_the_four_real_presets_resolve_their_hub_bases_offline(hub_cache, tmp_path):
    """Each preset's base (one of them written hf:owner/name) imports once from the cache into models/
    and loads with its own tokenizer and chat template: all a run needs before its data and steps."""
    home = tmp_path / "home"
    home.mkdir()
    r = _run(["-c", SCRIPT, *REAL_PRESETS], hub_cache, home)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for name, repo in REAL_PRESETS.items():
        g = got[name]
        assert Path(g["path"]) == (home / "models" / repo.split("/")[1]).resolve(), name
        assert g["family"] == ("qwen3" if repo.startswith("Qwen/") else "llama"), name
        assert (g["tokenizer"], g["template"]) == ("HFTokenizer", "jinja") and g["n_vocab"] == g["rows"], name
