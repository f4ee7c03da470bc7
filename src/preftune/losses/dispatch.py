"""`compute`: the one entry point of the loss contract (DESIGN.md, "The loss contract")."""

from __future__ import annotations

import importlib
from functools import cache

import torch

from preftune.errors import ConfigError, MethodDataError
from preftune.losses.metrics import binary_metrics, ranked_metrics
from preftune.losses.registry import METHODS, WEIGHTINGS, MethodSpec
from preftune.losses.responses import LossTerms, Responses, pairs, prepare, ranked, singles

VIEWS = {"pair": pairs, "list": ranked, "chosen": ranked, "binary": singles}
NEEDED = {
    "scores": "scores (a data set with scored responses)",
    "labels": "labels (binary desirable / undesirable feedback)",
}


class UnknownOption(ConfigError, MethodDataError):
    """An unknown method, hyperparameter or keyword: the message lists the valid ones."""


@cache
def _function(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(f"preftune.losses.{module}"), name)


def _spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise UnknownOption(f"unknown method '{name}'; valid methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _split_keywords(spec: MethodSpec, keywords: dict) -> tuple[dict, dict, str | None]:
    """Separate hyperparameters (defaults filled in), extra tensors and the weighting."""
    allowed = [*spec.hparams, *spec.extra_inputs] + (["weighting"] if spec.view == "pair" else [])
    unknown = sorted(set(keywords) - set(allowed))
    if unknown:
        raise UnknownOption(
            f"method '{spec.name}' got unknown keyword(s) {', '.join(unknown)}; valid "
            f"hyperparameters: {', '.join(spec.hparams) or 'none'}"
            + (f"; extra inputs: {', '.join(spec.extra_inputs)}" if spec.extra_inputs else "")
            + ("; weighting: 'wpo'" if spec.view == "pair" else "")
        )
    hparams = {}
    for name, default in spec.hparams.items():
        value = keywords.get(name, default)
        kind = bool if isinstance(default, bool) else (int, float)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise UnknownOption(
                f"method '{spec.name}': hyperparameter {name} must be "
                f"{'true/false' if kind is bool else 'a number'}, got {value!r}"
            )
        hparams[name] = value if kind is bool else float(value)
    weighting = keywords.get("weighting")
    if weighting not in (None, *WEIGHTINGS):
        raise UnknownOption(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    extras = {name: keywords[name] for name in spec.extra_inputs if keywords.get(name) is not None}
    return hparams, extras, weighting


def _wpo_weights(view: Responses) -> torch.Tensor:
    """WPO (Zhou et al. 2024, arXiv 2406.11827): w = exp(s_w/l_w + s_l/l_l) per pair, detached.

    The product of the two responses' average token probabilities: pairs the current policy
    finds likely weigh more, making off-policy preference data look closer to on-policy.
    """
    return view.mean_logps.sum(dim=1).exp().detach()


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
    (`METHODS[name].extra_inputs`) and, for pairwise methods, `weighting="wpo"`. Unknown
    keywords raise. Returns the mean over groups (binary feedback: over responses) of the
    method's loss, a scalar with gradients, and a dict of float metrics.
    """
    spec = _spec(name)
    hparams, extras, weighting = _split_keywords(spec, keywords)
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
    if weighting == "wpo":
        weights = _wpo_weights(view)
        losses = losses * weights
        metrics["wpo/weight"] = weights.double().mean().item()
    metrics.update(terms.metrics)
    return losses.mean(), metrics
