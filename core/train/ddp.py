"""Data-parallel training with torchrun for any stage that trains: gloo on CPU, NCCL on GPUs.

With `train.nproc > 1` a training stage (pretrain, finetune; running inside `core.runs.execute`)
prepares what all ranks share once (tokenizer and shards, the base model), then calls
`launch(..., worker_module="core.stages.pretrain")`, which starts

    python -m torch.distributed.run --standalone --nproc_per_node N -m core.stages.pretrain --run-dir RUN

and waits for it, forwarding a stop request through a file. Each stage module ends with
`sys.exit(ddp.worker(fit, STAGE))`: every worker runs the stage's `fit(preset, run_dir, log, stop,
dist)` with a `Dist`: rank 0 alone writes events and, after a barrier, commits checkpoints. The
global batch (micro-batches x accumulation x ranks) equals that of one process with the same
`train.batch_tokens`, and checkpoints load at any world size. This module imports no stage.

Several nodes (the workspace, with its data/ and runs/, on a shared filesystem):

    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m core.stages.pretrain --preset gpt2-124m [--set train.lr=6e-4 ...]

(`--preset` makes rank 0 create the run folder and write its status; `--run-dir` continues one.)
With `train.parallel = "fsdp"` the same workers shard the model instead (core.train.fsdp).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import StageFailed, UserError
from core.runs import Logger
from core.train.device import Dist, pick_device

STOP_FILE = ".ddp-stop"     # the parent stage asks the workers to stop
RESULT_FILE = ".ddp-error.json"  # a worker that fails says why, for the parent's error message
LOG_FILE = "torchrun.log"
PRESET_FILE = ".ddp-preset.toml"


def launch(preset: Any, run_dir: Path, log: Logger, stop: threading.Event, worker_module: str) -> None:
    """Run `python -m worker_module` (a stage module ending in `worker(fit, ...)`) on
    `preset.train.nproc` local processes and wait; raises what a worker raised."""
    n = preset.train.nproc
    for name in (STOP_FILE, RESULT_FILE):
        (run_dir / name).unlink(missing_ok=True)
    from core import config

    # the preset as this stage received it (it may carry overrides that preset.toml lacks)
    (run_dir / PRESET_FILE).write_text(config.dump(preset))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", worker_module, "--run-dir", str(run_dir), "--preset", str(run_dir / PRESET_FILE)]
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:  # torchrun would set 1; on CPU share the cores instead
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    # idle OpenMP threads sleep instead of spinning: with several processes per machine, spinning
    # threads steal the cores the others need (measured 3-4x slower on a busy 2-core machine)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    src = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log.log({"kind": "log", "level": "info", "message": f"starting {n} processes: {' '.join(cmd[1:])}"})
    with open(run_dir / LOG_FILE, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        try:
            while proc.poll() is None:
                if stop.is_set() and not (run_dir / STOP_FILE).exists():
                    (run_dir / STOP_FILE).write_text(str(time.time()))
                time.sleep(0.2)
        except BaseException:
            proc.terminate()
            proc.wait(30)
            raise
    rc = proc.returncode
    if rc == 0:
        return
    err = _read_result(run_dir)
    if err.get("kind") == "input":
        raise UserError(err["message"])
    if err.get("message"):
        raise StageFailed(err["message"])
    tail = _tail(run_dir / LOG_FILE)
    raise StageFailed(f"torchrun exited with code {rc}; last lines of {run_dir / LOG_FILE}:\n{tail}")


def _read_result(run_dir: Path) -> dict:
    from core.schemas import F, read_json

    if not (run_dir / RESULT_FILE).exists():
        return {}
    try:
        return read_json(run_dir / RESULT_FILE, 1 << 20, {"kind": F((str,), required=False),
                                                          "message": F((str,), required=False)})
    except UserError:
        return {}


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# -------------------------------------------------------------------------------------- worker

def _watch(run_dir: Path, stop: threading.Event) -> None:
    from core.runs import STOP_FILE as RUN_STOP

    def loop() -> None:
        while not stop.is_set():
            if (run_dir / STOP_FILE).exists() or (run_dir / RUN_STOP).exists():
                stop.set()
            time.sleep(0.2)

    threading.Thread(target=loop, name="ddp-stop-watch", daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


Fit = Callable[[Any, Path, Logger, threading.Event, Dist], Any]


def worker(fit: Fit, stage: str, argv: list[str] | None = None) -> int:
    """One torchrun process of `stage`: join the group, run `fit`, report failures to the parent."""
    import torch
    import torch.distributed as dist

    from core import config, runs

    p = argparse.ArgumentParser(prog=f"python -m core.stages.{stage}")
    p.add_argument("--run-dir", help="an existing run folder (its preset.toml unless --preset is given)")
    p.add_argument("--preset", help="a preset name or file (without --run-dir: rank 0 creates a new run folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if not (args.run_dir or args.preset):
        p.error("give --run-dir, --preset or both")

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    d = Dist(rank, world, local)
    run_dir: Path | None = Path(args.run_dir) if args.run_dir else None
    own_status = run_dir is None
    try:
        preset = config.load(args.preset or Path(args.run_dir) / "preset.toml", args.set)
        device = pick_device(preset.train.device, d)
    except UserError as e:
        if run_dir is not None:
            (run_dir / RESULT_FILE).write_text(json.dumps({"kind": "input", "message": str(e)}))
        print(f"rank {rank}: {e}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        if run_dir is None:  # rank 0 creates the run; everyone learns its path
            box: list[str | None] = [None]
            if rank == 0:
                run = runs.create_run(preset.name or "preset", stage, config.dump(preset))
                box = [str(run.path)]
            dist.broadcast_object_list(box, src=0)
            run_dir = Path(str(box[0]))
        return _work(preset, run_dir, d, own_status, fit)
    finally:
        dist.destroy_process_group()


def _work(preset: Any, run_dir: Path, d: Dist, own_status: bool, fit: Fit) -> int:
    from core import runs

    run = runs.Run(run_dir)
    log = runs.EventLog(run.events_path) if d.is_main else runs.NullLogger()
    stop = threading.Event()
    _watch(run_dir, stop)
    if own_status and d.is_main:
        run.write_status(state="running", pid=os.getpid(), host=socket.gethostname(), started=time.time(),
                         world_size=d.world_size)
        log.log({"kind": "status", "state": "running"})
    state, error, code = "finished", None, 0
    try:
        result = fit(preset, run_dir, log, stop, d)
        if result is None or result.stopped:
            state = "stopped"
    except UserError as e:
        state, error, code = "failed", str(e), 2
        (run_dir / RESULT_FILE).write_text(json.dumps({"kind": "input", "message": str(e)}))
    except StageFailed as e:
        state, error, code = "failed", str(e), 1
        (run_dir / RESULT_FILE).write_text(json.dumps({"kind": "failed", "message": str(e)}))
    except BaseException as e:  # noqa: BLE001 - recorded for the parent, then re-raised
        state, error = "failed", f"rank {d.rank}: {type(e).__name__}: {e}"
        (run_dir / RESULT_FILE).write_text(json.dumps({"kind": "failed", "message": error}))
        raise
    finally:
        if own_status and d.is_main:
            log.log({"kind": "status", "state": state, **({"error": error} if error else {})})
            run.write_status(state=state, ended=time.time(), error=error)
        log.close()
    return code

