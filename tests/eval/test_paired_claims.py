"""Paired verdicts for the finetuning claims on tiny real models: an instruction-tuned model against its
base (greedy exact match on held-out instructions) and a preference-tuned one against its start
(log p chosen > rejected on held-out pairs), through `llmlab compare`, the eval stage's compare task
and the model card.

B is trained here (a few hundred real optimiser steps) on exactly the held-out examples the
comparison reads, so it must win there; A is the untrained start. A comparison that paired the wrong
examples, prompted B in another format than it learned, or read another split would not see it."""

import json
import time

import pytest
import torch

from core import cli, config, runs
from core.checkpoint import save_checkpoint
from core.config import ModelConfig
from core.data.formats import collate_instruction
from core.eval.render import task_rows
from core.eval.report import model_card, read_report
from core.model.gpt import GPT
from core.stages.compare import compare_models

SMALL = ["data.synthetic_mb=0.05", "data.workers=1", "train.micro_batch_size=8"]
LIMIT = 8


def small_gpt(vocab_size: int):
    torch.manual_seed(3)
    return GPT(ModelConfig(n_layer=2, n_head=2, n_embd=64, context_length=128, vocab_size=vocab_size)).eval()


def held_out(preset_name: str, tok) -> list[dict]:
    """The encoded examples the comparison reads (the run preset's test split, first LIMIT)."""
    p = config.load(preset_name, SMALL)
    if p.finetune.method == "instruct":
        from core.train.instruct import prepare_split

        return prepare_split(p.finetune, "test", tok, 128, p.train.seed)[1][:LIMIT]
    from core.train.preference import prepare_split as pairs

    return [x["chosen"] for x in pairs(p.finetune, "test", tok, 128, p.train.seed)[0][:LIMIT]]


def memorize(model, examples: list[dict], pad: int, steps: int = 200):
    """Plain next-token training on the response tokens of the examples, full batch."""
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = collate_instruction(examples, pad)
    for _ in range(steps):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save_run(preset_name: str, model, tok, lineage: dict, method: str = ""):
    p = config.load(preset_name, SMALL)
    run = runs.create_run(preset_name, lineage["stage"], config.dump(p))
    extra = {"finetune": {"method": method, "prompt_format": "chat"}} if method else None
    ck = save_checkpoint(run.path, 10, model, tokenizer=tok, val_loss=1.0, lineage=lineage, extra=extra)
    run.write_status(state="finished", started=time.time() - 1, ended=time.time())
    return ck


