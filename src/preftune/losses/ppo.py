"""Offline PPO against a static reference, with +1/-1 rewards on fixed data (the offline PPO
baseline of Ethayarajh et al. 2024, KTO, arXiv 2402.01306).

Token-level: needs per-token tensors [G, R, L] as extra inputs, flattened by the binary view
to [N, L]: `token_logps` (policy, with gradients), `token_ref_logps`, `token_mask` (bool, True
on response tokens; valid tokens first) and `values` (the value head, with gradients).
"""

from __future__ import annotations

import torch

from preftune.losses.responses import LossTerms, Responses


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = -1) -> torch.Tensor:
    """Mean of `values` over the positions the bool `mask` keeps, along `dim` (None: over
    everything); whatever the other positions hold (NaN, inf) is ignored, gradient included."""
    kept = values.masked_fill(~mask, 0.0)
    if dim is None:
        return kept.sum() / mask.sum().clamp(min=1)
    return kept.sum(dim=dim) / mask.sum(dim=dim).clamp(min=1)


def on_last_token(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """[N, L] zeros with `values` [N] on each sequence's last valid token (valid tokens first)."""
    positions = torch.arange(mask.shape[-1], device=mask.device)
    last = (positions * mask).argmax(dim=-1, keepdim=True)
    placed = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    return placed.scatter(-1, last, values[:, None]) * mask


def terminal_rewards(mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """+1 (desirable) or -1 (undesirable) on each response's last valid token, 0 elsewhere."""
    return on_last_token(mask, labels.to(torch.float64) * 2 - 1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016, arXiv 1506.02438), per token:

    delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lam A_{t+1}, with V and A zero
    past the last valid token. Returns (advantages, returns = A + V), both [N, L], no gradient.
    """
    values = values.detach() * mask
    advantages = torch.zeros_like(values)
    next_value = next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[-1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value, next_advantage = values[:, t], advantages[:, t]
    return advantages, advantages + values


def ppo_offline(
    singles: Responses,
    clip_epsilon: float,
    gamma: float,
    lam: float,
    value_coef: float,
    beta: float,
    entropy_coef: float,
) -> LossTerms:
    """Clipped PPO (Schulman et al. 2017, arXiv 1707.06347) on fixed data, old policy = reference.

    Per token: ratio = exp(log pi - log pi_ref); A from GAE on the +1/-1 terminal reward;
    loss = -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) + c_v (V - return)^2 / 2
           + beta KL - eta entropy,
    with KL per token the non-negative estimator exp(-x) - 1 + x, x = log pi - log pi_ref
    (Schulman's k3) and entropy approximated by -log pi of the data token. Each response's
    loss is its token mean, [N]. Metrics: ppo/entropy, ppo/critic_loss, ppo/clip_frac, ppo/kl.
    """
    token_logps, token_ref = singles.extra("token_logps"), singles.extra("token_ref_logps")
    values, mask = singles.extra("values"), singles.extra("token_mask")
    weights = mask.to(token_logps.dtype)
    rewards = terminal_rewards(mask, singles.labels).to(token_logps.dtype)
    advantages, returns = gae(rewards, values, weights, gamma, lam)
    log_ratio = (token_logps - token_ref).masked_fill(~mask, 0.0)
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon)
    policy_loss = -torch.minimum(ratio * advantages, clipped * advantages)
    critic_loss = 0.5 * (values - returns) ** 2
    kl = torch.expm1(-log_ratio) + log_ratio
    entropy = -token_logps.masked_fill(~mask, 0.0)
    per_token = policy_loss + value_coef * critic_loss + beta * kl - entropy_coef * entropy
    metrics = {
        f"ppo/{name}": masked_mean(term.detach(), mask, dim=None).item()
        for name, term in {
            "entropy": entropy,
            "critic_loss": critic_loss,
            "clip_frac": ((ratio - 1).abs() > clip_epsilon).to(weights.dtype),
            "kl": kl,
        }.items()
    }
    return LossTerms(masked_mean(per_token, mask), beta * singles.rho, metrics)
