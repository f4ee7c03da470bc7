"""`preftune rank` end to end: gold scoring, LLM judging with its cache, and bad input."""

from __future__ import annotations

import json

import pytest

from preftune.cli import main
from preftune.evaluate.rank_judging import judge_all_pairs, score_entries
from preftune.judges import GoldJudge, compare_by_scores, register_gold

from .test_openai_judge import make_judge, prefers_good


def count_good(prompt, response: str) -> float:
    return float(response.count("good"))


register_gold("test-count-good", count_good)


def write_samples(path, responses: list[str], *, ids=None, seed=None):
    ids = ids or [f"q{i}" for i in range(len(responses))]
    rows = [
        {
            "id": i,
            "prompt": f"question {i}",
            "response": r,
            **({} if seed is None else {"seed": seed}),
        }
        for i, r in zip(ids, responses, strict=True)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def rank_cli(*args: str) -> int:
    return main(["rank", *args])


def gold(*samples: str, out) -> list[str]:
    return [
        *[a for s in samples for a in ("--samples", s)],
        "--judge",
        "gold",
        "--gold",
        "test-count-good",
        "--out",
        str(out),
    ]


def test_gold_ranking_writes_json_markdown_and_heatmap(tmp_path, capsys):
    n = 24
    best = write_samples(tmp_path / "best.jsonl", ["good good"] * n)
    mid = write_samples(tmp_path / "mid.jsonl", ["good"] * (n // 2) + ["good good"] * (n // 2))
    low = write_samples(tmp_path / "low.jsonl", ["meh"] * n)
    assert rank_cli(*gold(low, mid, best, out=tmp_path / "out"), "--bootstrap", "300") == 0
    result = json.loads((tmp_path / "out" / "ranking.json").read_text())
    assert [e["label"] for e in result["ranking"]] == ["best", "mid", "low"]
    assert [e["tier"] for e in result["ranking"]] == [1, 2, 3]
    h2h = result["head_to_head"]
    assert h2h["best"]["mid"]["win_rate"] == pytest.approx(0.75)  # 12 wins, 12 ties of 24
    assert (h2h["mid"]["best"]["losses"], h2h["mid"]["best"]["ties"]) == (12, 12)
    assert set(h2h) == {"best", "mid", "low"} and all(len(row) == 2 for row in h2h.values())
    assert result["warnings"] == [] and result["method"]["judge"] == "gold:test-count-good"
    markdown = (tmp_path / "out" / "ranking.md").read_text()
    assert "| 1 | 1 | best |" in markdown and "best vs mid | 12-0-12 |" in markdown
    assert (tmp_path / "out" / "head_to_head.png").read_bytes()[:4] == b"\x89PNG"
    assert "tier 1  best" in capsys.readouterr().out


def test_few_prompts_warn_in_the_output_and_on_stderr(tmp_path, capsys):
    a = write_samples(tmp_path / "a.jsonl", ["good", "bad", "good"])
    b = write_samples(tmp_path / "b.jsonl", ["bad", "bad", "good"])
    assert rank_cli(*gold(a, b, out=tmp_path / "out"), "--bootstrap", "100") == 0
    result = json.loads((tmp_path / "out" / "ranking.json").read_text())
    assert "only 3 prompts" in result["warnings"][0]
    assert "intervals are wide" in capsys.readouterr().err


def test_missing_ids_are_refused_naming_the_file_or_intersected(tmp_path, capsys):
    a = write_samples(tmp_path / "a.jsonl", ["good"] * 3)
    b = write_samples(tmp_path / "b.jsonl", ["bad"] * 2, ids=["q0", "q9"])
    assert rank_cli(*gold(a, b, out=tmp_path / "out")) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "a.jsonl" in error and "'q9'" in error
    assert rank_cli(*gold(a, b, out=tmp_path / "out"), "--intersect") == 0
    assert "drops 3 prompt(s)" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "ranking.json").read_text())
    assert result["n_prompts"] == 1


@pytest.mark.parametrize(
    "extra,rows,message",
    [
        (["--label", "same", "--label", "same"], None, "label 'same' is given twice"),
        (["--label", "ok", "--label", "no/pe"], None, "'no/pe' is not a safe file name"),
        (["--label", "only-one"], None, "--label is given 1 times for 2 --samples"),
        ([], [{"id": "q0", "prompt": "p"}], "b.jsonl:1, field 'response': missing"),
        ([], [{"prompt": "p", "response": "r"}], "b.jsonl:1, field 'id': missing"),
        (["--pairs", "anchored"], None, "--pairs anchored needs it"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, rows, message):
    a = write_samples(tmp_path / "a.jsonl", ["good"])
    b = write_samples(tmp_path / "b.jsonl", ["bad"])
    if rows is not None:
        (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert rank_cli(*gold(a, b, out=tmp_path / "out"), *extra) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_one_entry_is_refused(tmp_path, capsys):
    a = write_samples(tmp_path / "a.jsonl", ["good"])
    assert rank_cli(*gold(a, out=tmp_path / "out")) == 2
    assert "at least two entries" in capsys.readouterr().err


def test_llm_judge_asks_each_pair_once_in_both_orders_and_reuses_the_cache(
    tmp_path, chat_server, capsys
):
    server = chat_server(prefers_good)
    entries = {
        "x": [
            {"id": f"q{i}", "prompt": f"question {i}", "response": f"good {i}"} for i in range(5)
        ],
        "y": [{"id": f"q{i}", "prompt": f"question {i}", "response": f"bad {i}"} for i in range(5)],
        "z": [{"id": f"q{i}", "prompt": f"question {i}", "response": f"bad {i}"} for i in range(5)],
    }
    lines = []
    outcomes = judge_all_pairs(entries, make_judge(server), tmp_path, log=lines.append)
    # y-z: identical answers, a free tie; x-z repeats x-y's questions: 5 pairs, 2 orders
    assert len(server.requests) == 10
    assert "15 comparisons, 10 free" in lines[0] and "10 judge requests" in lines[0]
    assert set(outcomes[("x", "y")].values()) == {1.0} and set(outcomes[("z", "y")].values()) == {
        0.5
    }
    assert outcomes[("y", "x")][(None, "q3")] == 0.0
    lines.clear()
    again = judge_all_pairs(entries, make_judge(server), tmp_path, log=lines.append)
    assert again == outcomes and len(server.requests) == 10
    assert "5 cached: 0 judge requests" in lines[0]


def test_anchored_cli_derives_the_head_to_head_from_outcomes_against_the_baseline(
    tmp_path, chat_server, capsys
):
    server = chat_server(prefers_good)
    n = 4
    strong = write_samples(tmp_path / "strong.jsonl", [f"good {i}" for i in range(n)])
    weak = write_samples(tmp_path / "weak.jsonl", [f"bad {i}" for i in range(n)])
    base = write_samples(tmp_path / "base.jsonl", [f"so-so {i}" for i in range(n)])
    options = f"--pairs anchored --baseline {base} --judge openai --judge-model m --bootstrap 100"
    args = ["--samples", strong, "--samples", weak, *options.split()]
    args += ["--base-url", server.base_url, "--out", str(tmp_path / "out")]
    assert rank_cli(*args) == 0
    assert len(server.requests) == 2 * n * 2  # each entry vs the baseline, both orders
    assert "8 for the judge, 0 cached: 16 judge requests" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "ranking.json").read_text())
    # strong beats the baseline, weak ties it: strong wins every prompt head to head
    assert result["head_to_head"]["strong"]["weak"]["win_rate"] == 1.0
    assert result["method"]["pairs"] == "anchored"


def test_an_unseeded_entry_meets_every_seed_of_a_seeded_one(tmp_path):
    start = [{"id": "q0", "prompt": "p", "response": "good"}]
    tuned = [
        {"id": "q0", "prompt": "p", "response": r, "seed": s}
        for s, r in [(0, "good good"), (1, "")]
    ]
    scores = score_entries({"start": start, "tuned": tuned}, GoldJudge(count_good, "count"))
    assert scores == {"start": {(None, "q0"): 1.0}, "tuned": {(0, "q0"): 2.0, (1, "q0"): 0.0}}


class CountingJudge:
    """Prefers the answer containing "good"; stops the run (like Ctrl-C) after `budget` calls."""

    identity = "counting-judge"

    def __init__(self, budget: int | None = None):
        self.calls, self.budget = 0, budget

    def compare(self, prompt, a, b):
        if self.budget is not None and self.calls >= self.budget:
            raise KeyboardInterrupt
        self.calls += 1
        return compare_by_scores(count_good(prompt, a), count_good(prompt, b))


def test_an_interrupted_run_resumes_and_seeds_are_compared_seed_by_seed(tmp_path):
    def rows(texts, seed=None):
        return [
            {
                "id": f"q{i}",
                "prompt": f"question {i}",
                "response": t,
                **({"seed": seed} if seed is not None else {}),
            }
            for i, t in enumerate(texts)
        ]

    entries = {
        "start": rows(["meh 0", "meh 1"]),
        "tuned": rows(["good 0", "good 1"], seed=0) + rows(["bad 0", "good good 1"], seed=1),
    }
    with pytest.raises(KeyboardInterrupt):
        judge_all_pairs(entries, CountingJudge(budget=3), tmp_path, log=lambda line: None)
    resumed = CountingJudge()
    outcomes = judge_all_pairs(entries, resumed, tmp_path, log=lambda line: None)
    assert resumed.calls == 1  # 4 comparisons, 3 already on disk
    assert outcomes[("tuned", "start")] == {
        (0, "q0"): 1.0,
        (0, "q1"): 1.0,
        (1, "q0"): 0.5,
        (1, "q1"): 1.0,
    }


def test_a_local_llm_judge_ranks_from_the_command_line(tmp_path, tiny_model_dir):
    a = write_samples(tmp_path / "a.jsonl", ["yes", "no", "maybe"])
    b = write_samples(tmp_path / "b.jsonl", ["no", "yes", "maybe"])
    out = tmp_path / "out"
    args = ["--samples", a, "--samples", b, "--judge", "hf-llm", "--bootstrap", "50"]
    assert rank_cli(*args, "--judge-model", str(tiny_model_dir), "--out", str(out)) == 0
    h2h = json.loads((out / "ranking.json").read_text())["head_to_head"]
    assert h2h["a"]["b"]["win_rate"] + h2h["b"]["a"]["win_rate"] == pytest.approx(1.0)
    assert h2h["a"]["b"]["ties"] >= 1  # "maybe" vs "maybe" is a tie without asking
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2
