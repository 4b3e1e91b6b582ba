"""Reinforcement learning with verifiable rewards: GRPO (DeepSeekMath, Shao et al., 2024).

For each prompt of a rollout batch the policy samples G completions (all P x G as one left-padded
batch with a shared-prefix KV cache, core.generate.generate_groups); the rewards
(core.train.rewards) give each completion an advantage A = (r - mean of its group) / std of its
group (Dr. GRPO: no std). With finetune.rl.oversample = N a rollout draws P x N questions and trains
on the first P groups whose rewards differ (DAPO's dynamic sampling: the others have zero
advantages). The loss per completion token is the clipped ratio objective

    -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + beta * KL(policy || reference)

with ratio = pi(token) / pi_rollout(token) (the policy that sampled the batch: finetune.rl.updates
optimizer steps reuse one batch), the k3 estimator of the KL to the frozen start, averaged over
tokens or per sequence first. The rollout batches are the loop's batches (`RolloutSource`): the
prompt order, the step counter and a batch still being reused are its resumable state, and each
rollout samples from a generator seeded by the run's seed and the rollout's index, so a resumed
run samples the same completions. Events: rewards per component, KL, clip fraction, entropy,
completion length, held-out pass@1 / pass@k every evaluation, and one `rollout` event per batch.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.nn import functional as F

from core.errors import UserError
from core.runs import Logger
from core.train.examples import ExampleLoader, read_split
from core.train.rewards import RewardSet

ROLLOUT_SHOWN = 1  # groups per rollout event (the viewer shows the newest ones)


# ------------------------------------------------------------------------------------ the loss

def token_logps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(y_t) (B, T), logits (B, T, V)) of a forward pass; positions with y == -100 give 0."""
    logits, _ = model(x)  # (B, T, V)
    logp = -F.cross_entropy(logits.float().transpose(1, 2), y.clamp(min=0), reduction="none")  # (B, T)
    return logp * (y != -100), logits


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, clip: float,
              ref_logp: torch.Tensor | None = None, beta: float = 0.0, norm: str = "token") -> tuple[torch.Tensor, dict]:
    """The GRPO loss from per-token log-probs (B, T), advantages (B,) and the completion mask (B, T)."""
    m = mask.float()
    ratio = torch.exp(logp - old_logp)  # (B, T)
    a = adv[:, None]
    unclipped, clipped = ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and beta > 0:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1  # k3: unbiased, always >= 0
        per_token = per_token + beta * kl
    if norm == "token":
        loss = (per_token * m).sum() / m.sum().clamp(min=1)
    else:
        loss = ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    n = m.sum().clamp(min=1)
    was_clipped = ((ratio < 1 - clip) & (a < 0)) | ((ratio > 1 + clip) & (a > 0))
    return loss, {"clip_fraction": (was_clipped.float() * m).sum().detach() / n, "kl": (kl * m).sum().detach() / n}


def advantages(rewards: torch.Tensor, scale_std: bool) -> torch.Tensor:
    """(P, G) rewards -> (P, G) advantages: minus the group mean, over the group std (+1e-4) if scale_std."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + 1e-4)


class GRPOObjective:
    """The loop's objective for GRPO; `evaluate` scores held-out questions (pass@1, pass@k)."""

    def __init__(self, task: RLTask):
        self.task = task

    def __call__(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        rl = self.task.rl
        logp, logits = token_logps(model, batch["x"], batch["y"])
        mask = batch["y"] != -100
        old = batch.get("old_logp")
        old = logp.detach() if old is None else old  # one update per rollout: the ratio is 1 with its gradient
        loss, metrics = grpo_loss(logp, old, batch["adv"], mask, rl.clip, batch.get("ref_logp"), rl.kl_beta, rl.loss_norm)
        with torch.no_grad():
            lp = F.log_softmax(logits.float(), dim=-1)
            entropy = -(lp.exp() * lp).sum(-1)  # (B, T)
            metrics["entropy"] = (entropy * mask).sum() / mask.sum().clamp(min=1)
        return loss, {**metrics, **batch["stats"], "tokens": int(mask.sum())}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any) -> dict:
        records = [r for b in batches for r in b]
        out = self.task.score(model, records)
        return {k: out[k] for k in ("pass_at_1", "pass_at_1_low", "pass_at_1_high", "pass_at_k", "accuracy")}


