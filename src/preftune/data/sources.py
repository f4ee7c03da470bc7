"""Raw rows from wherever the data lives, each with a location a user can find.

Local `.jsonl`, `.json`, `.parquet` and `.csv` files are read here (so a bad line can be
named); a folder written by `datasets.save_to_disk` goes through `datasets.load_from_disk`; any
other folder or a Hub id goes through `datasets.load_dataset`, the path users with the Hub take.
`split` picks a split of a data set ("train" when not given); a local file is one split.
`limit` keeps a seeded random subset of rows, in their original order.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from preftune.errors import DataError
from preftune.io import (
    iter_lines,
    max_row_bytes,
    not_utf8,
    parse_row,
    read_text,
    too_long_problem,
)

SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")


@dataclass
class RawRow:
    """One row: where it is ("data.jsonl line 12"), its fields, or why it could not be read."""

    where: str
    index: int  # position in the whole source, before sampling: a stable default id
    fields: dict | None
    problem: str | None = None


@dataclass
class RowSet:
    name: str
    columns: list[str]
    rows: list[RawRow]


def sample_indices(count: int, limit: int | None, seed: int) -> list[int]:
    """All indices, or `limit` of them drawn with `seed`, in ascending order."""
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    return sorted(random.Random(seed).sample(range(count), limit))


def _columns(rows: list[RawRow]) -> list[str]:
    first = next((row.fields for row in rows if row.fields is not None), {})
    return list(first)


def _jsonl_row(path: Path, number: int, line: str | None, index: int, limit: int) -> RawRow:
    where = f"{path.name} line {number}"
    if line is None:
        return RawRow(where, index, None, too_long_problem(limit))
    row, problem = parse_row(line)
    return RawRow(where, index, row, problem)


def _read_jsonl(path: Path, limit, seed) -> RowSet:
    """Streamed one line at a time (`preftune.io.iter_lines`): `\\n` ends a row, a row over
    `PREFTUNE_MAX_ROW_BYTES` is a problem named by its line, and a sampled read parses only
    the rows it keeps."""
    max_bytes = max_row_bytes()
    if limit is None:
        lines = enumerate(iter_lines(path, max_bytes=max_bytes))
    else:
        count = sum(1 for _ in iter_lines(path, max_bytes=max_bytes))
        keep = set(sample_indices(count, limit, seed))
        lines = (
            (index, line)
            for index, line in enumerate(iter_lines(path, max_bytes=max_bytes))
            if index in keep
        )
    rows = [_jsonl_row(path, number, line, index, max_bytes) for index, (number, line) in lines]
    return RowSet(path.name, _columns(rows), rows)


def _read_json(path: Path, limit, seed) -> RowSet:
    """A JSON array of objects, an object holding one such array, or JSON Lines named .json."""
    content = read_text(path, what="JSON file")
    try:
        value = json.loads(content)
    except json.JSONDecodeError as error:
        if content.strip().count("\n") > 0 and content.lstrip().startswith("{"):
            return _read_jsonl(path, limit, seed)  # `Dataset.to_json` writes JSON Lines
        raise DataError(
            f"invalid JSON: {error.msg} (column {error.colno})",
            source=f"{path.name} line {error.lineno}",
        ) from None
    if isinstance(value, dict):
        arrays = [v for v in value.values() if isinstance(v, list)]
        value = arrays[0] if len(arrays) == 1 else [value]
    if not isinstance(value, list):
        raise DataError(f"expected a list of objects, got {type(value).__name__}", source=path.name)
    rows = [
        RawRow(f"{path.name} row {i}", i, value[i])
        if isinstance(value[i], dict)
        else RawRow(f"{path.name} row {i}", i, None, f"expected an object, got {value[i]!r:.40}")
        for i in sample_indices(len(value), limit, seed)
    ]
    return RowSet(path.name, _columns(rows), rows)


def _csv_row(where: str, index: int, row: dict, columns: list[str]) -> RawRow:
    extra = row.pop(None, None)  # csv.DictReader files cells beyond the header under None
    if extra is not None:
        return RawRow(
            where, index, None, f"{len(columns) + len(extra)} cells; the header has {len(columns)}"
        )
    short = {key: value for key, value in row.items() if value is not None}  # absent cells
    return RawRow(where, index, short)


def _read_csv(path: Path, limit, seed) -> RowSet:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            records = [(reader.line_num, row) for row in reader]
        except UnicodeDecodeError as error:
            raise not_utf8(error, path.name) from None  # decoded by the block: no line
        except csv.Error as error:
            raise DataError(str(error), source=f"{path.name} line {reader.line_num}") from None
        columns = list(reader.fieldnames or [])
    rows = [
        _csv_row(f"{path.name} line {records[i][0]}", i, records[i][1], columns)
        for i in sample_indices(len(records), limit, seed)
    ]
    return RowSet(path.name, columns, rows)


def _read_parquet(path: Path, limit, seed) -> RowSet:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    indices = sample_indices(table.num_rows, limit, seed)
    records = table.take(indices).to_pylist()
    rows = [RawRow(f"{path.name} row {i}", i, r) for i, r in zip(indices, records, strict=True)]
    return RowSet(path.name, table.column_names, rows)


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def _pick_split(data, split: str | None, name: str):
    """One split of a `DatasetDict`: the one asked for, else "train", else the only one."""
    if not hasattr(data, "keys"):
        return data
    splits = list(data.keys())
    if split is None:
        split = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
    if split not in splits:
        raise DataError(f"choose a split with --split; {name} has {splits}", field="split")
    return data[split]


def _from_dataset(dataset, name: str, limit, seed) -> RowSet:
    indices = sample_indices(len(dataset), limit, seed)
    if len(indices) < len(dataset):
        dataset = dataset.select(indices)
    rows = [RawRow(f"{name} row {i}", i, r) for i, r in zip(indices, dataset, strict=True)]
    return RowSet(name, list(dataset.column_names), rows)


def _load_datasets(source: str, split: str | None, limit, seed, *, saved: bool) -> RowSet:
    import datasets

    try:
        if saved:
            data = datasets.load_from_disk(source)
        else:
            data = datasets.load_dataset(source, split=split)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        where = "folder" if Path(source).exists() else "local file or a Hugging Face Hub data set"
        raise DataError(f"could not load '{source}' as a {where}: {error}") from None
    name = f"{source}[{split}]" if split else source
    return _from_dataset(_pick_split(data, split, source), name, limit, seed)


def load_rows(
    source, *, split: str | None = None, limit: int | None = None, seed: int = 0
) -> RowSet:
    """The rows of a file, a saved `datasets` folder, or a Hub data set (see the module doc)."""
    path = Path(source)
    if path.is_dir():
        saved = any((path / marker).exists() for marker in SAVED_DATASET_MARKERS)
        return _load_datasets(str(path), split, limit, seed, saved=saved)
    if path.suffix in READERS:
        if not path.exists():
            raise DataError(f"no such file: {path}")
        return READERS[path.suffix](path, limit, seed)
    return _load_datasets(str(source), split, limit, seed, saved=False)
