"""The eval stage and the model card on real run folders: pretrain -> finetune -> eval -> report."""

import json
import re
import time
import xml.etree.ElementTree as ET

import pytest
import torch

from core import config, runs
from core.checkpoint import save_checkpoint
from core.errors import UserError
from core.eval.render import svg_chart, to_html, to_markdown
from core.eval.report import model_card, read_report

SMALL = ["data.synthetic_mb=0.05", "data.workers=1", "train.micro_batch_size=4"]


def preset(*overrides: str) -> config.Preset:
    return config.load("tiny", [*SMALL, *overrides])


def make_run(stage: str, model, tok, lineage: dict, *, loss0: float, extra: dict | None = None,
             save_tokenizer: bool = True):
    """A finished run folder as the training stages leave it: events, checkpoint, status, report."""
    p = preset()
    run = runs.create_run("tiny", stage, config.dump(p))
    log = runs.EventLog(run.events_path)
    for s in range(1, 11):
        log.log({"kind": "train", "step": s, "loss": loss0 - 0.1 * s, "tokens": 256 * s})
    for s in (5, 10):
        log.log({"kind": "val", "step": s, "val_loss": loss0 - 0.09 * s})
    log.log({"kind": "sample", "step": 10, "prompt": "Once upon a time", "text": f" a {stage} sample"})
    log.log({"kind": "log", "level": "info", "message": "training 10 steps on cpu (float32, 1 micro-batches per step)"})
    log.close()
    ck = save_checkpoint(run.path, 10, model, tokenizer=tok if save_tokenizer else None, val_loss=loss0 - 0.9,
                         lineage=lineage, extra=extra)
    t0 = time.time()
    run.write_status(state="finished", started=t0 - 12.5, ended=t0)
    (run.path / "report.json").write_text(json.dumps({"stage": stage, "tokens": 2560, "best_val_loss": loss0 - 0.9}))
    return run, ck


@pytest.fixture
def chain(workspace, tok, make_gpt):
    base = make_gpt(tok.n_vocab, seed=1)
    pre_run, pre_ck = make_run("pretrain", base, tok, {"stage": "pretrain", "preset": "tiny", "init": "random"}, loss0=6.0)
    tuned = make_gpt(tok.n_vocab, seed=2)
    ft_run, ft_ck = make_run("finetune", tuned, tok, {"stage": "finetune", "preset": "tiny", "method": "instruct",
                                                       "base": str(pre_ck)}, loss0=3.0)
    return pre_run, pre_ck, ft_run, ft_ck


def run_eval(p):
    run = runs.create_run(p.name, "eval", config.dump(p))
    state = runs.execute(run, "eval", p)
    return run, state


def test_eval_writes_report_and_the_card_merges_pretrain_and_finetune(chain):
    pre_run, pre_ck, ft_run, ft_ck = chain
    p = preset(f"eval.model={ft_ck}", 'eval.tasks=["perplexity", "choice"]', "eval.limit=8")
    ev_run, state = run_eval(p)
    assert state == "finished"
    rep = read_report(ev_run.path)
    assert rep["complete"] and rep["model"]["checkpoint"] == str(ft_ck) and rep["model"]["step"] == 10
    ppl, ch = rep["tasks"]["perplexity"], rep["tasks"]["choice"]
    assert ppl["tokens"] > 0 and ppl["perplexity"] == pytest.approx(2.718281828 ** ppl["loss"])
    assert 0 < ppl["bits_per_byte"] < 20 and ppl["settings"]["split"] == "val"
    assert ch["n"] == 8 and ch["chance"] == 0.25 and ch["settings"]["limit"] == 8 and 0 <= ch["acc"] <= 1
    assert rep["hardware"]["torch"] == torch.__version__ and rep["samples"][0]["prompt"]
    events = ev_run.events()
    assert [e["task"] for e in events if e["kind"] == "eval"] == ["perplexity", "choice"]

    card = model_card(str(ft_run.path))
    pre, ft = card["lineage"]
    assert (pre["stage"], ft["stage"]) == ("pretrain", "finetune")
    assert pre["checkpoint"] == str(pre_ck) and ft["lineage"]["base"] == str(pre_ck)
    assert pre["final_train_loss"] == pytest.approx(5.0) and ft["final_val_loss"] == pytest.approx(2.1)
    assert pre["tokens_seen"] == 2560 and pre["wall_s"] == pytest.approx(12.5, abs=0.01)
    assert pre["hardware"]["device"] == "cpu" and pre["preset"]["data"]["source"] == "embedded:tinyworld"
    assert len(pre["curves"]["train"]) == 10 and pre["curves"]["val"] == [[5, 5.55], [10, 5.1]]
    assert pre["evaluations"] == [] and [e["run"] for e in ft["evaluations"]] == [ev_run.name]
    assert ft["samples"][0]["text"] == " a finetune sample"

    md = to_markdown(card)
    assert md.index("## 1. pretrain") < md.index("## 2. finetune") < md.index(f"### Evaluation {ev_run.name}")
    assert re.search(r"\| choice \| acc \| [0-9.]+ ± [0-9.]+ \[[0-9.]+, [0-9.]+\] \| chance 0.25; data embedded:tinyworld-choice", md)
    assert "| perplexity | bits per byte |" in md and "| tokens seen | 2,560 |" in md

    page = to_html(card)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "src=" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 2  # the loss curves of both stages, inline
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed XML
        assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2  # train and val


