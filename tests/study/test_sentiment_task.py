"""The built-in sentiment task: prompts, split and gold reward."""

from __future__ import annotations

import pytest

from preftune.errors import ConfigError
from preftune.tasks import get_task, sentiment


def test_splits_are_disjoint_and_leave_room_for_100_test_and_50_dev_prompts():
    splits = {name: sentiment.prompts(name) for name in sentiment.SPLITS}
    assert len(splits["heldout"]) >= 100 and len(splits["dev"]) >= 50
    assert len(splits["train"]) >= 300
    for first, second in (("train", "heldout"), ("train", "dev"), ("dev", "heldout")):
        assert not {p["id"] for p in splits[first]} & {p["id"] for p in splits[second]}
        assert not {p["prompt"] for p in splits[first]} & {p["prompt"] for p in splits[second]}


def test_a_limit_takes_a_prefix_so_smaller_studies_nest_in_larger_ones():
    assert sentiment.prompts("train", 10) == sentiment.prompts("train")[:10]


def test_prompts_span_several_kinds_of_review():
    kinds = {p["kind"] for p in sentiment.catalogue()}
    assert {"film", "book", "restaurant", "product"} <= kinds


def test_asking_for_more_prompts_than_exist_names_the_split():
    with pytest.raises(ConfigError, match="heldout"):
        sentiment.prompts("heldout", 10_000)
    with pytest.raises(ConfigError, match="split 'test'"):
        sentiment.prompts("test")


def test_gold_reward_prefers_positive_text():
    gold = get_task("sentiment").gold
    positive = gold("Review a film.", "A wonderful, moving film. I loved it.")
    negative = gold("Review a film.", "A dull, awful film. I hated it.")
    assert -1.0 <= negative < 0.0 < positive <= 1.0


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ConfigError, match="sentiment"):
        get_task("poetry")
