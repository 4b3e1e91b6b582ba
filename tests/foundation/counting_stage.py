"""A stage for the run-machinery tests: counts to train.max_steps, 50 ms a step, honouring stop.

Registered through $LLMLAB_STAGES (the plugin hook) so launch/tail/stop/crash are tested on real
processes without the cost of training a model.
"""

import json
import time


def run(preset, run_dir, log, stop):
    for step in range(1, preset.train.max_steps + 1):
        if stop.is_set():
            log.log({"kind": "log", "level": "info", "message": f"stopped at step {step - 1}"})
            (run_dir / "stopped_at").write_text(str(step - 1))
            return
        time.sleep(0.05)
        log.log({"kind": "train", "step": step, "loss": 1.0 / step})
    (run_dir / "report.json").write_text(json.dumps({"steps": preset.train.max_steps}))
