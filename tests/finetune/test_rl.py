"""GRPO (finetune.method = "rl"): a tiny model, a few steps, exact resume, rewards and bad input."""

from __future__ import annotations

import threading

import pytest
import torch

from core.errors import StageFailed, UserError
from tests.finetune.ft_helpers import Recorder, make_preset


@pytest.fixture(scope="module")
def verify_file(tmp_path_factory):
    from core.data.verifiable import verifiable_set
    from tests.finetune.conftest import write_jsonl

    rows = [{k: r[k] for k in ("instruction", "input", "answer")} for r in verifiable_set("train")[:30]]
    return write_jsonl(tmp_path_factory.mktemp("rl-data") / "verify.jsonl", rows)


def rl_preset(base, data, **over):
    rl = dict(finetune__rl__group_size=4, finetune__rl__prompts=2, finetune__rl__max_new_tokens=6,
              finetune__rl__eval_questions=2, finetune__rl__eval_samples=2, finetune__test_fraction=0.1)
    return make_preset("rl", base, data, **{**rl, **over})


def run_fit(preset, run_dir, stop_after: int = 0):
    from core.stages.finetune import fit

    torch.set_num_threads(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    rec = Recorder(stop, stop_after) if stop_after else Recorder()
    return fit(preset, run_dir, rec, stop), rec


def test_grpo_trains_and_reports_rewards_rollouts_and_held_out_accuracy(base_ckpt, verify_file, tmp_path):
    import json

    result, rec = run_fit(rl_preset(base_ckpt, verify_file, train__max_steps=4, train__eval_every=2), tmp_path / "run")
    assert result.step == 4
    train = rec.of("train")
    for key in ("reward", "reward_std", "reward_exact", "reward_format", "reward_exact_std", "kl", "clip_fraction",
                "entropy", "completion_len"):
        assert all(key in e for e in train), key
    assert all(0 < e["completion_len"] <= 6 + 1 for e in train)
    rollouts = rec.of("rollout")
    assert [r["step"] for r in rollouts] == [1, 2, 3, 4]
    assert all(len(r["completions"]) == 4 and {"text", "reward", "advantage"} <= set(r["completions"][0]) for r in rollouts)
    val = rec.of("val")
    assert val and all(0 <= v["pass_at_1"] <= 1 and "pass_at_k" in v for v in val)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["method"] == "rl" and {"accuracy", "pass_at_1", "pass_at_k", "gain"} <= set(report["test"])
    assert {"accuracy", "correct"} <= set(report["baseline"])


@pytest.mark.parametrize("updates,oversample", [(1, 1), (2, 2)])
def test_a_resumed_grpo_run_equals_an_uninterrupted_one(base_ckpt, verify_file, tmp_path, updates, oversample):
    over = dict(train__max_steps=5, train__checkpoint_every=100, train__eval_every=100, finetune__rl__updates=updates,
                finetune__rl__kl_beta=0.05, finetune__rl__oversample=oversample)
    full, rec_full = run_fit(rl_preset(base_ckpt, verify_file, **over), tmp_path / "full")
    part, _ = run_fit(rl_preset(base_ckpt, verify_file, **over), tmp_path / "part", stop_after=3)
    assert part.stopped and part.step == 3
    resumed, rec_res = run_fit(rl_preset(base_ckpt, verify_file, **over), tmp_path / "part")
    assert resumed.resumed_from == 3 and resumed.step == 5
    losses = {e["step"]: e["loss"] for e in rec_full.of("train")}
    assert {e["step"]: e["loss"] for e in rec_res.of("train")} == {s: losses[s] for s in (4, 5)}
    texts = {r["step"]: [c["text"] for c in r["completions"]] for r in rec_full.of("rollout")}
    assert all(texts[r["step"]] == [c["text"] for c in r["completions"]] for r in rec_res.of("rollout"))


def test_grpo_with_lora_trains_only_the_adapters(base_ckpt, verify_file, tmp_path):
    result, rec = run_fit(rl_preset(base_ckpt, verify_file, train__max_steps=2, finetune__trainable="lora",
                                    finetune__rl__kl_beta=0.1), tmp_path / "run")
    assert result.step == 2 and all("kl" in e for e in rec.of("train"))


def test_oversampling_trains_only_on_groups_whose_rewards_differ(base_ckpt, verify_file, tmp_path):
    _, rec = run_fit(rl_preset(base_ckpt, verify_file, train__max_steps=3, finetune__rl__oversample=3), tmp_path / "run")
    train = {e["step"]: e for e in rec.of("train")}
    assert all(1 <= e["kept_groups"] <= 2 for e in train.values())  # at most `prompts` groups of the 6 drawn
    assert any(e["solved_groups"] > 0 for e in train.values())
    for r in rec.of("rollout"):  # the viewer shows a kept group: one that teaches, whenever any did
        rewards = {c["reward"] for c in r["completions"]}
        assert (len(rewards) > 1) == (train[r["step"]]["solved_groups"] > 0)


# ------------------------------------------------------------------------------------ the math

def test_advantages_are_centred_per_group_and_scaled_unless_dr_grpo():
    from core.train.rl import advantages

    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    a = advantages(r, scale_std=True)
    assert torch.allclose(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-3)
    assert torch.equal(a[1], torch.zeros(4))  # a group that agrees teaches nothing
    assert torch.equal(advantages(r, scale_std=False)[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_grpo_loss_at_ratio_one_is_the_policy_gradient_and_clips_beyond_epsilon():
    from core.train.rl import grpo_loss

    logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.5]])).requires_grad_(True)
    mask = torch.tensor([[True, True], [True, False]])
    adv = torch.tensor([1.0, -2.0])
    loss, m = grpo_loss(logp, logp.detach(), adv, mask, clip=0.2)
    loss.backward()
    assert loss.item() == pytest.approx((-1 - 1 + 2) / 3)
    assert torch.allclose(logp.grad, torch.tensor([[-1 / 3, -1 / 3], [2 / 3, 0.0]]))
    assert m["clip_fraction"].item() == 0
    old = logp.detach() - torch.log(torch.tensor(2.0))  # ratio 2: clipped for the positive advantage
    _, m2 = grpo_loss(logp.detach(), old, adv, mask, clip=0.2)
    assert m2["clip_fraction"].item() == pytest.approx(2 / 3)
    seq, _ = grpo_loss(logp.detach(), logp.detach(), adv, mask, clip=0.2, norm="sequence")
    assert seq.item() == pytest.approx((-1 + 2) / 2)


