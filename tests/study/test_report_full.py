"""The report of a study with seeds, a ranking, claims, sweeps and timings, rebuilt from a
synthetic folder written here in the shapes the runner and the ranking write (no model runs)."""

from __future__ import annotations

import json
import re

import matplotlib
import pytest
import yaml

from preftune.cli import main
from preftune.experiments import plots
from preftune.experiments.layout import StudyLayout
from preftune.experiments.report import build_report
from preftune.experiments.sections import best_sentence, small_sample_warning
from preftune.io import atomic_write_json

SIMPO = "simpo-$b$"  # a label with mathtext markers: plots must draw it as written
HACKED = "a beautiful silver finish and a beautiful silver finish"
STUDY = {
    "name": "full",
    "model": "tiny",
    "seed": 0,
    "seeds": [0, 1],
    "sft": None,
    "data": {"train": {"task": "sentiment"}, "heldout": {"task": "sentiment"}},
    "methods": [{"method": "dpo"}, {"method": "simpo", "label": SIMPO}],
    "claims": ["dpo > simpo-$b$", "simpo-$b$ > dpo", "dpo beats simpo"],
    "evaluation": {"evaluations": [{"name": "gold", "judge": {"type": "gold"}}]},
}
PROMPTS = {
    "p0": "Review a lamp.",
    "p1": "Review a kettle.",
    "p2": "Review a desk.",
    "p3": "Review a pen.",
}
ANSWERS = {  # (label, seed) -> answer to every prompt; the first seed's are shown
    ("start", None): "it is a lamp",
    ("dpo", 0): HACKED,
    ("dpo", 1): "nice",
    (SIMPO, 0): "it works <b>fine</b>",
    (SIMPO, 1): "ok",
}
TOKENS = 7  # num_tokens of every answer


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _stats(reward, kl, low, high):
    return {
        "gold_reward": reward,
        "kl": kl,
        "kl_ci_low": low,
        "kl_ci_high": high,
        "kl_estimate": "sampled",
        "length": 7.0,
        "repetition": 0.0,
        "distinct_2": 0.9,
        "eos_share": 1.0,
        "n": 4,
    }


STATS = {
    ("start", None): _stats(0.1, 0.0, 0.0, 0.0),
    ("dpo", 0): _stats(0.6, 2.0, 1.5, 2.5),
    ("dpo", 1): _stats(0.8, 4.0, 3.0, 5.0),
    (SIMPO, 0): _stats(0.3, 1.0, 0.5, 1.5),
    (SIMPO, 1): _stats(0.5, 1.0, 0.5, 1.5),
}


def _head(win_rate, p_value, significant):
    return {
        "win_rate": win_rate,
        "ci_low": win_rate - 0.1,
        "ci_high": win_rate + 0.1,
        "wins": 6,
        "losses": 2,
        "ties": 0,
        "p_value": p_value,
        "significant": significant,
    }


RANKING = {
    "ranking": [
        {"label": "dpo", "score": 0.7, "ci_low": 0.6, "ci_high": 0.8, "tier": 1, "n": 8},
        {"label": SIMPO, "score": 0.5, "ci_low": 0.4, "ci_high": 0.6, "tier": 2, "n": 8},
        {"label": "start", "score": 0.3, "ci_low": 0.2, "ci_high": 0.4, "tier": 3, "n": 4},
    ],
    "head_to_head": {
        "dpo": {
            SIMPO: {**_head(0.8, 0.01, True), "p_holm": 0.02},
            "start": _head(0.9, 0.001, True),
        },
        SIMPO: {"start": _head(0.7, 0.03, True)},
    },
    "method": {"test": "paired sign test, Holm"},
    "seeds": 2,
    "n_prompts": 4,
    "warnings": ["fewer than 20 prompts in a comparison: the intervals are wide"],
}
SWEEP = {
    "metric": "gold reward on dev",
    "swept": ["beta", "lr"],
    "points": [
        {"point": "p0", "values": {"beta": 0.01, "lr": 1e-4}, "dev_metric": 0.4, "dev_n": 10},
        {"point": "p1", "values": {"beta": 0.1, "lr": 1e-4}, "dev_metric": 0.6, "dev_n": 10},
        {"point": "p2", "values": {"beta": 1.0, "lr": 1e-5}, "dev_metric": 0.5, "dev_n": 10},
    ],
    "chosen": {"beta": 0.1, "lr": 1e-4},
    "chosen_point": "p1",
}


def _eval_dir(layout, label, seed):
    folder = layout.eval_dir(label)
    return folder if seed is None else folder / f"seed-{seed}"


