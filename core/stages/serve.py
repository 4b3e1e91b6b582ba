"""The serve stage: an OpenAI-compatible server for one model, as a run that `llmlab runs stop` ends.

`run(preset, run_dir, log, stop)` binds serve.host:serve.port first (a port in use fails at once, as
bad input), loads serve.model with its tokenizer, logs a `serving` event {url, model} and then one
`request` event per answered or refused request, until the stop event. The preset's [generate]
section gives the sampling defaults a request does not set. The API key is read from the
environment variable serve.api_key_env names and is never logged.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from core.errors import UserError


def api_key(env_name: str) -> str:
    """The key clients must send ('' = none); a named variable that is unset or empty is refused."""
    if not env_name:
        return ""
    key = os.environ.get(env_name, "")
    if not key.strip():
        raise UserError(f"serve.api_key_env: the environment variable {env_name} is not set (or empty); "
                        f"export it before starting the server, or drop --api-key-env")
    return key.strip()


def default_options(gen: Any) -> dict[str, Any]:
    """generate_text options of the preset's [generate] (its seed 0 means a random seed)."""
    from core.generate import sampling_options

    return {**sampling_options(gen), "stop": list(gen.stop)}


def run(preset: Any, run_dir: Path, log: Any, stop: threading.Event) -> None:
    from core.serve.server import bind, serving
    from core.train.loop import pick_device

    cfg = preset.serve
    if not cfg.model:
        raise UserError("serve.model: empty; name the model to serve (`llmlab serve MODEL`)")
    key = api_key(cfg.api_key_env)  # an unset key variable fails before anything starts
    sock = bind(cfg.host, cfg.port)  # a port in use fails before the model loads
    try:
        ckpt, model, tokenizer = load_servable(cfg.model, pick_device(preset.train.device))
    except BaseException:
        sock.close()
        raise
    with serving(model, tokenizer, cfg.model, sock, defaults=default_options(preset.generate), api_key=key,
                 log=log.log) as url:
        log.log({"kind": "serving", "url": url, "model": cfg.model, "checkpoint": str(ckpt),
                 "context_length": int(model.config.context_length), "auth": bool(key)})
        stop.wait()
    log.log({"kind": "log", "level": "info", "message": f"stopped serving {cfg.model}"})


def load_servable(spec: str, device: Any) -> tuple[Path, Any, Any]:
    """(checkpoint, model, tokenizer) of a language model with its tokenizer, else a UserError."""
    from core.checkpoint import load_model
    from core.lookup import resolve_checkpoint

    ckpt = resolve_checkpoint(spec)
    model, tokenizer, meta = load_model(ckpt, device=device)
    if tokenizer is None:
        raise UserError(f"{ckpt}: the checkpoint has no tokenizer, so requests cannot be encoded; serve a model "
                        f"saved with its tokenizer (pretraining and finetuning save one)")
    if (meta.get("head") or {}).get("kind", "lm") != "lm":
        raise UserError(f"{ckpt}: a {meta['head']['kind']} checkpoint predicts labels, not text; "
                        f"serve a pretrained or instruction-tuned model")
    return ckpt, model, tokenizer
