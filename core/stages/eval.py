"""The eval stage: measure one model on the preset's eval.tasks and write report.json.

`run(preset, run_dir, log, stop)` loads eval.model (any name core.lookup.resolve_checkpoint accepts;
empty = the newest finished finetune or pretrain run of this preset) with its own tokenizer and runs
each task: perplexity (loss, perplexity, bits per byte on the val split of preset.data, tokenized
with the model's tokenizer), classify (test-split metrics of a classification finetune), choice
(multiple choice, harness acc/acc_norm), judge (rubric scores of answers to held-out instructions)
pairwise (win rate against eval.judge.compare_with), verify (pass@1 / pass@k on questions a
program checks, core.eval.verify), contamination (the share of each eval set whose 13-grams occur
in the pretraining corpus of the model's lineage) and sensitivity (multiple-choice accuracy across
k-shot, prompt formats and the gold answer's position) and compare (this model against eval.baseline or
its base, paired, per task: core.stages.compare). The report is rewritten after every task,
so a stopped evaluation keeps what it measured; `llmlab report MODEL` merges it into the model card.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch

from core.config import EVAL_TASKS as TASKS
from core.errors import StageFailed, UserError
from core.runs import Logger
from core.stages.scoring import classify_fields, classify_predictions, load_for_eval

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer
    from core.model.gpt import GPT

LM_TASKS = ("perplexity", "choice", "judge", "pairwise", "verify", "sensitivity")


@dataclass
class EvalContext:
    preset: Any
    model: GPT
    tokenizer: TextTokenizer
    meta: dict
    device: torch.device
    log: Logger
    stop: threading.Event
    cache: dict = field(default_factory=dict)

    def progress(self, what: str, unit: str):
        def report(done: int, total: int) -> None:
            self.log.log({"kind": "progress", "what": what, "done": done, "total": total, "unit": unit})
        return report


# ------------------------------------------------------------------------------------- model

def default_model(preset: Any, root: Path | None = None) -> str:
    """The newest finished finetune or pretrain run of this preset."""
    from core.runs import latest_run

    found = [r for r in (latest_run(preset.name, "finetune", root), latest_run(preset.name, "pretrain", root)) if r]
    if not found:
        raise UserError(f"eval.model: empty, and preset {preset.name!r} has no finished pretrain or finetune run; "
                        f"run `llmlab pretrain {preset.name}` first or set eval.model to a checkpoint or run:PRESET:STAGE")
    # newest by when it ended (two runs started in the same second have names that sort by stage)
    st = {r.name: r.raw_status() for r in found}
    return str(max(found, key=lambda r: (st[r.name].get("ended") or st[r.name].get("created") or 0, r.name)).path)


def _head(meta: dict) -> str:
    return (meta.get("head") or {}).get("kind", "lm")


# ------------------------------------------------------------------------------------- tasks

def task_perplexity(ctx: EvalContext) -> dict:
    from core.data import prepare_shards
    from core.errors import Stopped
    from core.eval.perplexity import evaluate_shard

    p = ctx.preset
    # the shards of preset.data in the model's tokenizer: the val documents are the same for every
    # tokenizer (the split is drawn per document), so bits per byte compares models across tokenizers
    data_preset = dataclasses.replace(p, model=dataclasses.replace(p.model, context_length=ctx.model.config.context_length))
    try:
        folder = prepare_shards(data_preset, ctx.tokenizer, ctx.log, ctx.stop)
    except Stopped:
        return {}
    r = evaluate_shard(ctx.model, ctx.tokenizer, folder / "val.bin", batch_size=p.train.micro_batch_size,
                       max_windows=p.eval.limit, stop=ctx.stop)
    r["settings"] = {"data": p.data.source if not p.data.mixture else "mixture", "split": "val",
                     "context_length": ctx.model.config.context_length, "windows": "non-overlapping",
                     "limit": p.eval.limit}
    return r


def task_choice(ctx: EvalContext) -> dict:
    from core.eval.choice import evaluate, load_task

    e = ctx.preset.eval
    examples = load_task(e.choice_data, "test")
    pool = None
    if e.num_fewshot and e.choice_data.startswith(("embedded:", "hf:")):
        pool = load_task(e.choice_data, "train")  # shots from the training split, as the harness does
    available = len(pool) if pool is not None else len(examples) - 1  # a question is never its own shot
    if e.num_fewshot > available:
        raise UserError(f"eval.num_fewshot: {e.num_fewshot} solved examples per question, but {e.choice_data} has "
                        f"only {available} to draw them from; lower eval.num_fewshot or use a larger set")
    r = evaluate(ctx.model, ctx.tokenizer, examples, num_fewshot=e.num_fewshot, fewshot_pool=pool, limit=e.limit,
                 batch_size=max(4, ctx.preset.train.micro_batch_size), stop=ctx.stop,
                 progress=ctx.progress("multiple choice", "questions"), fewshot_seed=e.seed)
    r["settings"] = {"data": e.choice_data, "split": "test" if e.choice_data.startswith(("embedded:", "hf:")) else "all",
                     "fewshot_split": ("train" if pool is not None else "same set") if e.num_fewshot else None,
                     **r["settings"]}
    return r


def task_verify(ctx: EvalContext) -> dict:
    """Questions a program checks (eval.verify_data, test split): greedy accuracy, pass@1, pass@k."""
    from core.data import load_records
    from core.eval.verify import score_verifiable

    e, g = ctx.preset.eval, ctx.preset.generate
    records = load_records(e.verify_data, "test", limit=e.limit)
    missing = [i for i, r in enumerate(records) if "answer" not in r]
    if missing:
        raise UserError(f"eval.verify_data: {e.verify_data} record {missing[0] + 1} has no field 'answer'; "
                        "a verifiable set needs the gold answer of every question")
    if not records:
        raise UserError(f"eval.verify_data: {e.verify_data} has no test questions")
    r = score_verifiable(ctx.model, ctx.tokenizer, records, k=e.pass_k, max_new_tokens=e.max_new_tokens,
                         temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
    r.pop("correct"), r.pop("sampled_correct")
    r["settings"] = {"data": e.verify_data, "split": "test", "k": e.pass_k, "temperature": g.temperature,
                     "max_new_tokens": e.max_new_tokens}
    return r


def task_classify(ctx: EvalContext, split: str = "test") -> dict:
    from core.eval.metrics import classification_report

    info = ctx.meta.get("finetune") or {}
    num_classes = int(info.get("num_classes") or ctx.model.lm_head.out_features)
    names = info.get("class_names") or None
    records, y_true, y_pred = classify_predictions(ctx.model, ctx.tokenizer, ctx.preset, ctx.stop,
                                                   ctx.progress("classifying", "examples"), split)
    if names is not None and len(names) != num_classes:
        names = None
    r = classification_report(y_true, y_pred, num_classes, names)
    r.update(_accuracy_ci(r["accuracy"], r["n"]))
    if split == "test":  # the live evaluations during training skip the baseline's fit
        r["baseline_bow"] = _bow_baseline(ctx, records, classify_fields(ctx.preset.finetune), num_classes)
    r["settings"] = {"data": ctx.preset.finetune.data, "split": split, "limit": ctx.preset.eval.limit}
    return r



LiveTask = Callable[[torch.nn.Module, threading.Event], dict]


def live_tasks(preset: Any, tokenizer: Any, head: str, device: torch.device) -> dict[str, LiveTask]:
    """train.eval_tasks as functions (model, stop) -> headline metrics, on the validation splits (the
    test splits stay for the final report). A task the run has no data or head for is refused here,
    before training starts."""
    from core.eval.choice import evaluate, load_task
    from core.runs import NullLogger

    out: dict[str, LiveTask] = {}
    e = preset.eval
    for task in preset.train.eval_tasks:
        if task == "choice":
            if head != "lm":
                raise UserError(f"train.eval_tasks: choice scores a language model's answers; this run trains a {head} head")
            if not e.choice_data:
                raise UserError("train.eval_tasks: choice needs a multiple-choice set in eval.choice_data")
            try:
                examples = load_task(e.choice_data, "val", limit=e.limit)
            except UserError as err:
                raise UserError(f"train.eval_tasks: choice: {err}") from None

            def choice(model: torch.nn.Module, stop: threading.Event, ex: list = examples) -> dict:
                r = evaluate(cast("GPT", model), tokenizer, ex, batch_size=max(4, preset.train.micro_batch_size), stop=stop, samples=0)
                return _headline("choice", r)
            out[task] = choice
        elif task == "classify":
            if head != "classify":
                raise UserError(f"train.eval_tasks: classify measures a classification finetune (finetune.method = "
                                f"\"classify\"); this run trains a {head} head")
            meta = {"finetune": {"num_classes": preset.finetune.num_classes}}

            def classify(model: torch.nn.Module, stop: threading.Event) -> dict:
                ctx = EvalContext(preset, model, tokenizer, meta, device, NullLogger(), stop)  # type: ignore[arg-type]
                return _headline("classify", task_classify(ctx, "val"))
            out[task] = classify
    return out


def live_eval_for(preset: Any, tokenizer: Any, head: str, device: torch.device) -> Any:
    """The LiveEval of a training run's train.eval_tasks and train.early_stop (None: neither is set)."""
    from core.train.live_eval import EarlyStop, LiveEval

    t = preset.train
    if not t.eval_tasks and not t.early_stop.metric:
        return None
    return LiveEval(live_tasks(preset, tokenizer, head, device), t.eval_budget_s, EarlyStop.of(t.early_stop))


