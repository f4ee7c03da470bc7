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

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
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


def _parse_object(text: str, where: str, index: int) -> RawRow:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return RawRow(where, index, None, f"invalid JSON: {error.msg} (column {error.colno})")
    if not isinstance(value, dict):
        return RawRow(where, index, None, f"expected a JSON object, got {type(value).__name__}")
    return RawRow(where, index, value)


def _columns(rows: list[RawRow]) -> list[str]:
    first = next((row.fields for row in rows if row.fields is not None), {})
    return list(first)


def _read_jsonl(path: Path, limit, seed) -> RowSet:
    with path.open(encoding="utf-8") as handle:
        lines = [(n, line) for n, line in enumerate(handle, start=1) if line.strip()]
    rows = [
        _parse_object(lines[i][1], f"{path.name} line {lines[i][0]}", i)
        for i in sample_indices(len(lines), limit, seed)
    ]
    return RowSet(path.name, _columns(rows), rows)


def _read_json(path: Path, limit, seed) -> RowSet:
    """A JSON array of objects, an object holding one such array, or JSON Lines named .json."""
    content = path.read_text(encoding="utf-8")
    try:
        value = json.loads(content)
    except json.JSONDecodeError as error:
        if len(content.strip().splitlines()) > 1 and content.lstrip().startswith("{"):
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
    return RawRow(where, index, row)


def _read_csv(path: Path, limit, seed) -> RowSet:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        records = [(reader.line_num, row) for row in reader]
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
