"""The online losses (GRPO, RLOO, PPO) against values and gradients worked out by hand.

Every expected number below is computed from the formula with plain Python `math` on small
tensors; gradients are checked against the hand derivation or with `gradcheck` in float64.
TRL's own code on the same tensors: test_online_vs_trl.py.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from preftune.losses.online import (
    AdaptiveKLController,
    clipped_policy_loss,
    group_advantages,
    kl_shaped_token_rewards,
    leave_one_out_baseline,
    ppo_advantages,
    ppo_loss,
    rloo_advantages,
    rloo_loss,
    value_loss,
    whiten,
)

F64 = torch.float64


def t(rows, dtype=F64):
    return torch.tensor(rows, dtype=dtype)


def assert_rows(tensor, rows, rel=1e-12, abs=1e-12):
    """`tensor` equals the hand-computed nested list `rows`."""
    torch.testing.assert_close(tensor.detach(), t(rows, tensor.dtype), rtol=rel, atol=abs)


# --- GRPO advantages ---------------------------------------------------------------------


def test_group_advantages_standardise_within_each_prompt():
    rewards = [[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 5.0]]
    expected = []
    for group in rewards:
        mean = sum(group) / 4
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / 3)  # Bessel, as TRL
        expected.append([(r - mean) / (std + 1e-4) for r in group])
    # group 1: mean 1/2, std 1/sqrt(3); group 2: mean 2.75, std 1.5
    assert expected[1][3] == pytest.approx(2.25 / 1.5001)
    assert_rows(group_advantages(t(rewards)), expected, rel=1e-12)


def test_group_advantages_without_scaling_is_dr_grpo_and_batch_scaling_uses_every_reward():
    rewards = [[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 5.0]]
    centred = [[r - sum(g) / 4 for r in g] for g in rewards]
    for scale in (False, "none"):
        assert_rows(group_advantages(t(rewards), scale=scale), centred)
    batch_std = statistics.stdev([r for group in rewards for r in group])
    by_batch = [[c / (batch_std + 1e-4) for c in row] for row in centred]
    assert_rows(group_advantages(t(rewards), scale="batch"), by_batch)


def test_a_prompt_whose_samples_tie_gets_no_advantage_and_no_gradient_flows_to_rewards():
    rewards = t([[0.5, 0.5, 0.5]]).requires_grad_(True)
    advantages = group_advantages(rewards)
    assert advantages.tolist() == [[0.0, 0.0, 0.0]] and not advantages.requires_grad


def test_group_methods_need_two_samples_per_prompt():
    for function in (group_advantages, leave_one_out_baseline):
        with pytest.raises(ValueError, match="at least 2 samples per prompt"):
            function(t([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="scale must be"):
        group_advantages(t([[1.0, 2.0]]), scale="prompt")


# --- RLOO --------------------------------------------------------------------------------


def test_leave_one_out_baseline_subtracts_the_mean_of_the_other_samples():
    rewards = [[3.0, 1.0, 2.0, 6.0], [4.0, 0.0, 0.0, 0.0]]
    expected = [[r - (sum(g) - r) / 3 for r in g] for g in rewards]
    assert expected[0] == [3 - 3, 1 - 11 / 3, 2 - 10 / 3, 6 - 2]
    assert_rows(leave_one_out_baseline(t(rewards)), expected, rel=1e-12)


def rloo_batch():
    """One prompt, three samples of up to 2 tokens (the third 1 token long, garbage after)."""
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    old = t([[-1.0, -0.5], [-2.0, -1.0], [-0.3, float("nan")]])
    ref = t([[-1.2, -0.4], [-1.0, -1.5], [-0.5, float("inf")]])
    return mask, old, ref


def test_rloo_advantages_penalise_the_summed_log_ratio_then_leave_one_out():
    mask, old, ref = rloo_batch()
    scores = [1.0, 0.0, 0.5]
    kl = [(-1.0 + 1.2) + (-0.5 + 0.4), (-2.0 + 1.0) + (-1.0 + 1.5), -0.3 + 0.5]  # 0.1, -0.5, 0.2
    shaped = [s - 0.1 * k for s, k in zip(scores, kl, strict=True)]
    expected = [r - (sum(shaped) - r) / 2 for r in shaped]
    got = rloo_advantages(t([scores]), old, mask, ref_token_logps=ref, beta=0.1)
    assert_rows(got, expected, rel=1e-12)
    plain = rloo_advantages(t([scores]), old, mask, beta=0.0)
    assert_rows(plain, [1 - 0.25, 0 - 0.75, 0.5 - 0.5])
    normalized = rloo_advantages(t([scores]), old, mask, ref_token_logps=ref, normalize=True)
    assert sum(normalized.tolist()) == pytest.approx(0, abs=1e-12)
    assert statistics.stdev(normalized.tolist()) == pytest.approx(1, rel=1e-3)  # eps 1e-4
    with pytest.raises(ValueError, match="needs ref_token_logps"):
        rloo_advantages(t([scores]), old, mask, beta=0.1)


def test_rloo_loss_clips_the_whole_sequence_ratio():
    mask, old, _ = rloo_batch()
    log_ratios = [math.log(1.5), math.log(0.9), math.log(0.7)]  # per sequence
    new = old.clone()
    new[:, 0] += t(log_ratios)  # the whole change on the first token
    new = new.requires_grad_(True)
    advantages = t([1.0, -0.5, -2.0])
    loss, metrics = rloo_loss(new, old, advantages, mask, epsilon_low=0.2, epsilon_high=0.28)
    # seq 1: A > 0, ratio 1.5 clipped at 1.28; seq 2: ratio 0.9 inside; seq 3: A < 0, ratio 0.7
    # below 0.8: -min(0.7 A, 0.8 A) = 0.8 * 2
    per_sequence = [-1.28 * 1.0, 0.9 * 0.5, 0.8 * 2.0]
    assert loss.item() == pytest.approx(sum(per_sequence) / 3, rel=1e-12)
    loss.backward()
    # d/d logp_t of -ratio A / N = -ratio A / N on every valid token of an unclipped sequence
    row_grad = [0.0, 0.9 * 0.5 / 3, 0.0]
    expected = [[g, g] for g in row_grad]
    expected[2][1] = 0.0  # padding
    assert_rows(new.grad, expected, abs=1e-12)
    assert metrics == pytest.approx(
        {"clip_ratio/low": 1 / 3, "clip_ratio/high": 1 / 3, "clip_ratio": 2 / 3}
    )


# --- the clipped policy loss (GRPO, DAPO, Dr. GRPO, PPO's policy term) ----------------------


def policy_batch():
    """Two sequences (3 and 2 valid tokens) whose token ratios are chosen to hit each clip."""
    mask = torch.tensor([[True, True, True], [True, True, False]])
    old = t([[-1.0, -2.0, -0.5], [-1.5, -0.2, 0.0]])
    ratios = [[1.0, 1.5, 0.5], [1.1, 0.7, 1.0]]
    new = old + t([[math.log(r) for r in row] for row in ratios])
    new[1, 2] = float("nan")  # padding holds garbage
    return new.requires_grad_(True), old, mask, ratios


# eps_low 0.2, eps_high 0.28, A = +1 for the first sequence, -1 for the second:
#   seq 1: ratio 1 -> -1; ratio 1.5 > 1.28 clipped -> -1.28; ratio 0.5 (A > 0: min keeps it) -> -0.5
#   seq 2: ratio 1.1 -> +1.1; ratio 0.7 < 0.8 (A < 0: min takes the clip) -> +0.8
TOKEN_LOSSES = [[-1.0, -1.28, -0.5], [1.1, 0.8]]
# gradient of each token's loss w.r.t. its log-prob: -A ratio where the ratio is not clipped
TOKEN_GRADS = [[-1.0, 0.0, -0.5], [1.1, 0.0]]
LOSS_TYPES = {
    # loss_type: (value, d loss / d token loss of sequence i), from TOKEN_LOSSES by hand
    "grpo": ((-2.78 / 3 + 1.9 / 2) / 2, [1 / 6, 1 / 4]),
    "bnpo": ((-2.78 + 1.9) / 5, [1 / 5, 1 / 5]),
    "dr_grpo": ((-2.78 + 1.9) / (2 * 4), [1 / 8, 1 / 8]),  # max_length 4
    "dapo": ((-2.78 + 1.9) / 10, [1 / 10, 1 / 10]),  # 10 tokens in the generation batch
}


@pytest.mark.parametrize("loss_type", sorted(LOSS_TYPES))
def test_clipped_policy_loss_value_gradient_and_clip_shares(loss_type):
    new, old, mask, _ = policy_batch()
    loss, metrics = clipped_policy_loss(
        new,
        old,
        t([1.0, -1.0]),
        mask,
        epsilon_low=0.2,
        epsilon_high=0.28,
        loss_type=loss_type,
        max_length=4,
        total_tokens=10,
    )
    value, scales = LOSS_TYPES[loss_type]
    assert sum(map(sum, TOKEN_LOSSES)) == pytest.approx(-2.78 + 1.9)
    assert loss.item() == pytest.approx(value, rel=1e-12)
    loss.backward()
    expected = [[g * scale for g in row] for row, scale in zip(TOKEN_GRADS, scales, strict=True)]
    expected[1].append(0.0)  # padding
    assert_rows(new.grad, expected, abs=1e-12)
    assert metrics == pytest.approx(
        {"clip_ratio/low": 1 / 5, "clip_ratio/high": 1 / 5, "clip_ratio": 2 / 5}
    )


def test_per_token_advantages_equal_the_broadcast_sequence_ones():
    new, old, mask, _ = policy_batch()
    per_sequence, _ = clipped_policy_loss(new, old, t([1.0, -1.0]), mask, loss_type="bnpo")
    per_token = t([[1.0] * 3, [-1.0, -1.0, float("nan")]])
    broadcast, _ = clipped_policy_loss(new, old, per_token, mask, loss_type="bnpo")
    assert broadcast.item() == pytest.approx(per_sequence.item(), rel=1e-15)


def test_k3_kl_to_the_reference_adds_beta_times_its_token_mean():
    new, old, mask, _ = policy_batch()
    ref = new.detach() + t([[0.3, -0.2, 0.0], [0.5, 0.1, float("-inf")]])
    beta = 0.04
    base, _ = clipped_policy_loss(new, old, t([1.0, -1.0]), mask, loss_type="bnpo")
    loss, metrics = clipped_policy_loss(
        new, old, t([1.0, -1.0]), mask, ref_token_logps=ref, beta=beta, loss_type="bnpo"
    )
    gaps = [0.3, -0.2, 0.0, 0.5, 0.1]  # log pi_ref - log pi on the valid tokens
    k3 = [math.exp(x) - x - 1 for x in gaps]
    assert metrics["kl"] == pytest.approx(sum(k3) / 5, rel=1e-12)
    assert loss.item() - base.item() == pytest.approx(beta * sum(k3) / 5, rel=1e-9)
    # d k3 / d log pi = 1 - exp(log pi_ref - log pi)
    kl_only = new.detach().clone().requires_grad_(True)
    loss, _ = clipped_policy_loss(
        kl_only, kl_only.detach(), t([0.0, 0.0]), mask, ref_token_logps=ref, beta=beta,
        loss_type="bnpo",
    )  # fmt: skip
    loss.backward()
    grads = [beta * (1 - math.exp(x)) / 5 for x in gaps]
    assert_rows(kl_only.grad[mask], grads, rel=1e-9)


def test_misuse_is_refused():
    new, old, mask, _ = policy_batch()
    advantages = t([1.0, -1.0])
    with pytest.raises(ValueError, match="loss_type must be one of"):
        clipped_policy_loss(new, old, advantages, mask, loss_type="token")
    with pytest.raises(ValueError, match="needs ref_token_logps"):
        clipped_policy_loss(new, old, advantages, mask, beta=0.1)
    with pytest.raises(ValueError, match="needs max_length"):
        clipped_policy_loss(new, old, advantages, mask, loss_type="dr_grpo")


def smooth_inputs(seed=0):
    """Random float64 log-probs whose ratios stay well inside the clip range (no kinks)."""
    generator = torch.Generator().manual_seed(seed)
    old = -torch.rand(3, 4, generator=generator, dtype=F64) * 3
    new = old + (torch.rand(3, 4, generator=generator, dtype=F64) - 0.5) * 0.2
    ref = old + (torch.rand(3, 4, generator=generator, dtype=F64) - 0.5)
    mask = torch.tensor([[True] * 4, [True, True, True, False], [True, False, False, False]])
    return new.requires_grad_(True), old, ref, mask


@pytest.mark.parametrize("loss_type", sorted(LOSS_TYPES))
def test_clipped_policy_loss_gradcheck(loss_type):
    new, old, ref, mask = smooth_inputs()
    advantages = t([0.7, -1.2, 0.4])

    def loss(logps):
        return clipped_policy_loss(
            logps, old, advantages, mask, ref_token_logps=ref, beta=0.1, loss_type=loss_type,
            max_length=5,
        )[0]  # fmt: skip

    assert torch.autograd.gradcheck(loss, (new,))


def test_rloo_and_value_losses_gradcheck():
    new, old, _, mask = smooth_inputs(1)
    advantages = t([0.7, -1.2, 0.4])
    assert torch.autograd.gradcheck(lambda x: rloo_loss(x, old, advantages, mask)[0], (new,))
    values = (new.detach() + 1).requires_grad_(True)
    returns = values.detach() + 0.05  # inside the value clip
    assert torch.autograd.gradcheck(
        lambda v: value_loss(v, values.detach() - 0.01, returns, mask, cliprange_value=0.2),
        (values,),
    )


# --- PPO -----------------------------------------------------------------------------------


def test_kl_shaped_token_rewards_put_the_score_on_the_last_valid_token():
    mask = torch.tensor([[True, True, True], [True, False, False]])
    logps = t([[-1.0, -2.0, -0.5], [-0.3, float("nan"), 0.0]])
    ref = t([[-1.5, -1.0, -0.5], [-0.1, 0.0, float("inf")]])
    rewards = kl_shaped_token_rewards(t([2.0, -1.0]), logps, ref, mask, kl_coef=0.1)
    expected = [[-0.1 * 0.5, -0.1 * -1.0, 2.0 - 0.1 * 0.0], [-1.0 - 0.1 * -0.2, 0.0, 0.0]]
    assert_rows(rewards, expected, rel=1e-12)


def test_whiten_standardises_over_the_valid_positions():
    values = [1.0, 2.0, 4.0, 9.0]
    mask = torch.tensor([[True, True, False], [True, True, False]])
    tensor = t([[1.0, 2.0, float("nan")], [4.0, 9.0, 5.0]])
    mean, std = statistics.mean(values), statistics.stdev(values)
    expected = [(v - mean) / math.sqrt(std**2 + 1e-8) for v in values]
    assert_rows(whiten(tensor, mask)[mask], expected, rel=1e-12)
    assert whiten(tensor, mask)[~mask].tolist() == [0.0, 0.0]
    kept = [e + mean for e in expected]
    assert_rows(whiten(tensor, mask, shift_mean=False)[mask], kept)
    with pytest.raises(ValueError, match="at least 2 valid positions"):
        whiten(tensor, torch.tensor([[True, False, False], [False] * 3]))


def test_value_loss_takes_the_larger_of_the_clipped_and_unclipped_errors():
    values = t([[1.0, 0.0, 0.5], [0.3, 7.0, 7.0]]).requires_grad_(True)
    old = t([[0.0, 0.0, 0.6], [0.0, 0.0, 0.0]])
    returns = t([[2.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    # V_clip = clip(V, old - 0.2, old + 0.2) = 0.2, 0, 0.5, 0.2
    unclipped = [(1 - 2) ** 2, (0 - 1) ** 2, (0.5 - 0) ** 2, (0.3 + 1) ** 2]
    clipped = [(0.2 - 2) ** 2, (0 - 1) ** 2, (0.5 - 0) ** 2, (0.2 + 1) ** 2]
    larger = [max(u, c) for u, c in zip(unclipped, clipped, strict=True)]
    loss = value_loss(values, old, returns, mask, cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.5 * sum(larger) / 4, rel=1e-12)
    loss.backward()
    # gradient 0.5 * 2 (V - R) / 4 where the unclipped error is the larger, 0 where the clip is
    # (the clipped V is constant there); the third token's clip is not active (0.5 in range)
    expected = [[0.0, (0 - 1) / 4, (0.5 - 0) / 4], [(0.3 + 1) / 4, 0.0, 0.0]]
    assert_rows(values.grad, expected, rel=1e-12)


def test_ppo_advantages_by_hand():
    """Two sequences of 2 valid tokens, gamma 0.9, lambda 0.5, kl_coef 0.1."""
    mask = torch.tensor([[True, True], [True, True]])
    old = t([[-1.0, -2.0], [-0.5, -0.5]])
    ref = t([[-1.2, -2.0], [-0.5, -1.0]])
    values = t([[0.5, 1.0], [0.0, -0.5]])
    scores = [1.0, -1.0]
    gamma, lam = 0.9, 0.5
    rewards = [[-0.1 * 0.2, scores[0]], [0.0, scores[1] - 0.1 * 0.5]]
    raw, returns = [], []
    for r, v in zip(rewards, values.tolist(), strict=True):
        delta1 = r[1] - v[1]  # the last token: nothing after it
        delta0 = r[0] + gamma * v[1] - v[0]
        a1, a0 = delta1, delta0 + gamma * lam * delta1
        raw.append([a0, a1])
        returns.append([a0 + v[0], a1 + v[1]])
    flat = [a for row in raw for a in row]
    mean, std = statistics.mean(flat), statistics.stdev(flat)
    whitened = [[(a - mean) / math.sqrt(std**2 + 1e-8) for a in row] for row in raw]
    advantages, got_returns = ppo_advantages(
        t(scores), old, ref, values, mask, kl_coef=0.1, gamma=gamma, lam=lam
    )
    assert_rows(advantages, whitened, rel=1e-9)
    assert_rows(got_returns, returns, rel=1e-12)


def test_ppo_loss_is_the_token_mean_policy_loss_plus_the_weighted_value_loss():
    new, old, mask, ratios = policy_batch()
    advantages = t([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    values = t([[0.5, 0.5, 0.5], [0.5, 0.5, 0.0]])
    returns = values + 1.0
    loss, metrics = ppo_loss(
        new, old, advantages, values, values, returns, mask, epsilon=0.2, vf_coef=0.1
    )
    # epsilon 0.2 both sides: ratio 1.5 clips at 1.2 instead of 1.28
    policy = (-1.0 - 1.2 - 0.5 + 1.1 + 0.8) / 5
    # V = V_old, so V_clip = V: each valid token's error (V - R)^2 = 1
    assert metrics["policy_loss"] == pytest.approx(policy, rel=1e-12)
    assert metrics["value_loss"] == pytest.approx(0.5, rel=1e-12)
    assert loss.item() == pytest.approx(policy + 0.1 * 0.5, rel=1e-12)
    assert metrics["value_clip_ratio"] == 0.0


def test_adaptive_kl_controller_follows_ziegler_et_al():
    controller = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    # KL 6.6: error 6.6 / 6 - 1 = 0.1; beta *= 1 + 0.1 * 256 / 10000
    assert controller.update(6.6, n_steps=256) == pytest.approx(0.2 * (1 + 0.1 * 256 / 1e4))
    before = controller.value
    # far below the target: the error is clipped at -0.2
    assert controller.update(0.0, n_steps=500) == pytest.approx(before * (1 - 0.2 * 500 / 1e4))
    resumed = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    resumed.load_state_dict(controller.state_dict())
    assert resumed.value == controller.value
    with pytest.raises(ValueError, match="must be > 0"):
        AdaptiveKLController(0.1, target=0.0, horizon=1)