def test_card_of_a_pretrained_model_alone(chain):
    pre_run, pre_ck, *_ = chain
    card = model_card(f"run:tiny:pretrain")
    assert len(card["lineage"]) == 1 and card["checkpoint"] == str(pre_ck)
    assert "No evaluations yet" in to_markdown(card)


def test_checkpoint_without_a_tokenizer_is_refused(workspace, tok, make_gpt):
    _, ck = make_run("pretrain", make_gpt(tok.n_vocab), tok, {"stage": "pretrain"}, loss0=5, save_tokenizer=False)
    with pytest.raises(UserError, match="has no tokenizer"):
        run_eval(preset(f"eval.model={ck}", 'eval.tasks=["choice"]'))


def test_bad_tasks_and_a_missing_model(workspace):
    with pytest.raises(UserError, match="unknown task.*'bleu'"):
        run_eval(preset('eval.tasks=["choice", "bleu"]'))
    with pytest.raises(UserError, match="no finished pretrain or finetune run"):
        run_eval(preset())


def test_default_model_is_the_newest_finished_run(chain):
    pre_run, pre_ck, ft_run, ft_ck = chain
    ev_run, _ = run_eval(preset('eval.tasks=["choice"]', "eval.limit=2"))
    assert read_report(ev_run.path)["model"]["checkpoint"] == str(ft_ck)


def test_classifier_gets_classify_metrics_and_lm_tasks_are_skipped(workspace, tok, make_gpt):
    m = make_gpt(tok.n_vocab, seed=3)
    m.set_head(2, bias=True, kind="classify")
    _, ck = make_run("finetune", m, tok, {"stage": "finetune", "method": "classify"}, loss0=1.0,
                     extra={"finetune": {"method": "classify", "num_classes": 2, "class_names": ["sad", "happy"]}})
    ev_run, state = run_eval(preset(f"eval.model={ck}", 'eval.tasks=["classify", "choice"]', "eval.limit=30",
                                    "finetune.method=classify", "finetune.data=embedded:tinyworld-classify"))
    rep = read_report(ev_run.path)
    assert state == "finished" and "choice" in rep["skipped"] and "classify head" in rep["skipped"]["choice"]
    c = rep["tasks"]["classify"]
    assert c["n"] == 30 and sum(map(sum, c["confusion_matrix"])) == 30
    assert [pc["name"] for pc in c["per_class"]] == ["sad", "happy"]
    assert "samples" not in rep
    with pytest.raises(UserError, match="no task of eval.tasks fits"):
        run_eval(preset(f"eval.model={ck}", 'eval.tasks=["choice"]'))


