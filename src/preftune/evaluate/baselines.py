"""Baseline responses to judge against: a samples file, or a preference data set's preferred
response ("SFT target" in the HH/TL;DR comparison study)."""

from __future__ import annotations

from preftune.data.messages import response_text


def preferred_responses(source: str, *, limit: int | None = None) -> list[dict]:
    """{"id", "prompt", "response"} rows holding each prompt's preferred response in `source`
    (any format `preftune.data.read_records` reads)."""
    from preftune.data import make_view, read_records

    groups = make_view(read_records(source, limit=limit).groups, "chosen")
    return [
        {"id": g.id, "prompt": g.prompt, "response": response_text(g.responses[0].text)}
        for g in groups
    ]
