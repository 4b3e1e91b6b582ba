"""Checkpoints: save, commit, rotate and load (the layout is in DESIGN.md).

    run_dir/checkpoints/step-00001000/
        model.safetensors   weights, each tensor once (a tied head is re-tied on load)
        model.json          architecture (ModelConfig), tokenizer, chat template, head, lineage
        tokenizer/          the tokenizer's own files, so the folder loads with no preset at hand
        trainer.pt          optimizer, schedule, RNG states, data position (tensors and plain containers)
        COMMITTED           written last: sizes and sha256 of the files above
    An FSDP run's checkpoint holds shards/ (torch.distributed.checkpoint: one __R_0.distcp per rank
    and .metadata) instead of model.safetensors, with the optimizer state in it too; model.json says
    "sharded": {"world_size": N}. Every reader below loads both layouts in one process.
    run_dir/checkpoints/latest, best    text files naming a committed step

A checkpoint is written into a temporary folder, every file is fsynced, COMMITTED goes last and
the folder is renamed into place; a folder without COMMITTED does not exist for any reader.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.config import ModelConfig
from core.errors import UserError
from core.lookup import (COMMITTED, META, STEP_PREFIX, TOKENIZER_DIR, TRAINER, WEIGHTS,  # noqa: F401 (re-exported)
                         committed_checkpoints, model_config, read_pointer, resolve_checkpoint, step_name)
from core.schemas import CHECKPOINT_FORMAT, MiB, check_manifest, check_model_json, model_config_of, read_json
from core.runs import fsync_dir, process_alive, write_text_atomic  # noqa: F401 (write_text_atomic is re-exported)

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

FORMAT = CHECKPOINT_FORMAT
VERSION = 1
MANIFEST_MAX_BYTES, META_MAX_BYTES = 4 * MiB, 16 * MiB
SHARDS = "shards"  # a sharded checkpoint's torch.distributed.checkpoint folder
# fields that describe how a model was trained, not what it is: a resume may change them
NOT_ARCHITECTURE = ("init_from", "dropout")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The GPT inside DDP (.module) and torch.compile (._orig_mod) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


class _WriteAll:
    """A file for torch.save whose write() writes everything or raises the OSError (ENOSPC, EFBIG).
    torch's zip writer often swallows that error and fails later with its own RuntimeError
    ("unexpected pos"), so the first OSError is kept and `save` raises it instead."""

    def __init__(self, fd: int):
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        view, done = memoryview(data).cast("B"), 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as e:
            self.error = self.error or e
            raise
        return done

    def flush(self) -> None:
        pass

    @classmethod
    def save(cls, obj: Any, path: Path) -> None:
        """torch.save `obj` to `path` through os.write; a failed write raises its OSError."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        out = cls(fd)
        try:
            torch.save(obj, out)  # type: ignore[arg-type]  # a file object: write() and flush()
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())



def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()



# ---------------------------------------------------------------------------------- RNG state

