"""`preftune judge --alpaca-eval / --arena-hard / --mtbench-pairwise` end to end against the
loopback chat server, and the one-line errors (exit 2) for bad input."""

import json
import sys

import pytest

from preftune.cli import main

try:
    import alpaca_eval.annotators  # noqa: F401

    HAS_ALPACA_EVAL = True
except ImportError:
    HAS_ALPACA_EVAL = False
needs_alpaca_eval = pytest.mark.skipif(
    not HAS_ALPACA_EVAL,
    reason="alpaca-eval is not importable: pip install 'preftune[alpacaeval]'",
)


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def judge_options(server, out):
    return [
        "--base-url",
        server.base_url,
        "--judge-model",
        "judge",
        "--timeout",
        "2",
        "--out",
        str(out),
    ]


@needs_alpaca_eval
def test_alpaca_eval_command(tmp_path, chat_server, capsys, monkeypatch):
    from tests.evaluate.test_benchmarks_alpaca_eval import logprob_judge, write_set

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-key-123456")
    reference, samples = write_set(tmp_path)
    server = chat_server(logprob_judge)
    out = tmp_path / "ae"
    argv = ["judge", "--alpaca-eval", "--samples", str(samples), "--reference", str(reference)]
    assert main(argv + judge_options(server, out) + ["--limit", "5"]) == 0
    results = json.loads((out / "results.json").read_text())
    # the first five rows: 5 wins at P = 0.9
    assert results["n"] == 5 and results["win_rate"] == pytest.approx(0.9)
    assert set(results) >= {"win_rate", "lc_win_rate", "standard_error", "n", "annotator"}
    assert len(json.loads((out / "annotations.json").read_text())) == 5
    assert "sk-loopback-key-123456" not in (out / "annotations.json").read_text()
    assert json.loads(capsys.readouterr().out)["win_rate"] == results["win_rate"]


@needs_alpaca_eval
def test_alpaca_eval_bad_input_exits_2_with_one_line(tmp_path, chat_server, capsys):
    from tests.evaluate.test_benchmarks_alpaca_eval import write_set

    reference, samples = write_set(tmp_path)
    server = chat_server(lambda messages, attempt: "never asked")
    base = ["judge", "--alpaca-eval", "--samples", str(samples)] + judge_options(
        server, tmp_path / "o"
    )
    assert main(base + ["--reference", str(reference), "--annotator", "gpt5_magic"]) == 2
    error = capsys.readouterr().err
    assert "gpt5_magic" in error and "alpaca_eval_gpt4_turbo_fn" in error and error.count("\n") == 1
    broken = write(tmp_path / "broken.jsonl", [{"instruction": "x", "output": "y"}])
    assert main(base + ["--reference", broken]) == 2
    assert "broken.jsonl" in capsys.readouterr().err
    assert server.requests == []


def test_missing_alpaca_eval_names_the_pip_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "alpaca_eval", None)  # as if it were not installed
    argv = [
        "judge",
        "--alpaca-eval",
        "--samples",
        "s.jsonl",
        "--base-url",
        "http://x",
        "--judge-model",
        "m",
    ]
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert "pip install 'preftune[alpacaeval]'" in capsys.readouterr().err


def test_arena_hard_command_with_a_model_that_answers(tmp_path, chat_server, tiny_model_dir):
    questions = write(
        tmp_path / "questions.jsonl",
        [{"question_id": f"q{i}", "turns": [{"content": f"question {i}"}]} for i in range(3)],
    )
    baseline = write(
        tmp_path / "gpt-4-0314.jsonl", [{"id": f"q{i}", "response": "baseline"} for i in range(3)]
    )
    server = chat_server(lambda messages, attempt: "Mine... [[A>>B]]")  # A always much better
    out = tmp_path / "ah"
    argv = ["judge", "--arena-hard", "--model", str(tiny_model_dir), "--questions", questions]
    argv += ["--baseline", baseline, "--limit", "2", "--max-new-tokens", "3", "--style-control"]
    assert main(argv + judge_options(server, out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_games"] == 4 and results["score"] == pytest.approx(0.5)
    assert len((out / "answers.jsonl").read_text().splitlines()) == 2


def test_mtbench_pairwise_command(tmp_path, chat_server, tiny_model_dir):
    baseline = write(
        tmp_path / "baseline.jsonl",
        [{"question_id": qid, "choices": [{"turns": ["b1", "b2"]}]} for qid in (81, 82)],
    )
    server = chat_server(lambda messages, attempt: "[[C]]")
    out = tmp_path / "mp"
    argv = ["judge", "--mtbench-pairwise", "--model", str(tiny_model_dir), "--baseline", baseline]
    assert main(argv + ["--limit", "2", "--max-new-tokens", "3"] + judge_options(server, out)) == 0
    summary = json.loads((out / "mtbench_pairwise.json").read_text())
    assert summary["overall"]["tie"] == 4 and summary["categories"]["writing"]["win_rate"] == 0.5


def test_benchmarks_refuse_other_judges_and_need_one_answer_source(tmp_path, capsys):
    base = [
        "judge",
        "--arena-hard",
        "--base-url",
        "http://x",
        "--judge-model",
        "m",
        "--out",
        str(tmp_path),
    ]
    assert main(base + ["--judge", "gold", "--samples", "s.jsonl"]) == 2
    assert "--judge openai" in capsys.readouterr().err
    assert main(base) == 2
    assert "exactly one of --samples FILE / --model RUN" in capsys.readouterr().err
    assert (
        main(["judge", "--samples", "s.jsonl", "--baseline", "b.jsonl", "--out", str(tmp_path)])
        == 2
    )
    assert "--judge is required" in capsys.readouterr().err
