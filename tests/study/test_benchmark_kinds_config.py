"""The published benchmarks as study evaluations, without running a study: the config fields
and their errors, every example config, the plan's request counts, the per-prompt outcomes
the ranking compares, and the report's two views in the papers' shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preftune.errors import ConfigError, DataError
from preftune.experiments import benchmark_kinds, sections
from preftune.experiments.builtin import builtin_study
from preftune.experiments.config import Evaluation, load_study_config, study_from_dict
from preftune.experiments.ranking import judge_requests
from preftune.experiments.results import paper_views
from preftune.experiments.runner import StudyRunner

EXAMPLES = Path(__file__).parents[2] / "examples"
JUDGE = {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "judge"}


def test_every_example_config_loads_and_uses_the_papers_benchmarks():
    configs = {path.stem: load_study_config(path) for path in sorted(EXAMPLES.glob("*.yaml"))}
    assert {"hh-comparison", "tldr-comparison", "mppo-study"} <= set(configs)
    for name in ("hh-comparison", "tldr-comparison"):
        alpaca = [e for e in configs[name].evaluation.evaluations if e.kind == "alpaca-eval"]
        assert [e.annotator for e in alpaca] == ["alpaca_eval_gpt4_turbo_fn"]
    kinds = [e.kind for e in configs["mppo-study"].evaluation.evaluations]
    assert sorted(kinds) == ["arena-hard", "mt-bench"]


def _with_evaluation(**evaluation) -> dict:
    raw = builtin_study(quick=True).model_dump(mode="json")
    raw["evaluation"]["evaluations"] = [{"name": "bench", "judge": dict(JUDGE), **evaluation}]
    return raw


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"kind": "arena-hard"}, r"evaluations\.0: baseline: arena-hard judges against a fixed"),
        (
            {"kind": "mt-bench-pairwise", "baseline": "start"},
            r"evaluations\.0: baseline: mt-bench-pairwise judges against a fixed",
        ),
        (
            {"kind": "alpaca-eval", "judge": {"type": "hf-llm", "model": "m"}},
            r"evaluations\.0: judge\.type: alpaca-eval calls an OpenAI-compatible endpoint",
        ),
        (
            {"kind": "alpaca-eval", "judge": {**JUDGE, "prompt": "dpo-hh"}},
            r"evaluations\.0: judge\.prompt: alpaca-eval judges with the benchmark's own",
        ),
        (
            {"kind": "arena-hard", "baseline": "b.jsonl", "pairs": "all"},
            r"evaluations\.0: pairs: not a setting of kind 'arena-hard'",
        ),
        (
            {"kind": "arena-hard", "baseline": "b.jsonl", "questions": "q.txt"},
            r"evaluations\.0: questions: 'q\.txt' is not a \.jsonl or \.json file",
        ),
        (
            {"kind": "alpaca-eval", "baseline": "b.jsonl"},
            r"evaluations\.0: baseline: not a setting of kind 'alpaca-eval' \(it takes: annotator",
        ),
        (
            {"style_control": True},
            r"evaluations\.0: style_control: not a setting of kind 'pairwise'",
        ),
        ({"kind": "mt-bench", "limit": 0}, r"evaluations\.0\.limit"),
    ],
)
def test_a_benchmark_setting_that_does_not_fit_names_its_field(evaluation, message):
    with pytest.raises(ConfigError, match=message):
        study_from_dict(_with_evaluation(**evaluation))


def test_missing_files_and_an_unknown_annotator_stop_the_study_before_it_starts(tmp_path):
    raw = _with_evaluation(
        kind="arena-hard", baseline=str(tmp_path / "gpt-4-0314.jsonl"), questions="q.jsonl"
    )
    config = study_from_dict(raw)
    assert config.missing_inputs() == [
        f"evaluation.evaluations.0.baseline: file '{tmp_path / 'gpt-4-0314.jsonl'}' does not exist",
        "evaluation.evaluations.0.questions: file 'q.jsonl' does not exist",
    ]
    with pytest.raises(ConfigError, match=r"evaluations\.0\.baseline: file .* nothing was started"):
        StudyRunner(config, tmp_path / "study", log=lambda line: None).run()
    assert not (tmp_path / "study").exists()
    pytest.importorskip("alpaca_eval.annotators")
    config = study_from_dict(_with_evaluation(kind="alpaca-eval", annotator="gpt_2_fn"))
    [problem] = config.missing_inputs()
    assert problem.startswith("evaluation.evaluations.0.annotator: 'gpt_2_fn' is not one of [")
    assert "alpaca_eval_gpt4_turbo_fn" in problem


def test_the_plan_counts_each_benchmarks_judge_requests(tmp_path):
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps([{"instruction": f"i{n}"} for n in range(5)]))
    cases = [
        # 4 rows (start + 3 methods) x 2 seeds: 1 + 3 * 2 = 7 sets of answers, each judged
        ({"kind": "arena-hard", "baseline": "b.jsonl", "limit": 10}, 2 * 10 * 7),  # two games
        ({"kind": "alpaca-eval", "reference": str(reference)}, 1 * 5 * 7),  # the file's rows
        ({"kind": "alpaca-eval"}, 805 * 7),  # the Hub's set
        ({"kind": "mt-bench-pairwise", "baseline": "b.jsonl"}, 4 * 80 * 7),  # 2 turns, 2 orders
        ({"kind": "mt-bench-pairwise", "baseline": "b.jsonl", "limit": 500}, 4 * 80 * 7),
    ]
    for settings, expected in cases:
        spec = Evaluation(name="b", judge=JUDGE, **settings)
        assert judge_requests(spec, rows=4, seeds=2, prompts=999) == expected, settings


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_per_prompt_outcomes_against_the_baseline_from_each_benchmarks_files(tmp_path):
    arena = [
        {"id": "q1", "game": 1, "verdict": "A>B"},  # baseline shown as A wins: 0, one battle
        {"id": "q1", "game": 2, "verdict": "A>>B"},  # the model as A wins strongly: 1, three
        {"id": "q2", "game": 1, "verdict": "A=B"},
        {"id": "q2", "game": 2, "verdict": None},  # never parsed: left out
    ]
    _write(tmp_path / "arena" / "results.json", {"score": 0.6, "judgments": arena})
    assert benchmark_kinds.prompt_outcomes(tmp_path / "arena", "arena-hard") == {
        "q1": 3 / 4,
        "q2": 0.5,
    }
    preferences = [2.0, 1.0, 0, 1.5, 1.25, None]  # 0 and 1.5 are draws; None not annotated
    annotations = [{"id": str(n), "preference": p} for n, p in enumerate(preferences)]
    _write(tmp_path / "alpaca" / "annotations.json", annotations)
    assert benchmark_kinds.prompt_outcomes(tmp_path / "alpaca", "alpaca-eval") == {
        "0": 1.0,
        "1": 0.0,
        "2": 0.5,
        "3": 0.5,
        "4": 0.25,
    }
    turns = [("81", 1, "a"), ("81", 2, "tie"), ("82", 1, "error"), ("82", 2, "b")]
    judgments = [{"id": q, "turn": t, "winner": w} for q, t, w in turns]
    _write(tmp_path / "mtb" / "mtbench_pairwise.json", {"judgments": judgments})
    assert benchmark_kinds.prompt_outcomes(tmp_path / "mtb", "mt-bench-pairwise") == {
        "81": 0.75,
        "82": 0.0,
    }


def test_alpaca_eval_figures_are_the_packages_with_a_normal_interval(tmp_path):
    results = {
        "win_rate": 0.7,
        "standard_error": 0.2,
        "lc_win_rate": 0.05,
        "lc_standard_error": 0.05,
        "lc_unavailable": None,
        "n": 4,
        "errors": 0,
    }
    _write(tmp_path / "results.json", results)
    figures = benchmark_kinds.row_figures(tmp_path, "alpaca-eval")
    assert figures["ci_low"] == pytest.approx(0.7 - 1.959964 * 0.2)
    assert figures["ci_high"] == 1.0  # 0.7 + 0.39 is cut at 1
    assert figures["lc_ci_low"] == 0.0  # 0.05 - 0.098 is cut at 0
    assert figures["lc_ci_high"] == pytest.approx(0.05 + 1.959964 * 0.05)
    _write(
        tmp_path / "results.json", {"score": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n_questions": 3}
    )
    figures = benchmark_kinds.row_figures(tmp_path, "arena-hard")
    assert (figures["win_rate"], figures["ci_low"], figures["ci_high"], figures["n"]) == (
        0.4,
        0.3,
        0.5,
        3,
    )


def _results(evaluations: list[dict], rows: dict[str, dict]) -> dict:
    return {
        "seeds": 1,
        "evaluations": evaluations,
        "rows": [{"label": label, "evaluations": figures} for label, figures in rows.items()],
        "start": "start",
    }


def test_the_papers_views_have_a_column_per_evaluation_set_and_show_only_when_they_apply():
    evaluations = [
        {"name": "hh", "kind": "pairwise", "baseline": "reference"},
        {"name": "ae2", "kind": "alpaca-eval", "baseline": "gpt4_turbo"},
        {"name": "mt", "kind": "mt-bench", "baseline": "start"},
        {"name": "ah", "kind": "arena-hard", "baseline": "gpt-4-0314"},
    ]
    rows = {
        "start": {"hh": None, "ae2": None, "mt": {"score": 5.5}, "ah": None},
        "dpo": {
            "hh": {"win_rate": 0.61, "ci_low": 0.52, "ci_high": 0.7},
            "ae2": {
                "win_rate": 0.2,
                "ci_low": 0.1,
                "ci_high": 0.3,
                "lc_win_rate": 0.25,
                "lc_ci_low": 0.15,
                "lc_ci_high": 0.35,
            },
            "mt": {"score": 7.25},
            "ah": {"win_rate": 0.4, "ci_low": 0.3, "ci_high": 0.5},
        },
    }
    results = _results(evaluations, rows)
    results["paper_views"] = views = paper_views(results)
    assert views["win_rates"]["columns"] == [
        "hh win % vs reference",
        "ae2 LC win % vs gpt4_turbo",
        "ae2 raw win % vs gpt4_turbo",
        "ah win % vs gpt-4-0314",
    ]
    assert views["mt_bench_arena_hard"]["columns"] == [
        "mt score (1-10)",
        "ah score: win % vs gpt-4-0314",
    ]
    assert views["mt_bench_arena_hard"]["units"] == ["grade", "fraction"]
    blocks = sections.paper_views_section(results)
    tables = [block for block in blocks if block[0] == "table"]
    assert tables[0][2] == [
        ["start", "—", "—", "—", "—"],
        ["dpo", "61.0 [52.0, 70.0]", "25.0 [15.0, 35.0]", "20.0 [10.0, 30.0]", "40.0 [30.0, 50.0]"],
    ]
    assert tables[1][2] == [["start", "5.50", "—"], ["dpo", "7.25", "40.0 [30.0, 50.0]"]]
    only_pairwise = _results(evaluations[:1], {"dpo": rows["dpo"]})
    assert paper_views(only_pairwise) == {}


def test_a_bad_benchmark_file_names_the_evaluation_file_row_and_field(tmp_path):
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "q1", "prompt": "count"}) + "\n")
    baseline = tmp_path / "gpt-4-0314.jsonl"
    baseline.write_text(json.dumps({"id": "q1"}) + "\n")  # no answer
    spec = Evaluation(
        name="arena",
        kind="arena-hard",
        questions=str(questions),
        baseline=str(baseline),
        judge=JUDGE,
    )
    with pytest.raises(
        DataError, match=r"evaluation 'arena' \(arena-hard\): .*gpt-4-0314\.jsonl.*row 1"
    ):
        benchmark_kinds.evaluate(spec, None, None, tmp_path / "out", generation={}, seed=0)