def _accuracy_ci(acc: float, n: int) -> dict:
    from core.eval.metrics import proportion_ci

    ci = proportion_ci(acc * n, n)
    return {"ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}


def _bow_baseline(ctx: EvalContext, test: list[dict], fields: dict, num_classes: int) -> dict:
    """The bag-of-words logistic regression fit on the same training split, on the same test examples."""
    from core.eval.baseline import bag_of_words_baseline
    from core.train.examples import read_split

    ft = ctx.preset.finetune
    train = read_split(ft.data, "train", ("text", "label"), "classification", seed=ctx.preset.train.seed,
                       hf_config=ft.hf_config, test_fraction=ft.test_fraction, **fields)
    return bag_of_words_baseline([str(r["text"]) for r in train], [int(r["label"]) for r in train],
                                 [str(r["text"]) for r in test], [int(r["label"]) for r in test], num_classes)


def _instructions(ctx: EvalContext) -> list[dict]:
    """Held-out instructions (the test split of the instruction set) and the model's answers, once."""
    if "instructions" not in ctx.cache:
        from core.data import load_records

        ft = ctx.preset.finetune
        spec = ft.data if ft.method == "instruct" else "embedded:tinyworld-instruct"
        recs = load_records(spec, "test", seed=ctx.preset.train.seed, hf_config=ft.hf_config if spec == ft.data else "",
                            limit=ctx.preset.eval.limit)
        if not recs:
            raise UserError(f"{spec}: the test split has no instructions to answer")
        for i, r in enumerate(recs):
            if "instruction" not in r:
                raise UserError(f"{spec} (test split) record {i + 1}: no 'instruction' field; the judge needs "
                                f"instruction records (instruction, input, output)")
        ctx.cache["instructions"] = (spec, recs)
    return ctx.cache["instructions"][1]


def _template(ctx: EvalContext, meta: dict) -> str:
    """The prompt format the model was instruction-tuned with; the preset's for a model that wasn't."""
    from core.train.instruct import prompt_format_of

    return prompt_format_of(meta) or ctx.preset.finetune.template


def _answers(ctx: EvalContext, model: GPT, tokenizer: TextTokenizer, key: str, meta: dict) -> list[str]:
    from core.eval.judge import answer_instructions

    if key not in ctx.cache:
        recs = _instructions(ctx)
        ctx.cache[key] = answer_instructions(model, tokenizer, recs, template=_template(ctx, meta),
                                             max_new_tokens=ctx.preset.eval.max_new_tokens, stop=ctx.stop,
                                             progress=ctx.progress(f"answering ({key})", "prompts"))
    return ctx.cache[key]


def _judge_settings(ctx: EvalContext) -> dict:
    j = ctx.preset.eval.judge
    return {"data": ctx.cache["instructions"][0], "split": "test", "limit": ctx.preset.eval.limit,
            "template": _template(ctx, ctx.meta), "max_new_tokens": ctx.preset.eval.max_new_tokens,
            "decoding": "greedy", "judge_model": j.model, "judge_base_url": j.base_url, "scale": j.scale}


def task_judge(ctx: EvalContext) -> dict:
    from core.eval.judge import JudgeClient, score_answers

    recs = _instructions(ctx)
    answers = _answers(ctx, ctx.model, ctx.tokenizer, "model", ctx.meta)
    items = [{"instruction": r["instruction"], "input": r.get("input") or "", "reference": r.get("output") or "",
              "answer": a} for r, a in zip(recs, answers)]
    client = JudgeClient.from_config(ctx.preset.eval.judge, stop=ctx.stop)
    r = score_answers(client, items, scale=ctx.preset.eval.judge.scale, log=ctx.log, stop=ctx.stop,
                      progress=ctx.progress("judging", "answers"))
    r["settings"] = _judge_settings(ctx)
    return r


def task_pairwise(ctx: EvalContext) -> dict:
    from core.eval.judge import JudgeClient, pairwise
    from core.lookup import resolve_checkpoint

    other_spec = ctx.preset.eval.judge.compare_with
    if not other_spec:
        raise UserError("eval.judge.compare_with: pairwise needs a second model (a checkpoint or run:PRESET:STAGE)")
    other_ckpt = resolve_checkpoint(other_spec)
    other, other_tok, other_meta = load_for_eval(str(other_ckpt), ctx.device)
    recs = _instructions(ctx)
    mine = _answers(ctx, ctx.model, ctx.tokenizer, "model", ctx.meta)
    theirs = _answers(ctx, other, other_tok, "other", other_meta)
    items = [{"instruction": r["instruction"], "input": r.get("input") or "", "answer_a": a, "answer_b": b}
             for r, a, b in zip(recs, mine, theirs)]
    client = JudgeClient.from_config(ctx.preset.eval.judge, stop=ctx.stop)
    r = pairwise(client, items, log=ctx.log, stop=ctx.stop, progress=ctx.progress("judging pairs", "pairs"))
    r["settings"] = {**_judge_settings(ctx), "compare_with": str(other_ckpt)}
    return r


def _example_texts(spec: str, split: str, seed: int, hf_config: str = "") -> list[str]:
    """The texts of an eval set's examples, whole (question with its answer, prompt with its reply)."""
    from core.data import load_records

    recs = load_records(spec, split, seed=seed, hf_config=hf_config)
    out = []
    for r in recs:
        if "choices" in r and "question" in r:
            ans = r.get("answer")
            gold = r["choices"][ans] if isinstance(ans, int) and 0 <= ans < len(r["choices"]) else ""
            out.append(f"{r['question']} {gold}")
        elif "prompt" in r:
            out.append(f"{r['prompt']} {r.get('chosen', '')}")
        elif "instruction" in r:
            out.append(" ".join(str(r.get(k) or "") for k in ("instruction", "input", "output")))
        else:
            out.append(str(r.get("text", "")))
    return out


def task_contamination(ctx: EvalContext) -> dict:
    from core.eval.contamination import NGRAM, check_set, corpus_index, pretraining_data

    p = ctx.preset
    run_path, data = pretraining_data(ctx.meta["path"])
    sets = {f"{p.eval.choice_data} (test)": (p.eval.choice_data, "test")}
    if p.finetune.data:
        sets[f"{p.finetune.data} (test)"] = (p.finetune.data, "test")
    if any(t in p.eval.tasks for t in ("judge", "pairwise")) and p.finetune.method != "instruct":
        sets["embedded:tinyworld-instruct (test)"] = ("embedded:tinyworld-instruct", "test")
    texts = {name: _example_texts(spec, split, p.train.seed, p.finetune.hf_config if spec == p.finetune.data else "")
             for name, (spec, split) in sets.items() if spec.startswith(("embedded:", "hf:")) or Path(spec).exists()}
    ctx.log.log({"kind": "progress", "what": "indexing the pretraining corpus", "done": 0, "total": 1, "unit": "corpus"})
    index = corpus_index(data, ctx.stop)
    if ctx.stop.is_set():
        return {}
    checked = {name: check_set(index, t) for name, t in texts.items()}
    return {"ngram": NGRAM, "sets": checked,
            "max_dirty_share": max((c["dirty_share"] for c in checked.values() if c["n_checked"]), default=0.0),
            "corpus": {"run": run_path, "source": data.source if not data.mixture else "mixture",
                       "documents": index.documents, "words": index.words, "distinct_ngrams": int(len(index.hashes)),
                       "truncated": index.truncated}}


def task_sensitivity(ctx: EvalContext) -> dict:
    from core.eval.choice import load_task
    from core.eval.sensitivity import sensitivity

    e = ctx.preset.eval
    examples = load_task(e.choice_data, "test")
    if e.limit:
        examples = examples[:e.limit]
    embedded = e.choice_data.startswith(("embedded:", "hf:"))
    pool = load_task(e.choice_data, "train") if embedded else examples
    r = sensitivity(ctx.model, ctx.tokenizer, examples, pool, batch_size=max(4, ctx.preset.train.micro_batch_size),
                    stop=ctx.stop, progress=ctx.progress("sensitivity", "settings"))
    r["settings"] = {"data": e.choice_data, "split": "test" if embedded else "all", "limit": e.limit,
                     "fewshot_split": "train" if embedded else "same set"}
    return r


def task_compare(ctx: EvalContext) -> dict:
    """This model (B) against eval.baseline or its base in the lineage (A), paired, per task."""
    from core.stages.compare import compare_models

    baseline = ctx.preset.eval.baseline or (ctx.meta.get("lineage") or {}).get("base") or ""
    if not baseline:
        raise UserError(f"eval.baseline: empty, and {ctx.meta['path']} has no base in its lineage (a pretrained "
                        f"model); set eval.baseline to the model to compare it with")
    r = compare_models(str(baseline), str(ctx.meta["path"]), ctx.preset, ctx.stop,
                       progress=lambda what: ctx.log.log({"kind": "progress", "what": f"compare: {what}",
                                                          "done": 0, "total": 0, "unit": "tasks"}))
    r["settings"] = {"baseline": str(baseline)}
    return r


RUNNERS = {"perplexity": task_perplexity, "classify": task_classify, "choice": task_choice,
           "judge": task_judge, "pairwise": task_pairwise, "verify": task_verify,
           "contamination": task_contamination, "sensitivity": task_sensitivity, "compare": task_compare}


# ------------------------------------------------------------------------------------ stage

def _headline(task: str, r: dict) -> dict:
    if task == "compare":
        return {f"{t}_{k}": v[k] for t, v in r["tasks"].items() for k in ("difference", "ci_low", "ci_high", "p_value")}
    keys = {"perplexity": ("loss", "perplexity", "bits_per_byte", "tokens"),
            "choice": ("acc", "acc_norm", "chance", "n"),
            "classify": ("accuracy", "ci_low", "ci_high", "majority_baseline", "n"),
            "contamination": ("max_dirty_share", "ngram"),
            "sensitivity": ("n", "chance"),
            "judge": ("mean", "ci_low", "ci_high", "n_scored", "n_unparseable", "n_failed", "mean_answer_chars"),
            "pairwise": ("win_rate", "wins", "losses", "ties", "n_unparseable", "n_failed", "position_consistency"),
            "verify": ("accuracy", "accuracy_low", "accuracy_high", "pass_at_1", "pass_at_1_low", "pass_at_1_high",
                       "pass_at_k", "k", "n")}[task]
    out = {k: r.get(k) for k in keys if k in r}
    if task == "classify":
        out["macro_f1"] = (r.get("macro") or {}).get("f1")
        out["baseline_bow"] = (r.get("baseline_bow") or {}).get("accuracy")
    if task == "sensitivity":
        out.update({f"{g}_{k}": v[k] for g, v in (r.get("ranges") or {}).items() for k in ("min", "max")})
    return out


def _samples(ctx: EvalContext) -> list[dict]:
    """A few seeded generations for the model card."""
    from core.generate import generate_text

    p = ctx.preset
    prompts = [p.train.sample_prompt or "Once upon a time"]
    out = []
    for i, prompt in enumerate(prompts):
        text = "".join(generate_text(ctx.model, ctx.tokenizer, prompt, max_new_tokens=p.train.sample_tokens,
                                     temperature=p.generate.temperature, top_k=p.generate.top_k,
                                     top_p=p.generate.top_p, seed=(p.generate.seed or p.train.seed) + i))
        out.append({"prompt": prompt, "text": text})
    return out


def run(preset: Any, run_dir: Path, log: Logger, stop: threading.Event) -> None:
    """The eval stage (see the module docstring)."""
    from core.eval.report import hardware, write_report
    from core.train.device import pick_device

    t0 = time.time()
    run_dir = Path(run_dir)
    e = preset.eval
    unknown = [t for t in e.tasks if t not in TASKS]
    if unknown:
        raise UserError(f"eval.tasks: unknown task(s) {', '.join(map(repr, unknown))}; tasks are {', '.join(TASKS)}")
    if not e.tasks:
        raise UserError(f"eval.tasks: empty; choose from {', '.join(TASKS)}")
    device = pick_device(preset.train.device)
    spec = e.model or default_model(preset)
    model, tokenizer, meta = load_for_eval(spec, device)
    head = _head(meta)
    log.log({"kind": "log", "level": "info",
             "message": f"evaluating {meta['path']} ({head} head, step {meta.get('step')}) on {', '.join(e.tasks)} ({device})"})
    report: dict[str, Any] = {
        "stage": "eval", "preset": preset.name,
        "model": {"spec": spec, "checkpoint": str(Path(meta["path"]).resolve()), "step": meta.get("step"), "head": head,
                  "lineage": meta.get("lineage") or {}, "tokenizer": (meta.get("tokenizer") or {}).get("name")},
        "settings": {"tasks": list(e.tasks), "limit": e.limit, "num_fewshot": e.num_fewshot, "device": str(device)},
        "hardware": hardware(device), "tasks": {}, "skipped": {}, "complete": False,
    }
    ctx = EvalContext(preset, model, tokenizer, meta, device, log, stop)
    for task in e.tasks:
        if stop.is_set():
            break
        wrong_head = (task in LM_TASKS and head != "lm") or (task == "classify" and head != "classify")
        if wrong_head:
            why = f"needs a {'language-model' if task in LM_TASKS else 'classification'} head, the model has a {head} head"
            report["skipped"][task] = why
            log.log({"kind": "log", "level": "warning", "message": f"{task}: skipped, {why}"})
            continue
        t_task = time.time()
        result = RUNNERS[task](ctx)
        if not result:
            continue
        result["wall_s"] = round(time.time() - t_task, 2)
        report["tasks"][task] = result
        head_line = _headline(task, result)
        log.log({"kind": "eval", "task": task, **head_line})
        log.log({"kind": "log", "level": "info", "message": f"{task}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in head_line.items())})
        report["wall_s"] = round(time.time() - t0, 2)
        write_report(run_dir, report)
    if not report["tasks"] and report["skipped"] and not stop.is_set():
        raise UserError(f"{meta['path']}: no task of eval.tasks fits this model: "
                        + "; ".join(f"{t} {why}" for t, why in report["skipped"].items()))
    if head == "lm" and not stop.is_set():
        report["samples"] = _samples(ctx)
    report["complete"] = not stop.is_set() and all(t in report["tasks"] or t in report["skipped"] for t in e.tasks)
    report["wall_s"] = round(time.time() - t0, 2)
    write_report(run_dir, report)
    unjudged = [_no_valid_judgement(t, r) for t, r in report["tasks"].items()]
    if any(unjudged) and not stop.is_set():  # a mean of nan is no result: the run failed (exit 1)
        raise StageFailed("; ".join(u for u in unjudged if u))


def _no_valid_judgement(task: str, r: dict) -> str:
    """Why a judge task got no valid answer at all ('' when it got one, or is no judge task)."""
    if task == "judge":
        valid = r.get("n_scored", 0)
    elif task == "pairwise":
        valid = r.get("wins", 0) + r.get("losses", 0) + r.get("ties", 0)
    else:
        return ""
    if valid or not r.get("n"):
        return ""
    return (f"{task}: the judge gave no valid answer to any of {r['n']} requests ({r.get('n_failed', 0)} failed, "
            f"{r.get('n_unparseable', 0)} unparseable){': ' + str(r['error']) if r.get('error') else ''}")
