"""`llmlab import SOURCE NAME`: a real model from the hub, a local HF folder or a .gguf file.

The model lands as a committed checkpoint under $LLMLAB_HOME/models/NAME with its own tokenizer
files and chat template (core.model.hf_tokenizer). Everything is written into a temporary
sibling and renamed at the end (core.checkpoint.write_checkpoint), so a failure at any point
leaves nothing half-written under models/. Returns a summary for the CLI to print.
`import_once` is how stages start from a hub model (pretraining's init_from, finetuning's base).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.runs import Logger


@dataclass
class ImportSummary:
    path: Path
    source: str
    family: str
    params: int
    context_length: int
    vocab_size: int
    tokenizer: str  # "hf", "tiktoken:gpt2" or "none"
    chat_template: bool
    warnings: list[str] = field(default_factory=list)


def import_model(source: str, name: str) -> ImportSummary:
    """Import `source` (hub owner/name, HF folder, or .gguf file) as models/NAME (or into the folder
    NAME when it is a path, as `import-hf SOURCE OUT` always did); UserError on bad input."""
    from core.checkpoint import write_checkpoint
    from core.model.hf import GPT2_VOCAB, is_hub_name, read_hf
    from core.model.hf_tokenizer import HFTokenizerFiles
    from core.lookup import models_root

    if "/" in name or name.startswith("."):
        dest = Path(name).expanduser()
    elif re.fullmatch(r"[A-Za-z0-9][\w.+-]*", name):
        dest = models_root() / name
    else:
        raise UserError(f"{name!r}: a model NAME is letters, digits and . _ + - (it becomes models/NAME), or a path")
    if dest.exists():
        raise UserError(f"{dest}: already exists; choose another NAME or delete it first")
    if source.startswith("hf:"):  # the hub prefix data sources use
        source = source[3:]
    path = Path(source).expanduser()
    warnings: list[str] = []
    tokenizer: Any = None  # our Tokenizer (GPT-2) or the model's own HF files
    if source.endswith(".gguf") or path.is_file():
        from core.model.gguf_import import read_gguf

        model, family = read_gguf(path)
        tokenizer = HFTokenizerFiles.from_gguf(path, model.config.vocab_size)
    elif path.is_dir() or is_hub_name(source):
        model, family, folder = read_hf(source)
        if family == "gpt2" and model.config.vocab_size == GPT2_VOCAB:
            from core.model.hf import grow_vocab
            from core.tokenizer import get_tokenizer

            tokenizer = get_tokenizer("gpt2")
            model = grow_vocab(model, tokenizer.n_vocab)
        else:
            tokenizer = HFTokenizerFiles.from_folder(folder, model.config.vocab_size)
    else:
        raise UserError(f"{source}: not a .gguf file, a local Hugging Face folder, nor a hub name (owner/name)")
    if tokenizer is None:
        warnings.append(f"{source} has no tokenizer.json: the model imports without a tokenizer, so generate, chat, "
                        f"eval and finetune will refuse it")
    lineage = {"imported_from": str(source), "family": family}
    ckpt = write_checkpoint(dest, 0, model, tokenizer=tokenizer, lineage=lineage)
    kind = "none" if tokenizer is None else getattr(tokenizer, "kind", None) or f"tiktoken:{tokenizer.name}"
    template = bool(getattr(tokenizer, "has_chat_template", False) or getattr(tokenizer, "chat_template", None))
    return ImportSummary(ckpt, source, family, model.num_params(), model.config.context_length,
                         model.config.vocab_size, kind, template, warnings)


def import_once(name: str, log: Logger) -> Path:
    """The checkpoint of hub model `name` (a GPT-2 name or owner/name), imported on first use into
    $LLMLAB_HOME/models/<its last part> and reused from there after."""
    from core.lookup import models_root

    out = models_root() / name.split("/")[-1]
    if (out / "COMMITTED").is_file():
        return out
    log.log({"kind": "log", "level": "info", "message": f"importing {name} weights into {out} (once)"})
    return import_model(name, out.name).path
