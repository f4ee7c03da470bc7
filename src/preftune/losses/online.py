"""Online RL losses: GRPO, RLOO and PPO on responses sampled from the policy during training.

Shapes: N sampled sequences (P prompts x G samples each, prompt-major: row p * G + g), L
response-token positions; `mask` bool [N, L], True on the valid tokens, which come first.
Per-token log-probs: `token_logps` (the policy being trained, with gradients),
`old_token_logps` (the policy that sampled the batch), `ref_token_logps` (the reference).
Whatever padding positions hold is ignored. The online training loop calls, per generation
batch and then for each of its num_iterations updates:

- grpo: `group_advantages` on the rewards [P, G], then `clipped_policy_loss`;
- rloo: `rloo_advantages` (KL-shaped reward, leave-one-out baseline), then `rloo_loss`;
- ppo: `ppo_advantages` (KL-shaped token rewards, GAE, whitening), then `ppo_loss`, and
  `AdaptiveKLController.update` with the batch's KL when the KL coefficient adapts.
"""

from __future__ import annotations

import torch

from preftune.losses.ppo import gae, masked_mean, on_last_token
from preftune.losses.registry import GRPO_LOSS_TYPES, REWARD_SCALINGS

WHITEN_EPS = 1e-8  # as TRL's masked_whiten


def group_advantages(rewards: torch.Tensor, *, scale=True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's outcome-supervised advantages (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300,
    sec. 4.1.2): every sample of a prompt gets A_i = (r_i - mean(r)) / (std(r) + eps), mean
    and std over the G samples of its prompt (std with Bessel's correction, as TRL 1.16).

    scale: True or "group" as above; "batch": the std of the whole batch (TRL's
    scale_rewards="batch"); False or "none": A_i = r_i - mean(r), no division (Dr. GRPO, Liu et
    al. 2025, arXiv 2503.20783: the std favours prompts whose rewards barely vary).
    rewards [P, G] -> advantages [P, G], without gradient.

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))  # mean 1/2, std 1/sqrt(3)
    tensor([[ 0.8659, -0.8659, -0.8659,  0.8659]])
    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), scale=False)
    tensor([[ 0.5000, -0.5000, -0.5000,  0.5000]])
    """
    _check_groups(rewards)
    rewards = rewards.detach()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale in (False, "none"):
        return centred
    if scale in (True, "group"):
        return centred / (rewards.std(dim=1, keepdim=True) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    raise ValueError(f"scale must be true, false or one of {REWARD_SCALINGS}, got {scale!r}")


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO advantages (Kool et al. 2019, 'Buy 4 REINFORCE samples, get a baseline for free!';
    Ahmadian et al. 2024, arXiv 2402.14740): each of the K samples of a prompt is
    measured against the mean reward of the other K - 1, A_i = r_i - sum_{j != i} r_j / (K - 1).
    rewards [P, K] -> advantages [P, K], without gradient.

    >>> leave_one_out_baseline(torch.tensor([[3.0, 1.0, 2.0]]))  # 3 - 1.5, 1 - 2.5, 2 - 2
    tensor([[ 1.5000, -1.5000,  0.0000]])
    """
    _check_groups(rewards)
    rewards = rewards.detach()
    others = rewards.sum(dim=1, keepdim=True) - rewards
    return rewards - others / (rewards.shape[1] - 1)


def _check_groups(rewards: torch.Tensor) -> None:
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            f"rewards must be [prompts, samples] with at least 2 samples per prompt, got "
            f"shape {tuple(rewards.shape)}"
        )


