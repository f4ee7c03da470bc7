"""Every kind of bad row is named with its file, line (or row) and field; skip_invalid counts it."""

from __future__ import annotations

import json
import re

import pytest

from preftune.data import read_records
from preftune.errors import DataError

GOOD = {"prompt": "Say hi.", "chosen": " Hi!", "rejected": " No."}


def write_jsonl(path, rows):
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


# (row written as line 2 after a good line 1, the field named, words in the message)
BAD_ROWS = {
    "invalid json": ('{"prompt": "x", "chosen": \n', None, "invalid JSON"),
    "missing column": ({"prompt": "Say hi.", "chosen": " Hi!"}, "rejected", "missing"),
    "empty response": ({**GOOD, "chosen": "   "}, "chosen", "empty"),
    "non-numeric score": ({**GOOD, "score_chosen": "high", "score_rejected": 1}, "score_chosen", "expected a number"),
    "chosen equals rejected": ({**GOOD, "rejected": " Hi!"}, "rejected", "identical to 'chosen'"),
    "non-boolean tie flag": ({**GOOD, "tie": "maybe"}, "tie", "expected a boolean"),
    "non-numeric margin": ({**GOOD, "margin": [1]}, "margin", "expected a number"),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_a_bad_row_stops_the_read_naming_file_line_and_field(tmp_path, kind):
    row, field, words = BAD_ROWS[kind]
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, row])
    with pytest.raises(DataError) as caught:
        read_records(path, format="paired")
    message = str(caught.value)
    assert message.startswith("prefs.jsonl line 2")
    assert words in message
    if field:
        assert f"field '{field}'" in message
        assert caught.value.field == field


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_skip_invalid_skips_counts_and_keeps_the_problem(tmp_path, kind):
    row, _, words = BAD_ROWS[kind]
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, row, GOOD])
    result = read_records(path, format="paired", skip_invalid=True)
    assert len(result.groups) == 2
    assert result.skipped == 1
    assert len(result.problems) == 1 and words in result.problems[0]
    assert [g.source for g in result.groups] == ["prefs.jsonl line 1", "prefs.jsonl line 3"]


def test_a_label_that_is_not_a_boolean(tmp_path):
    path = write_jsonl(
        tmp_path / "kto.jsonl",
        [
            {"prompt": "p", "completion": "c", "label": True},
            {"prompt": "p", "completion": "c", "label": "yes"},
        ],
    )
    with pytest.raises(DataError, match=r"kto.jsonl line 2, field 'label': expected a boolean"):
        read_records(path)


def test_an_unknown_role_names_the_message(tmp_path):
    chosen = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rejected = [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"chosen": chosen, "rejected": rejected}])
    with pytest.raises(
        DataError, match=r"chat.jsonl line 1, field 'rejected\[1\].role': unknown role 'robot'"
    ):
        read_records(path)


def test_a_response_that_does_not_start_with_the_assistant(tmp_path):
    chosen = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rejected = [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"chosen": chosen, "rejected": rejected}])
    with pytest.raises(
        DataError, match=r"field 'rejected\[0\].role': a response starts with 'assistant'"
    ):
        read_records(path)


def test_a_non_numeric_score_in_a_scored_list(tmp_path):
    path = write_jsonl(
        tmp_path / "s.jsonl", [{"prompt": "p", "responses": ["a", "b"], "scores": [1, "n/a"]}]
    )
    with pytest.raises(DataError, match=r"s.jsonl line 1, field 'scores\[1\]': expected a number"):
        read_records(path)


def test_an_ultrafeedback_completion_without_its_score(tmp_path):
    completions = [{"response": "a", "overall_score": 7}, {"response": "b"}]
    path = write_jsonl(tmp_path / "uf.jsonl", [{"instruction": "p", "completions": completions}])
    with pytest.raises(DataError, match=r"field 'completions\[1\].overall_score'"):
        read_records(path)


def test_an_hh_pair_whose_dialogues_differ_before_the_answer(tmp_path):
    row = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: z\n\nAssistant: c"}
    path = write_jsonl(tmp_path / "hh.jsonl", [row])
    with pytest.raises(DataError, match=r"field 'rejected': the dialogue differs"):
        read_records(path)