def test_judge_and_pairwise_through_the_stage(chain, serve):
    from judge_server import completion, user_text

    pre_run, pre_ck, ft_run, ft_ck = chain

    def reply(body, n):
        return 200, completion("[[A]]" if "### Answer A:" in user_text(body) else "Fine.\nScore: 3"), 0

    srv = serve(reply)
    p = preset(f"eval.model={ft_ck}", 'eval.tasks=["judge", "pairwise"]', "eval.limit=3", "eval.max_new_tokens=4",
               f"eval.judge.base_url={srv.base_url}", "eval.judge.scale=1-5", f"eval.judge.compare_with={pre_ck}",
               "finetune.template=chat")
    ev_run, state = run_eval(p)
    rep = read_report(ev_run.path)
    j, pw = rep["tasks"]["judge"], rep["tasks"]["pairwise"]
    assert state == "finished" and j["mean"] == 3.0 and j["n_scored"] == 3 and j["scale"] == "1-5"
    assert pw["n_judged"] == 3 and pw["win_rate"] == 0.5 and pw["position_consistency"] == 0.0
    assert pw["settings"]["compare_with"] == str(pre_ck) and j["settings"]["decoding"] == "greedy"
    assert len(srv.requests) == 3 + 3 + 6  # three rubric requests, a second sample of each, each pair in both orders
    assert "judge score" in to_markdown(model_card(str(ft_ck)))


def test_svg_chart_handles_flat_and_single_points():
    svg = svg_chart({"loss": [[1, 2.0]], "val": [[1, 2.0], [2, 2.0]]}, title="t <&>")
    root = ET.fromstring(svg)
    assert root.find("{http://www.w3.org/2000/svg}circle") is not None and "t &lt;&amp;&gt;" in svg
    assert svg_chart({"loss": []}) == ""


@pytest.mark.slow
def test_the_embedded_chain_end_to_end(workspace):
    """Real stages: pretrain and finetune a very small model, evaluate both, merge the card."""
    ov = ["tokenizer.vocab_size=300", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.context_length=128",
          "train.max_steps=12", "train.eval_every=6", "train.eval_batches=2", "train.sample_every=6",
          "train.checkpoint_every=6", "train.warmup_steps=2", "train.log_every=2", "finetune.template=chat",
          'eval.tasks=["perplexity", "choice"]', "eval.limit=16"]
    for stage in ("pretrain", "finetune"):
        p = preset(*ov)
        assert runs.execute(runs.create_run("tiny", stage, config.dump(p)), stage, p) == "finished"
    for model in ("run:tiny:pretrain", "run:tiny:finetune"):
        ev_run, state = run_eval(preset(*ov, f"eval.model={model}"))
        assert state == "finished" and read_report(ev_run.path)["complete"]
    card = model_card("run:tiny:finetune")
    assert [s["stage"] for s in card["lineage"]] == ["pretrain", "finetune"]
    assert all(len(s["evaluations"]) == 1 for s in card["lineage"])
    assert all(s["tokens_seen"] and s["final_val_loss"] and s["curves"]["train"] for s in card["lineage"])
    assert card["lineage"][1]["held_out"]["n"] > 0
    assert to_html(card).count("<svg") == 2


def test_answers_use_the_prompt_format_the_checkpoint_was_tuned_with():
    """A chat-tuned model is prompted with the chat template even when the eval preset says alpaca."""
    from types import SimpleNamespace

    from core import config
    from core.stages.eval import _template

    ctx = SimpleNamespace(preset=config.load("tiny", ["finetune.template=alpaca"]))
    assert _template(ctx, {"finetune": {"method": "instruct", "prompt_format": "chat"}}) == "chat"
    assert _template(ctx, {"head": {"kind": "lm"}}) == "alpaca"


def test_verify_task_reports_accuracy_and_pass_at_k_with_intervals(workspace, tok, make_gpt):
    _, ck = make_run("finetune", make_gpt(tok.n_vocab, context_length=128), tok, {"stage": "finetune"}, loss0=3)
    run, _ = run_eval(preset(f"eval.model={ck}", 'eval.tasks=["verify"]', "eval.limit=3", "eval.max_new_tokens=4",
                             "eval.pass_k=2"))
    r = json.loads((run.path / "report.json").read_text())["tasks"]["verify"]
    assert r["n"] == 3 and r["k"] == 2 and 0 <= r["pass_at_1"] <= r["pass_at_k"] <= 1
    assert r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"] and len(r["examples"]) == 3
    assert r["settings"]["data"] == "embedded:tinyworld-verify"
    with pytest.raises(UserError, match="has no field 'answer'"):
        run_eval(preset(f"eval.model={ck}", 'eval.tasks=["verify"]', "eval.verify_data=embedded:tinyworld-instruct"))
