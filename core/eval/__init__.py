"""Evaluation: how good a model is, measured the way established tools measure it, in one report per model.

    metrics.py     accuracy, per-class precision/recall/F1, confusion matrix, mean with a 95% interval
    perplexity.py  loss, perplexity and bits per byte of held-out text
    choice.py      multiple choice as lm-evaluation-harness scores it (acc, acc_norm, k-shot, chance)
    judge.py       an LLM judge on any OpenAI-compatible endpoint: rubric scores, pairwise win rates
    report.py      report.json per evaluation, the model card along a model's lineage, Markdown/HTML
    stage.py       the eval stage: `run(preset, run_dir, log, stop)` on preset.eval.tasks

Modules import torch lazily where they can; import the one you need (`from core.eval.choice import evaluate`).
"""
