"""What a set of prompt groups carries (scores, labels, ties, margins), for checks and `data inspect`."""

from __future__ import annotations

from collections import Counter

from preftune.data.records import PromptGroup


def has_scores(group: PromptGroup) -> bool:
    """Every response has a score from the data (not the 1/0 given to unscored pairs)."""
    scored = all(r.score is not None for r in group.responses)
    return scored and not group.meta.get("implicit_scores", False)


def can_rank(group: PromptGroup) -> bool:
    """At least two responses, all scored (explicitly or as chosen 1 / rejected 0)."""
    return len(group.responses) >= 2 and all(r.score is not None for r in group.responses)


def has_labels(group: PromptGroup) -> bool:
    return all(r.label is not None for r in group.responses)


def has_tie(group: PromptGroup) -> bool:
    """Flagged as a tie, or its two best responses have equal scores."""
    scores = sorted((r.score for r in group.responses if r.score is not None), reverse=True)
    return group.tie or (len(scores) >= 2 and scores[0] == scores[1])


def source_files(groups: list[PromptGroup]) -> str:
    """The files the groups came from, e.g. "hh.jsonl" (sources look like "hh.jsonl line 3")."""
    files = Counter((g.source or "?").rsplit(" ", 2)[0] for g in groups)
    return ", ".join(files)


def summarize(groups: list[PromptGroup]) -> dict:
    """Counts over the groups; the keys `data inspect --json` prints."""
    formats = Counter(g.meta.get("format", "?") for g in groups)
    return {
        "format": ", ".join(formats),
        "groups": len(groups),
        "responses": sum(len(g.responses) for g in groups),
        "with_scores": sum(has_scores(g) for g in groups),
        "with_labels": sum(has_labels(g) for g in groups),
        "ties": sum(has_tie(g) for g in groups),
        "with_margins": sum(g.margin is not None for g in groups),
        "responses_per_group": dict(sorted(Counter(len(g.responses) for g in groups).items())),
    }


def describe(groups: list[PromptGroup]) -> str:
    """One line for error messages: what the data has and lacks."""
    s = summarize(groups)
    shape = "pairs (chosen/rejected)" if s["responses_per_group"].keys() == {2} else "groups"
    parts = [
        f"{s['groups']} {shape} in format '{s['format']}'",
        f"{s['with_scores']} with scores",
        f"{s['with_labels']} with labels",
        f"{s['ties']} ties",
    ]
    return f"{source_files(groups)} has " + ", ".join(parts)
