"""Evaluating a real model's checkpoint (Hugging Face tokenizer, Jinja template) and its model card."""

from __future__ import annotations

import pytest
from hf_tokenizer_files import real_checkpoint

from core import config, runs
from core.eval.render import to_markdown
from core.eval.report import model_card, read_report

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return real_checkpoint(tmp_path_factory.mktemp("real-eval"), "llama3")


def test_perplexity_choice_and_judge_on_a_real_checkpoint(workspace, ckpt, serve):
    from judge_server import completion

    srv = serve(lambda body, n: (200, completion("Fine.\nScore: 4"), 0))
    p = config.load("tiny", ["data.synthetic_mb=0.05", "data.workers=1", "data.val_fraction=0.3", "train.micro_batch_size=4",
                             f"eval.model={ckpt}", 'eval.tasks=["perplexity", "choice", "judge"]', "eval.limit=4",
                             "eval.max_new_tokens=4", f"eval.judge.base_url={srv.base_url}", "eval.judge.scale=1-5",
                             "finetune.template=chat"])
    run = runs.create_run(p.name, "eval", config.dump(p))
    assert runs.execute(run, "eval", p) == "finished"
    rep = read_report(run.path)
    ppl, ch, j = rep["tasks"]["perplexity"], rep["tasks"]["choice"], rep["tasks"]["judge"]
    assert ppl["tokens"] > 0 and 0 < ppl["bits_per_byte"] < 40
    assert ch["n"] == 4 and 0 <= ch["acc"] <= 1
    assert j["n_scored"] == 4 and j["mean"] == 4.0
    assert len(j["samples"]) == 4 and all(isinstance(s["answer"], str) for s in j["samples"])
    card = model_card(str(ckpt))
    assert card["tokenizer"]["kind"] == "hf"
    assert "tokenizer hf-" in to_markdown(card)
