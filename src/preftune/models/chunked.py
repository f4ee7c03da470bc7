"""Log-probs of chosen tokens through the LM head, in chunks, never holding [N, V] logits.

The forward pass projects `chunk_size` hidden states at a time and keeps only each row's
log-sum-exp; the backward pass recomputes the chunk's logits and turns them into gradients
(softmax minus one-hot), as in Cut Cross-Entropy (Wijmans et al. 2024, "Cut Your Losses in
Large-Vocabulary Language Models", Alg. 1-3): log p(y | h) = h·w_y + b_y - logsumexp(h·W^T + b).

On request the same chunks also give log sum_v p(v | h)^2 = logsumexp(2 z) - 2 logsumexp(z)
(z the logits), the log collision probability WPO's weight alignment divides by; it carries
no gradient (WPO's weights are detached).
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_SIZE = 1024


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    return logits.float()


def _logsumexp_(logits: torch.Tensor) -> torch.Tensor:
    """`torch.logsumexp(logits, dim=-1)` with the same operations (so the same bits), computed in
    place (overwrites `logits`): no second [chunk, V] buffer for `logits - max`."""
    peak = logits.amax(dim=-1)
    peak.masked_fill_(peak.abs() == torch.inf, 0)
    return logits.sub_(peak[:, None]).exp_().sum(dim=-1).log_().add_(peak)


def _lse_and_collision_(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logsumexp(z) and log sum softmax(z)^2 = log sum e^{2(z - m)} - 2 log sum e^{z - m}
    (m the row max), from one exponential of the chunk, computed in place (overwrites
    `logits`): cheaper than `torch.logsumexp` alone."""
    peak = logits.amax(dim=-1, keepdim=True)
    shifted = logits.sub_(peak).exp_()
    total = shifted.sum(dim=-1).log()
    return peak.squeeze(-1) + total, shifted.square_().sum(dim=-1).log() - 2 * total


class _ChunkedTokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, collision):
        out = torch.empty(hidden.shape[0], device=hidden.device, dtype=torch.float32)
        lse = torch.empty_like(out)
        collisions = torch.empty_like(out) if collision else out.new_empty(0)
        for start in range(0, hidden.shape[0], chunk_size):
            end = start + chunk_size
            logits = _logits(hidden[start:end], weight, bias)
            target_logits = logits.gather(-1, targets[start:end, None]).squeeze(-1)
            if collision:
                lse[start:end], collisions[start:end] = _lse_and_collision_(logits)
            else:
                lse[start:end] = _logsumexp_(logits)
            out[start:end] = target_logits - lse[start:end]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(collisions)
        return out, collisions

    @staticmethod
    def backward(ctx, grad_out, _grad_collisions):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            end = start + ctx.chunk_size
            h = hidden[start:end]
            # d log p(y) / d logits = onehot(y) - softmax(logits), scaled by the incoming gradient;
            # in place on the recomputed logits: one [chunk, V] buffer instead of three.
            grad_logits = _logits(h, weight, bias).sub_(lse[start:end, None]).exp_().neg_()
            grad_logits.scatter_add_(
                -1, targets[start:end, None], torch.ones_like(grad_logits[:, :1])
            ).mul_(grad_out[start:end, None])
            grad_logits = grad_logits.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[start:end] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.T, h)
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def token_logps(
    hidden: torch.Tensor,
    lm_head: torch.nn.Linear,
    targets: torch.Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) under `lm_head`, float32 [N], from hidden [N, H]."""
    out, _ = _ChunkedTokenLogps.apply(
        hidden, lm_head.weight, lm_head.bias, targets, chunk_size, False
    )
    return out


def token_logps_and_collision(
    hidden: torch.Tensor,
    lm_head: torch.nn.Linear,
    targets: torch.Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_logps` and, from the same logits, log sum_v p(v | hidden[i])^2 [N] (no gradient).

    >>> head = torch.nn.Linear(4, 3, bias=False)
    >>> logps, collision = token_logps_and_collision(torch.zeros(2, 4), head, torch.tensor([0, 1]))
    >>> [round(v, 4) for v in collision.tolist()]  # uniform over 3 tokens: log(3 / 9)
    [-1.0986, -1.0986]
    """
    return _ChunkedTokenLogps.apply(hidden, lm_head.weight, lm_head.bias, targets, chunk_size, True)
