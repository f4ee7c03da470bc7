"""`compute`: the one entry point of the loss contract (docs/internals.md, docs/methods.md)."""

from __future__ import annotations

import importlib
from functools import cache

import torch

from preftune.errors import ConfigError, MethodDataError
from preftune.losses.metrics import binary_metrics, ranked_metrics
from preftune.losses.registry import (
    METHODS,
    PAIR_MODIFIERS,
    MethodSpec,
    UnknownOption,
    check_hparams,
)
from preftune.losses.responses import LossTerms, Responses, pairs, prepare, ranked, singles

VIEWS = {"pair": pairs, "list": ranked, "chosen": ranked, "binary": singles}
NEEDED = {
    "scores": "scores (a data set with scored responses)",
    "labels": "labels (binary desirable / undesirable feedback)",
}


@cache
def _function(path):
    """The loss a `MethodSpec.function` names ("module:function" in preftune.losses), or the
    function itself for a method registered from outside the package."""
    if callable(path):
        return path
    module, name = path.split(":")
    return getattr(importlib.import_module(f"preftune.losses.{module}"), name)


def _spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise UnknownOption(f"unknown method '{name}'; valid methods: {', '.join(sorted(METHODS))}")
    if METHODS[name].is_online:
        raise ConfigError(
            f"method '{name}' learns from its own samples: online methods train through "
            "`preftune train` with an `online:` block (losses: preftune.losses.online)"
        )
    return METHODS[name]


def _split_keywords(spec: MethodSpec, keywords: dict) -> tuple[dict, dict, dict]:
    """Separate hyperparameters (checked, defaults filled in), extra tensors and modifiers."""
    unknown = sorted(set(keywords) - set(spec.accepted) - set(spec.inputs))
    if unknown:
        raise UnknownOption(
            f"method '{spec.name}' got unknown keyword(s) {', '.join(unknown)}; valid "
            f"hyperparameters: {', '.join(spec.accepted) or 'none'}"
            + (f"; extra inputs: {', '.join(spec.inputs)}" if spec.inputs else "")
        )
    given = {
        name: value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        for name, value in keywords.items()
        if name in spec.accepted
    }
    hparams = check_hparams(spec, given)
    modifiers = {name: hparams.pop(name) for name in PAIR_MODIFIERS if name in hparams}
    extras = {name: keywords[name] for name in spec.inputs if keywords.get(name) is not None}
    return hparams, extras, modifiers


def _wpo_weights(view: Responses, aligned: bool) -> torch.Tensor:
    """WPO (Zhou et al. 2024, arXiv 2406.11827): w(y_w) w(y_l) per pair, detached, with

    w(y) = exp((1/l) sum_t log[p(y_t) / sum_v p(v)^2])   (aligned: the paper's weight)
    w(y) = exp(s / l)                                     (aligned=False: unaligned)

    Pairs the current policy finds likely weigh more, making off-policy preference data look
    closer to on-policy. The alignment divides each token's probability by the probability
    that two draws from the policy at that position agree, so peaked and flat distributions
    are weighed alike. Aligned weights need the extra input `log_collision` [G, R]: per
    response, sum_t log sum_v p(v | x, y_<t)^2 (from `sequence_logps(..., collision=True)`).
    """
    log_weights = view.logps
    if aligned:
        if "log_collision" not in view.extras:
            raise MethodDataError(
                f"method '{view.method}' with weighting 'wpo': the paper's aligned weight needs "
                "log_collision [G, R] (sum over response tokens of log sum_v p(v)^2); pass it, "
                "or set wpo_alignment: false for the unaligned weight exp(s / l)"
            )
        log_weights = log_weights - view.extras["log_collision"]
    return (log_weights / view.lengths).sum(dim=1).exp().detach()


def compute(
    name: str,
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    **keywords,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and metrics of method `name` on a batch of G groups of up to R responses.

    Tensors are [G, R]: summed policy / reference log-probs, token counts, scores (higher is
    better; when given, the method ranks responses by them, otherwise column 0 of a pair is
    chosen), labels (bool, desirable) and mask (bool, which responses exist). Keywords are the
    method's hyperparameters (`METHODS[name].hparams`), its extra input tensors
    (`METHODS[name].extra_inputs`) and, for pairwise methods, `weighting="wpo"` with
    `wpo_alignment` and the extra input `log_collision`. Unknown keywords and values out of
    a hyperparameter's declared range raise `UnknownOption`. Returns the mean over groups
    (binary feedback: over responses) of the method's loss, a scalar with gradients, and a
    dict of float metrics.

    DPO on one pair, [chosen, rejected], whose log-ratios to the reference are 0.5 and -0.5:

    >>> policy = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    >>> reference = torch.tensor([[-1.5, -1.5]])
    >>> loss, metrics = compute("dpo", policy, reference, beta=0.1)
    >>> round(loss.item(), 4)  # -log sigmoid(0.1 * (0.5 - (-0.5))) = log(1 + e^-0.1)
    0.6444
    >>> round(metrics["rewards/margins"], 4)  # beta * 0.5 - beta * (-0.5)
    0.1
    >>> loss.backward(); policy.grad  # -beta sigmoid(-0.1) on chosen, the opposite on rejected
    tensor([[-0.0475,  0.0475]])
    """
    spec = _spec(name)
    hparams, extras, modifiers = _split_keywords(spec, keywords)
    given = {"scores": scores, "labels": labels}
    for field in spec.needs:
        if given[field] is None:
            raise MethodDataError(f"method '{name}' needs {NEEDED[field]}")
    if spec.needs_reference and ref_logps is None:
        raise MethodDataError(
            f"method '{name}' needs ref_logps: it is defined against a reference model"
        )
    responses = prepare(name, policy_logps, ref_logps, lengths, scores, labels, mask, extras)
    view = VIEWS[spec.view](responses)
    terms: LossTerms = _function(spec.function)(view, **hparams)
    losses = terms.losses
    metrics = (binary_metrics if spec.view == "binary" else ranked_metrics)(view, terms)
    if modifiers.get("weighting") == "wpo":
        weights = _wpo_weights(view, modifiers.get("wpo_alignment", True))
        losses = losses * weights
        metrics["wpo/weight"] = weights.double().mean().item()
    metrics.update(terms.metrics)
    return losses.mean(), metrics