def _clipped_surrogate(log_ratio, advantages, epsilon_low: float, epsilon_high: float):
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv 1707.06347, eq. 7), as a loss, with
    DAPO's asymmetric clip (Yu et al. 2025, arXiv 2503.14476, sec. 3.1):
    -min(ratio A, clip(ratio, 1 - eps_low, 1 + eps_high) A), and where each bound binds."""
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    loss = -torch.minimum(ratio * advantages, clipped * advantages)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return loss, low, high


def _clip_metrics(low, high, mask, dim) -> dict[str, float]:
    share = {"clip_ratio/low": low, "clip_ratio/high": high, "clip_ratio": low | high}
    return {name: masked_mean(hit.double(), mask, dim).item() for name, hit in share.items()}


def k3_kl(token_logps, ref_token_logps, mask) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate r - log r - 1 with r = pi_ref / pi (Schulman 2020,
    'Approximating KL divergence', k3; DeepSeekMath eq. 4): unbiased, never negative. [N, L],
    zero on padding, with gradient through `token_logps`."""
    log_r = (ref_token_logps.detach() - token_logps).masked_fill(~mask, 0.0)
    return torch.expm1(log_r) - log_r


def clipped_policy_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_token_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    loss_type: str = "grpo",
    max_length: int | None = None,
    total_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's objective as a loss (Shao et al. 2024, arXiv 2402.03300, eq. 3), per token:

      l_t = -min(ratio_t A, clip(ratio_t, 1 - eps_low, 1 + eps_high) A) + beta KL_t,
      ratio_t = pi(y_t) / pi_old(y_t), KL_t the k3 estimate to the reference (eq. 4),

    with DAPO's asymmetric clip (Yu et al. 2025, arXiv 2503.14476, sec. 3.1: eps_high > eps_low
    lets unlikely tokens grow). advantages: [N] (one per sequence, GRPO / RLOO) or [N, L] (per
    token, PPO). How the l_t of a batch become one number, `loss_type`:
      "grpo"     each sequence's token mean, then the mean over sequences (the GRPO paper);
      "bnpo"     the mean over every valid token of the batch;
      "dapo"     sum over the batch / total_tokens, the valid tokens of the whole generation
                 batch (DAPO sec. 3.3; default: this batch's, which equals "bnpo");
      "dr_grpo"  sum over the batch / (N * max_length), a constant (Dr. GRPO, Liu et al. 2025,
                 arXiv 2503.20783), removing the length bias of per-sequence means.
    As TRL 1.16's GRPOTrainer._compute_loss (token-level importance sampling). Metrics: "kl"
    (mean k3 per valid token, when the reference is given), "clip_ratio/low", "clip_ratio/high"
    and "clip_ratio" (the share of tokens whose ratio a bound clips).

    Two sequences of two tokens, the second one token long, sampled by the policy itself:

    >>> logps = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    >>> mask = torch.tensor([[True, True], [True, False]])
    >>> loss, metrics = clipped_policy_loss(logps, logps.detach(), torch.tensor([1.0, -2.0]), mask)
    >>> loss  # ratio 1: each sequence's mean of -A, then their mean: (-1 + 2) / 2
    tensor(0.5000, grad_fn=<MeanBackward0>)
    >>> loss.backward(); logps.grad  # -A / (2 * tokens of the sequence); padding gets 0
    tensor([[-0.2500, -0.2500],
            [ 1.0000,  0.0000]])
    """
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {GRPO_LOSS_TYPES}, got {loss_type!r}")
    if beta and ref_token_logps is None:
        raise ValueError("beta > 0 needs ref_token_logps (the KL is to the reference)")
    if loss_type == "dr_grpo" and max_length is None:
        raise ValueError("loss_type 'dr_grpo' needs max_length (the most tokens a sample may have)")
    advantages = advantages.detach()
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    log_ratio = (token_logps - old_token_logps.detach()).masked_fill(~mask, 0.0)
    per_token, low, high = _clipped_surrogate(log_ratio, advantages, epsilon_low, epsilon_high)
    metrics = {}
    if ref_token_logps is not None:
        kl = k3_kl(token_logps, ref_token_logps, mask)
        per_token = per_token + beta * kl
        metrics["kl"] = masked_mean(kl.detach(), mask, dim=None).item()
    metrics.update(_clip_metrics(low, high, mask, dim=None))
    if loss_type == "grpo":
        return masked_mean(per_token, mask).mean(), metrics
    total = per_token.masked_fill(~mask, 0.0).sum()
    if loss_type == "dr_grpo":
        return total / (mask.shape[0] * max_length), metrics
    tokens = (
        mask.sum().clamp(min=1) if total_tokens is None or loss_type == "bnpo" else total_tokens
    )
    return total / tokens, metrics


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's summed log-prob over its valid tokens, [N]."""
    return token_logps.masked_fill(~mask, 0.0).sum(dim=-1)


def rloo_advantages(
    scores: torch.Tensor,
    old_token_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_token_logps: torch.Tensor | None = None,
    beta: float = 0.05,
    normalize: bool = False,
    eps: float = 1e-4,
) -> torch.Tensor:
    """RLOO's advantages (Ahmadian et al. 2024, arXiv 2402.14740), as TRL 1.16's
    RLOOTrainer computes them once per generation batch:

      R_i = score_i - beta sum_t (log pi_old(y_t) - log pi_ref(y_t))    (the KL-shaped reward,
            the sequence's summed k1 KL estimate; the reward of the RLHF objective)
      A_i = R_i - mean of R_j over the other samples of its prompt     (`leave_one_out_baseline`)

    normalize: then A <- (A - mean) / (std + eps) over the batch (TRL's normalize_advantages).
    scores [P, K]; token tensors [P * K, L], prompt-major. Returns [P * K], without gradient.

    >>> old = torch.tensor([[-1.0], [-2.0]]); ref = torch.tensor([[-1.5], [-1.5]])
    >>> rloo_advantages(torch.tensor([[1.0, 0.0]]), old, torch.ones(2, 1, dtype=torch.bool),
    ...                 ref_token_logps=ref, beta=0.1)  # R = 1 - 0.05, 0 + 0.05
    tensor([ 0.9000, -0.9000])
    """
    rewards = scores.detach().to(old_token_logps.dtype)
    if beta:
        if ref_token_logps is None:
            raise ValueError("beta > 0 needs ref_token_logps (the KL is to the reference)")
        kl = sequence_logps(old_token_logps.detach() - ref_token_logps.detach(), mask)
        rewards = rewards - beta * kl.view_as(rewards)
    advantages = leave_one_out_baseline(rewards).reshape(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + eps)
    return advantages


def rloo_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE with RLOO's advantages (Ahmadian et al. 2024, arXiv 2402.14740) and a
    clipped sequence-level importance ratio for the num_iterations updates on one batch, as
    TRL 1.16's RLOOTrainer._compute_loss:

      loss = mean_i -min(ratio_i A_i, clip(ratio_i, 1 - eps_low, 1 + eps_high) A_i),
      ratio_i = pi(y_i) / pi_old(y_i) over the whole sequence,

    with A from `rloo_advantages` [N]. On the batch's first update ratio = 1 and the gradient
    is REINFORCE's -mean_i A_i grad log pi(y_i). Metrics: "clip_ratio/low", "clip_ratio/high",
    "clip_ratio" (shares of sequences clipped).

    >>> logps = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    >>> mask = torch.tensor([[True, True], [True, False]])
    >>> loss, _ = rloo_loss(logps, logps.detach(), torch.tensor([1.0, -1.0]), mask)
    >>> loss.backward(); logps.grad  # -A_i / N on every valid token of sequence i
    tensor([[-0.5000, -0.5000],
            [ 0.5000,  0.0000]])
    """
    log_ratio = sequence_logps(token_logps, mask) - sequence_logps(old_token_logps.detach(), mask)
    per_sequence, low, high = _clipped_surrogate(
        log_ratio, advantages.detach(), epsilon_low, epsilon_high
    )
    every = torch.ones_like(per_sequence, dtype=torch.bool)
    return per_sequence.mean(), _clip_metrics(low, high, every, dim=None)


def kl_shaped_token_rewards(
    scores: torch.Tensor,
    token_logps: torch.Tensor,
    ref_token_logps: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """The per-token reward of RLHF's PPO (Ziegler et al. 2019, arXiv 1909.08593, sec. 2.2;
    Ouyang et al. 2022, arXiv 2203.02155, eq. 2): r_t = -kl_coef (log pi(y_t) - log pi_ref(y_t))
    on every valid token, plus the sequence's score on its last valid token. scores [N]; pass
    the log-probs of the policy that sampled. [N, L], zero on padding, without gradient.

    >>> mask = torch.tensor([[True, True, False]])
    >>> kl_shaped_token_rewards(torch.tensor([2.0]), torch.tensor([[-1.0, -2.0, 0.0]]),
    ...                         torch.tensor([[-1.5, -1.0, 0.0]]), mask, kl_coef=0.1)
    tensor([[-0.0500,  2.1000,  0.0000]])
    """
    log_ratio = (token_logps.detach() - ref_token_logps.detach()).masked_fill(~mask, 0.0)
    return on_last_token(mask, scores.detach().to(log_ratio.dtype)) - kl_coef * log_ratio


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-8) over the valid positions of the whole batch (var with
    Bessel's correction), as the RLHF PPO implementations do for advantages (Ziegler et al.
    2019's lm-human-preferences; TRL's masked_whiten); shift_mean=False adds the mean back,
    only rescaling (used on rewards). Padding becomes 0.

    >>> whiten(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[True, True, False]]))
    tensor([[-0.7071,  0.7071,  0.0000]])
    """
    count = mask.sum()
    if count < 2:
        raise ValueError("whiten needs at least 2 valid positions")
    mean = masked_mean(values, mask, dim=None)
    variance = masked_mean((values - mean) ** 2, mask, dim=None) * count / (count - 1)
    whitened = (values - mean) * torch.rsqrt(variance + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return whitened.masked_fill(~mask, 0.0)


def ppo_advantages(
    scores: torch.Tensor,
    old_token_logps: torch.Tensor,
    ref_token_logps: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    kl_coef: float,
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten_rewards: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's advantages and returns for one generation batch, as the RLHF PPO implementations
    (Ziegler et al. 2019, sec. 2.2; Ouyang et al. 2022; TRL's PPOTrainer) compute them:
    `kl_shaped_token_rewards` (whitened, mean kept, when whiten_rewards), then GAE
    (Schulman et al. 2016, arXiv 1506.02438, eq. 16; `preftune.losses.ppo.gae`) with the value
    head's `values` [N, L] of the sampling policy, returns = A + V, then the advantages
    whitened over the batch. Returns (advantages, returns), both [N, L], without gradient.

    One sequence of two tokens, no KL (policy = reference), score 1, values 0 and 0.5:

    >>> same = torch.tensor([[-1.0, -1.0]])
    >>> advantages, returns = ppo_advantages(torch.tensor([1.0]), same, same,
    ...     torch.tensor([[0.0, 0.5]]), torch.tensor([[True, True]]), kl_coef=0.1)
    >>> returns  # deltas 0.5, 0.5: A = 0.5 + 0.95 * 0.5, 0.5; returns = A + V
    tensor([[0.9750, 1.0000]])
    >>> advantages  # whitened over the batch's two tokens
    tensor([[ 0.7071, -0.7071]])
    """
    rewards = kl_shaped_token_rewards(scores, old_token_logps, ref_token_logps, mask, kl_coef)
    if whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    weights = mask.to(rewards.dtype)
    advantages, returns = gae(rewards, values.masked_fill(~mask, 0.0), weights, gamma, lam)
    return whiten(advantages, mask), returns


def _value_losses(values, old_values, returns, cliprange_value: float):
    clipped = torch.minimum(
        torch.maximum(values, old_values - cliprange_value), old_values + cliprange_value
    )
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped - returns) ** 2
    return torch.maximum(unclipped_loss, clipped_loss), clipped_loss > unclipped_loss


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange_value: float,
) -> torch.Tensor:
    """The clipped value loss of RLHF's PPO (OpenAI baselines' ppo2, Ziegler et al. 2019's
    lm-human-preferences, TRL's PPOTrainer; discussed by Engstrom et al. 2020, arXiv
    2005.12729): 1/2 mean over valid tokens of max((V - R)^2, (V_clip - R)^2), with
    V_clip = clip(V, V_old - c, V_old + c) keeping the new value near the sampling one.

    >>> loss = value_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]),
    ...                   torch.tensor([[2.0, 1.0]]), torch.tensor([[True, True]]),
    ...                   cliprange_value=0.2)
    >>> round(loss.item(), 4)  # V_clip = 0.2, 0: (max(1, 1.8^2) + max(1, 1)) / 4
    1.06
    """
    losses, _ = _value_losses(values, old_values.detach(), returns.detach(), cliprange_value)
    return 0.5 * masked_mean(losses, mask, dim=None)


def ppo_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float = 0.2,
    vf_coef: float = 0.1,
    cliprange_value: float = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The online PPO loss of the RLHF papers (Schulman et al. 2017, arXiv 1707.06347, eq. 9
    without the entropy term; Ziegler et al. 2019; Ouyang et al. 2022), per update of a batch:

      loss = policy + vf_coef * value,
      policy = mean over valid tokens of -min(ratio_t A_t, clip(ratio_t, 1 - eps, 1 + eps) A_t)
      value  = `value_loss`(values, old_values, returns, cliprange_value),

    with A, returns from `ppo_advantages` and ratio_t = pi(y_t) / pi_old(y_t); the KL to the
    reference is in the reward, not the loss. As TRL's former PPOTrainer (TRL 1.16 has none).
    Metrics: "policy_loss", "value_loss", "clip_ratio" (and its /low, /high),
    "value_clip_ratio" (share of tokens whose clipped value loss is the larger).

    >>> logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    >>> values = torch.tensor([[0.5, 0.5]], requires_grad=True)
    >>> loss, metrics = ppo_loss(logps, logps.detach(), torch.tensor([[1.0, -1.0]]), values,
    ...     values.detach(), torch.tensor([[1.5, 0.5]]), torch.tensor([[True, True]]))
    >>> metrics["policy_loss"], metrics["value_loss"]  # (-1 + 1) / 2; (1^2 + 0^2) / 2 / 2
    (0.0, 0.25)
    >>> round(loss.item(), 4)  # 0 + 0.1 * 0.25
    0.025
    """
    policy, metrics = clipped_policy_loss(
        token_logps,
        old_token_logps,
        advantages,
        mask,
        epsilon_low=epsilon,
        epsilon_high=epsilon,
        loss_type="bnpo",
    )
    critic = value_loss(values, old_values, returns, mask, cliprange_value=cliprange_value)
    _, value_clipped = _value_losses(values.detach(), old_values, returns, cliprange_value)
    metrics.update(
        policy_loss=policy.item(),
        value_loss=critic.item(),
        value_clip_ratio=masked_mean(value_clipped.double(), mask, dim=None).item(),
    )
    return policy + vf_coef * critic, metrics


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. 2019 (arXiv 1909.08593, sec. 2.2):
    after each batch, beta <- beta (1 + e n_steps / horizon) with e = clip(KL / target - 1,
    -0.2, 0.2) the proportional error, as their lm-human-preferences and TRL's PPO code.
    `value` is the coefficient to use; `state_dict` / `load_state_dict` carry it over a resume.

    >>> controller = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    >>> round(controller.update(12.0, n_steps=1000), 4)  # error clipped to 0.2: 0.1 * 1.02
    0.102
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got {target}, {horizon}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move the coefficient towards the target KL after a batch of `n_steps` samples."""
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