def capture_rng_state() -> dict:
    """RNG states of python, numpy, torch and CUDA as tensors and plain containers (weights_only-safe)."""
    py = random.getstate()
    np_state: Any = np.random.get_state()  # a tuple (legacy=True), typed as a union
    state: dict[Any, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


# --------------------------------------------------------------------------------------- save

def write_checkpoint(dest: str | Path, step: int, model: torch.nn.Module, *, tokenizer: Any = None,
                     trainer_state: dict | None = None, val_loss: float | None = None,
                     chat_template: str | None = None, lineage: dict | None = None,
                     extra: dict | None = None, sharded: int | None = None) -> Path:
    """Write one committed checkpoint folder at `dest`: files into a temporary sibling, each
    fsynced, COMMITTED last, then renamed into place (replacing an older `dest`). With `sharded`
    (the world size) the temporary folder already holds the ranks' shards/ (core.train.fsdp)."""
    model = _unwrap(model)
    final = Path(dest)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(final)
    if sharded is None:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    elif not (tmp / SHARDS).is_dir():
        raise FileNotFoundError(f"{tmp / SHARDS}: the ranks' shards were not written")
    if sharded is not None:
        extra = {**(extra or {}), "sharded": {"world_size": sharded}}

    try:
        _write_files(tmp, step, model, tokenizer, trainer_state, val_loss, chat_template, lineage, extra)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write (disk full, a kill signal) leaves nothing behind
        raise

    if final.exists():  # the same step saved again (e.g. a stop right after a periodic save)
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def temp_folder(final: Path) -> Path:
    """Where the checkpoint `final` is written before it is committed and renamed into place."""
    return final.with_name(f".tmp-{final.name}-{os.getpid()}")


def _save_weights(weights: dict, path: Path) -> None:
    """safetensors' save_file reports a full disk as SafetensorError: turn an I/O failure back into
    the OSError (ENOSPC, EFBIG, ...) that callers handle."""
    try:
        save_file(weights, path, metadata={"format": FORMAT})
    except SafetensorError as e:
        m = re.search(r"\(os error (\d+)\)", str(e))
        if m is None:
            raise
        code = int(m.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None


def _write_files(tmp: Path, step: int, model: Any, tokenizer: Any, trainer_state: dict | None,
                 val_loss: float | None, chat_template: str | None, lineage: dict | None, extra: dict | None) -> None:
    if not (extra or {}).get("sharded"):
        _save_weights(model.weights(), tmp / WEIGHTS)
    head: dict[str, Any] = {"kind": model.head_kind}
    if model.head_kind != "lm":
        head.update(out_features=model.lm_head.out_features, bias=model.lm_head.bias is not None)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "architecture": dataclasses.asdict(model.config),
        "tokenizer": None,
        "chat_template": chat_template or getattr(tokenizer, "chat_template", None),
        "head": head,
        "val_loss": val_loss,
        "lineage": lineage or {},
        "created": time.time(),
        **(extra or {}),
    }
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_DIR)
        meta["tokenizer"] = {"name": tokenizer.name, "folder": TOKENIZER_DIR, "kind": getattr(tokenizer, "kind", "tiktoken"),
                             "n_vocab": tokenizer.n_vocab, "fingerprint": getattr(tokenizer, "fingerprint", None)}
        if getattr(tokenizer, "kind", None):  # "hf": a real model's own Hugging Face tokenizer files
            meta["tokenizer"]["kind"] = tokenizer.kind
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    if trainer_state is not None:
        _WriteAll.save(trainer_state, tmp / TRAINER)  # a full disk is an OSError(ENOSPC), not torch's RuntimeError

    _commit_manifest(tmp, step)


