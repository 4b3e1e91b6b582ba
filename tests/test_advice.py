"""core.advice: rules of thumb checked against presets, with exact numbers on small hand-made cases."""

from __future__ import annotations

import dataclasses

from core import advice, config
from core.advice import Facts, advise, worst
from core.model import stats


# pinned here, so that the expected numbers do not move when presets/tiny.toml is retuned
BASE = {
    "name": "base",
    "data": {"source": "embedded:tinyworld", "synthetic_mb": 4.0, "val_fraction": 0.02},
    "tokenizer": {"kind": "bpe", "vocab_size": 2048},
    "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "context_length": 256},
    "train": {"lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 50, "micro_batch_size": 16, "max_steps": 1500,
              "eval_every": 250, "eval_batches": 20},
}


def tiny(**over) -> config.Preset:
    return config.from_dict(config.apply_overrides(BASE, over), "base")


def by_title(findings, title):
    return next(f for f in findings if f.title == title)


def test_every_finding_has_level_title_reason_and_stage():
    fs = advise(tiny(**{"finetune.method": "classify"}))
    assert {f.stage for f in fs} >= {"data", "tokenizer", "model", "pretrain", "finetune", "eval", "chat"}
    for f in fs:
        assert f.level in advice.LEVELS and f.title and f.reason and "\n" not in f.reason
        assert f.numbers


def test_tokens_per_parameter_against_the_compute_optimal_ratio():
    p = tiny()
    n = stats.param_counts(dataclasses.replace(p.model, vocab_size=p.tokenizer.vocab_size)).total
    f = by_title(advise(p, stage="pretrain"), "Tokens per parameter")
    tokens = p.train.max_steps * p.train.micro_batch_size * p.model.context_length
    assert f.numbers["training_tokens"] == tokens and f.numbers["params"] == n
    assert f.numbers["tokens_per_param"] == round(tokens / n, 2)
    assert f.level == ("warn" if 2 <= tokens / n < 10 else "ok" if tokens / n >= 10 else "bad")
    many = by_title(advise(tiny(**{"train.max_steps": 10_000}), stage="pretrain"), "Tokens per parameter")
    assert many.level == "ok" and many.numbers["training_tokens"] == 10_000 * 16 * 256
    few = by_title(advise(tiny(**{"train.max_steps": 10}), stage="pretrain"), "Tokens per parameter")
    assert few.level == "bad"


def test_learning_rate_pretraining_against_finetuning():
    assert by_title(advise(tiny(), stage="pretrain"), "Pretraining learning rate").level == "ok"
    assert by_title(advise(tiny(**{"train.lr": 0.05, "train.min_lr": 0.0}), stage="pretrain"),
                    "Pretraining learning rate").level == "bad"
    assert by_title(advise(tiny(**{"train.lr": 2e-5, "train.min_lr": 0.0}), stage="pretrain"),
                    "Pretraining learning rate").level == "warn"
    ft = by_title(advise(tiny(), stage="finetune"), "Finetuning learning rate")
    assert ft.level == "bad" and ft.numbers["usual_max"] == 1e-4
    ok = by_title(advise(tiny(**{"train.lr": 5e-5, "train.min_lr": 0.0}), stage="finetune"), "Finetuning learning rate")
    assert ok.level == "ok"
    lora = by_title(advise(tiny(**{"finetune.trainable": "lora", "train.lr": 5e-4, "train.min_lr": 0.0}),
                           stage="finetune"), "Finetuning learning rate")
    assert lora.level == "ok" and lora.numbers["usual_min"] == 1e-4


def test_finetuning_rules_only_for_presets_that_finetune():
    assert not [f for f in advise(tiny()) if f.stage == "finetune"]
    assert [f for f in advise(tiny(**{"finetune.method": "classify"})) if f.stage == "finetune"]


def test_batch_size_in_tokens():
    f = by_title(advise(tiny(**{"train.micro_batch_size": 2, "model.context_length": 64}), stage="pretrain"),
                 "Batch size in tokens")
    assert f.level == "warn" and f.numbers["tokens_per_step"] == 128
    g = by_title(advise(tiny(**{"train.batch_tokens": 65536}), stage="pretrain"), "Batch size in tokens")
    assert g.level == "ok" and g.numbers["grad_accum_steps"] == 16


