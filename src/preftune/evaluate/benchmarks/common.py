"""What the benchmarks share: reading evaluation files, naming bad rows, and judge requests
cached in a JSONL file so that a rerun pays nothing twice and an interrupted run resumes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from preftune.errors import DataError
from preftune.generate.concurrency import run_tasks
from preftune.io import JsonlAppender, read_jsonl, read_text


def read_rows(path: str | Path, *, what: str) -> list[dict]:
    """Rows of a JSON list or a JSONL file; a missing or malformed file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {what} file", source=str(path))
    if path.suffix == ".json":
        try:
            rows = json.loads(read_text(path, what=what))
        except json.JSONDecodeError as error:
            raise DataError(f"not valid JSON ({error})", source=str(path)) from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DataError("expected a JSON list of objects", source=str(path))
        return rows
    return read_jsonl(path, tolerate_torn_tail=False)


def require_fields(rows: list[dict], fields: tuple[str, ...], *, source: str) -> None:
    """DataError naming the file, the row and the first field a row lacks."""
    for number, row in enumerate(rows, start=1):
        for name in fields:
            if row.get(name) is None:
                raise DataError(f"row {number} has no value", source=source, field=name)


def unmatched(ids: list[str], what: str) -> DataError:
    return DataError(
        f"{len(ids)} {what} (ids: {', '.join(ids[:10])}{', ...' if len(ids) > 10 else ''})"
    )


def cached_requests(
    path: Path,
    keys: list[str],
    work: Callable[[int], dict],
    *,
    usable: Callable[[dict], bool],
    concurrency: int,
    desc: str,
) -> tuple[list[dict], int]:
    """One row per key: rows already in `path` (JSONL) that are `usable`, the rest from
    `work(index)`, appended to `path` as each finishes. Returns (rows, cache hits)."""
    cached = {row["key"]: row for row in read_jsonl(path) if usable(row)}
    rows: list[dict | None] = [cached.get(key) for key in keys]
    todo = [index for index, row in enumerate(rows) if row is None]
    with JsonlAppender(path) as out:

        def finish(index: int, row: dict) -> None:
            rows[index] = {"key": keys[index], **row}
            out.write(rows[index])

        run_tasks(todo, work, finish, concurrency, desc=desc)
    return rows, len(keys) - len(todo)


def answer_prompts(model_or_path, prompts: list[dict], path: Path, **options) -> dict[str, dict]:
    """Generate one answer per {"id", "prompt"} with `model_or_path` (a path, a loaded pair or
    a `ServedModel`; resumable: `path`); the sample rows by id."""
    from preftune.generate.sampling import generate

    return {row["id"]: row for row in generate(model_or_path, prompts, path, **options)}
