"""Preference finetuning with DPO (Rafailov et al., 2023).

The policy starts from an instruction-tuned checkpoint; a frozen copy of that same start is the
reference. For a prompt x with a chosen answer y_w and a rejected one y_l:

    reward(y)  = beta * (log pi(y | x) - log ref(y | x))         (summed over the answer's tokens)
    loss       = -log sigmoid(reward(y_w) - reward(y_l))

Events: loss, chosen and rejected rewards, reward_margin (their difference) and reward_accuracy
(share of pairs where the chosen answer has the higher reward). With LoRA the reference is the
same network with its adapters switched off, so no second copy is held in memory.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from core.errors import UserError
from core.train.examples import Batches, fixed_batches, read_split
from core.runs import Logger

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer


def sequence_logps(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over positions of log p(y_t), ignoring y == -100: logits (B, T, V), y (B, T) -> (B,)."""
    nll = F.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=-100, reduction="none")  # (B, T)
    return -nll.sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """The DPO loss (mean over pairs) and its metrics from per-pair sequence log-probabilities (B,)."""
    chosen = beta * (policy_chosen - ref_chosen)  # (B,) implicit rewards
    rejected = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    margin = chosen - rejected
    metrics = {
        "reward_chosen": chosen.detach().mean(),
        "reward_rejected": rejected.detach().mean(),
        "reward_margin": margin.detach().mean(),
        "reward_accuracy": (margin.detach() > 0).float().mean(),
    }
    return loss, metrics


