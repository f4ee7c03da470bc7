"""Every format, read from a hand-written fixture in the shape of the real data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from preftune.data import read_records
from preftune.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


def read(name, **kwargs):
    return read_records(FIXTURES / name, **kwargs)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("paired.jsonl", "paired"),
        ("paired.csv", "paired"),
        ("paired_conversational.jsonl", "paired-conversational"),
        ("implicit_prompt.jsonl", "paired-conversational"),
        ("hh.jsonl", "hh"),
        ("tldr.jsonl", "tldr"),
        ("binary.jsonl", "binary"),
        ("ultrafeedback.jsonl", "scored"),
        ("scored.jsonl", "scored"),
        ("ties.jsonl", "paired"),
    ],
)
def test_format_is_detected_from_the_columns(name, expected):
    result = read(name)
    assert result.format == expected
    assert all(g.meta["format"] == expected for g in result.groups)
    assert result.skipped == 0 and result.problems == []


def test_paired_text_gives_chosen_1_rejected_0_and_carries_the_margin():
    groups = read("paired.jsonl").groups
    assert len(groups) == 3
    first = groups[0]
    assert first.prompt == "Write a one-line review of a film about robots."
    assert [r.text for r in first.responses] == [
        " A warm, funny film whose robots feel alive.",
        " Robots. Film. Bad.",
    ]
    assert [r.score for r in first.responses] == [1.0, 0.0]
    assert first.meta["implicit_scores"] is True
    assert first.source == "paired.jsonl line 1"
    assert [g.margin for g in groups] == [None, None, 2.5]


def test_csv_cells_are_read_with_their_line_numbers_and_empty_cells_are_absent():
    groups = read("paired.csv").groups
    assert [g.source for g in groups] == ["paired.csv line 2", "paired.csv line 3"]
    assert [g.margin for g in groups] == [1.5, None]


def test_conversational_pairs_strip_the_repeated_prompt_and_keep_explicit_scores():
    groups = read("paired_conversational.jsonl").groups
    egg = groups[0]
    assert egg.id == "uf-001"
    assert egg.prompt == [{"role": "user", "content": "How do I boil an egg?"}]
    assert egg.responses[0].text == "Put it in boiling water for 8 minutes, then cool it."
    assert egg.responses[1].text == "Microwave it."
    assert [r.score for r in egg.responses] == [8.5, 3.0]
    assert "implicit_scores" not in egg.meta
    assert egg.tie is False
    assert groups[1].tie is True  # score_chosen == score_rejected


def test_implicit_prompt_is_the_shared_prefix_of_messages():
    (group,) = read("implicit_prompt.jsonl").groups
    assert [m["role"] for m in group.prompt] == ["system", "user", "assistant", "user"]
    assert group.prompt[-1]["content"] == "Best pet?"
    assert [r.text for r in group.responses] == [
        "A cat.",
        "Pets are a personal choice that depends on many factors.",
    ]


def test_hh_dialogues_split_at_the_last_assistant_turn():
    group = read("hh.jsonl").groups[0]
    assert group.prompt == [
        {"role": "user", "content": "What are some cuss words in english?"},
        {"role": "assistant", "content": "I'd rather not list those."},
        {"role": "user", "content": "Why not?"},
    ]
    assert [r.text for r in group.responses] == [
        "They can hurt people, so I avoid them.",
        "Fine, here they are.",
    ]


def test_tldr_builds_the_reddit_prompt_and_follows_choice():
    first, second = read("tldr.jsonl").groups
    assert first.prompt.startswith("SUBREDDIT: r/pets\n\nTITLE: Cat vs cups\n\nPOST: My cat")
    assert first.prompt.endswith("\n\nTL;DR:")
    assert first.responses[0].text == " cat knocks cups off table, moving them does not help"
    assert first.meta["confidence"] == 8
    # choice 1: the second summary is the chosen one
    assert second.responses[0].text == " roommate eats my food and lies about it"
    assert second.responses[1].text == " roommate"


def test_binary_feedback_is_one_labelled_response_conversational_or_not():
    groups = read("binary.jsonl").groups
    assert [g.responses[0].label for g in groups] == [True, False, True]
    assert groups[0].prompt == [{"role": "user", "content": "Tell me a joke."}]
    assert groups[0].responses[0].text == "Why did the robot cross the road? To recharge."
    assert groups[2].prompt == "Review a film about the sea."
    assert all(len(g.responses) == 1 and g.responses[0].score is None for g in groups)


def test_ultrafeedback_nested_scores_overall_then_annotation_ratings():
    rich, sparse = read("ultrafeedback.jsonl").groups
    assert rich.prompt == "Explain photosynthesis in one sentence."
    assert [r.score for r in rich.responses] == [8.5, 5.0, 3.0, 7.0]
    # no overall_score: the mean of the numeric annotation ratings ("N/A" is not a rating)
    assert [r.score for r in sparse.responses] == [4.0, 4.0]


def test_flat_scored_lists_with_optional_labels():
    happy, sea = read("scored.jsonl").groups
    assert [r.score for r in happy.responses] == [0.9, 0.4, -0.2, 0.9]
    assert all(r.label is None for r in happy.responses)
    assert [r.label for r in sea.responses] == [True, False]


def test_ties_come_from_a_flag_or_equal_scores():
    groups = read("ties.jsonl").groups
    assert [g.tie for g in groups] == [True, True, False]


def test_format_can_be_forced_and_a_wrong_one_is_named(tmp_path):
    assert read("hh.jsonl", format="hh").format == "hh"
    with pytest.raises(DataError, match="unknown format 'dpo'"):
        read("hh.jsonl", format="dpo")
    with pytest.raises(DataError, match=r"field 'prompt': missing"):
        read("hh.jsonl", format="paired")


def test_undetectable_columns_ask_for_a_format(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(DataError, match=r"cannot tell the format.*question"):
        read_records(path)


def test_ids_come_from_the_data_or_the_row_and_stay_unique(tmp_path):
    path = tmp_path / "dup.jsonl"
    row = '{"id": "x", "prompt": "p", "chosen": "a", "rejected": "b"}\n'
    path.write_text(row * 3)
    assert [g.id for g in read_records(path).groups] == ["x", "x#2", "x#3"]
    assert [g.id for g in read("paired.jsonl").groups] == ["0", "1", "2"]
