"""The wizard's preview is training's encoding: core.train.encode.preview_example gives the ids and loss
mask that the method's data preparation builds, for every method (torch-free, so the TUI can call it)."""

from __future__ import annotations

from core import config
from core.data.formats import encode_preference
from core.train.encode import encode_classify_record, encode_record, preview_example

CONV = {"instruction": "Say hi", "input": "", "output": "Hi",
        "messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom"}]}


def test_preview_masks_are_the_training_masks(tokenizer):
    sft = config.load("tiny-sft")
    # a record with both a conversation and Alpaca fields trains on the conversation: so does the preview
    [part] = preview_example(CONV, sft, tokenizer, 160)
    trained = encode_record(CONV, tokenizer, sft.finetune.template, 160)
    assert part.title == "conversation" and part.ids == trained["ids"]
    assert part.mask == [int(m) for m in trained["mask"]] and sum(part.mask) == len(tokenizer.encode("Tom")) + 1

    rec = {"text": "Tom was happy all day.", "label": 1}
    [part] = preview_example(rec, config.load("tiny-classify"), tokenizer, 160)
    assert part.ids == encode_classify_record(rec, tokenizer, 160)["ids"] and part.mask[-1] == 1 and sum(part.mask) == 1

    pair = {"prompt": "Who?", "chosen": "Tom", "rejected": "Sam"}
    dpo = config.load("tiny-dpo")
    chosen, rejected = preview_example(pair, dpo, tokenizer, 160)
    ex = encode_preference(pair, tokenizer, dpo.finetune.template, 160)
    assert (chosen.ids, rejected.ids) == (ex["chosen"]["ids"], ex["rejected"]["ids"])
    assert rejected.mask == [int(m) for m in ex["rejected"]["mask"]]
