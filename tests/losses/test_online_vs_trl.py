"""The online losses equal TRL 1.16's on fixed tensors: value and gradient.

Where TRL's math is a trainer method (GRPOTrainer._compute_loss, RLOOTrainer._compute_loss),
the test runs that very method on a stand-in `self` carrying only the attributes it reads,
whose `_get_per_token_logps_and_entropies` returns our log-prob tensor, so the gradient flows
back to it. Where the math sits inline in a long method (advantages inside
`_generate_and_score_completions`), the reference expression is copied here, naming the TRL
lines it mirrors. TRL 1.16 has no PPO trainer: PPO is checked against the expressions of TRL's
former PPOTrainer (trl/trainer/ppo_trainer.py and trl/core.py's masked_whiten), copied here.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl", minversion="1.16")
grpo_trainer = pytest.importorskip("trl.trainer.grpo_trainer")
rloo_trainer = pytest.importorskip("trl.trainer.rloo_trainer")
from trl.trainer.utils import nanstd  # noqa: E402

from preftune.losses.online import (  # noqa: E402
    clipped_policy_loss,
    group_advantages,
    ppo_advantages,
    ppo_loss,
    rloo_advantages,
    rloo_loss,
)

F64 = torch.float64
# TRL's nanstd divides integer counts, so Bessel's n / (n - 1) is a float32 number (6/5 in
# float32 is 1.2000000477): a std over the batch agrees to float32's precision, not float64's.
# TRL's clip and KL metrics are float32 too.
NANSTD_RTOL = 1e-7
METRIC_RTOL = 1e-6


def batch(seed=0, prompts=2, samples=3, length=5):
    """Sampled completions of random lengths (1..length tokens), float64 per-token log-probs."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=F64)

    n = prompts * samples
    lengths = torch.randint(1, length + 1, (n,), generator=generator)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    old = -rand(n, length) * 3
    return {
        "mask": mask,
        "old": old,
        "new": old + (rand(n, length) - 0.5) * 0.8,  # ratios in [0.67, 1.49]: some clip
        "ref": old + (rand(n, length) - 0.5),
        "scores": rand(prompts, samples) * 2 - 1,
        "values": rand(n, length) - 0.5,
        "prompts": prompts,
        "samples": samples,
    }


class Accelerator:
    """One process: reduce and gather are the identity."""

    num_processes = 1

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def gather(self, tensor):
        return tensor


def trainer_stand_in(per_token_logps, **attributes):
    """What TRL's _compute_loss methods read from `self`, nothing more."""

    def per_token_logps_and_entropies(*args, **kwargs):
        return per_token_logps, torch.zeros_like(per_token_logps), None

    return SimpleNamespace(
        _get_per_token_logps_and_entropies=per_token_logps_and_entropies,
        accelerator=Accelerator(),
        model=SimpleNamespace(training=True),
        _metrics={"train": defaultdict(list)},
        aux_loss_enabled=False,
        **attributes,
    )


def completion_inputs(mask):
    n, length = mask.shape
    return {
        "prompt_ids": torch.zeros(n, 1, dtype=torch.long),
        "prompt_mask": torch.ones(n, 1, dtype=torch.long),
        "completion_ids": torch.zeros(n, length, dtype=torch.long),
        "completion_mask": mask.long(),
    }


# --- GRPO ----------------------------------------------------------------------------------


def trl_group_advantages(rewards, num_generations, scale_rewards):
    """TRL 1.16 grpo_trainer.py, _generate_and_score_completions, lines 2764-2787 (the
    "sum_then_normalize" branch, one reward function, every completion scorable)."""
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
        std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    elif scale_rewards == "batch":
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return advantages


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_equal_trl(scale):
    data = batch()
    expected = trl_group_advantages(data["scores"].reshape(-1), data["samples"], scale)
    got = group_advantages(data["scores"], scale=scale).reshape(-1)
    rtol = NANSTD_RTOL if scale == "batch" else 1e-12
    torch.testing.assert_close(got, expected, rtol=rtol, atol=1e-12)


