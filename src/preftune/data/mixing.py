"""Several preference data sources mixed into one training set by weight, reproducibly.

A source's `weight` is how many times each of its records is used: 2 = every record twice,
0.5 = a seeded half of them, 1.5 = every record once plus a seeded half again. The draw depends
only on the seed and the source's position in the list, so the same config gives the same mix.
Ids become "SOURCE_INDEX:id" (and "#2", "#3"... for repeats), unique across sources.
"""

from __future__ import annotations

import dataclasses
import math
import random

from preftune.data.reader import ReadResult, read_records, unique_ids
from preftune.data.records import PromptGroup


def mix_groups(parts: list[tuple[list[PromptGroup], float]], *, seed: int = 0) -> list[PromptGroup]:
    """Each part's groups `weight` times (see the module doc), parts in order.

    >>> from preftune.data.records import Response
    >>> groups = [PromptGroup(f"q{i}", [Response("a")], id=str(i)) for i in range(4)]
    >>> [g.id for g in mix_groups([(groups[:2], 2.0), (groups[2:], 0.5)], seed=0)]
    ['0:0', '0:1', '0:0#2', '0:1#2', '1:3']
    """
    mixed = []
    for index, (groups, weight) in enumerate(parts):
        whole = math.floor(weight)
        extra = round((weight - whole) * len(groups))
        drawn = sorted(random.Random(f"{seed}/{index}").sample(range(len(groups)), extra))
        chosen = groups * whole + [groups[i] for i in drawn]
        mixed.extend(dataclasses.replace(g, id=f"{index}:{g.id}") for g in chosen)
    unique_ids(mixed)
    return mixed


def read_mixture(
    sources: list[dict],
    format: str | None = None,
    *,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
) -> ReadResult:
    """`read_records` of each {"path", "weight", "format"?, "split"?} source (at most `limit`
    records of each), mixed by `mix_groups` (one source of weight 1 is returned as read);
    bad rows of every source are kept together."""
    results = [
        read_records(
            source["path"],
            source.get("format") or format,
            split=source.get("split") or split,
            limit=limit,
            seed=seed,
            skip_invalid=skip_invalid,
        )
        for source in sources
    ]
    if len(sources) == 1 and sources[0]["weight"] == 1:
        return results[0]  # one source as is: its ids unprefixed
    parts = [(r.groups, s["weight"]) for r, s in zip(results, sources, strict=True)]
    return ReadResult(
        mix_groups(parts, seed=seed),
        "+".join(dict.fromkeys(r.format for r in results)),
        [bad for r in results for bad in r.bad_rows],
        source=", ".join(r.source for r in results),
    )
