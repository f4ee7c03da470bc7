"""`read_records`: any supported source and format into `PromptGroup`s, with bad rows named.

Columns every format may carry: `id` (or `prompt_id`), `margin` (a per-pair margin, ODPO) and
`tie` (a boolean flag). A bad row stops the read with a `DataError` naming the file, the line
or row and the field; with `skip_invalid=True` it is skipped, counted and its problem kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm.auto import tqdm

from preftune.data import fields
from preftune.data.formats import FORMATS, detect_format
from preftune.data.messages import RowError
from preftune.data.records import PromptGroup
from preftune.data.sources import RawRow, load_rows
from preftune.errors import DataError

ID_KEYS = ("id", "prompt_id")


@dataclass
class ReadResult:
    """The groups read, their format, and every bad row's problem (`read_records` raises on
    them unless `skip_invalid`; `check_records` always returns them)."""

    groups: list[PromptGroup]
    format: str
    bad_rows: list[tuple[str, RowError]] = field(default_factory=list)  # (where, what)
    source: str = ""

    @property
    def skipped(self) -> int:
        return len(self.bad_rows)

    @property
    def problems(self) -> list[str]:
        """One line per bad row: "file.jsonl line 3, field 'chosen': empty text"."""
        return [str(_problem(where, error)) for where, error in self.bad_rows]


def _problem(where: str, error: RowError, hint: str = "") -> DataError:
    return DataError(error.message + hint, source=where, field=error.field)


def _group_from_row(raw: RawRow, fmt: str) -> PromptGroup:
    if raw.problem is not None:
        raise RowError(None, raw.problem)
    row = raw.fields
    group = FORMATS[fmt](row)
    id_key = next((k for k in ID_KEYS if fields.optional(row, k) is not None), None)
    group.id = str(row[id_key]) if id_key else str(raw.index)
    group.source = raw.where
    group.meta["format"] = fmt
    if fields.optional(row, "margin") is not None:
        group.margin = fields.score(row["margin"], "margin")
    if fields.optional(row, "tie") is not None:
        group.tie = fields.label(row["tie"], "tie") or group.tie
    return group


def unique_ids(groups: list[PromptGroup]) -> None:
    """Make repeated ids unique ("x", "x#2", ...) so results can be keyed by id."""
    seen: dict[str, int] = {}
    for group in groups:
        count = seen.get(group.id, 0) + 1
        seen[group.id] = count
        if count > 1:
            group.id = f"{group.id}#{count}"


def resolve_format(format: str | None, columns: list[str], rows: list[RawRow], name: str) -> str:
    if format is not None:
        if format not in FORMATS:
            raise DataError(
                f"unknown format '{format}'; choose one of {list(FORMATS)}", field="format"
            )
        return format
    first = next((row.fields for row in rows if row.fields is not None), None)
    detected = detect_format(set(columns), first)
    if detected is None:
        raise DataError(
            f"cannot tell the format from the columns {columns}; expected e.g. prompt/chosen/"
            f"rejected, prompt/completion/label or instruction/completions (pass --format: "
            f"{', '.join(FORMATS)})",
            source=name,
        )
    return detected


def check_records(
    source,
    format: str | None = None,
    *,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> ReadResult:
    """Read `source` (file, saved `datasets` folder or Hub id) as `format` (detected if None),
    keeping every usable group and every bad row's problem; only an unreadable source raises.
    """
    rowset = load_rows(source, split=split, limit=limit, seed=seed)
    if not rowset.rows:
        raise DataError("no rows", source=rowset.name)
    fmt = resolve_format(format, rowset.columns, rowset.rows, rowset.name)
    groups, bad_rows = [], []
    for raw in tqdm(rowset.rows, desc=f"read {rowset.name}", disable=None):
        try:
            groups.append(_group_from_row(raw, fmt))
        except RowError as error:
            bad_rows.append((raw.where, error))
    unique_ids(groups)
    return ReadResult(groups, fmt, bad_rows, source=rowset.name)


def read_records(
    source,
    format: str | None = None,
    *,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
) -> ReadResult:
    """`check_records`, then a DataError naming the first bad row (and how many more there
    are) unless `skip_invalid`, which skips and counts them.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pairs.jsonl"
    >>> _ = path.write_text('{"prompt": "2+2?", "chosen": "4", "rejected": "5"}\\n'
    ...                     '{"prompt": "Hi", "chosen": "Hello!"}\\n')
    >>> result = read_records(path, skip_invalid=True)
    >>> result.format, [(r.text, r.score) for r in result.groups[0].responses]
    ('paired', [('4', 1.0), ('5', 0.0)])
    >>> result.skipped, result.problems
    (1, ["pairs.jsonl line 2, field 'rejected': missing; it has ['chosen', 'prompt']"])
    """
    result = check_records(source, format, split=split, limit=limit, seed=seed)
    if result.bad_rows and not skip_invalid:
        where, error = result.bad_rows[0]
        more = result.skipped - 1
        listed = (
            f"{more} more bad row{'s' if more > 1 else ''}; `preftune data inspect {source}` "
            "lists them all, "
            if more
            else ""
        )
        raise _problem(where, error, f" ({listed}skip_invalid (--skip-invalid) skips them)")
    if not result.groups:
        raise DataError(
            f"no usable rows ({result.skipped} skipped; first: {result.problems[0]})",
            source=result.source,
        )
    return result
