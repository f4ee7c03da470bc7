"""Where prompts come from: a prompts file, any preference data file, or a built-in task.

- a .jsonl / .json file of {"prompt", "id"?} rows (ids default to the row number);
- any preference data file `preftune.data.read_records` reads (its prompts and ids);
- "task:NAME[:SPLIT]" for a built-in task (split defaults to "heldout").
"""

from __future__ import annotations

import json
from pathlib import Path

from preftune.data.messages import shown
from preftune.errors import DataError
from preftune.io import read_numbered_jsonl, read_text

RESPONSE_FIELDS = {"chosen", "rejected", "completion", "completions", "responses", "response"}


def _plain_prompt_rows(path: Path) -> list[tuple[str, dict]] | None:
    """[(where, row)] when `path` is a prompts file (no row holds a response), else None."""
    if path.suffix == ".jsonl":
        rows = [
            (f"{path}:{n}", row) for n, row in read_numbered_jsonl(path, tolerate_torn_tail=False)
        ]
    elif path.suffix == ".json":
        try:
            value = json.loads(read_text(path, what="prompts file"))
        except json.JSONDecodeError as error:
            raise DataError(f"invalid JSON: {error.msg}", source=f"{path}:{error.lineno}") from None
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            return None
        rows = [(f"{path} row {i}", row) for i, row in enumerate(value)]
    else:
        return None
    if not any("prompt" in row for _, row in rows) or any(
        RESPONSE_FIELDS & set(r) for _, r in rows
    ):
        return None
    for where, row in rows:
        if not row.get("prompt"):
            state = "missing" if "prompt" not in row else f"empty ({shown(row['prompt'])})"
            raise DataError(state, source=where, field="prompt")
    return rows


def read_prompts(source: str, *, limit: int | None = None) -> list[dict]:
    """[{"id", "prompt"}] from `source` (see the module doc), at most `limit` of them.

    A plain prompts file gives its first `limit` rows; a preference data file a seeded
    subset in file order (`read_records`); a task its own split's first `limit` prompts.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "prompts.jsonl"
    >>> _ = path.write_text('{"prompt": "Hi?"}\\n{"id": "q2", "prompt": "Why?"}\\n')
    >>> read_prompts(str(path))  # ids default to the row number
    [{'id': '0', 'prompt': 'Hi?'}, {'id': 'q2', 'prompt': 'Why?'}]
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
    prompts = [
        {"id": str(row.get("id", i)), "prompt": row["prompt"]} for i, (_, row) in enumerate(rows)
    ]
    return prompts[:limit]
