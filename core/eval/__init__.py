"""Evaluation: how good a model is, measured the way established tools measure it, in one report per model.

    metrics.py     accuracy, per-class precision/recall/F1, confusion matrix, mean with a 95% interval
    perplexity.py  loss, perplexity and bits per byte of held-out text
    choice.py      multiple choice as lm-evaluation-harness scores it (acc, acc_norm, k-shot, chance)
    judge.py       an LLM judge on any OpenAI-compatible endpoint: rubric scores, pairwise win rates
    report.py      the model card's data along a model's lineage (report.json is core.runs')
    render.py      the card as Markdown and HTML with inline SVG loss curves
    contamination.py  13-gram overlap of each eval set with the lineage's pretraining corpus
    sensitivity.py multiple-choice accuracy across k-shot, prompt formats and the gold position
    baseline.py    a bag-of-words logistic regression beside a classifier
    judge_bias.py  a judge's length, position and sampling biases
    compare.py     paired bootstrap comparisons of two models; mean and interval over seeds

The eval stage itself is core.stages.eval.

Modules import torch lazily where they can; import the one you need (`from core.eval.choice import evaluate`).
"""
