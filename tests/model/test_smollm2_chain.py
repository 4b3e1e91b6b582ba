"""The real SmolLM2-135M-Instruct GGUF through the stages a user walks after `llmlab import`: the chat
prompt equals transformers' apply_chat_template, a greedy reply equals transformers' generate on the
same file, and three LoRA SFT steps run on the model with its own tokenizer and template."""

import json
import threading

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


class Events:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def log(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def test_chat_prompt_and_greedy_reply_equal_transformers(smollm2_loaded, smollm2_transformers):
    from core.generate import generate

    model, tok, _ = smollm2_loaded
    ref, ref_tok = smollm2_transformers
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "What is the capital of France?"}]
    ids, _ = tok.chat.render(messages, add_generation_prompt=True)
    want = ref_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert list(ids) == list(want)
    ours = list(generate(model, list(ids), max_new_tokens=12, temperature=0, stop_ids=tok.chat.stop_ids))
    with torch.no_grad():
        out = ref.generate(torch.tensor([list(ids)]), max_new_tokens=12, do_sample=False)
    theirs = out[0, len(ids):].tolist()
    stop = [i for i, t in enumerate(theirs) if t in set(tok.chat.stop_ids)]
    theirs = theirs[: stop[0]] if stop else theirs
    assert ours == theirs and len(ours) >= 3


def test_three_lora_sft_steps_on_the_real_model(smollm2_imported, tmp_path):
    from core import config
    from core.data.synthetic import derived_set
    from core.stages import finetune

    ckpt = smollm2_imported.path
    rows = [{k: r[k] for k in ("instruction", "input", "output")} for r in derived_set("instruct", "train")[:24]]
    data = tmp_path / "instruct.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preset = config.from_dict({
        "name": "smollm2-sft-test", "model": {"dropout": 0.0},
        "train": {"device": "cpu", "lr": 1e-4, "min_lr": 1e-5, "warmup_steps": 1, "micro_batch_size": 2, "max_steps": 3,
                  "log_every": 1, "eval_every": 3, "eval_batches": 1, "checkpoint_every": 3, "sample_every": 0},
        "finetune": {"method": "instruct", "base": str(ckpt), "data": str(data), "trainable": "lora", "template": "chat",
                     "lora": {"rank": 4, "alpha": 8.0}},
    }, "<test>")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = Events()
    finetune.run(preset, run_dir, log, threading.Event())
    losses = [e["loss"] for e in log.events if e.get("kind") == "train"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["steps"] == 3 and len(losses) == 3 and all(map(torch.isfinite, torch.tensor(losses)))