def _write_row(layout, label, seed):
    folder = _eval_dir(layout, label, seed)
    answer = ANSWERS[(label, seed)]
    samples = [
        {"id": i, "prompt": prompt, "response": answer, "num_tokens": TOKENS}
        for i, prompt in PROMPTS.items()
    ]
    _jsonl(folder / "samples.jsonl", samples)
    atomic_write_json(folder / "stats.json", STATS[(label, seed)])
    if label == "start":
        return
    judged = [{"key": i, "id": i, "winner": "a" if seed == 0 else "b"} for i in PROMPTS]
    _jsonl(folder / "gold" / "judgments.jsonl", judged)
    win_rate = 0.75 if label == "dpo" else 0.5
    atomic_write_json(
        folder / "gold" / "results.json",
        {"win_rate": win_rate, "ci_low": 0.4, "ci_high": 0.9, "n": 4, "wins": 3, "losses": 1},
    )
    run = layout.run(label) / f"seed-{seed}"
    run.mkdir(parents=True, exist_ok=True)
    config = {"method": STUDY["methods"][label != "dpo"]["method"], "seed": seed, "lr": 1e-4}
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "hparams": {"beta": 0.1}}))
    _jsonl(run / "metrics.jsonl", [{"step": s, "loss": 0.7 - 0.02 * s} for s in range(10)])


@pytest.fixture()
def study(tmp_path):
    layout = StudyLayout(tmp_path / "study")
    layout.root.mkdir()
    layout.config.write_text(yaml.safe_dump(STUDY, allow_unicode=True))
    for label, seed in ANSWERS:
        _write_row(layout, label, seed)
    for seed, accuracy in ((0, 0.6), (1, 0.7)):
        atomic_write_json(
            _eval_dir(layout, "dpo", seed) / "preference.json",
            {"accuracy": accuracy, "n": 50, "beta": 0.1, "pairs_source": "heldout"},
        )
    rank = layout.root / "rank" / "gold"
    atomic_write_json(rank / "ranking.json", RANKING)
    figure = matplotlib.pyplot.figure(figsize=(1, 1))
    figure.savefig(rank / "head_to_head.png")
    atomic_write_json(layout.root / "sweeps" / "dpo" / "sweep.json", SWEEP)
    stages = [{"name": "train dpo", "seconds": 100.0}, {"name": "rank on gold", "seconds": 20.5}]
    atomic_write_json(layout.root / "timings.json", {"stages": stages})
    build_report(layout.root)
    return layout


def _results(layout):
    return json.loads((layout.root / "results.json").read_text())


def test_rows_are_means_over_seeds_and_name_the_gold_reward(study):
    results = _results(study)
    rows = {row["label"]: row for row in results["rows"]}
    assert results["seeds"] == 2 and rows["dpo"]["seeds"] == 2
    assert rows["dpo"]["stats"]["gold_reward"] == pytest.approx(0.7)  # (0.6 + 0.8) / 2
    assert rows["dpo"]["stats"]["kl"] == pytest.approx(3.0)
    assert rows["dpo"]["stats"]["kl_ci_low"] is None  # one seed's interval is not the mean's
    assert rows["dpo"]["preference"]["accuracy"] == pytest.approx(0.65)
    assert rows["start"]["stats"]["kl"] == 0.0 and rows["start"]["per_seed"] == []
    assert results["gold"] == "VADER compound sentiment"
    text = (study.root / "report.md").read_text()
    assert "| gold reward (VADER compound sentiment) |" in text  # Table 3's column
    assert "decided by the gold reward (VADER compound sentiment)" in text  # the ranking's
    assert "| row | gold reward (VADER compound sentiment) | answer |" in text  # the examples'
    assert "means over 2 seeds" in text
    assert "| dpo | 75.0 | 0.700 | 3.00 | 65.0 (n=50) |" in text
    assert (
        "| start (tiny) |" not in text and "| start | — | 0.100 | 0.00 [0.00, 0.00] | — |" in text
    )


def test_ranking_comes_first_with_its_heatmap_sentence_and_warnings(study):
    results = _results(study)
    assert results["ranking"]["gold"] == RANKING["ranking"]
    assert results["head_to_head"]["gold"] == RANKING["head_to_head"]
    text = (study.root / "report.md").read_text()
    assert text.index("Which method is best on gold?") < text.index("Table 3")
    assert "| 1 | dpo | 0.700 [0.600, 0.800] | 90.0 [80.0, 100.0] | 8 |" in text
    assert "](rank/gold/head_to_head.png)" in text
    assert (
        "On gold, dpo ranks first (score 0.700 [0.600, 0.800]); it beats every other method" in text
    )
    assert "Warning: fewer than 20 prompts in a comparison: the intervals are wide" in text
    assert "judged a row on only" not in text  # the ranking's own warning is not repeated


def test_claims_are_tested_against_the_head_to_head(study):
    claims = {c["claim"]: c for c in _results(study)["claims"]}
    supported = claims["dpo > simpo-$b$"]["evaluations"]["gold"]
    assert supported["supported"] and supported["win_rate"] == 0.8 and supported["p_value"] == 0.01
    reverse = claims["simpo-$b$ > dpo"]["evaluations"]["gold"]
    assert reverse["supported"] is False and reverse["win_rate"] == pytest.approx(0.2)
    assert claims["dpo beats simpo"]["error"] == "not of the form 'x > y'"
    text = (study.root / "report.md").read_text()
    claim = r"dpo > simpo-\$b\$ on gold: supported (win rate 80.0% [70.0, 90.0], p = 0.0100, "
    assert claim + "Holm-adjusted p = 0.0200)" in text
    assert r"simpo-\$b\$ > dpo on gold: not supported by the data" in text


