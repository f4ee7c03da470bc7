"""Sources: JSON shapes, Parquet, a `save_to_disk` folder, `load_dataset` on a local folder, sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preftune.data import read_records
from preftune.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


def fixture_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def texts(result):
    return [[r.text for r in g.responses] for g in result.groups]


@pytest.mark.parametrize("shape", ["array", "object", "json-lines"])
def test_json_files_in_every_shape_read_the_same(tmp_path, shape):
    rows = fixture_rows("paired.jsonl")
    content = {
        "array": json.dumps(rows),
        "object": json.dumps({"data": rows}),
        "json-lines": "\n".join(json.dumps(r) for r in rows),
    }[shape]
    path = tmp_path / "prefs.json"
    path.write_text(content)
    assert texts(read_records(path)) == texts(read_records(FIXTURES / "paired.jsonl"))


def test_invalid_json_file_names_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"prompt": "p",\n "chosen": }\n]')
    with pytest.raises(DataError, match=r"broken.json line 3: invalid JSON"):
        read_records(path)


def test_parquet_with_nested_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = fixture_rows("ultrafeedback.jsonl")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "uf.parquet")
    result = read_records(tmp_path / "uf.parquet")
    assert result.format == "scored"
    assert [r.score for r in result.groups[0].responses] == [8.5, 5.0, 3.0, 7.0]
    assert result.groups[1].source == "uf.parquet row 1"


def test_a_save_to_disk_folder_with_splits(tmp_path):
    import datasets

    rows = fixture_rows("tldr.jsonl")
    data = datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows), test=datasets.Dataset.from_list(rows[:1])
    )
    data.save_to_disk(tmp_path / "tldr")
    assert len(read_records(tmp_path / "tldr").groups) == 2  # "train" by default
    test = read_records(tmp_path / "tldr", split="test")
    assert len(test.groups) == 1 and test.format == "tldr"
    with pytest.raises(DataError, match=r"field 'split'.*\['train', 'test'\]"):
        read_records(tmp_path / "tldr", split="validation")


def test_load_dataset_path_on_a_local_data_folder(tmp_path):
    """The Hub code path (`datasets.load_dataset`), pointed at a local folder of data files."""
    folder = tmp_path / "hh-rlhf"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "test"):
        (folder / "data" / f"{split}.jsonl").write_text((FIXTURES / "hh.jsonl").read_text())
    result = read_records(folder, split="test")
    assert result.format == "hh"
    assert len(result.groups) == 2
    assert result.groups[0].source == f"{folder}[test] row 0"


def test_an_unreachable_hub_id_is_a_data_error(monkeypatch):
    import datasets
    import huggingface_hub.constants

    # offline, as these machines are, without waiting for network time-outs
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="could not load 'nobody/no-such-dataset'"):
        read_records("nobody/no-such-dataset")


def test_limit_draws_a_seeded_subset_in_file_order(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) + "\n"
            for i in range(50)
        )
    )
    first = read_records(path, limit=10, seed=1)
    again = read_records(path, limit=10, seed=1)
    other = read_records(path, limit=10, seed=2)
    ids = [g.id for g in first.groups]
    assert len(ids) == 10
    assert ids == [g.id for g in again.groups]
    assert ids != [g.id for g in other.groups]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert all(g.prompt == f"p{g.id}" for g in first.groups)  # ids are positions in the file
    assert len(read_records(path, limit=500).groups) == 50
