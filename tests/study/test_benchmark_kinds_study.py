"""A tiny-model study with AlpacaEval, Arena-Hard and MT-Bench pairwise evaluations, judged by
the loopback chat server: every row (start, each seed of DPO) answers each benchmark and is
judged against its baseline; the ranking, the report's views in the papers' shape and a
resume that pays nothing twice.

The scripted judge decides by markers in the baseline: an answer holding "@@STRONG@@" beats
a row's answer, and a row's answer beats one holding "@@weak@@", so every figure below follows
by hand from the baseline files whatever the random model writes."""

from __future__ import annotations

import json
import math
import re

import pytest

from preftune.experiments.config import study_from_dict
from preftune.experiments.layout import StudyLayout
from preftune.experiments.ranking import benchmark_outcomes
from preftune.experiments.runner import StudyRunner
from preftune.testing import write_preference_files

pytest.importorskip(
    "alpaca_eval.annotators",
    reason="alpaca-eval is not importable: pip install 'preftune[alpacaeval]'",
)

STRONG, WEAK = "@@STRONG@@", "@@weak@@"


def _rank(text: str) -> int:
    return 2 if STRONG in text else 0 if WEAK in text else 1  # 1: a row's own answer


def _completion(message: dict, logprobs=None) -> tuple:
    choice = {"index": 0, "finish_reason": "stop", "logprobs": logprobs}
    choice["message"] = {"role": "assistant", "content": None, **message}
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "judge"}
    usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    return ("reply", {**body, "choices": [choice], "usage": usage})


def _alpaca_eval_verdict(text: str) -> tuple:
    """weighted_alpaca_eval_gpt4_turbo: one token, "m" or "M", with its top logprobs; the
    better output gets probability 0.9."""
    shown = dict(
        re.findall(r'"(?:model_identifier|model)": "(m|M)",\s*"output": """(.*?)"""', text, re.S)
    )
    p = 0.9 if _rank(shown["m"]) > _rank(shown["M"]) else 0.1
    top = [{"token": "m", "logprob": math.log(p)}, {"token": "M", "logprob": math.log(1 - p)}]
    token = top[0] if p >= 0.5 else top[1]
    content = [{**token, "bytes": None, "top_logprobs": [{**t, "bytes": None} for t in top]}]
    return _completion({"content": token["token"]}, {"content": content})


def judge(messages, attempt):
    system, text = messages[0]["content"], messages[-1]["content"]
    if '"output": """' in text:
        return _alpaca_eval_verdict(text)
    first, _, second = text.partition("Start of Assistant B's")
    a, b = _rank(first), _rank(second)
    if "[[A>>B]]" in system:  # Arena-Hard: a strong verdict when the strong answer is in it
        strength = ">>" if 2 in (a, b) else ">"
        return f"My final verdict: [[A{strength}B]]" if a > b else f"[[B{strength}A]]"
    return "[[A]]" if a > b else "[[B]]"  # MT-Bench's pair prompts


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def benchmark_files(folder) -> dict:
    """4 AlpacaEval instructions (one strong reference), 3 Arena-Hard questions (one strong
    baseline answer), 3 MT-Bench baseline answers (81: strong on turn 2; 82: strong on both)."""
    reference = [
        {
            "instruction": f"name a colour {n}",
            "output": f"{STRONG if n == 0 else WEAK} red",
            "generator": "ref",
        }
        for n in range(4)
    ]
    (folder / "reference.json").write_text(json.dumps(reference))
    questions = [
        {"question_id": f"q{n}", "turns": [{"content": f"count to {n}"}]} for n in range(3)
    ]
    arena = [{"id": f"q{n}", "response": f"{STRONG if n == 0 else WEAK} one"} for n in range(3)]
    mtbench = [
        {"id": 81, "answers": [f"{WEAK} a", f"{STRONG} b"]},
        {"id": 82, "answers": [f"{STRONG} c", f"{STRONG} d"]},
        {"id": 83, "answers": [f"{WEAK} e", f"{WEAK} f"]},
    ]
    return {
        "reference": str(folder / "reference.json"),
        "questions": _jsonl(folder / "questions.jsonl", questions),
        "arena": _jsonl(folder / "arena-baseline.jsonl", arena),
        "mtbench": _jsonl(folder / "mtbench-baseline.jsonl", mtbench),
    }


def study(tmp_path, model_dir, base_url) -> dict:
    pairs = str(write_preference_files(tmp_path)["paired"])
    files = benchmark_files(tmp_path)
    judge_settings = {"type": "openai", "base_url": base_url, "model": "judge", "timeout": 10}
    return {
        "name": "benchmarks",
        "model": str(model_dir),
        "seeds": [0, 1],
        "data": {"train": {"path": pairs}, "heldout": {"path": pairs, "limit": 2}},
        "train": {"batch_size": 4, "max_prompt_length": 48, "max_length": 64},  # any model will do
        "methods": [{"method": "dpo"}],
        "evaluation": {
            "num_prompts": 2,
            "max_new_tokens": 6,
            "batch_size": 4,
            "kl_samples": 0,
            "evaluations": [
                {
                    "name": "ae2",
                    "kind": "alpaca-eval",
                    "reference": files["reference"],
                    "judge": judge_settings,
                },
                {
                    "name": "arena",
                    "kind": "arena-hard",
                    "questions": files["questions"],
                    "baseline": files["arena"],
                    "judge": judge_settings,
                },
                {
                    "name": "mtb",
                    "kind": "mt-bench-pairwise",
                    "baseline": files["mtbench"],
                    "limit": 3,
                    "judge": judge_settings,
                },
            ],
        },
    }


