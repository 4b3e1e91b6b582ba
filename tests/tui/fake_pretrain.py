"""A pretraining stand-in for fast screen tests: emits the events of core.train.pretrain (train, val,
sample, checkpoint) for train.max_steps steps, 20 ms apart, honouring stop. Registered as stage
`pretrain` through $LLMLAB_STAGES in tests that only exercise the screen, never in the end-to-end
tests, which run the real stage."""

import time


def run(preset, run_dir, log, stop):
    t = preset.train
    for step in range(1, t.max_steps + 1):
        if stop.is_set():
            log.log({"kind": "log", "level": "info", "message": f"stopped at step {step - 1}"})
            return
        time.sleep(0.02)
        tokens = step * preset.tokens_per_step()
        log.log({"kind": "train", "step": step, "loss": 5.0 / step ** 0.5, "lr": t.lr, "grad_norm": 1.0 / step,
                 "tokens": tokens, "tokens_per_s": 1000.0, "mfu": 0.01, "step_ms": 20.0,
                 "eta_s": 0.02 * (t.max_steps - step)})
        if step % t.eval_every == 0:
            log.log({"kind": "val", "step": step, "val_loss": 5.5 / step ** 0.5, "val_ppl": 2.0})
        if t.sample_every and step % t.sample_every == 0:
            log.log({"kind": "sample", "step": step, "prompt": "Once", "text": " upon a time"})
