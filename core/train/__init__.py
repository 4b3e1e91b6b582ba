"""Training: the shared loop (loop.py) and one module per objective (pretrain, classify, instruct, preference)."""