def test_a_study_judges_every_row_on_the_benchmarks_ranks_them_and_reports_the_papers_views(
    tmp_path, tiny_model_dir, chat_server
):
    server = chat_server(judge)
    config = study_from_dict(study(tmp_path, tiny_model_dir, server.base_url))
    out, lines = tmp_path / "study", []
    results = StudyRunner(config, out, log=lines.append).run()
    layout = StudyLayout(out)

    # the plan announced what the judge was then asked: 3 sets of answers (start, 2 seeds)
    plan = {
        name: f"rank on {name}: pairs: anchored, {count} judge requests"
        for name, count in (
            ("ae2", 4 * 1 * 3),  # 4 instructions, one annotation each
            ("arena", 3 * 2 * 3),  # 3 questions, two games each
            ("mtb", 3 * 4 * 3),  # 3 questions, 2 turns in both orders
        )
    }
    for line in plan.values():
        assert any(line in said for said in lines), line
    assert len(server.requests) == 12 + 18 + 36
    for label, seed in (("start", None), ("dpo", 0), ("dpo", 1)):
        for name in ("ae2", "arena", "mtb"):
            assert (layout.judged(label, name, seed) / "results.json").is_file(), (
                label,
                seed,
                name,
            )

    # each row's figures, by hand from the baseline files
    rows = {row["label"]: row["evaluations"] for row in results["rows"]}
    start = rows["start"]
    assert start["ae2"]["win_rate"] == pytest.approx((0.1 + 3 * 0.9) / 4)
    standard_error = 0.4 / 2  # sample sd of (0.1, 0.9, 0.9, 0.9) over sqrt(4)
    assert start["ae2"]["ci_low"] == pytest.approx(0.7 - 1.959964 * standard_error)
    assert start["ae2"]["ci_high"] == 1.0
    assert start["ae2"]["lc_win_rate"] is None and "custom set" in start["ae2"]["lc_unavailable"]
    # q0: the baseline wins both games strongly (6 battles); q1, q2: the row wins 2 each
    assert start["arena"]["win_rate"] == pytest.approx(4 / 10)
    # 81: turn 1 won, turn 2 lost; 82 lost twice; 83 won twice
    assert start["mtb"]["win_rate"] == pytest.approx(3 / 6)
    assert (start["mtb"]["wins"], start["mtb"]["losses"], start["mtb"]["n"]) == (3, 3, 3)
    assert rows["dpo"]["arena"]["win_rate"] == pytest.approx(0.4)  # the mean of both seeds
    assert rows["dpo"]["arena"]["seeds"] == 2 and rows["dpo"]["arena"]["ci_low"] is None

    # the ranking compares the rows prompt by prompt (seed, prompt id), each against the baseline
    arena = config.evaluation.evaluations[1]
    found = benchmark_outcomes(layout, arena, [("start", None), ("dpo", 1)])
    assert found == {
        "start": {(None, "q0"): 0.0, (None, "q1"): 1.0, (None, "q2"): 1.0},
        "dpo": {(1, "q0"): 0.0, (1, "q1"): 1.0, (1, "q2"): 1.0},
    }
    for name in ("ae2", "arena", "mtb"):
        ranking = json.loads((layout.ranking(name) / "ranking.json").read_text())
        assert {entry["label"] for entry in ranking["ranking"]} == {"start", "dpo"}
        assert len({entry["tier"] for entry in ranking["ranking"]}) == 1  # the same outcomes

    # the papers' views, in results.json and the report
    views = json.loads((out / "results.json").read_text())["paper_views"]
    assert views["win_rates"]["columns"] == [
        "ae2 LC win % vs reference",
        "ae2 raw win % vs reference",
        "arena win % vs arena-baseline",
        "mtb win % vs mtbench-baseline",
    ]
    assert views["mt_bench_arena_hard"]["columns"] == ["arena score: win % vs arena-baseline"]
    report = (out / "report.md").read_text()
    assert "## Win rates by evaluation set (as the HH/TL;DR comparison study's Table 3)" in report
    assert "## MT-Bench and Arena-Hard (as the MPPO paper reports them)" in report
    assert "| dpo | — | 70.0 | 40.0 | 50.0 |" in report  # means over seeds: no interval
    assert re.search(
        r"\| start \| — \| 70\.0 \[30\.8, 100\.0\] \| 40\.0 \[[\d.]+, [\d.]+\] \|", report
    )
    assert "ae2 LC: — because LC needs each instruction's place" in report
    assert "Arena-Hard-Auto v0.1: each row's answers" in report
    html = (out / "report.html").read_text()
    assert "MT-Bench and Arena-Hard (as the MPPO paper reports them)" in html

    # a rerun resumes: nothing is generated or judged again
    before = len(server.requests)
    StudyRunner(config, out, log=lines.append).run()
    assert len(server.requests) == before
