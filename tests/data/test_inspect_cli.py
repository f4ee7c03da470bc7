"""`preftune data inspect` through the CLI's entry point, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preftune.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


def inspect_json(capsys, *args) -> dict:
    assert main(["data", "inspect", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hh.jsonl", {"format": "hh", "groups": 2, "responses": 4, "with_scores": 0, "with_labels": 0, "ties": 0}),
        ("ultrafeedback.jsonl", {"format": "scored", "groups": 2, "responses": 6, "with_scores": 2, "ties": 1}),
        ("binary.jsonl", {"format": "binary", "groups": 3, "responses": 3, "with_labels": 3, "with_scores": 0}),
        ("ties.jsonl", {"format": "paired", "ties": 2}),
    ],
)  # fmt: skip
def test_json_report_has_the_promised_keys(capsys, name, expected):
    report = inspect_json(capsys, FIXTURES / name)
    assert {"format", "groups", "responses", "with_scores", "with_labels", "ties"} <= report.keys()
    assert {k: report[k] for k in expected} == expected
    assert report["bad_rows"] == 0 and report["problems"] == []


def test_format_override_and_token_lengths_with_a_tokenizer(capsys, tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path)
    report = inspect_json(
        capsys, FIXTURES / "tldr.jsonl", "--format", "tldr", "--tokenizer", tmp_path,
        "--max-prompt-length", "16", "--max-length", "32",
    )  # fmt: skip
    tokens = report["tokens"]
    assert tokens["max_prompt_length"] == 16 and tokens["groups"] == 2
    assert tokens["prompt_tokens_max"] > 16 and tokens["prompts_truncated"] == 2


def test_text_report(capsys):
    assert main(["data", "inspect", str(FIXTURES / "scored.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "format     scored" in out
    assert "groups     2  (groups of n responses: 1 of 2, 1 of 4)" in out


GOOD_LINE = '{"prompt": "p", "chosen": "x", "rejected": "y"}\n'


def test_bad_data_exits_2_with_the_row_named_and_no_traceback(capsys, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD_LINE + '{"prompt": "p", "chosen": "x"\n')
    assert main(["data", "inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert "  bad.jsonl line 2: invalid JSON" in captured.out
    assert captured.err == (
        "preftune data: error: bad.jsonl: 1 bad row (listed above); fix them, or pass "
        "--skip-invalid to use the other rows\n"
    )


def test_every_bad_row_is_listed_up_to_twenty_then_counted(capsys, tmp_path):
    """Issue 17.15: inspect used to stop at the first bad row."""
    path = tmp_path / "bad.jsonl"
    bad = ['{"prompt": "p", "chosen": "x", "rejected": "x"}\n'] * 24
    bad[3] = '{"prompt": "p", "chosen": null, "rejected": "y"}\n'
    path.write_text(GOOD_LINE + "".join(bad))
    assert main(["data", "inspect", str(path)]) == 2
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.startswith("  bad.jsonl line")]
    assert len(listed) == 20
    assert (
        listed[0]
        == "  bad.jsonl line 2, field 'rejected': identical to 'chosen': the pair says nothing"
    )
    assert listed[3] == "  bad.jsonl line 5, field 'chosen': null"
    assert "problems   24 bad rows:" in out and out.rstrip().endswith("  and 4 more")


def test_skip_invalid_reports_the_usable_rows_and_exits_0(capsys, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD_LINE + '{"prompt": "p", "chosen": "x", "rejected": "x"}\n' * 7)
    report = inspect_json(capsys, path, "--skip-invalid")
    assert report["groups"] == 1 and report["bad_rows"] == 7
    assert len(report["problems"]) == 7
    assert report["problems"][0].startswith("bad.jsonl line 2, field 'rejected': identical")


def test_a_file_with_no_usable_row_exits_2_without_suggesting_skip_invalid(capsys, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "x", "rejected": "x"}\n[1]\n')
    assert main(["data", "inspect", str(path), "--skip-invalid"]) == 2
    captured = capsys.readouterr()
    assert "bad.jsonl line 2: each line must be a JSON object, got an array" in captured.out
    assert "format     paired" in captured.out
    assert captured.err == "preftune data: error: bad.jsonl: no usable rows (2 bad, listed above)\n"
