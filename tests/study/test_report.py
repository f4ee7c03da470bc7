"""The report, rebuilt from a synthetic study folder written here (no model runs)."""

from __future__ import annotations

import json
import math
import re

import yaml

from preftune.cli import main
from preftune.experiments.layout import StudyLayout
from preftune.experiments.report import build_report
from preftune.io import atomic_write_json

STUDY = {
    "name": "synthetic",
    "model": "tiny",
    "sft": None,
    "methods": [{"method": "dpo"}, {"method": "ipo"}, {"method": "simpo", "label": "simpo-b2"}],
    "evaluation": {
        "evaluations": [
            {"name": "gold", "judge": {"type": "gold"}, "baseline": "start"},
            {"name": "mt-bench", "kind": "mt-bench", "judge": {"type": "openai"}},
        ]
    },
}


def _write_metrics(path, steps):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in steps) + '{"step": 99, "lo')


def _stats(reward, kl):
    return {
        "gold_reward": reward,
        "kl": kl,
        "length": 30.0,
        "repetition": 0.2,
        "distinct_2": 0.8,
        "eos_share": 0.5,
        "n": 4,
    }


def make_study(root):
    layout = StudyLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(yaml.safe_dump(STUDY))
    # dpo: loss falls, chosen log-prob falls (likelihood displacement), gradient norm grows.
    _write_metrics(
        layout.run("dpo") / "metrics.jsonl",
        [
            {
                "step": s,
                "loss": 0.7 - 0.03 * s,
                "rewards/margins": 0.1 * s,
                "rewards/accuracies": 0.5 + 0.04 * s,
                "logps/chosen": -40.0 - 2.0 * s,
                "grad_norm": 1.0 + 0.5 * s,
            }
            for s in range(1, 13)
        ],
    )
    # simpo-b2: flat loss, accuracy at chance.
    _write_metrics(
        layout.run("simpo-b2") / "metrics.jsonl",
        [
            {"step": s, "loss": 0.69 + 0.001 * (-1) ** s, "rewards/accuracies": 0.5}
            for s in range(1, 13)
        ],
    )
    atomic_write_json(layout.stats("start"), _stats(0.25, 0.0))
    atomic_write_json(layout.stats("dpo"), _stats(0.6, 3.5))
    atomic_write_json(layout.stats("simpo-b2"), _stats(0.3, 1.0))
    atomic_write_json(
        layout.judged("dpo", "gold") / "results.json",
        {
            "win_rate": 0.75,
            "ci_low": 0.6,
            "ci_high": 0.88,
            "wins": 14,
            "losses": 4,
            "ties": 2,
            "n": 20,
            "errors": 0,
        },
    )
    atomic_write_json(
        layout.judged("simpo-b2", "gold") / "results.json",
        {
            "win_rate": 0.55,
            "ci_low": 0.4,
            "ci_high": 0.7,
            "wins": 11,
            "losses": 9,
            "ties": 0,
            "n": 20,
            "errors": 0,
        },
    )
    atomic_write_json(
        layout.judged("dpo", "mt-bench") / "mtbench.json",
        {"overall": 5.25, "turn_1": 5.5, "turn_2": 5.0, "n": 160, "errors": 0},
    )
    layout.record_failure("ipo", "train", "TrainingError: loss became NaN at step 3")
    return layout


