"""The judge protocol: `compare(prompt, a, b) -> Judgment`, and `score(prompt, response)`
for judges that can grade one response on its own.

Winners are "a", "b", "tie" or "error". An "error" (the judge never gave a usable verdict)
is recorded with its raw output and never counted for either side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from preftune.errors import PreftuneError

WINNERS = ("a", "b", "tie", "error")


class JudgeError(PreftuneError):
    """The judge cannot work at all (bad endpoint, refused key, a model that will not load).

    `partial` is the decision of the pair being judged when the judge stopped part-way (a
    Judgment with winner "error" holding the orders that were answered), or None: the runner
    saves it so that no answer already paid for is lost.
    """

    def __init__(self, message: str, *, partial: Judgment | None = None):
        super().__init__(message)
        self.partial = partial


@dataclass
class Judgment:
    """One decision between response a and response b.

    `verdicts` holds the per-order verdicts of a two-order judge, each in terms of a and b:
    [verdict with a shown first, verdict with b shown first]. `raw` is what the judge said.
    """

    winner: str
    raw: object = None
    verdicts: list[str] = field(default_factory=list)
    score_a: float | None = None
    score_b: float | None = None

    def __post_init__(self):
        if self.winner not in WINNERS:
            raise ValueError(f"winner '{self.winner}' is not one of {WINNERS}")


@runtime_checkable
class Judge(Protocol):
    """`identity` names the judge and every setting that changes its verdicts (cache key)."""

    identity: str

    def compare(self, prompt, response_a: str, response_b: str) -> Judgment: ...


# A two-order judge that can fail one order (an API judge) also accepts
# `compare(prompt, a, b, earlier=judgment)`: `earlier` is its last decision of the same pair,
# which ended in "error" with one order answered; only the failed order is asked again.


def compare_by_scores(score_a: float, score_b: float, raw: object = None) -> Judgment:
    """Pairwise decision from two scalar scores: the higher wins, equal is a tie."""
    winner = "a" if score_a > score_b else "b" if score_b > score_a else "tie"
    return Judgment(winner, raw=raw, score_a=score_a, score_b=score_b)


def combine_orders(first: str, swapped: str, raw: object = None) -> Judgment:
    """Merge two verdicts given by slot ("A", "B", "tie", "error"): `first` with a in slot A,
    `swapped` with b in slot A. Agreement decides; disagreement is a tie; any error is an error.
    """
    in_first = {"A": "a", "B": "b"}.get(first, first)
    in_swapped = {"A": "b", "B": "a"}.get(swapped, swapped)
    verdicts = [in_first, in_swapped]
    if "error" in verdicts:
        winner = "error"
    elif in_first == in_swapped:
        winner = in_first
    else:
        winner = "tie"
    return Judgment(winner, raw=raw, verdicts=verdicts)