def pair_logps(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) sequence log-probs (B,), both sides in one forward pass of 2B rows."""
    B = batch["chosen_x"].size(0)
    x = torch.cat([batch["chosen_x"], batch["rejected_x"]])  # (2B, T)
    y = torch.cat([batch["chosen_y"], batch["rejected_y"]])
    logits, _ = model(x)  # (2B, T, V)
    logps = sequence_logps(logits, y)
    return logps[:B], logps[B:]


class DPOObjective:
    """The DPO loss against a frozen reference: a module, or (LoRA) a context that turns the adapters off."""

    def __init__(self, beta: float, reference: torch.nn.Module | None = None,
                 reference_context: Any = None):
        if reference is None and reference_context is None:
            raise ValueError("DPO needs a reference model or a context that makes the policy the reference")
        self.beta = beta
        self.reference = reference
        self.reference_context = reference_context

    @torch.no_grad()
    def reference_logps(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reference is not None:
            return pair_logps(self.reference, batch)
        with self.reference_context():
            return pair_logps(model, batch)

    def __call__(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        ref_c, ref_r = self.reference_logps(model, batch)
        pol_c, pol_r = pair_logps(model, batch)
        loss, metrics = dpo_loss(pol_c, pol_r, ref_c, ref_r, self.beta)
        return loss, {**metrics, "tokens": 2 * batch["chosen_x"].numel()}  # both sides, padding included

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any) -> dict:
        sums: dict[str, float] = {}
        n = 0
        for batch in batches:
            b = batch["chosen_x"].size(0)
            loss, metrics = self(model, batch)
            metrics.pop("tokens")
            for k, v in {"val_loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v) * b
            n += b
        return {k: v / n for k, v in sums.items()} if n else {}


# ---------------------------------------------------------------------------------------- data

def prepare_split(ft: Any, split: str, tokenizer: TextTokenizer, max_len: int, seed: int) -> tuple[list[dict], dict]:
    """Encoded pairs of one split and counts: truncated, skipped (chosen == rejected), dropped (cut away)."""
    from core.data.formats import encode_preference

    records = read_split(ft.data, split, (("prompt", "instruction"), "chosen", "rejected"), "preference tuning",
                         seed=seed, hf_config=ft.hf_config, test_fraction=ft.test_fraction, prompt_field=ft.prompt_field)
    out = []
    counts = {"truncated": 0, "same": 0, "dropped": 0}
    for i, rec in enumerate(records):
        if str(rec["chosen"]).strip() == str(rec["rejected"]).strip():
            counts["same"] += 1  # no preference to learn from
            continue
        ex = encode_preference(rec, tokenizer, ft.template, max_len)
        if ex["chosen"]["truncated"] or ex["rejected"]["truncated"]:
            if ft.truncate == "refuse":
                raise UserError(f"{ft.data} ({split} split) record {i + 1}: longer than the context ({max_len} "
                                f"tokens); set finetune.truncate = \"truncate\" to cut long pairs")
            counts["truncated"] += 1
            if ex["chosen"]["ids"] == ex["rejected"]["ids"] or not any(ex["chosen"]["mask"][1:]) \
                    or not any(ex["rejected"]["mask"][1:]):
                counts["dropped"] += 1  # the cut left no difference (or no answer) to compare
                continue
        out.append(ex)
    return out, counts


class PreferenceTask:
    """What the finetuning stage needs for DPO."""

    method = "preference"

    def __init__(self, preset: Any, tokenizer: TextTokenizer, log: Logger, max_len: int):
        from core.data.formats import collate_preference

        self.ft, self.train_cfg, self.tokenizer = preset.finetune, preset.train, tokenizer
        seed = preset.train.seed
        self.train, c_train = prepare_split(self.ft, "train", tokenizer, max_len, seed)
        self.val, c_val = prepare_split(self.ft, "val", tokenizer, max_len, seed)
        self.test, c_test = prepare_split(self.ft, "test", tokenizer, max_len, seed)
        self.counts = {k: c_train[k] + c_val[k] + c_test[k] for k in c_train}
        if not self.train:
            raise UserError(f"{self.ft.data}: no usable preference pairs in the train split")
        self.prompt_format = "chat" if self.ft.template == "chat" else "alpaca"
        pad = tokenizer.eot_id
        self.collate = lambda batch: collate_preference(batch, pad)
        self.batches = Batches(self.train, self.val, self.collate, preset.train)
        self.objective: DPOObjective | None = None
        msg = f"DPO (beta {self.ft.beta:g}): {len(self.train)} train / {len(self.val)} val / {len(self.test)} test pairs"
        c = self.counts
        if any(c.values()):
            msg += (f"; skipped {c['same']} pairs whose chosen equals rejected, cut {c['truncated']} to the context"
                    f" ({c['dropped']} of them dropped)")
        log.log({"kind": "log", "level": "warning" if c["same"] or c["truncated"] else "info", "message": msg})

    def adapt_model(self, model: torch.nn.Module) -> None:
        if getattr(model, "head_kind", "lm") != "lm":
            raise UserError(f"finetune.base: DPO needs a language model, the base has a {model.head_kind} head")

    def make_objective(self, policy: torch.nn.Module, lora: bool) -> DPOObjective:
        """Freeze the reference now, before training moves the policy: a copy, or the adapters off."""
        if lora:
            from core.model.lora import lora_disabled

            self.objective = DPOObjective(self.ft.beta, reference_context=lambda: lora_disabled(policy))
        else:
            reference = copy.deepcopy(policy).eval()
            for p in reference.parameters():
                p.requires_grad_(False)
            self.objective = DPOObjective(self.ft.beta, reference=reference)
        return self.objective

    def to(self, device: torch.device) -> None:
        if self.objective is not None and self.objective.reference is not None:
            self.objective.reference.to(device)

    def checkpoint_extra(self) -> dict:
        return {"finetune": {"method": "preference", "prompt_format": self.prompt_format, "beta": self.ft.beta}}

    sample = None

    @torch.no_grad()
    def held_out(self, model: torch.nn.Module, device: torch.device) -> dict:
        """DPO metrics on the test pairs (val when there are none)."""
        from core.train.device import to_device

        split, pairs = ("test", self.test) if self.test else ("val", self.val)
        was = model.training
        model.eval()
        assert self.objective is not None, "make_objective() first"
        m = self.objective.evaluate(model, (to_device(b, device) for b in
                                            fixed_batches(pairs, self.train_cfg.micro_batch_size, self.collate)))
        model.train(was)
        return {"split": split, "n": len(pairs), **{k.removeprefix("val_"): v for k, v in m.items()}}

    @torch.no_grad()
    def baseline_report(self, model: torch.nn.Module) -> dict:
        """The starting model's own preference on the held-out pairs: the share where log p(chosen) is
        above log p(rejected) (its DPO rewards are all 0, so its reward accuracy says nothing)."""
        pairs = self.test or self.val
        device = next(model.parameters()).device
        wins = 0
        for b in fixed_batches(pairs, self.train_cfg.micro_batch_size, self.collate):
            c, r = pair_logps(model, {k: v.to(device) for k, v in b.items()})
            wins += int((c > r).sum())
        return {"logp_accuracy": wins / len(pairs) if pairs else float("nan"), "n": len(pairs)}

    def final_report(self, model: torch.nn.Module, device: torch.device) -> dict:
        was = model.training
        model.eval()
        after = self.baseline_report(model)["logp_accuracy"]  # the tuned policy's own preference, as before
        model.train(was)
        return {**self.held_out(model, device), "logp_accuracy": after, "skipped_same": self.counts["same"],
                "truncated": self.counts["truncated"], "dropped": self.counts["dropped"]}