# ------------------------------------------------------------------------------------ rollouts

class RolloutSource:
    """The loop's batch source: a fresh rollout batch every finetune.rl.updates steps."""

    prefetch = False  # a batch is sampled with the current policy: never drawn a step ahead (core.train.device.Feed)

    def __init__(self, task: RLTask):
        self.task = task
        self.prompts = ExampleLoader(task.train, task.rl.prompts * task.rl.oversample, lambda rows: rows,
                                     seed=task.seed)
        self.calls = 0
        self.batch: dict | None = None

    def next_batch(self) -> dict:
        if self.batch is None or self.calls % self.task.rl.updates == 0:
            self.batch = self.task.rollout(self.prompts.next_batch(), self.calls // self.task.rl.updates,
                                           step=self.calls + 1)
        self.calls += 1
        return self.batch

    def state_dict(self) -> dict:
        reused = self.calls % self.task.rl.updates != 0  # the batch the next steps still train on
        return {"prompts": self.prompts.state_dict(), "calls": self.calls,
                "batch": self.batch if reused and self.batch is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.prompts.load_state_dict(state["prompts"])
        self.calls = int(state["calls"])
        batch = state.get("batch")
        self.batch = batch if isinstance(batch, dict) and isinstance(batch.get("x"), torch.Tensor) else None
        if self.batch is None and self.calls % self.task.rl.updates:
            raise UserError("trainer.pt: an RL checkpoint taken between the updates of a rollout batch lacks that batch")


# ---------------------------------------------------------------------------------------- task

class RLTask:
    """What the finetuning stage needs for GRPO: prompts with answers, rewards, rollouts, the objective."""

    method = "rl"
    prompt_format = "chat"
    sample = None

    def __init__(self, preset: Any, tokenizer: Any, log: Logger, max_len: int):
        self.ft, self.rl, self.gen, self.log = preset.finetune, preset.finetune.rl, preset.generate, log
        self.tokenizer, self.seed, self.max_len = tokenizer, preset.train.seed, max_len
        if getattr(tokenizer, "chat_template", "") in ("", "none"):
            raise UserError(f"finetune.base: the tokenizer {tokenizer.name!r} has no chat template, and RL asks its "
                            "questions as chat turns; start from an instruction-tuned model with a chat template")
        if self.rl.max_new_tokens >= max_len:
            raise UserError(f"finetune.rl.max_new_tokens: {self.rl.max_new_tokens} leaves no room for a prompt in the "
                            f"model's {max_len}-token context")
        self.train, self.val, self.test = (self._split(s) for s in ("train", "val", "test"))
        if not self.train:
            raise UserError(f"{self.ft.data}: no training questions")
        self.rewards = RewardSet(self.rl.rewards, self.rl.weights, self.rl.tolerance)
        self.rewards.check(self.train[0])
        self.reference: torch.nn.Module | None = None
        self.reference_context: Any = None
        self.policy: torch.nn.Module | None = None
        self.objective = GRPOObjective(self)
        self.batches = _Batches(self)
        drawn = f" (of {self.rl.prompts * self.rl.oversample} drawn)" if self.rl.oversample > 1 else ""
        log.log({"kind": "log", "level": "info",
                 "message": f"GRPO: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test questions; "
                            f"{self.rl.prompts} prompts{drawn} x {self.rl.group_size} completions of <= "
                            f"{self.rl.max_new_tokens} tokens per rollout, {self.rl.updates} update(s) each; "
                            f"rewards {', '.join(self.rewards.names)}; KL beta {self.rl.kl_beta:g}"})

    def _split(self, split: str) -> list[dict]:
        ans = self.rl.answer_field
        records = read_split(self.ft.data, split, (("instruction", "question", "prompt"), ans), "RL (verifiable rewards)",
                             seed=self.seed, hf_config=self.ft.hf_config, test_fraction=self.ft.test_fraction)
        return [{**r, "answer": str(r[ans])} for r in records]

    # -------------------------------------------------------------------- model and reference

    def adapt_model(self, model: torch.nn.Module) -> None:
        if getattr(model, "head_kind", "lm") != "lm":
            raise UserError(f"finetune.base: RL needs a language model, the base has a {model.head_kind} head")

    def make_objective(self, policy: torch.nn.Module, trained: torch.nn.Module, lora: bool) -> None:
        """The frozen reference (only when kl_beta > 0: a copy, or the adapters off) and the policy that samples."""
        self.policy = trained
        if self.rl.kl_beta <= 0:
            return
        if lora:
            from core.model.lora import lora_disabled

            self.reference_context = lambda: lora_disabled(policy)
        else:
            self.reference = copy.deepcopy(policy).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def to(self, device: torch.device) -> None:
        if self.reference is not None:
            self.reference.to(device)

    def checkpoint_extra(self) -> dict:
        return {"finetune": {"method": "rl", "prompt_format": "chat", "rewards": list(self.rewards.names)}}

    # ------------------------------------------------------------------------------- rollouts

    @torch.no_grad()
    def rollout(self, records: list[dict], index: int, step: int) -> dict:
        """Sample G completions per prompt, score them, keep the groups that teach (`keep_groups`) and
        build the training batch (CPU tensors)."""
        assert self.policy is not None, "make_objective() first"
        model: Any = self.policy
        rl = self.rl
        device = next(model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + index)
        was = model.training
        model.eval()
        rows, totals, parts_of = self._sample(model, records, gen)
        rewards = torch.tensor(totals).view(len(records), rl.group_size)
        varied = (rewards.max(1).values > rewards.min(1).values).float()
        stats = {**self._stats(rewards, parts_of, rows), "solved_groups": varied.mean()}  # over all groups drawn
        keep = self.keep_groups(varied)
        G = rl.group_size
        records, rewards = [records[g] for g in keep], rewards[keep]
        rows, totals, parts_of = ([xs[g * G + j] for g in keep for j in range(G)] for xs in (rows, totals, parts_of))
        adv = advantages(rewards, rl.scale_std).view(-1)
        batch = self._tensors(rows, adv)
        batch["stats"] = {**stats, "kept_groups": float(len(keep))}
        if rl.updates > 1:
            batch["old_logp"] = token_logps(model, batch["x"].to(device), batch["y"].to(device))[0].cpu()
        if rl.kl_beta > 0:
            batch["ref_logp"] = self._reference_logps(model, batch, device)
        model.train(was)
        self._log_rollout(records, rows, totals, parts_of, adv, step)
        return batch

    def keep_groups(self, varied: torch.Tensor) -> list[int]:
        """The groups trained on: all of them, or with oversample > 1 the first `prompts` whose rewards
        differ (a group whose answers all score alike has zero advantages: DAPO's dynamic sampling);
        when none differ, the first group (its loss is zero, the step still counts)."""
        if self.rl.oversample <= 1:
            return list(range(len(varied)))
        return [int(g) for g in varied.nonzero()[:, 0][: self.rl.prompts]] or [0]

    def _sample(self, model: Any, records: list[dict], gen: torch.Generator) -> tuple[list, list[float], list[dict]]:
        """All records x G completions as one batch: (prompt ids, completion ids, text) rows, their
        total rewards and reward components, prompt by prompt."""
        from core.eval.verify import chat_prompt
        from core.generate import generate_groups
        from core.train.instruct import stop_ids

        rl, tok = self.rl, self.tokenizer
        stops = stop_ids(tok, "chat")
        prompts = [chat_prompt(tok, rec, self.max_len - rl.max_new_tokens, self.ft.prompt_field) for rec in records]
        completions = generate_groups(model, prompts, rl.group_size, max_new_tokens=rl.max_new_tokens,
                                      temperature=max(self.gen.temperature, 1e-3), top_k=self.gen.top_k,
                                      top_p=self.gen.top_p, stop_ids=stops, generator=gen, keep_stop=True)
        rows, totals, parts_of = [], [], []
        for i, c in enumerate(completions):
            rec, ids = records[i // rl.group_size], prompts[i // rl.group_size]
            text = tok.decode(c[:-1] if c and c[-1] in stops else c)  # the stop id is trained, not scored
            total, parts = self.rewards.score(text, rec)
            rows.append((ids, c, text))
            totals.append(total)
            parts_of.append(parts)
        return rows, totals, parts_of

    def _tensors(self, rows: list[tuple[list[int], list[int], str]], adv: torch.Tensor) -> dict:
        """x, y (N, T) right-padded: y is -100 on prompt and padding positions; adv (N,)."""
        T = max(len(p) + len(c) for p, c, _ in rows) - 1
        pad = self.tokenizer.eot_id
        x = torch.full((len(rows), T), pad, dtype=torch.long)
        y = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, (p, c, _) in enumerate(rows):
            seq = torch.tensor(p + c)
            x[i, : len(seq) - 1] = seq[:-1]
            y[i, len(p) - 1: len(seq) - 1] = seq[len(p):]
        return {"x": x, "y": y, "adv": adv.float()}

    def _stats(self, rewards: torch.Tensor, parts_of: list[dict], rows: list) -> dict:
        stats = {"reward": rewards.mean(), "reward_std": rewards.std(unbiased=False),
                 "completion_len": torch.tensor([float(len(c)) for _, c, _ in rows]).mean()}
        for name in self.rewards.names:
            v = torch.tensor([p[name] for p in parts_of])
            stats[f"reward_{name}"], stats[f"reward_{name}_std"] = v.mean(), v.std(unbiased=False)
        return stats

    def _reference_logps(self, model: torch.nn.Module, batch: dict, device: torch.device) -> torch.Tensor:
        x, y = batch["x"].to(device), batch["y"].to(device)
        if self.reference is not None:
            return token_logps(self.reference, x, y)[0].cpu()
        with self.reference_context():
            return token_logps(model, x, y)[0].cpu()

    def _log_rollout(self, records: list[dict], rows: list, totals: list[float], parts_of: list[dict],
                     adv: torch.Tensor, step: int) -> None:
        G = self.rl.group_size
        for g, rec in enumerate(records[:ROLLOUT_SHOWN]):
            from core.data.verifiable import question_of

            done = [{"text": rows[i][2], "reward": totals[i], "advantage": round(float(adv[i]), 4), "parts": parts_of[i]}
                    for i in range(g * G, (g + 1) * G)]
            self.log.log({"kind": "rollout", "step": step, "prompt": " ".join(question_of(rec, self.ft.prompt_field)).strip(),
                          "answer": rec["answer"], "completions": done})

    # ------------------------------------------------------------------------------ held out

    def score(self, model: torch.nn.Module, records: list[dict]) -> dict:
        from core.eval.verify import score_verifiable

        return score_verifiable(model, self.tokenizer, records, k=self.rl.eval_samples,
                                max_new_tokens=self.rl.max_new_tokens, temperature=self.gen.temperature,
                                top_k=self.gen.top_k, top_p=self.gen.top_p, prompt_field=self.ft.prompt_field)

    def baseline_report(self, model: torch.nn.Module) -> dict:
        """The starting model on the held-out questions (test, else val): accuracy, pass@1, pass@k."""
        return {"split": "test" if self.test else "val", **self.score(model, self.test or self.val)}

    def final_report(self, model: torch.nn.Module, device: torch.device, baseline: dict | None = None) -> dict:
        from core.eval.verify import paired_difference

        was = model.training
        model.eval()
        out = self.baseline_report(model)
        model.train(was)
        if baseline and "correct" in baseline:  # paired over the same questions: greedy, then sampled pass@1
            out.update(paired_difference(baseline["correct"], out["correct"]))
        if baseline and "sampled_correct" in baseline:
            d = paired_difference(baseline["sampled_correct"], out["sampled_correct"])
            out.update({f"pass_at_1_{k}": v for k, v in d.items() if k != "n"})
        return out


class _Batches:
    """The stage's view of the task's data: rollouts for training, held-out questions for validation."""

    def __init__(self, task: RLTask):
        self.task = task

    @property
    def n_train(self) -> int:
        return len(self.task.train)

    def train_loader(self) -> RolloutSource:
        return RolloutSource(self.task)

    def val_batches(self) -> Any:
        n = self.task.rl.eval_questions
        val = self.task.val[:n] if n else self.task.val
        return (lambda: iter([val])) if val else None
