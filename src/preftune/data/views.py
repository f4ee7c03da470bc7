"""Views: the shape of data each method consumes, derived from the canonical records.

- "pair": [chosen, rejected] per output group, scores kept; a pair with equal scores (or a
  group flagged as a tie) is kept and flagged `tie=True`, never dropped here (see `drop_ties`).
- "binary": one labelled response per output group. Labels from the data when present; else
  the responses the pairing uses, best-scored desirable and the others undesirable (for pairs:
  chosen desirable, rejected undesirable, as in the HH/TL;DR comparison study; for scored
  lists, "top-vs-worst" gives one of each, "top-vs-each" every response).
- "list": all responses of a group, best first.
- "chosen": the best response only (SFT). Groups with binary labels give their first
  desirable response; groups with no desirable response have nothing to imitate and are left out.
"""

from __future__ import annotations

import dataclasses
import random

from preftune.data.records import PromptGroup, Response
from preftune.data.summary import can_rank, describe, has_labels, has_scores, has_tie
from preftune.errors import ConfigError, MethodDataError

VIEWS = ("pair", "binary", "list", "chosen")
PAIRINGS = ("top-vs-random", "top-vs-each", "top-vs-worst", "all")


def ranked(group: PromptGroup) -> list[Response]:
    """Responses best first; equal scores keep their order in the data."""
    return sorted(group.responses, key=lambda r: -r.score)


def _pairs(best_first: list[Response], pairs: str, rng: random.Random) -> list[tuple]:
    top, rest = best_first[0], best_first[1:]
    if pairs == "top-vs-random":
        return [(top, rng.choice(rest))]
    if pairs == "top-vs-each":
        return [(top, other) for other in rest]
    if pairs == "top-vs-worst":
        return [(top, best_first[-1])]
    return [(a, b) for i, a in enumerate(best_first) for b in best_first[i + 1 :]]


def _derived(group: PromptGroup, responses: list[Response], k: int, n: int, tie: bool):
    """A view's group: the source group with other responses; ids get "/k" when one makes many."""
    return dataclasses.replace(
        group,
        responses=responses,
        id=group.id if n == 1 else f"{group.id}/{k}",
        tie=tie,
        meta=dict(group.meta),
    )


def _refuse(groups, bad: list[PromptGroup], needed: str, who: str) -> MethodDataError:
    first = bad[0].source or bad[0].id
    return MethodDataError(
        f"{who} needs {needed}; {len(bad)} of {len(groups)} groups lack it (first: {first}). "
        f"{describe(groups)}"
    )


def _group_rng(seed: int, group: PromptGroup) -> random.Random:
    """A group's own random draws: independent of the groups' order, and the same in the pair
    and binary views (so both pick the same other response)."""
    return random.Random(f"{seed}:{group.id}")


def _pair_view(groups, pairs: str, seed: int, curriculum: bool, who: str) -> list[PromptGroup]:
    bad = [g for g in groups if not can_rank(g)]
    if bad:
        raise _refuse(groups, bad, "pairs: chosen/rejected, or 2+ scored responses per prompt", who)
    out = []
    for group in groups:
        made = _pairs(ranked(group), pairs, _group_rng(seed, group))
        for k, (chosen, rejected) in enumerate(made):
            tie = group.tie or chosen.score == rejected.score
            out.append(_derived(group, [chosen, rejected], k, len(made), tie))
    if curriculum:  # Curry-DPO (Pattnaik et al. 2024): easy (large score gap) to hard
        out.sort(key=lambda g: -(g.responses[0].score - g.responses[1].score))
    return out


def _binary_labels(group: PromptGroup, pairs: str, rng: random.Random) -> list[Response]:
    """Labelled singles: the data's labels, else the paired responses labelled by score."""
    if has_labels(group):
        return group.responses
    used = {id(r) for pair in _pairs(ranked(group), pairs, rng) for r in pair}
    top = max(r.score for r in group.responses)
    return [dataclasses.replace(r, label=r.score == top) for r in group.responses if id(r) in used]


def _binary_view(groups, pairs: str, seed: int, who: str) -> list[PromptGroup]:
    bad = [g for g in groups if not (has_labels(g) or can_rank(g))]
    if bad:
        raise _refuse(groups, bad, "labels or pairs (chosen/rejected or scored responses)", who)
    out = []
    for group in groups:
        singles = _binary_labels(group, pairs, _group_rng(seed, group))
        scores = [r.score for r in singles]
        for k, single in enumerate(singles):
            tie = group.tie or (single.score is not None and scores.count(single.score) > 1)
            out.append(_derived(group, [single], k, len(singles), tie))
    return out