def test_example_answers_show_the_hacked_text_escaped(study):
    results = _results(study)
    assert results["examples"]
    answers = {a["label"]: a["response"] for a in results["examples"][0]["answers"]}
    assert answers == {"start": "it is a lamp", "dpo": HACKED, SIMPO: "it works <b>fine</b>"}
    assert (
        "largest spread of gold reward (VADER compound sentiment)" in results["examples"][0]["why"]
    )
    text = (study.root / "report.md").read_text()
    page = (study.root / "report.html").read_text()
    assert "it works &lt;b>fine&lt;/b>" in text and "it works &lt;b&gt;fine&lt;/b&gt;" in page
    for document in (text, page):
        assert HACKED in document and "<b>fine" not in document


def test_settings_and_cost(study):
    results = _results(study)
    assert results["cost"]["generated_tokens"] == TOKENS * len(PROMPTS) * len(ANSWERS)
    assert results["cost"]["judge_requests"] == len(PROMPTS) * 4  # 2 methods x 2 seeds
    assert results["cost"]["seconds_total"] == 120.5
    assert [run["path"] for run in results["settings"]["runs"]][:2] == [
        "runs/dpo/seed-0/config.yaml",
        "runs/dpo/seed-1/config.yaml",
    ]
    text = (study.root / "report.md").read_text()
    assert "Wall time 120 s over 2 stages (below); 140 generated tokens" in text
    assert "| dpo | beta, lr | 3 | beta=0.1, lr=0.0001 | 0.600 | 10 |" in text
    assert (study.root / "plots" / "sweep_sensitivity.png").is_file()
    assert "<details><summary>runs/dpo/seed-0/config.yaml</summary>" in text


def test_report_command_prints_which_method_is_best(study, capsys):
    assert main(["report", str(study.root)]) == 0
    assert "On gold, dpo ranks first" in capsys.readouterr().out


def test_without_a_ranking_few_judged_prompts_are_warned_of():
    results = {"rows": [{"evaluations": {"e": {"n": 12}}}, {"evaluations": {"e": None}}]}
    assert "judged a row on only 12 prompts (fewer than 20)" in small_sample_warning(results, "e")
    results["rows"][0]["evaluations"]["e"]["n"] = 20
    assert small_sample_warning(results, "e") is None


def test_tied_top_tier_says_the_data_cannot_separate_them():
    results = {
        "start": "start",
        "ranking": {
            "e": [{"label": "a", "tier": 1}, {"label": "b", "tier": 1}, {"label": "c", "tier": 2}]
        },
        "head_to_head": {"e": {}},
    }
    assert (
        best_sentence(results, "e")
        == "On e, a and b are tied in tier 1: the data cannot separate them."
    )
    results["ranking"]["e"][1]["tier"] = 2
    results["ranking"]["e"][0].update(score=0.6, ci_low=0.5, ci_high=0.7)
    results["head_to_head"]["e"] = {"a": {"b": {"win_rate": 0.6, "significant": False}}}
    assert best_sentence(results, "e").endswith(
        "its head-to-head against b and c is not significant."
    )


def test_every_method_keeps_one_colour_and_labels_are_drawn_as_written(study):
    results = _results(study)
    colours = plots.method_colours(results)
    assert len({colours[row["label"]] for row in results["rows"]}) == len(results["rows"])
    assert plots.tex_safe("$x$") == r"\$x\$"
    assert re.search(r"plots/training_curves\.png", (study.root / "report.md").read_text())


def test_an_evaluation_named_with_dollars_is_drawn(tmp_path):
    results = {
        "start": "start",
        "evaluations": [{"name": "cost $1 $ judge", "kind": "pairwise", "baseline": "start"}],
        "rows": [
            {"label": "start", "evaluations": {"cost $1 $ judge": None}},
            {
                "label": r"a$\nosuch$",
                "evaluations": {
                    "cost $1 $ judge": {"win_rate": 0.6, "ci_low": 0.5, "ci_high": 0.7}
                },
            },
        ],
    }
    [(path, name)] = plots.win_rate_bars(StudyLayout(tmp_path), results)
    assert (
        path.is_file() and path.name == "win_rate_cost__1___judge.png" and name == "cost $1 $ judge"
    )


def test_cost_counts_every_judge_record(tmp_path):
    """Judge requests count pairwise decisions, MT-Bench grades and AlpacaEval annotations."""
    from preftune.experiments.provenance import judge_requests

    _jsonl(tmp_path / "eval" / "a" / "judgments.jsonl", [{"key": 1}, {"key": 2}])
    _jsonl(tmp_path / "eval" / "mt" / "grades.jsonl", [{"key": 1}, {"key": 2}, {"key": 3}])
    (tmp_path / "eval" / "ae").mkdir(parents=True)
    (tmp_path / "eval" / "ae" / "annotations.json").write_text(json.dumps([{}] * 5))
    assert judge_requests(tmp_path) == 2 + 3 + 5
