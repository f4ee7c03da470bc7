"""Where prompts come from: a prompts file, any preference data file, or a built-in task.

- a .jsonl / .json file of {"prompt", "id"?} rows (ids default to the row number);
- any preference data file `preftune.data.read_records` reads (its prompts and ids);
- "task:NAME[:SPLIT]" for a built-in task (split defaults to "heldout").
"""

from __future__ import annotations

import json
from pathlib import Path

from preftune.errors import DataError
from preftune.io import read_jsonl

RESPONSE_FIELDS = {"chosen", "rejected", "completion", "completions", "responses", "response"}


def _plain_prompt_rows(path: Path) -> list[dict] | None:
    """The rows when `path` is a prompts file, else None (it holds responses too)."""
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, tolerate_torn_tail=False)
    elif path.suffix == ".json":
        rows = json.loads(path.read_text())
    else:
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "prompt" in r for r in rows):
        return None
    return None if any(RESPONSE_FIELDS & set(r) for r in rows) else rows


def read_prompts(source: str, *, limit: int | None = None) -> list[dict]:
    """[{"id", "prompt"}] from `source` (see the module doc), at most `limit` of them.

    A plain prompts file gives its first `limit` rows; a preference data file a seeded
    subset in file order (`read_records`); a task its own split's first `limit` prompts.
    """
    if source.startswith("task:"):
        from preftune.tasks import get_task

        _, name, *split = source.split(":")
        return get_task(name).prompts(split[0] if split else "heldout", limit)
    path = Path(source)
    if not path.exists():
        raise DataError("no such prompts file", source=source)
    rows = _plain_prompt_rows(path)
    if rows is None:
        from preftune.data import read_records

        groups = read_records(source, limit=limit).groups
        return [{"id": g.id, "prompt": g.prompt} for g in groups]
    prompts = [{"id": str(r.get("id", i)), "prompt": r["prompt"]} for i, r in enumerate(rows)]
    return prompts[:limit]
