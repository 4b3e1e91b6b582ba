"""Lineage: where a checkpoint came from, from pretraining to its last finetuning stage.

Every checkpoint's model.json carries a `lineage` dict (stage, preset, method, trainable, and the
`base`/`init` checkpoint it started from); `lineage_chain` follows those links back through
core.eval.report.lineage (model.json files only, no weights), and `LineageView` draws the chain
oldest first. Used by the finetuning wizard's base step, the model picker and the eval report.
"""

from __future__ import annotations

from pathlib import Path

from tui.text import plain as escape  # the one escaping helper (tui/text.py)
from textual.widgets import Static

from core.lookup import GPT2_MODELS, GPT2_NAMES


def describe(meta: dict) -> dict:
    """The facts of one checkpoint that the chain shows."""
    lin = meta.get("lineage") or {}
    arch = meta.get("architecture") or {}
    ft = meta.get("finetune") or {}
    stage = lin.get("stage") or ("import" if lin.get("imported_from") else "checkpoint")
    return {"path": meta.get("path", ""), "stage": stage, "preset": lin.get("preset", ""),
            "method": lin.get("method") or ft.get("method", ""), "trainable": lin.get("trainable", ""),
            "init": lin.get("init", ""), "imported_from": lin.get("imported_from", ""), "step": meta.get("step"),
            "val_loss": meta.get("val_loss"), "head": (meta.get("head") or {}).get("kind", "lm"),
            "adapter": bool(meta.get("adapter")), "n_layer": arch.get("n_layer"), "n_embd": arch.get("n_embd"),
            "context_length": arch.get("context_length"), "class_names": ft.get("class_names"),
            "fork": lin.get("fork") if isinstance(lin.get("fork"), dict) else None}


def lineage_chain(spec: str | Path, root: Path | None = None) -> list[dict]:
    """`describe` of the model `spec` names and of its ancestors, oldest first (core.eval.report's
    walk); a missing ancestor or an unknown spec is a row that says so, never silence."""
    if str(spec) in GPT2_NAMES:
        return [{"path": str(spec), "stage": "gpt2", "preset": "", "method": "", "missing": False}]
    from core.errors import UserError
    from core.eval.report import lineage

    try:
        chain = lineage(spec, root)
    except UserError as e:
        return [{"path": str(spec), "stage": "?", "missing": True, "error": str(e)}]
    return [{"path": str(ckpt), "stage": "?", "missing": True} if meta.get("missing")
            else describe({**meta, "path": str(ckpt)}) for ckpt, meta in reversed(chain)]


def short_path(path: str, runs_root: Path | None = None) -> str:
    """runs/<run>/checkpoints/step-N -> <run>/step-N, so rows stay narrow."""
    p = Path(path)
    if p.parent.name == "checkpoints":
        return f"{p.parent.parent.name}/{p.name}"
    return p.name if p.is_absolute() else str(p)


def chain_text(chain: list[dict]) -> str:
    """One line per checkpoint, oldest first, as Rich markup."""
    if not chain:
        return "[dim](no model)[/]"
    lines = []
    for i, c in enumerate(chain):
        arrow = "  " if i == 0 else "\u2192 "
        if c.get("missing"):
            lines.append(f"{arrow}[red]missing[/] {escape(short_path(c['path']))}")
            continue
        if c["stage"] == "gpt2":
            lines.append(f"{arrow}[b]GPT-2[/] {c['path']} ({GPT2_MODELS[c['path']].size if c['path'] in GPT2_MODELS else ''}, OpenAI weights)")
            continue
        what = c["stage"]
        if c.get("method"):
            what += f" {c['method']}"
        if c.get("trainable"):
            what += f" ({c['trainable']}{' adapter' if c.get('adapter') else ''})"
        if c.get("fork"):
            what += f" fork at step {c['fork'].get('step')}"
        elif c.get("init") == "random":
            what += " from random init"
        facts = []
        if c.get("preset"):
            facts.append(f"preset {escape(c['preset'])}")
        if c.get("step") is not None:
            facts.append(f"step {c['step']}")
        if isinstance(c.get("val_loss"), (int, float)):
            facts.append(f"val {c['val_loss']:.3f}")
        if c.get("n_layer"):
            facts.append(f"{c['n_layer']}x{c['n_embd']}")
        lines.append(f"{arrow}[b]{escape(what)}[/] {', '.join(facts)}  [dim]{escape(short_path(c['path']))}[/]")
    return "\n".join(lines)


class LineageView(Static):
    """The chain of a checkpoint; `show(chain)` with the rows of `lineage_chain`."""

    DEFAULT_CSS = """
    LineageView { height: auto; padding: 0 1; }
    """

    def show(self, chain: list[dict]) -> None:
        self.chain = chain
        self.update(chain_text(chain))