def _list_view(groups, who: str) -> list[PromptGroup]:
    bad = [g for g in groups if not can_rank(g)]
    if bad:
        raise _refuse(groups, bad, "2+ scored responses per prompt", who)
    out = []
    for group in groups:
        best_first = ranked(group)
        no_order = best_first[0].score == best_first[-1].score
        out.append(_derived(group, best_first, 0, 1, group.tie or no_order))
    return out


def _best(group: PromptGroup) -> Response | None:
    if all(r.score is not None for r in group.responses):
        return ranked(group)[0]
    return next((r for r in group.responses if r.label), None)


def _chosen_view(groups, who: str) -> list[PromptGroup]:
    out = [_derived(g, [best], 0, 1, g.tie) for g in groups if (best := _best(g)) is not None]
    if not out:
        raise _refuse(groups, groups, "a preferred response (scored, chosen or labelled True)", who)
    return out


def make_view(
    groups: list[PromptGroup],
    view: str,
    *,
    pairs: str = "top-vs-random",
    seed: int = 0,
    curriculum: bool = False,
    method: str | None = None,
) -> list[PromptGroup]:
    """The `view` of `groups` (see the module doc); `method` only names the caller in errors.

    `pairs` picks which pairs a scored group gives: the best vs one seeded-random other, vs
    each other, vs the worst, or all score-ordered combinations; the binary view of a scored
    group keeps the responses those pairs use. `curriculum` orders pairs
    from the largest score gap to the smallest (Curry-DPO).

    >>> group = PromptGroup("Hi?", [Response("ok", score=1.0), Response("great!", score=3.0),
    ...                             Response("no", score=0.0)], id="g")
    >>> [(g.id, [r.text for r in g.responses]) for g in make_view([group], "pair",
    ...                                                           pairs="top-vs-each")]
    [('g/0', ['great!', 'ok']), ('g/1', ['great!', 'no'])]
    >>> [(r.text, r.label) for g in make_view([group], "binary", pairs="top-vs-worst")
    ...  for r in g.responses]
    [('great!', True), ('no', False)]
    >>> [r.text for r in make_view([group], "list")[0].responses]
    ['great!', 'ok', 'no']
    """
    if view not in VIEWS:
        raise ConfigError(f"view '{view}' is not one of {VIEWS}")
    if pairs not in PAIRINGS:
        raise ConfigError(f"pairs '{pairs}' is not one of {PAIRINGS}")
    if curriculum and view != "pair":
        raise ConfigError(f"curriculum orders pairs by score gap; view '{view}' has no pairs")
    who = f"method '{method}' (view '{view}')" if method else f"view '{view}'"
    if view == "pair":
        return _pair_view(groups, pairs, seed, curriculum, who)
    if view == "binary":
        return _binary_view(groups, pairs, seed, who)
    if view == "list":
        return _list_view(groups, who)
    return _chosen_view(groups, who)


def drop_ties(groups: list[PromptGroup]) -> tuple[list[PromptGroup], int]:
    """The groups not flagged as ties, and how many were dropped (for the run's summary)."""
    kept = [g for g in groups if not g.tie]
    return kept, len(groups) - len(kept)


NEEDS = {
    "scores": (
        has_scores,
        "scores from the data (pairs without scores only rank chosen over rejected)",
    ),
    "labels": (lambda g: has_labels(g) or can_rank(g), "labels or pairs"),
    "margins": (lambda g: g.margin is not None, "a 'margin' column"),
}


def validate_for(groups: list[PromptGroup], needs: tuple[str, ...], method_name: str) -> None:
    """Raise `MethodDataError` unless the data carries what the method `needs`.

    Called before any model loads. Needs are the losses registry's data fields: "scores" and
    "labels" (every group), "margins" (every group), "ties" (at least one tie in the data).
    """
    for need in needs:
        if need == "ties":
            if not any(has_tie(g) for g in groups):
                raise MethodDataError(
                    f"method '{method_name}' needs ties (a 'tie' column or equal scores); "
                    f"{describe(groups)}"
                )
            continue
        if need not in NEEDS:
            raise ValueError(f"unknown data need {need!r}; known: {[*NEEDS, 'ties']}")
        check, needed = NEEDS[need]
        bad = [g for g in groups if not check(g)]
        if bad:
            raise _refuse(groups, bad, needed, f"method '{method_name}'")
