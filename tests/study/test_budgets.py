"""Sample budgets in results.json and the report, from synthetic study folders in the shapes the
runner, the on-policy sampling step and the trainers write (no model runs)."""

from __future__ import annotations

import json

import pytest
import yaml

from preftune.experiments.layout import StudyLayout
from preftune.experiments.report import build_report
from preftune.io import atomic_write_json

EVALUATIONS = {"evaluations": [{"name": "gold", "judge": {"type": "gold"}}]}


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _study(root, study):
    layout = StudyLayout(root)
    root.mkdir(parents=True)
    layout.config.write_text(yaml.safe_dump(study))
    return layout


def _rows(layout):
    return {row["label"]: row for row in build_report(layout.root)["rows"]}


@pytest.fixture()
def task_study(tmp_path):
    """dpo and kto learn from the study's sampling (3 prompts x 2 samples; p2's two samples
    were the same text, so p2 was dropped and only 4 samples scored); iterative kto counts its
    own budget, over two seeds."""
    study = {
        "name": "budgets",
        "model": "tiny",
        "seeds": [0, 1],
        "data": {"train": {"task": "sentiment"}, "heldout": {"task": "sentiment"}},
        "train": {"lr": 1e-4},
        "methods": [
            {"method": "dpo"},
            {"method": "kto"},
            {"method": "kto", "label": "kto-iter", "online": {"rounds": 2}},
        ],
        "evaluation": EVALUATIONS,
    }
    layout = _study(tmp_path / "study", study)
    tokens = {"p0": (5, 7), "p1": (3, 4), "p2": (6, 6)}
    _jsonl(
        layout.train_data.with_name("samples.jsonl"),
        [
            {"id": prompt, "sample": i, "response": f"r{i}", "num_tokens": n}
            for prompt, counts in tokens.items()
            for i, n in enumerate(counts)
        ],
    )
    _jsonl(
        layout.train_data,
        [
            {"id": "p0", "prompt": "a", "responses": ["x", "y"], "scores": [0.1, 0.2]},
            {"id": "p1", "prompt": "b", "responses": ["x", "y"], "scores": [0.3, 0.0]},
        ],
    )
    for seed, spent in ((0, (8, 32, 600, 32)), (1, (8, 32, 700, 32))):
        budget = dict(zip(("prompts", "samples", "tokens", "reward_calls"), spent, strict=True))
        summary = {"budget": budget, "rounds": 2}
        atomic_write_json(layout.run("kto-iter", seed) / "summary.json", summary)
    judged = {"win_rate": 0.75, "ci_low": 0.6, "ci_high": 0.9, "n": 20}
    for seed in (0, 1):
        atomic_write_json(layout.judged("dpo", "gold", seed) / "results.json", judged)
    return layout


def test_offline_methods_share_the_sampling_steps_budget(task_study):
    rows = _rows(task_study)
    expected = {"source": "on-policy sampling", "prompts": 3, "samples": 6, "tokens": 31}
    assert rows["dpo"]["budget"] == {**expected, "reward_calls": 4, "seeds": 2}
    assert rows["kto"]["budget"] == rows["dpo"]["budget"]
    assert rows["start"]["budget"] is None


def test_an_online_run_counts_its_own_budget_averaged_over_seeds(task_study):
    budget = _rows(task_study)["kto-iter"]["budget"]
    assert budget == {
        "seeds": 2,
        "source": "online",
        "prompts": 8,
        "samples": 32,
        "tokens": 650,
        "reward_calls": 32,
        "rounds": 2,
    }


def test_an_unfinished_online_run_has_no_budget_yet(task_study):
    (task_study.run("kto-iter", 0) / "summary.json").unlink()
    (task_study.run("kto-iter", 1) / "summary.json").unlink()
    assert _rows(task_study)["kto-iter"]["budget"] is None


def test_the_report_shows_budgets_next_to_win_rates(task_study):
    build_report(task_study.root)
    text = (task_study.root / "report.md").read_text()
    assert "## Sample budgets" in text
    header = (
        "| Method | gold win % vs start [95% CI] | trained on | prompts | samples generated | "
        "tokens generated | reward calls |"
    )
    assert header in text
    assert "| dpo | 75.0 | on-policy sampling | 3 | 6 | 31 | 4 |" in text  # a mean: no CI
    assert "| kto-iter | — | online, 2 rounds | 8 | 32 | 650 | 32 |" in text
    assert "Online budgets are means over 2 seeds." in text


def test_offline_data_names_what_the_run_trained_on(tmp_path):
    study = {
        "name": "given",
        "model": "tiny",
        "data": {"train": {"path": "pairs.jsonl"}, "heldout": {"path": "pairs.jsonl"}},
        "methods": [{"method": "dpo"}, {"method": "kto"}, {"method": "simpo"}],
        "evaluation": EVALUATIONS,
    }
    layout = _study(tmp_path / "study", study)
    atomic_write_json(layout.run("dpo") / "summary.json", {"data": {"view_groups": 500}})
    atomic_write_json(layout.run("kto") / "summary.json", {"data": {"view_groups": 1000}})
    rows = _rows(layout)
    assert rows["dpo"]["budget"] == {"source": "offline data", "examples": 500, "unit": "pairs"}
    assert rows["kto"]["budget"]["unit"] == "labelled responses"
    assert rows["simpo"]["budget"] is None  # not trained yet
    text = (layout.root / "report.md").read_text()
    assert "| dpo | — | offline data, 500 pairs | — | — | — | — |" in text
    assert "| kto | — | offline data, 1,000 labelled responses | — | — | — | — |" in text