def trl_grpo_loss(data, advantages, loss_type, beta, epsilon_low, epsilon_high):
    """GRPOTrainer._compute_loss itself: loss, gradient w.r.t. the log-probs, metrics."""
    logps = data["new"].clone().requires_grad_(True)
    stand_in = trainer_stand_in(
        logps,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        use_vllm=False,
        current_gradient_accumulation_steps=1,
        max_completion_length=data["mask"].shape[1],
        _entropy_bonus_enabled=False,
    )
    inputs = completion_inputs(data["mask"])
    inputs.update(
        advantages=advantages,
        old_per_token_logps=data["old"],
        ref_per_token_logps=data["ref"],
        num_items_in_batch=data["mask"].sum(),
    )
    loss = grpo_trainer.GRPOTrainer._compute_loss(stand_in, None, inputs)
    loss.backward()
    metrics = {name: values[0] for name, values in stand_in._metrics["train"].items()}
    return loss.item(), logps.grad, metrics


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_clipped_policy_loss_equals_trl_grpo(loss_type, beta):
    data = batch(seed=1)
    advantages = group_advantages(data["scores"]).reshape(-1)
    expected, expected_grad, trl_metrics = trl_grpo_loss(
        data, advantages, loss_type, beta, 0.2, 0.28
    )
    logps = data["new"].clone().requires_grad_(True)
    loss, metrics = clipped_policy_loss(
        logps,
        data["old"],
        advantages,
        data["mask"],
        ref_token_logps=data["ref"],
        beta=beta,
        epsilon_low=0.2,
        epsilon_high=0.28,
        loss_type=loss_type,
        max_length=data["mask"].shape[1],
    )
    loss.backward()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(logps.grad, expected_grad, rtol=1e-12, atol=1e-15)
    assert 0 < metrics["clip_ratio"] < 1  # the batch exercises the clip
    for ours, theirs in [
        ("clip_ratio/low", "clip_ratio/low_mean"),
        ("clip_ratio/high", "clip_ratio/high_mean"),
        ("clip_ratio", "clip_ratio/region_mean"),
    ] + ([("kl", "kl")] if beta else []):
        assert metrics[ours] == pytest.approx(trl_metrics[theirs], rel=METRIC_RTOL), ours


# --- RLOO ----------------------------------------------------------------------------------


def trl_rloo_advantages(data, beta, normalize_advantages):
    """TRL 1.16 rloo_trainer.py, _generate_and_score_completions, lines 1664-1699 (one reward
    function, every completion scorable, no reward clipping)."""
    completion_mask = data["mask"].long()
    rewards = data["scores"].reshape(-1)
    num_generations = data["samples"]
    if beta != 0.0:
        per_token_kl = data["old"] - data["ref"]
        kl = (per_token_kl * completion_mask).sum(-1)
        rewards = rewards - beta * kl
    grouped_rewards = rewards.view(-1, num_generations)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)
    baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
    baselines = baselines.view(-1)
    advantages = rewards - baselines
    if normalize_advantages:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("beta", [0.0, 0.05])
@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_equal_trl(beta, normalize):
    data = batch(seed=2, prompts=3, samples=4)
    expected = trl_rloo_advantages(data, beta, normalize)
    got = rloo_advantages(
        data["scores"],
        data["old"],
        data["mask"],
        ref_token_logps=data["ref"],
        beta=beta,
        normalize=normalize,
    )
    rtol = NANSTD_RTOL if normalize else 1e-12
    torch.testing.assert_close(got, expected, rtol=rtol, atol=1e-12)


def test_rloo_loss_equals_trl():
    """RLOOTrainer._compute_loss itself, with the advantages above."""
    data = batch(seed=3, prompts=3, samples=4)
    advantages = trl_rloo_advantages(data, 0.05, False)
    old_logps = (data["old"] * data["mask"]).sum(1)  # rloo_trainer.py line 1610
    trl_logps = data["new"].clone().requires_grad_(True)
    stand_in = trainer_stand_in(trl_logps, epsilon_low=0.2, epsilon_high=0.28)
    inputs = completion_inputs(data["mask"])
    inputs.update(advantages=advantages, old_logps=old_logps)
    expected = rloo_trainer.RLOOTrainer._compute_loss(stand_in, None, inputs)
    expected.backward()
    trl_metrics = {name: values[0] for name, values in stand_in._metrics["train"].items()}

    logps = data["new"].clone().requires_grad_(True)
    loss, metrics = rloo_loss(
        logps, data["old"], advantages, data["mask"], epsilon_low=0.2, epsilon_high=0.28
    )
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    # TRL leaves the gradient of padding positions as it is (masked by a multiply): 0 too
    torch.testing.assert_close(logps.grad, trl_logps.grad, rtol=1e-12, atol=1e-15)
    assert 0 < metrics["clip_ratio"] < 1
    for ours, theirs in [
        ("clip_ratio/low", "clip_ratio/low_mean"),
        ("clip_ratio/high", "clip_ratio/high_mean"),
        ("clip_ratio", "clip_ratio/region_mean"),
    ]:
        assert metrics[ours] == pytest.approx(trl_metrics[theirs], rel=METRIC_RTOL), ours


# --- PPO (TRL's former PPOTrainer; TRL 1.16 has none) --------------------------------------