def _commit_manifest(tmp: Path, step: int) -> None:
    """fsync every file of a checkpoint folder and write COMMITTED (sizes and sha256) last."""
    files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != COMMITTED)
    manifest = {}
    for p in files:
        _fsync_file(p)
        manifest[p.relative_to(tmp).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    for d in {p.parent for p in files}:
        fsync_dir(d)
    with open(tmp / COMMITTED, "w") as f:
        f.write(json.dumps({"step": step, "files": manifest}, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)


def copy_checkpoint(src: Path, run_dir: Path, trainer_state: dict | None = None) -> Path:
    """Copy the committed checkpoint `src` into `run_dir/checkpoints/` under its own step name (its
    trainer.pt replaced by `trainer_state` when given), commit the copy and point `latest` at it."""
    meta = verify(src)
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / src.name
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(COMMITTED))
        if trainer_state is not None:
            _WriteAll.save(trainer_state, tmp / TRAINER)
        _commit_manifest(tmp, int(meta.get("step", 0)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, final)
    fsync_dir(root)
    write_text_atomic(root / "latest", final.name + "\n")
    return final


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, *, tokenizer: Any = None,
                    trainer_state: dict | None = None, val_loss: float | None = None, keep_last: int = 2,
                    chat_template: str | None = None, lineage: dict | None = None,
                    extra: dict | None = None, best_step: int | None = None, sharded: int | None = None) -> Path:
    """Write and commit `run_dir/checkpoints/step-NNNNNNNN`, update `latest` (and `best` when
    `val_loss` is the lowest so far), rotate old ones; returns the checkpoint folder.

    `trainer_state` holds tensors and plain containers only (use `capture_rng_state()` for RNG);
    `lineage` says where the model came from (base checkpoint, preset, stage), `extra` is any
    more JSON for model.json. `best_step` (an early-stopping rule's best evaluation) names the best
    checkpoint instead of the lowest validation loss. Under DDP only rank 0 calls this, after a barrier;
    under FSDP rank 0 calls it with `sharded` after every rank wrote its shard (core.train.fsdp).
    """
    root = Path(run_dir) / "checkpoints"
    final = write_checkpoint(root / step_name(step), step, model, tokenizer=tokenizer, trainer_state=trainer_state,
                             val_loss=val_loss, chat_template=chat_template, lineage=lineage, extra=extra,
                             sharded=sharded)
    write_text_atomic(root / "latest", final.name + "\n")
    best = read_pointer(root, "best")
    best_loss = _val_loss(best) if best is not None else None
    if best_step is not None:
        if (root / step_name(best_step) / COMMITTED).is_file():
            write_text_atomic(root / "best", step_name(best_step) + "\n")
    elif val_loss is not None and (best_loss is None or val_loss <= best_loss):
        write_text_atomic(root / "best", final.name + "\n")
    rotate(root, keep_last)
    return final


def _val_loss(ckpt: Path) -> float | None:
    try:
        v = read_json(ckpt / META, META_MAX_BYTES).get("val_loss")
    except (UserError, AttributeError):
        return None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def rotate(root: Path, keep_last: int) -> list[Path]:
    """Remove committed checkpoints beyond the last `keep_last`, never the best or the latest,
    and leftovers of interrupted saves; returns what was removed."""
    keep_last = max(1, keep_last)
    ckpts = committed_checkpoints(root)
    keep = set(ckpts[-keep_last:])
    keep |= {p for p in (read_pointer(root, "best"), read_pointer(root, "latest")) if p is not None}
    removed = []
    for p in ckpts:
        if p not in keep:
            # rename, then delete: a kill during the deletion leaves an .old- folder (removed below by
            # a later save), never a folder with COMMITTED whose other files are partly gone
            doomed = p.with_name(f".old-{p.name}-{os.getpid()}")
            shutil.rmtree(doomed, ignore_errors=True)
            os.replace(p, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(p)
    remove_stale(root)
    return removed


def remove_stale(root: Path) -> None:
    """Remove the half-written (.tmp-) and half-deleted (.old-) folders that a killed process left;
    a folder whose process still lives (a save in progress elsewhere) stays."""
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith((".tmp-", ".old-")) and not p.name.endswith(f"-{os.getpid()}"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)



# --------------------------------------------------------------------------------------- load

def verify(ckpt: str | Path, *, hashes: bool = True) -> dict:
    """Check a checkpoint folder against its COMMITTED manifest; returns model.json or raises UserError."""
    ckpt = Path(ckpt)
    if not (ckpt / COMMITTED).is_file():
        raise UserError(f"{ckpt}: not a committed checkpoint (no {COMMITTED} file); it was never finished "
                        f"or is not a checkpoint folder. Use a step-NNNNNNNN folder under a run's checkpoints/")
    manifest = check_manifest(read_json(ckpt / COMMITTED, MANIFEST_MAX_BYTES), ckpt / COMMITTED, (META,))
    for rel, info in manifest.items():
        p = ckpt / rel
        if p.is_symlink() or not p.is_file():  # a link to /dev/zero would be hashed forever
            raise UserError(f"{p}: missing or not a regular file; the checkpoint is corrupt (use an earlier checkpoint)")
        if p.stat().st_size != info["bytes"]:
            raise UserError(f"{p}: {p.stat().st_size} bytes, {info['bytes']} when committed; the checkpoint is corrupt")
        if hashes and _sha256(p) != info["sha256"]:
            raise UserError(f"{p}: contents changed since the checkpoint was committed (sha256 mismatch); it is corrupt")
    meta = check_model_json(read_json(ckpt / META, META_MAX_BYTES), ckpt / META, FORMAT)
    world = sharded_world(meta, ckpt)
    for rel in shard_files(world) if world else []:
        if rel not in manifest:
            raise UserError(f"{ckpt / rel}: missing from the checkpoint (its {COMMITTED} does not list it); "
                            f"the checkpoint is incomplete (use an earlier checkpoint)")
    return meta


def sharded_world(meta: dict, ckpt: Path) -> int | None:
    """The world size of a sharded checkpoint's model.json, None for one with model.safetensors."""
    info = meta.get("sharded")
    if info is None:
        return None
    n = info.get("world_size") if isinstance(info, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1_000_000:
        raise UserError(f"{ckpt / META}: sharded.world_size must be a whole number of processes, got {n!r}")
    return n


def shard_files(world: int) -> list[str]:
    """The files a sharded checkpoint of `world` ranks consists of (torch.distributed.checkpoint's names)."""
    return [f"{SHARDS}/.metadata"] + [f"{SHARDS}/__{r}_0.distcp" for r in range(world)]


def resume_candidates(run_dir: str | Path) -> list[Path]:
    """Committed checkpoints of a run, newest first, starting at the one `latest` names."""
    root = Path(run_dir) / "checkpoints"
    found = committed_checkpoints(root)
    latest = read_pointer(root, "latest")
    if latest is not None:
        found = [c for c in found if c.name <= latest.name]
    return list(reversed(found))


def resumable_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run that verifies, falling back past corrupt ones; None if there is none."""
    for ckpt in resume_candidates(run_dir):
        try:
            verify(ckpt)
            return ckpt
        except UserError:
            continue
    return None


def architecture_diff(meta: dict, cfg: ModelConfig) -> list[str]:
    """Fields where `cfg` differs from a checkpoint's architecture, as 'model.x: checkpoint A, preset B'."""
    saved = model_config(meta)
    out = []
    for f in dataclasses.fields(ModelConfig):
        if f.name in NOT_ARCHITECTURE:
            continue
        a, b = getattr(saved, f.name), getattr(cfg, f.name)
        if a != b and not (f.name == "vocab_size" and b == 0):
            out.append(f"model.{f.name}: checkpoint {a!r}, preset {b!r}")
    return out


def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               verify_hashes: bool = True) -> tuple[Any, TextTokenizer | None, dict]:
    """Load (model, tokenizer, meta) from a checkpoint folder or a run directory (its latest).

    The model is in eval mode; tokenizer is None when the checkpoint has none. Anything not
    committed, or whose files do not match the commit manifest, is refused with a UserError.
    """
    from core.model.gpt import GPT

    ckpt = resolve_checkpoint(path)
    meta = verify(ckpt, hashes=verify_hashes)
    if meta.get("adapter"):  # a LoRA checkpoint: its base with the adapters merged in (core.model.lora)
        return load_adapter_model(ckpt, meta, device=device, dtype=dtype, verify_hashes=verify_hashes)
    cfg = model_config_of(meta, ckpt / META)
    head = meta.get("head") or {"kind": "lm"}
    check_weight_shapes(ckpt, cfg, head, meta)  # before allocating: model.json may claim any size
    model = GPT(cfg)
    if head["kind"] != "lm":
        model.set_head(head["out_features"], bias=head.get("bias", False), kind=head["kind"])
    if meta.get("sharded"):
        load_sharded_weights(ckpt, model)
    else:
        try:
            sd = load_file(ckpt / WEIGHTS)
            model.load_weights(sd)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise UserError(f"{ckpt / WEIGHTS}: cannot load the weights ({e}); the checkpoint is corrupt") from None
    model.to(device=device, dtype=dtype)
    model.eval()
    tokenizer = checkpoint_tokenizer(ckpt, meta)
    if tokenizer is not None and tokenizer.n_vocab > cfg.vocab_size:  # ids the embedding has no row for
        raise UserError(f"{ckpt / meta['tokenizer'].get('folder', TOKENIZER_DIR)}: {tokenizer.n_vocab} token ids, more "
                        f"than the model's vocab_size {cfg.vocab_size}; the checkpoint is inconsistent")
    meta["path"] = str(ckpt)
    return model, tokenizer, meta


def check_weight_shapes(ckpt: Path, cfg: ModelConfig, head: dict, meta: dict | None = None) -> None:
    """The tensors of model.safetensors (read from its header only), or of a sharded checkpoint's
    metadata, must be exactly the ones the architecture in model.json needs; a model is built on
    the meta device to know them."""
    from core.model.gpt import GPT

    with torch.device("meta"):
        model = GPT(cfg)
        if head.get("kind", "lm") != "lm":
            model.set_head(head["out_features"], bias=head.get("bias", False), kind=head["kind"])
    want = {k: tuple(v.shape) for k, v in model.weights().items()}
    sharded = bool((meta or {}).get("sharded"))
    got = _sharded_shapes(ckpt) if sharded else _safetensors_shapes(ckpt)
    if got != want:
        diff = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))[:3]
        shown = ", ".join(f"{k}: file {got.get(k)}, model.json {want.get(k)}" for k in diff)
        what = f"{SHARDS}/" if sharded else WEIGHTS
        raise UserError(f"{ckpt}: {what} does not match the architecture in model.json ({shown})")


