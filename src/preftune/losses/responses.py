"""What a loss reads (validated sequence statistics, in one of three shapes) and returns.

`prepare` checks the [G, R] tensors of the loss contract and zeroes the padded slots, so no
method ever sees a masked value. From there a method reads its view:

- `ranked`: each group's responses sorted by score, best first, padding last ([G, R]); a pair
  is a ranked group of two, so column 0 is the chosen response whatever the input order;
- `singles`: every existing response on its own ([N], binary feedback).

Notation (docs/methods.md): s = summed policy log-prob, s_ref the reference's, l = token count,
rho = s - s_ref, Delta = rho_w - rho_l, pbar = exp(s / l).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from preftune.errors import MethodDataError
from preftune.losses.registry import EXTRA_LAYOUTS

BOOL_EXTRAS = ("ties", "token_mask")


@dataclass(frozen=True)
class LossTerms:
    """A method's result: the terms whose mean is the loss, and its implicit rewards.

    losses: [G] per group (pair, list and chosen views), [N] per response (binary view and
    point-wise MPPO). rewards: aligned with the view's responses ([G, R] or [N]), or None.
    reference_point: binary views count a desirable response as correct when its reward is
    above this (KTO's z, BCO's delta), an undesirable one when below.
    """

    losses: torch.Tensor
    rewards: torch.Tensor | None
    metrics: dict[str, float] = field(default_factory=dict)
    reference_point: torch.Tensor | float = 0.0


@dataclass(frozen=True)
class Responses:
    """Sequence statistics of the responses a method sees, padding already neutralised.

    Tensors are [G, R] in the ranked view and [N] in the singles view. Optional inputs are
    read through properties that raise a `MethodDataError` naming what the method needs.
    """

    method: str
    logps: torch.Tensor
    mask: torch.Tensor
    given_ref_logps: torch.Tensor | None = None
    given_lengths: torch.Tensor | None = None
    given_scores: torch.Tensor | None = None
    given_labels: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def _required(self, value, what: str):
        if value is None:
            raise MethodDataError(f"method '{self.method}' needs {what}")
        return value

    @property
    def ref_logps(self) -> torch.Tensor:
        return self._required(self.given_ref_logps, "ref_logps (a reference model)")

    @property
    def lengths(self) -> torch.Tensor:
        return self._required(self.given_lengths, "lengths (response token counts)")

    @property
    def scores(self) -> torch.Tensor:
        return self._required(self.given_scores, "scores (e.g. a scored-list data set)")

    @property
    def labels(self) -> torch.Tensor:
        return self._required(self.given_labels, "labels (desirable / undesirable feedback)")

    def extra(self, name: str) -> torch.Tensor:
        return self._required(self.extras.get(name), f"the extra input '{name}'")

    @property
    def rho(self) -> torch.Tensor:
        """rho = s - s_ref, the log-ratio of policy to reference."""
        return self.logps - self.ref_logps

    @property
    def mean_logps(self) -> torch.Tensor:
        """s / l, the mean token log-prob."""
        return self.logps / self.lengths

    @property
    def pbar(self) -> torch.Tensor:
        """pbar = exp(s / l), the average likelihood (MPPO's reward), in (0, 1]."""
        return self.mean_logps.exp()

    @property
    def delta(self) -> torch.Tensor:
        """Delta = rho_w - rho_l per pair, [G]."""
        return chosen_minus_rejected(self.rho)


def chosen_minus_rejected(values: torch.Tensor) -> torch.Tensor:
    """x_w - x_l for a pair view ([G, 2] -> [G])."""
    return values[:, 0] - values[:, 1]


def _check_tensor(method: str, name: str, value, shape: tuple[int, ...] | None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise MethodDataError(
            f"method '{method}': {name} must be a tensor, got {type(value).__name__}"
        )
    if shape is not None and tuple(value.shape) != shape:
        raise MethodDataError(
            f"method '{method}': {name} has shape {tuple(value.shape)}, expected {list(shape)}"
        )
    return value


def _check_extra(method: str, name: str, value, groups: int, responses: int) -> torch.Tensor:
    value = _check_tensor(method, name, value, None)
    layout = EXTRA_LAYOUTS[name]
    expected = {
        "free": "1-D [M]",
        "scalar": "a 0-d tensor",
        "group": f"[{groups}, D] (one row per group)",
        "group_scalar": f"[{groups}] (one value per group)",
        "response": f"[{groups}, {responses}, L] (one row per response)",
        "response_scalar": f"[{groups}, {responses}] (one value per response)",
    }[layout]
    fits = {
        "free": value.dim() == 1,
        "scalar": value.numel() == 1,
        "group": value.dim() == 2 and value.shape[0] == groups,
        "group_scalar": value.numel() == groups,
        "response": value.dim() == 3 and tuple(value.shape[:2]) == (groups, responses),
        "response_scalar": tuple(value.shape) == (groups, responses),
    }[layout]
    if not fits:
        raise MethodDataError(
            f"method '{method}': {name} has shape {tuple(value.shape)}, expected {expected}"
        )
    return value.reshape({"scalar": (), "group_scalar": (groups,)}.get(layout, value.shape))


def prepare(
    method: str,
    policy_logps,
    ref_logps=None,
    lengths=None,
    scores=None,
    labels=None,
    mask=None,
    extras: dict | None = None,
) -> Responses:
    """Validate the loss contract's [G, R] tensors and neutralise padded slots.

    Padded slots get log-prob 0, length 1, score 0 and label False, so that no NaN or inf
    a caller left there can reach a loss or its gradient.
    """
    policy_logps = _check_tensor(method, "policy_logps", policy_logps, None)
    if policy_logps.dim() != 2 or not policy_logps.is_floating_point():
        raise MethodDataError(
            f"method '{method}': policy_logps must be a float tensor [G, R], "
            f"got {policy_logps.dtype} of shape {tuple(policy_logps.shape)}"
        )
    shape = tuple(policy_logps.shape)
    dtype, device = policy_logps.dtype, policy_logps.device
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool, device=device)
    mask = _check_tensor(method, "mask", mask, shape).to(device=device, dtype=torch.bool)
    if shape[0] == 0 or not mask.any(dim=1).all():
        raise MethodDataError(f"method '{method}': every group needs at least one response")

    def floats(name, value, padding):
        if value is None:
            return None
        value = _check_tensor(method, name, value, shape).to(device=device, dtype=dtype)
        return value.masked_fill(~mask, padding)

    lengths = floats("lengths", lengths, 1.0)
    if lengths is not None and (lengths <= 0).any():
        raise MethodDataError(f"method '{method}': lengths must be positive for every response")
    if labels is not None:
        labels = (
            _check_tensor(method, "labels", labels, shape).to(device=device, dtype=torch.bool)
            & mask
        )
    checked_extras = {}
    for name, value in (extras or {}).items():
        value = _check_extra(method, name, value, *shape).to(device)
        checked_extras[name] = value.to(torch.bool) if name in BOOL_EXTRAS else value.to(dtype)
    if "token_mask" in checked_extras:
        checked_extras["token_mask"] = checked_extras["token_mask"] & mask[..., None]
    return Responses(
        method=method,
        logps=policy_logps.masked_fill(~mask, 0.0),
        mask=mask,
        given_ref_logps=floats("ref_logps", ref_logps, 0.0),
        given_lengths=lengths,
        given_scores=floats("scores", scores, 0.0),
        given_labels=labels,
        extras=checked_extras,
    )


def _reorder(value: torch.Tensor | None, order: torch.Tensor) -> torch.Tensor | None:
    if value is None:
        return None
    index = order.reshape(order.shape + (1,) * (value.dim() - 2)).expand_as(value)
    return value.gather(1, index)


def ranked(responses: Responses) -> Responses:
    """Sort each group best first by score (stable: equal scores keep their column order).

    Without scores the given order is the ranking (for a pair: column 0 is chosen).
    """
    if responses.given_scores is None:
        return responses
    key = responses.given_scores.masked_fill(~responses.mask, float("-inf"))
    order = key.sort(dim=1, descending=True, stable=True).indices
    extras = {
        name: _reorder(value, order) if EXTRA_LAYOUTS[name].startswith("response") else value
        for name, value in responses.extras.items()
    }
    return replace(
        responses,
        logps=_reorder(responses.logps, order),
        mask=_reorder(responses.mask, order),
        given_ref_logps=_reorder(responses.given_ref_logps, order),
        given_lengths=_reorder(responses.given_lengths, order),
        given_scores=_reorder(responses.given_scores, order),
        given_labels=_reorder(responses.given_labels, order),
        extras=extras,
    )


def pairs(responses: Responses) -> Responses:
    """The pair view: [G, 2], column 0 the chosen response (the higher score when scored)."""
    groups, width = responses.mask.shape
    if width != 2 or not responses.mask.all():
        counts = sorted(set(responses.mask.sum(dim=1).tolist()))
        raise MethodDataError(
            f"method '{responses.method}' is pairwise: it needs exactly 2 responses in every "
            f"group (R = 2, a chosen and a rejected one), got groups with {counts} of R = {width}; "
            "use the 'pair' data view"
        )
    return ranked(responses)


def singles(responses: Responses) -> Responses:
    """The binary view: every existing response on its own, [N] (group extras repeated)."""
    mask = responses.mask
    group_of = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]

    def flat(value):
        return None if value is None else value[mask]

    def spread(name, value):
        layout = EXTRA_LAYOUTS[name]
        if layout.startswith("response"):
            return value[mask]
        return value[group_of] if layout.startswith("group") else value

    extras = {name: spread(name, value) for name, value in responses.extras.items()}
    return replace(
        responses,
        logps=flat(responses.logps),
        mask=flat(mask),
        given_ref_logps=flat(responses.given_ref_logps),
        given_lengths=flat(responses.given_lengths),
        given_scores=flat(responses.given_scores),
        given_labels=flat(responses.given_labels),
        extras=extras,
    )