def test_context_length_against_document_lengths():
    f = by_title(advise(tiny(), Facts(doc_tokens=[100] * 10 + [400] * 30), stage="data"), "Context length")
    assert f.level == "warn" and f.numbers["share_longer"] == 0.75 and f.numbers["median_doc_tokens"] == 400
    g = by_title(advise(tiny(), Facts(doc_tokens=[10] * 40), stage="data"), "Context length")
    assert g.level == "warn" and "shorter" in g.reason
    h = by_title(advise(tiny(), Facts(doc_tokens=[100, 150, 200, 300]), stage="data"), "Context length")
    assert h.level == "ok"


def test_validation_split_size():
    f = by_title(advise(tiny(), Facts(corpus_tokens=1_000_000, val_tokens=50_000), stage="data"), "Validation split")
    assert f.level == "warn" and f.numbers["tokens_per_validation"] == 20 * 16 * 256
    g = by_title(advise(tiny(**{"train.eval_batches": 5}), Facts(corpus_tokens=1_000_000, val_tokens=50_000),
                        stage="data"), "Validation split")
    assert g.level == "ok"


def test_vocabulary_against_corpus_size():
    f = by_title(advise(tiny(**{"data.synthetic_mb": 0.5, "tokenizer.vocab_size": 4096}), stage="tokenizer"),
                 "Vocabulary size")
    assert f.level == "bad" and f.numbers["bytes_per_vocab_entry"] == round(500_000 / 4096)
    assert by_title(advise(tiny(), stage="tokenizer"), "Vocabulary size").level == "ok"


def test_lora_rank_alpha_and_epochs_over_a_small_set():
    p = tiny(**{"finetune.trainable": "lora", "finetune.lora.rank": 8, "finetune.lora.alpha": 64.0})
    f = by_title(advise(p, stage="finetune"), "LoRA rank and alpha")
    assert f.level == "warn" and f.numbers["scale"] == 8.0
    ok = tiny(**{"finetune.trainable": "lora", "finetune.lora.rank": 8, "finetune.lora.alpha": 16.0})
    assert by_title(advise(ok, stage="finetune"), "LoRA rank and alpha").level == "ok"
    e = by_title(advise(tiny(**{"train.max_steps": 1000}), Facts(finetune_examples=800), stage="finetune"),
                 "Finetuning epochs")
    assert e.numbers["epochs"] == 20.0 and e.level == "bad"
    e2 = by_title(advise(tiny(**{"train.max_steps": 100}), Facts(finetune_examples=800), stage="finetune"),
                  "Finetuning epochs")
    assert e2.numbers["epochs"] == 2.0 and e2.level == "ok"


def test_class_balance_and_eval_size():
    p = tiny(**{"finetune.method": "classify"})
    f = by_title(advise(p, Facts(class_counts={"ham": 900, "spam": 100}), stage="finetune"), "Class balance")
    assert f.level == "warn" and f.numbers["imbalance"] == 9.0
    e = by_title(advise(tiny(**{"eval.limit": 50}), stage="eval"), "Evaluation size")
    assert e.level == "warn" and e.numbers["ci95_half_width_at_50pct"] == round(1.96 * (0.25 / 50) ** 0.5, 4)


def test_worst_and_the_cli_prints_findings(capsys):
    assert worst([]) == "ok"
    assert worst(advise(tiny(**{"train.max_steps": 10}))) == "bad"
    from core.cli import main

    assert main(["presets", "check", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "Tokens per parameter" in out and "Pretraining learning rate" in out
    assert main(["presets", "check", "smollm2-135m-sft"]) == 0  # the base's pretraining is not this preset's
    out = capsys.readouterr().out
    assert "bad Tokens per parameter" not in out and "n/a Tokens per parameter: not for this preset" in out


def test_every_builtin_preset_gets_advice():
    for name in config.builtin_names():
        assert advise(config.load(name))