# ------------------------------------------------------------------------------------ bad input

def test_a_group_of_one_is_refused_with_the_reason(base_ckpt, verify_file):
    from core.config import PresetError

    with pytest.raises(PresetError, match="group_size.*advantages are all zero"):
        rl_preset(base_ckpt, verify_file, finetune__rl__group_size=1)


def test_a_set_without_answers_is_refused(base_ckpt, data_files, tmp_path):
    with pytest.raises(UserError, match="no field 'answer'"):
        run_fit(rl_preset(base_ckpt, data_files["instruct"], train__max_steps=1), tmp_path / "run")


def test_reward_functions_that_cannot_import_or_return_no_number_are_refused(base_ckpt, verify_file, tmp_path):
    with pytest.raises(UserError, match="cannot import module 'no_such_module_xyz'"):
        run_fit(rl_preset(base_ckpt, verify_file, finetune__rl__rewards=["no_such_module_xyz:f"]), tmp_path / "a")
    with pytest.raises(UserError, match="has no function 'nope'"):
        run_fit(rl_preset(base_ckpt, verify_file, finetune__rl__rewards=["json:nope"]), tmp_path / "b")
    with pytest.raises(UserError, match="'builtins:zip' returned <zip"):
        run_fit(rl_preset(base_ckpt, verify_file, finetune__rl__rewards=["builtins:zip"]), tmp_path / "c")


def test_a_reward_that_raises_inside_a_run_fails_it_by_name(base_ckpt, verify_file, tmp_path, monkeypatch):
    mod = tmp_path / "my_rewards.py"
    mod.write_text("def picky(completion, record):\n"
                   "    if record.get('checked'):\n        raise ValueError('no ' + completion[:3])\n"
                   "    record['checked'] = True\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StageFailed, match="reward 'my_rewards:picky' raised ValueError: no"):
        run_fit(rl_preset(base_ckpt, verify_file, finetune__rl__rewards=["my_rewards:picky"], train__max_steps=1),
                tmp_path / "run")
