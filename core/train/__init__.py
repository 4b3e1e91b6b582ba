"""Training: the shared loop and what it composes (device, optim, state, ddp) and one module per objective.

    loop.py      train(): setup -> resume -> steps (validate, sample, checkpoint) -> finish
    state.py     TrainState, resume from and commit to the run's checkpoints
    device.py    device, dtype, autocast, seeding, Dist
    optim.py     AdamW, the schedule, the step plan
    ddp.py       torchrun data parallelism for any stage that trains
    classify.py, instruct.py, preference.py   the finetuning objectives; encode.py their encodings
The stages that call train() live in core.stages.
"""