def test_rows_in_json_and_parquet_are_named_by_row(tmp_path):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "chosen": ""}]))
    with pytest.raises(DataError, match=r"prefs.json row 1, field 'chosen'"):
        read_records(path)


def test_nothing_usable_is_an_error_even_when_skipping(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["not json\n", "{also not\n"])
    with pytest.raises(DataError, match="no usable rows.*2 skipped"):
        read_records(path, format="paired", skip_invalid=True)


def test_an_empty_file_and_a_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_records(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "absent.jsonl")


def test_identical_conversations_are_named_before_the_shared_prefix_hides_them(tmp_path):
    conversation = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    path = write_jsonl(
        tmp_path / "same.jsonl", [{"chosen": conversation, "rejected": conversation}]
    )
    with pytest.raises(
        DataError, match=r"same.jsonl line 1, field 'rejected': identical to 'chosen'"
    ):
        read_records(path)


def test_a_short_or_long_csv_row_names_its_line(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("prompt,chosen,rejected\np,a,b\np,a\np,a,b,extra\n")
    with pytest.raises(DataError, match=r"prefs.csv line 3, field 'rejected': missing"):
        read_records(path)
    result = read_records(path, skip_invalid=True)
    assert [g.source for g in result.groups] == ["prefs.csv line 2"]
    assert result.problems[1] == "prefs.csv line 4: 4 cells; the header has 3"


def test_a_null_value_is_called_null_with_its_field(tmp_path):
    """Issue 17.15: a null used to read "missing" or "expected a string, got None"."""
    chosen = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
    rejected = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}]
    rows = [{**GOOD, "chosen": None}, {"chosen": chosen, "rejected": rejected}]
    for row, message in zip(rows, ["field 'chosen': null", "field 'chosen[1].content': expected a string, got null"], strict=True):  # fmt: skip
        path = write_jsonl(tmp_path / "nulls.jsonl", [row])
        with pytest.raises(DataError, match=re.escape(f"nulls.jsonl line 1, {message}")):
            read_records(path)


def test_the_first_bad_row_says_how_many_more_there_are(tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, {**GOOD, "chosen": ""}, "[1]\n", "{\n"])
    with pytest.raises(DataError) as caught:
        read_records(path)
    message = str(caught.value)
    assert message.startswith("prefs.jsonl line 2, field 'chosen': empty (2 more bad rows; ")
    assert "preftune data inspect" in message and "--skip-invalid" in message
    assert caught.value.field == "chosen"


def test_a_row_over_the_size_limit_is_named_and_can_be_skipped(tmp_path, monkeypatch):
    """Issue 17.16: one 50 MB row used to take 10 GB; rows are now streamed and capped."""
    monkeypatch.setenv("PREFTUNE_MAX_ROW_BYTES", "200")
    huge = {**GOOD, "chosen": "x" * 1000}
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, huge, GOOD])
    with pytest.raises(DataError, match=r"prefs.jsonl line 2: the line is longer than 200 bytes; set PREFTUNE_MAX_ROW_BYTES"):  # fmt: skip
        read_records(path)
    result = read_records(path, skip_invalid=True)
    assert [g.source for g in result.groups] == ["prefs.jsonl line 1", "prefs.jsonl line 3"]
    sampled = read_records(path, limit=2, seed=0, skip_invalid=True)
    assert len(sampled.groups) + sampled.skipped == 2


def test_unicode_line_separators_inside_a_data_row_stay_text(tmp_path):
    row = {**GOOD, "chosen": " one\u2028two\u2029three\x85four"}
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(row, ensure_ascii=False) + "\n")
    groups = read_records(path).groups
    assert len(groups) == 2 and groups[1].responses[0].text == row["chosen"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, suffix):
    content = {
        ".jsonl": json.dumps({**GOOD, "chosen": "caf\xe9"}, ensure_ascii=False) + "\n",
        ".json": json.dumps([{**GOOD, "chosen": "caf\xe9"}], ensure_ascii=False),
        ".csv": "prompt,chosen,rejected\np,caf\xe9,b\n",
    }[suffix]
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.(jsonl|json|csv)(:1)?: not UTF-8 text"):
        read_records(path)