def trl_masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def trl_masked_whiten(values, mask, shift_mean=True):
    """trl/core.py (later trl/trainer/utils.py) masked_mean / masked_var / masked_whiten."""
    mean = trl_masked_mean(values, mask)
    variance = trl_masked_mean((values - mean) ** 2, mask) * mask.sum() / (mask.sum() - 1)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened += mean
    return whitened


def trl_ppo_advantages(data, kl_coef, gamma, lam, whiten_rewards):
    """TRL's PPOTrainer.train, steps "compute rewards" to "compute advantages and returns"
    (kl_estimator "k1"), with the score on the last valid token: TRL put it one position
    further (sequence_lengths_p1) when the response stopped early, see docs/methods.md."""
    padding_mask = ~data["mask"]
    logprobs = torch.masked_fill(data["old"], padding_mask, 1.0)  # INVALID_LOGPROB
    ref_logprobs = torch.masked_fill(data["ref"], padding_mask, 1.0)
    values = torch.masked_fill(data["values"], padding_mask, 0)
    sequence_lengths = data["mask"].sum(1) - 1
    kl = -(ref_logprobs - logprobs)
    rewards = -kl_coef * kl
    actual_start = torch.arange(rewards.size(0))
    rewards[actual_start, sequence_lengths] += data["scores"].reshape(-1)  # TRL: [[...]]
    if whiten_rewards:
        rewards = trl_masked_whiten(rewards, mask=~padding_mask, shift_mean=False)
        rewards = torch.masked_fill(rewards, padding_mask, 0)
    lastgaelam = 0
    advantages_reversed = []
    gen_length = rewards.shape[1]
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], axis=1)
    returns = advantages + values
    advantages = trl_masked_whiten(advantages, ~padding_mask)
    advantages = torch.masked_fill(advantages, padding_mask, 0)
    return advantages, returns


@pytest.mark.parametrize("whiten_rewards", [False, True])
def test_ppo_advantages_equal_trl(whiten_rewards):
    data = batch(seed=4)
    expected, expected_returns = trl_ppo_advantages(data, 0.05, 1.0, 0.95, whiten_rewards)
    advantages, returns = ppo_advantages(
        data["scores"].reshape(-1),
        data["old"],
        data["ref"],
        data["values"],
        data["mask"],
        kl_coef=0.05,
        gamma=1.0,
        lam=0.95,
        whiten_rewards=whiten_rewards,
    )
    torch.testing.assert_close(advantages, expected, rtol=1e-10, atol=1e-12)
    mask = data["mask"]
    torch.testing.assert_close(returns[mask], expected_returns[mask], rtol=1e-12, atol=1e-12)


def test_ppo_loss_equals_trl():
    """TRL's PPOTrainer.train, the minibatch loss: pg_loss + vf_coef * vf_loss."""
    data = batch(seed=5)
    mask, padding_mask = data["mask"], ~data["mask"]
    advantages, returns = trl_ppo_advantages(data, 0.05, 1.0, 0.95, False)
    old_values = data["values"].masked_fill(padding_mask, 0)
    generator = torch.Generator().manual_seed(6)
    moved = old_values + (torch.rand(old_values.shape, generator=generator, dtype=F64) - 0.5)

    def trl_loss(new_logprobs, vpred):
        vpred = torch.masked_fill(vpred, padding_mask, 0)
        vpredclipped = torch.clamp(vpred, old_values - 0.2, old_values + 0.2)
        vf_losses1 = torch.square(vpred - returns)
        vf_losses2 = torch.square(vpredclipped - returns)
        vf_loss = 0.5 * trl_masked_mean(torch.max(vf_losses1, vf_losses2), ~padding_mask)
        new_logprobs = torch.masked_fill(new_logprobs, padding_mask, 1.0)
        ratio = torch.exp(new_logprobs - torch.masked_fill(data["old"], padding_mask, 1.0))
        pg_losses = -advantages * ratio
        pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - 0.2, 1.0 + 0.2)
        pg_loss = trl_masked_mean(torch.max(pg_losses, pg_losses2), ~padding_mask)
        return pg_loss + 0.1 * vf_loss

    theirs = [data["new"].clone().requires_grad_(True), moved.clone().requires_grad_(True)]
    expected = trl_loss(*theirs)
    expected.backward()
    ours = [data["new"].clone().requires_grad_(True), moved.clone().requires_grad_(True)]
    loss, metrics = ppo_loss(
        ours[0], data["old"], advantages, ours[1], old_values, returns, mask,
        epsilon=0.2, vf_coef=0.1, cliprange_value=0.2,
    )  # fmt: skip
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert 0 < metrics["clip_ratio"] < 1 and 0 < metrics["value_clip_ratio"] < 1
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-12, atol=1e-15)
