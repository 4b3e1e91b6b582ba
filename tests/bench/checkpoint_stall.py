"""Benchmark: how long a checkpoint stalls training, synchronous commit (before) against the
background write (now: the copy to host memory, then core.train.saver writes, hashes and commits).

    python tests/bench/checkpoint_stall.py [--layers 4] [--width 256] [--vocab 50304] [--steps 4]

The real pieces on a real folder: our GPT and its AdamW, one training step of batch 8 x 256 as the
reference; `before` is core.train.state.commit of that state in the training thread (what a step
boundary waited for until now), `stall now` is HostCopy + to_host of the optimizer state; `step
during write` is a training step while the background write of the same checkpoint runs (on a
machine with few cores the write competes with the step for them). Table + last JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.config import ModelConfig, TrainConfig  # noqa: E402
from core.model.gpt import GPT  # noqa: E402
from core.train.optim import build_optimizer  # noqa: E402
from core.train.saver import BackgroundCommit, HostCopy, to_host  # noqa: E402
from core.train.state import TrainState, commit, trainer_state  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--steps", type=int, default=4, help="repetitions of each measurement")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=args.layers, n_head=args.width // 64, n_embd=args.width, context_length=256,
                      vocab_size=args.vocab)
    model = GPT(cfg).train()
    opt = build_optimizer(model, TrainConfig(), "cpu")
    x = torch.randint(0, args.vocab, (8, 257))

    def step() -> float:
        t0 = time.perf_counter()
        model(x[:, :-1], x[:, 1:], logits=False)[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    step()  # warm-up, and the optimizer state exists
    state = TrainState(step=1)
    saver = BackgroundCommit()
    times: dict[str, list[float]] = {"step": [], "before": [], "stall_now": [], "step_during_write": []}
    with tempfile.TemporaryDirectory(prefix="llmlab-stall-") as tmp:
        for i in range(args.steps):
            state.step = 2 * i + 1
            times["step"].append(step())
            t0 = time.perf_counter()
            trainer = trainer_state(state, opt.state_dict(), None, None, 100, 1)
            commit(Path(tmp), model, state, trainer, keep_last=2)
            times["before"].append(time.perf_counter() - t0)
            state.step += 1
            t0 = time.perf_counter()
            host, snap = HostCopy(model), dataclasses.replace(state)
            trainer = trainer_state(state, to_host(opt.state_dict()), None, None, 100, 1)
            saver.start(lambda: commit(Path(tmp), host, snap, trainer, keep_last=2) and None)
            times["stall_now"].append(time.perf_counter() - t0)
            times["step_during_write"].append(step())
            saver.wait()
        size = sum(p.stat().st_size for p in (Path(tmp) / "checkpoints").rglob("*") if p.is_file()) / 2
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'params':>12}{'ckpt MB':>9}{'step ms':>9}{'stall before ms':>17}{'stall now ms':>14}{'step during write ms':>22}")
    print(f"{model.num_params():>12,}{size / 2**20:>9.0f}{1000 * med['step']:>9.0f}{1000 * med['before']:>17.0f}"
          f"{1000 * med['stall_now']:>14.0f}{1000 * med['step_during_write']:>22.0f}")
    print(json.dumps({"bench": "checkpoint_stall", "params": model.num_params(), "checkpoint_bytes": int(size),
                      "threads": torch.get_num_threads(), **{f"{k}_s": v for k, v in med.items()}}))


if __name__ == "__main__":
    main()
