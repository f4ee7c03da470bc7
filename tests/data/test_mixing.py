"""Several training sources mixed by weight (`data.train`), reproducibly."""

from __future__ import annotations

import re

import pytest

from preftune.config import build_train_config
from preftune.data.mixing import mix_groups, read_mixture
from preftune.data.records import PromptGroup, Response
from preftune.errors import ConfigError
from preftune.losses import METHODS
from preftune.testing import write_preference_files
from preftune.train.dataset import read_view


def _groups(prefix: str, count: int) -> list[PromptGroup]:
    return [PromptGroup(f"{prefix} {i}", [Response("r")], id=str(i)) for i in range(count)]


def test_whole_weights_repeat_every_record():
    mixed = mix_groups([(_groups("a", 2), 2.0), (_groups("b", 3), 1.0)])
    assert [g.id for g in mixed] == ["0:0", "0:1", "0:0#2", "0:1#2", "1:0", "1:1", "1:2"]
    assert [g.prompt for g in mixed] == ["a 0", "a 1", "a 0", "a 1", "b 0", "b 1", "b 2"]


def test_a_fraction_draws_that_share_of_distinct_records_in_file_order():
    source = _groups("a", 10)
    mixed = mix_groups([(source, 0.3)], seed=4)
    prompts = [g.prompt for g in mixed]
    assert len(prompts) == 3 == len(set(prompts))
    assert prompts == sorted(prompts, key=lambda p: int(p.split()[1]))
    again = mix_groups([(source, 0.3)], seed=4)
    assert [g.prompt for g in again] == prompts  # the same seed, the same mix
    draws = {tuple(g.prompt for g in mix_groups([(source, 0.3)], seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed decides which records


def test_one_and_a_half_is_everything_once_and_half_again():
    mixed = mix_groups([(_groups("a", 4), 1.5)], seed=0)
    assert [g.id for g in mixed][:4] == ["0:0", "0:1", "0:2", "0:3"]
    repeats = [g.id for g in mixed][4:]
    assert len(repeats) == 2 and all(i.endswith("#2") for i in repeats)


def test_two_files_in_two_formats_mix(tmp_path):
    files = write_preference_files(tmp_path, num_prompts=4)
    result = read_mixture(
        [
            {"path": str(files["paired"]), "weight": 1.0},
            {"path": str(files["scored"]), "weight": 0.5},
        ]
    )
    assert len(result.groups) == 4 + 2
    assert {len(g.responses) for g in result.groups[:4]} == {2}
    assert {len(g.responses) for g in result.groups[4:]} == {4}
    assert len({g.id for g in result.groups}) == 6


def test_the_train_config_reads_the_mixture(tmp_path, tiny_model_dir):
    files = write_preference_files(tmp_path, num_prompts=6)
    config = build_train_config(
        {
            "model": str(tiny_model_dir),
            "method": "dpo",
            "data": {
                "train": [
                    {"path": str(files["paired"]), "weight": 2},
                    {"path": str(files["scored"]), "weight": 0.5},
                ]
            },
        }
    )
    view, counts = read_view(config, METHODS["dpo"])
    assert counts.records == 6 * 2 + 3
    assert len(view) == counts.view_groups > 0


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({}, "data: give path (one source), train"),
        ({"path": "P", "train": [{"path": "P"}]}, "data: give path (one source), train"),
        ({"train": []}, "data.train:"),
        ({"train": [{"path": "P", "weight": 0}]}, "data.train.0.weight"),
        ({"train": [{"path": "P"}, {"path": "./missing.jsonl"}]}, "data.train.1.path"),
        ({"train": [{"path": "P", "share": 2}]}, "data.train.0.share"),
    ],
)
def test_mixture_errors_name_the_key(tmp_path, tiny_model_dir, data, named):
    paired = str(write_preference_files(tmp_path, num_prompts=2)["paired"])
    data = {k: v if k != "path" else paired for k, v in data.items()}
    for source in data.get("train", []):
        source["path"] = paired if source["path"] == "P" else source["path"]
    with pytest.raises(ConfigError, match=re.escape(named)):
        build_train_config({"model": str(tiny_model_dir), "method": "dpo", "data": data})