@pytest.fixture(scope="module")
def tuned_chain(tmp_path_factory, tok):
    """pretrain (random) -> SFT (memorized the held-out instructions) -> DPO (memorized the chosen answers),
    in a workspace of their own that both tests read."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMLAB_HOME", str(tmp_path_factory.mktemp("paired")))
        yield _chain(tok)


def _chain(tok):
    base = small_gpt(tok.n_vocab)
    pre = save_run("tiny", base, tok, {"stage": "pretrain", "preset": "tiny", "init": "random"})
    sft = memorize(small_gpt(tok.n_vocab), held_out("tiny-sft", tok), tok.eot_id)
    sft_ck = save_run("tiny-sft", sft, tok, {"stage": "finetune", "preset": "tiny-sft", "method": "instruct",
                                            "base": str(pre)}, "instruct")
    dpo = memorize(sft, held_out("tiny-dpo", tok), tok.eot_id, steps=100)
    dpo_ck = save_run("tiny-dpo", dpo, tok, {"stage": "finetune", "preset": "tiny-dpo", "method": "preference",
                                            "base": str(sft_ck)}, "preference")
    return pre, sft_ck, dpo_ck


def test_sft_beats_its_base_and_dpo_its_start_in_paired_verdicts(tuned_chain, tmp_path, capsys):
    pre, sft, dpo = tuned_chain
    preset = config.load("tiny", [*SMALL, f"eval.limit={LIMIT}"])
    r = compare_models(str(pre), str(sft), preset)
    assert set(r["tasks"]) == {"choice", "instruct"}  # the base is no preference model, nor is SFT
    em = r["tasks"]["instruct"]
    assert em["n"] == LIMIT and em["data"] == "embedded:tinyworld-instruct" and em["metric"] == "exact match"
    assert em["mean_a"] == 0.0 and em["mean_b"] >= 0.75 and em["ci_low"] > 0 and em["verdict"] == "B is better"
    assert em["p_value"] < 0.01

    out = tmp_path / "dpo.json"
    assert cli.main(["compare", str(sft), str(dpo), "--set", f"eval.limit={LIMIT}", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert set(d["tasks"]) == {"choice", "instruct", "preference"}
    pref = d["tasks"]["preference"]
    assert pref["n"] == LIMIT and pref["mean_b"] == 1.0 and pref["difference"] == pytest.approx(1.0 - pref["mean_a"])
    assert pref["ci_low"] <= pref["difference"] <= pref["ci_high"]
    printed = capsys.readouterr().out
    assert f"preference: {pref['verdict']}" in printed and f"instruct: {d['tasks']['instruct']['verdict']}" in printed


def test_the_eval_stage_compares_a_model_with_its_base_and_the_card_shows_it(tuned_chain):
    pre, sft, _ = tuned_chain
    p = config.load("tiny", [*SMALL, f"eval.model={sft}", 'eval.tasks=["compare"]', f"eval.limit={LIMIT}"])
    run = runs.create_run(p.name, "eval", config.dump(p))
    assert runs.execute(run, "eval", p) == "finished"
    rep = read_report(run.path)["tasks"]["compare"]
    assert rep["settings"]["baseline"] == str(pre)  # eval.baseline empty: the base in the lineage
    assert rep["models"]["B"]["checkpoint"] == str(sft) and rep["tasks"]["instruct"]["verdict"] == "B is better"
    ev = [e for e in run.events() if e["kind"] == "eval"][0]
    assert ev["instruct_difference"] == rep["tasks"]["instruct"]["difference"] and "choice_p_value" in ev
    card = model_card(str(sft))
    shown = card["evaluations"][0]["tasks"]["compare"]
    rows = task_rows("compare", shown)
    assert any(m == "instruct B - A" and "B is better" in s for m, _, s in rows)


def test_compare_without_a_base_is_a_clear_input_error(workspace, tok, make_gpt, capsys):
    pre = save_run("tiny", make_gpt(tok.n_vocab, seed=1), tok, {"stage": "pretrain", "preset": "tiny", "init": "random"})
    assert cli.main(["eval", str(pre), "--tasks", "compare"]) == 2
    assert "eval.baseline: empty" in capsys.readouterr().out  # the launched run's error, as the CLI prints it
    assert cli.main(["compare", str(pre), str(workspace / "nothing")]) == 2


def test_the_tasks_follow_from_the_two_models(tmp_path):
    from core.errors import UserError
    from core.stages.compare import plan_tasks

    def meta(name: str, preset_name: str | None, method: str = "", head: str = "lm") -> dict:
        ck = tmp_path / name / "checkpoints" / "step-00000010"
        ck.mkdir(parents=True)
        if preset_name:
            (tmp_path / name / "preset.toml").write_text(config.dump(config.load(preset_name)))
        return {"path": str(ck), "head": {"kind": head}, "finetune": {"method": method} if method else {}}

    tiny = config.load("tiny")
    pre, sft, dpo = meta("pre", "tiny"), meta("sft", "tiny-sft", "instruct"), meta("dpo", "tiny-dpo", "preference")
    plan = plan_tasks(pre, sft, tiny)
    assert list(plan) == ["choice", "instruct"] and plan["instruct"].name == "tiny-sft"
    assert list(plan_tasks(sft, dpo, tiny)) == ["choice", "preference", "instruct"]
    exported = meta("exported", None, "preference")  # no run folder: only a preset of that method names the pairs
    assert list(plan_tasks(pre, exported, tiny)) == ["choice"]
    assert plan_tasks(pre, exported, config.load("tiny-dpo"))["preference"].name == "tiny-dpo"
    clf_a, clf_b = meta("c1", "tiny-classify", "classify", "classify"), meta("c2", None, "classify", "classify")
    assert list(plan_tasks(clf_a, clf_b, tiny)) == ["classify"]
    with pytest.raises(UserError, match="different heads"):
        plan_tasks(pre, clf_a, tiny)