def _safetensors_shapes(ckpt: Path) -> dict[str, tuple]:
    from safetensors import safe_open

    try:
        with safe_open(ckpt / WEIGHTS, "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{ckpt / WEIGHTS}: cannot load the weights ({e}); the checkpoint is corrupt") from None


# ----------------------------------------------------------------------------- sharded layout

def shard_reader(ckpt: Path) -> Any:
    """A torch.distributed.checkpoint reader of `ckpt/shards` whose .metadata (a pickle) is unpickled
    with only the classes that format uses: a crafted file cannot run code."""
    import pickle

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import metadata as md

    allowed = {("torch", "Size"), ("torch", "dtype"), ("torch", "layout"), ("torch", "memory_format"),
               ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
               ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath")}
    modules = (md.__name__, "torch.distributed.checkpoint.filesystem", "torch.distributed.checkpoint.planner",
               "torch.distributed.checkpoint._extension", "torch.distributed.checkpoint.storage")

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in allowed or (module == "torch" and name in ("float32", "bfloat16", "float16", "int64")):
                return super().find_class(module, name)
            if module in modules and "." not in name:  # no dotted path (filesystem.os.system) reaches past them
                obj = super().find_class(module, name)
                # only the format's own records: dataclasses and enums defined there, never a function
                if isinstance(obj, type) and obj.__module__ == module and (
                        dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum)):
                    return obj
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")

    class Reader(dcp.FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            with open(Path(self.path) / ".metadata", "rb") as f:
                metadata = Restricted(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = md.StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return Reader(str(ckpt / SHARDS))


def _sharded_shapes(ckpt: Path) -> dict[str, tuple]:
    try:
        meta = shard_reader(ckpt).read_metadata()
    except Exception as e:  # unpickling errors come in many types
        raise UserError(f"{ckpt / SHARDS / '.metadata'}: cannot read ({type(e).__name__}: {e}); "
                        f"the checkpoint is corrupt") from None
    return {k.removeprefix("model."): tuple(v.size) for k, v in meta.state_dict_metadata.items()
            if k.startswith("model.") and hasattr(v, "size")}


def read_shards(ckpt: Path, state: dict) -> None:
    """Fill `state` (tensors or DTensors of the sizes wanted, any sharding) from `ckpt/shards`: a
    collective under torchrun, a plain read in one process."""
    import warnings

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    alone = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # alone: meant so
        dcp.load(state, storage_reader=shard_reader(ckpt), no_dist=alone)


def load_sharded_weights(ckpt: Path, model: Any) -> None:
    """Read a sharded checkpoint's weights into `model`, which holds whole tensors (one process, or
    every rank of a group before it shards: all of them must call this then)."""
    raw: Any = _unwrap(model)
    sd = {k: v for k, v in raw.state_dict().items() if not (k == "lm_head.weight" and raw.tied)}
    try:
        read_shards(ckpt, {"model": sd})
        raw.load_weights(sd)
    except Exception as e:  # a damaged shard surfaces as many kinds of error
        raise UserError(f"{ckpt / SHARDS}: cannot load the weights ({type(e).__name__}: {e}); "
                        f"the checkpoint is corrupt") from None


def checkpoint_tokenizer(ckpt: Path, meta: dict) -> TextTokenizer | None:
    """The tokenizer model.json's `tokenizer` entry names ({"folder", "kind": "tiktoken" | "hf"}), or None."""
    tok = meta.get("tokenizer")
    if not isinstance(tok, dict) or not (ckpt / tok.get("folder", TOKENIZER_DIR)).is_dir():
        return None
    from core.tokenizer import load_tokenizer

    return load_tokenizer(ckpt / tok.get("folder", TOKENIZER_DIR), tok.get("kind"), tok.get("name"))


def require_tokenizer(tokenizer: TextTokenizer | None, meta: dict, purpose: str) -> TextTokenizer:
    """`tokenizer`, or a UserError naming the checkpoint that has none (it cannot `purpose`)."""
    if tokenizer is None:
        raise UserError(f"{meta.get('path', 'the checkpoint')}: has no tokenizer (model.json names none), so it cannot "
                        f"{purpose}; import the model with its tokenizer files, or save checkpoints with one")
    return tokenizer


def load_trainer_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The trainer.pt of a checkpoint (folder or run dir), loaded with weights_only=True."""
    ckpt = resolve_checkpoint(path)
    verify(ckpt, hashes=False)
    p = ckpt / TRAINER
    if not p.is_file():
        raise UserError(f"{ckpt}: has no {TRAINER}; it cannot be resumed (it can still be loaded as a model)")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise UserError(f"{p}: cannot load the trainer state ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise UserError(f"{p}: not a trainer state (a {type(state).__name__}, not a dict)")
    return state


# ------------------------------------------------------------------------------- LoRA adapters

def load_adapter_model(ckpt: Any, meta: dict, *, device: Any = "cpu", dtype: torch.dtype | None = None,
                       verify_hashes: bool = True) -> tuple[torch.nn.Module, Any, dict]:
    """(model, tokenizer, meta) of a LoRA checkpoint: its base with the adapters merged in.

    Called by `load_model` for a model.json with an "adapter" entry; the base is loaded the same way
    (it may itself be a LoRA checkpoint)."""
    from core.model.lora import apply_lora, load_trainable_state, merge_lora

    ckpt = Path(ckpt)
    info = meta["adapter"]
    base = info.get("base", "")
    if not base or not Path(base).exists():
        raise UserError(f"{ckpt}: a LoRA checkpoint of base {base!r}, which no longer exists; restore the base "
                        f"checkpoint (or export this adapter with its base merged while both exist)")
    model, base_tok, _ = load_model(base, verify_hashes=verify_hashes)
    head = meta.get("head") or {"kind": "lm"}
    if head["kind"] != "lm" and model.head_kind != head["kind"]:
        model.set_head(head["out_features"], bias=head.get("bias", False), kind=head["kind"])
    apply_lora(model, info["rank"], info["alpha"], info.get("dropout", 0.0), info["targets"])
    try:
        load_trainable_state(model, load_file(ckpt / WEIGHTS))
    except (ValueError, RuntimeError, OSError) as e:
        raise UserError(f"{ckpt / WEIGHTS}: the adapter does not fit its base {base} ({e})") from None
    merge_lora(model)
    model.to(device=device, dtype=dtype)
    model.eval()
    tokenizer = checkpoint_tokenizer(ckpt, meta) or base_tok
    meta = {**meta, "path": str(ckpt), "merged_from_adapter": True}
    return model, tokenizer, meta


def export_merged(ckpt: Any, out: Any) -> Any:
    """Write a LoRA checkpoint as an ordinary full checkpoint (base + merged adapters) into `out`
    (a run-like folder: out/checkpoints/step-N); returns the new checkpoint folder."""
    model, tokenizer, meta = load_model(ckpt)
    extra = {k: v for k, v in meta.items() if k in ("finetune",)}
    lineage = {**(meta.get("lineage") or {}), "merged_from": str(ckpt)}
    return save_checkpoint(Path(out), int(meta.get("step", 0)), model, tokenizer=tokenizer,
                                   val_loss=meta.get("val_loss"), chat_template=meta.get("chat_template"),
                                   lineage=lineage, extra=extra)