def test_results_json_has_every_figure_as_read_from_disk(tmp_path):
    layout = make_study(tmp_path / "study")
    build_report(layout.root)
    results = json.loads((layout.root / "results.json").read_text())
    rows = {row["label"]: row for row in results["rows"]}
    assert list(rows) == ["start", "dpo", "ipo", "simpo-b2"]
    assert rows["dpo"]["evaluations"]["gold"]["win_rate"] == 0.75
    assert rows["dpo"]["stats"]["kl"] == 3.5
    assert rows["ipo"]["status"] == "failed"
    assert "NaN" in rows["ipo"]["failure"]["error"]
    assert rows["start"]["evaluations"]["gold"] is None  # the start is not judged against itself

    def win_rates(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "win_rate" and value is not None:
                    yield value
                yield from win_rates(value)
        elif isinstance(node, list):
            for item in node:
                yield from win_rates(item)

    found = list(win_rates(results))
    assert found and all(0.0 <= v <= 1.0 for v in found)


def test_training_dynamics_are_read_into_trends_and_flags(tmp_path):
    layout = make_study(tmp_path / "study")
    rows = {row["label"]: row for row in build_report(layout.root)["rows"]}
    dpo = rows["dpo"]["dynamics"]
    assert dpo["steps"] == 12  # the half-written last line is skipped
    assert dpo["series"]["loss"]["trend"] == "falling"
    assert dpo["series"]["gradient norm"]["trend"] == "rising"
    assert math.isclose(dpo["series"]["reward accuracy"]["start"], 0.5 + 0.04 * 2.5)
    assert "likelihood of chosen responses fell" in dpo["flags"]
    assert "gradient norm grew" in dpo["flags"]
    simpo = rows["simpo-b2"]["dynamics"]
    assert simpo["series"]["loss"]["trend"] == "flat"
    assert "reward accuracy ended near chance" in simpo["flags"]
    assert "likelihood of chosen responses fell" not in simpo["flags"]


def test_markdown_has_both_tables_verdicts_and_failures(tmp_path):
    layout = make_study(tmp_path / "study")
    build_report(layout.root)
    text = (layout.root / "report.md").read_text()
    assert "| dpo | 75.0 [60.0, 88.0] | 5.25 | 0.600 | 3.50 |" in text
    assert "| mt-bench score |" in text
    assert "dpo on gold: beats start (95% CI above 50%)" in text
    assert "simpo-b2 on gold: does not beat start at this size" in text
    assert "ipo failed at train: TrainingError" in text
    assert "Training dynamics" in text
    assert "No ranking for gold yet (rank/gold/ranking.json is missing)." in text
    for image in re.findall(r"\]\((plots/[^)]+\.png)\)", text):
        assert (layout.root / image).is_file()
    assert "plots/reward_vs_kl.png" in text and "plots/win_rate_gold.png" in text


def test_html_is_self_contained(tmp_path):
    layout = make_study(tmp_path / "study")
    build_report(layout.root)
    page = (layout.root / "report.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 3  # training curves, frontier, win rates
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<table>" in page and "dpo" in page


def test_report_command_rebuilds_from_disk(tmp_path, capsys):
    layout = make_study(tmp_path / "study")
    assert main(["report", str(layout.root)]) == 0
    assert (layout.root / "report.html").is_file()
    assert "ipo" in capsys.readouterr().out


def test_report_on_a_folder_that_is_not_a_study_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no study.yaml" in capsys.readouterr().err


def test_a_served_baseline_is_named_by_its_model_and_host(tmp_path):
    served = {
        "name": "vs-served",
        "judge": {"type": "gold"},
        "baseline": "served",
        "generation": {
            "backend": "openai",
            "base_url": "http://user:s3cret@10.1.2.3:8001/v1?token=t0k",
            "model": "dpo-big",
            "api_key_env": "MY_KEY",
        },
    }
    layout = make_study(tmp_path / "study")
    study = yaml.safe_load(layout.config.read_text())
    study["evaluation"]["evaluations"].append(served)
    layout.config.write_text(yaml.safe_dump(study))
    figures = {"win_rate": 0.3, "ci_low": 0.1, "ci_high": 0.45, "wins": 6, "losses": 14}
    atomic_write_json(
        layout.judged("dpo", "vs-served") / "results.json",
        {**figures, "ties": 0, "n": 20, "errors": 0},
    )
    build_report(layout.root)

    name = "served dpo-big at 10.1.2.3:8001"
    results = json.loads((layout.root / "results.json").read_text())
    (entry,) = [e for e in results["evaluations"] if e["name"] == "vs-served"]
    assert entry["baseline"] == name
    assert entry["served_baseline"] == {"model": "dpo-big", "host": "10.1.2.3:8001"}
    text = (layout.root / "report.md").read_text()
    assert f"| vs-served win % vs {name} [95% CI] |" in text
    assert f"dpo on vs-served: loses to {name} (95% CI below 50%)." in text
    assert f"vs-served: each answer against the one {name} gave to the same prompt," in text
    page = (layout.root / "report.html").read_text()
    assert f"<th>vs-served win % vs {name} [95% CI]</th>" in page
    for secret in ("s3cret", "t0k", "MY_KEY"):
        assert all(secret not in report for report in (text, page, json.dumps(results)))
