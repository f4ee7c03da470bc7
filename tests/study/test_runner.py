"""A whole study end to end on a tiny random model: data, training, evaluation, report, resume."""

from __future__ import annotations

import json
from statistics import fmean

import pytest
import yaml

from preftune.errors import ConfigError
from preftune.experiments import evaluation
from preftune.experiments import runner as runner_module
from preftune.experiments.config import study_from_dict
from preftune.experiments.layout import StudyLayout
from preftune.experiments.runner import StudyRunner
from preftune.io import read_jsonl


@pytest.fixture()
def training_calls(monkeypatch):
    """Count real training runs, and make the run labelled 'simpo' fail."""
    calls = []
    real = runner_module.run_training

    def counted(values):
        calls.append(values["run_name"])
        if values["run_name"] == "simpo" and fail["simpo"]:
            raise RuntimeError("injected failure")
        return real(values)

    fail = {"simpo": True}
    monkeypatch.setattr(runner_module, "run_training", counted)
    return calls, fail


@pytest.fixture()
def judging_fails_once(monkeypatch):
    """Make the first judging of the 'dpo' row fail, as an unreachable judge would."""
    real = evaluation.judge_row
    failed = []

    def judge_row(config, spec, samples, model, layout, label, seed=None):
        if label == "dpo" and not failed:
            failed.append(label)
            raise ConnectionError("judge unreachable")
        return real(config, spec, samples, model, layout, label, seed)

    monkeypatch.setattr(evaluation, "judge_row", judge_row)
    return failed


def test_tiny_study_end_to_end_with_failures_and_a_resume(
    tmp_path, tiny_study, length_gold, training_calls, judging_fails_once
):
    calls, fail = training_calls
    config = study_from_dict(tiny_study())
    out = tmp_path / "study"
    lines = []
    results = StudyRunner(config, out, log=lines.append).run()

    layout = StudyLayout(out)
    train_rows = [json.loads(line) for line in layout.train_data.read_text().splitlines()]
    assert train_rows and all(len(r["responses"]) == len(r["scores"]) >= 2 for r in train_rows)
    assert (layout.run("dpo") / "final" / "config.json").is_file()
    rows = {row["label"]: row for row in results["rows"]}
    assert rows["start"]["status"] == "ok"
    assert rows["simpo"]["status"] == "failed"
    assert "injected failure" in rows["simpo"]["failure"]["error"]
    assert rows["dpo"]["failure"] == {
        "step": "evaluate",
        "error": "ConnectionError: judge unreachable",
    }
    assert rows["start"]["stats"]["kl"] == 0.0
    assert rows["dpo"]["dynamics"]["steps"] > 0
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file()
    assert (
        "simpo failed at train: RuntimeError: injected failure" in (out / "report.md").read_text()
    )
    assert any("train dpo (1/2)" in line for line in lines)
    assert any("simpo failed at train" in line for line in lines)
    assert calls == ["dpo", "simpo"]

    # Resume: finished work is skipped; the failed training and the failed judging are retried.
    fail["simpo"] = False
    lines.clear()
    results = StudyRunner(config, out, log=lines.append).run()
    assert calls == ["dpo", "simpo", "simpo"]
    skipped = [line for line in lines if "finished steps skipped" in line]
    assert len(skipped) == 1 and "train 1" in skipped[0] and "samples 2" in skipped[0]
    assert not any("done earlier" in line for line in lines)
    rows = {row["label"]: row for row in results["rows"]}
    assert {label: row["status"] for label, row in rows.items()} == {
        "start": "ok",
        "dpo": "ok",
        "simpo": "ok",
    }
    gold = rows["dpo"]["evaluations"]["gold"]
    assert 0.0 <= gold["ci_low"] <= gold["win_rate"] <= gold["ci_high"] <= 1.0
    assert gold["n"] == 4
    assert rows["dpo"]["stats"]["kl"] is not None
    # Both methods learned from the one sampling step: 6 prompts x 3 samples of <= 8 tokens.
    samples = read_jsonl(layout.train_data.with_name("samples.jsonl"))
    budget = rows["dpo"]["budget"]
    assert budget["source"] == "on-policy sampling" and rows["simpo"]["budget"] == budget
    assert (budget["prompts"], budget["samples"]) == (6, 18)
    assert budget["tokens"] == sum(row["num_tokens"] for row in samples) <= 18 * 8
    assert budget["reward_calls"] == sum(len(row["scores"]) for row in train_rows)


def test_a_folder_holding_another_study_is_refused(tmp_path, length_gold, tiny_study):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.yaml").write_text("name: other\n")
    config = study_from_dict(tiny_study())
    with pytest.raises(ConfigError, match="holds another study"):
        StudyRunner(config, out, log=lambda line: None).run()


def test_adding_methods_to_a_finished_study_runs_only_the_new_ones(
    tmp_path, length_gold, training_calls, tiny_study
):
    calls, _ = training_calls
    out = tmp_path / "study"
    StudyRunner(study_from_dict(tiny_study(("dpo",))), out, log=print).run()
    lines = []
    extended = study_from_dict(tiny_study(("dpo", "ipo")))
    results = StudyRunner(extended, out, log=lines.append).run()
    assert calls == ["dpo", "ipo"]
    assert any("adding ipo to the study" in line for line in lines)
    assert any("finished steps skipped" in line and "samples 2" in line for line in lines)
    assert [row["label"] for row in results["rows"]] == ["start", "dpo", "ipo"]
    assert "ipo" in (out / "study.yaml").read_text()

    changed = tiny_study(("dpo", "ipo", "slic"))
    changed["seed"] = 1  # adding a method and changing the seed is another study
    with pytest.raises(ConfigError, match=r"differs in \['methods', 'seed'\]"):
        StudyRunner(study_from_dict(changed), out, log=lines.append).run()


def test_tiny_study_with_sft_file_data_and_the_reference_baseline(
    tmp_path, tiny_model_dir, tiny_study
):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {
            "prompt": f"write a short review of film {i}",
            "chosen": "the movie was great",
            "rejected": "a terrible film with a boring plot",
        }
        for i in range(6)
    ]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = tiny_study(("dpo",))
    raw["sft"] = {"train": {"lr": 1e-3}}
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        "".join(
            json.dumps({"prompt": f"review book {i}", "chosen": "fine", "rejected": "bad"}) + "\n"
            for i in range(2)
        )
    )
    raw["data"] = {
        "train": {"path": str(pairs)},
        "heldout": {"path": str(pairs), "limit": 3},
        "dev": {"path": str(dev)},
    }
    raw["methods"][0]["sweep"] = {"lr": [1e-3]}
    raw["evaluation"]["kl_samples"] = 2
    raw["evaluation"]["evaluations"] = [
        {
            "name": "vs-chosen",
            "baseline": "reference",
            "pairs": "all",
            "judge": {"type": "hf-llm", "model": str(tiny_model_dir)},
        }
    ]
    out = tmp_path / "study"
    results = StudyRunner(study_from_dict(raw), out, log=lambda line: None).run()

    layout = StudyLayout(out)
    assert (layout.run("sft") / "final" / "config.json").is_file()
    dpo_config = (layout.run("dpo") / "config.yaml").read_text()
    assert "runs/sft/final" in dpo_config  # the method started from the SFT model
    rows = {row["label"]: row for row in results["rows"]}
    assert results["start"] == "sft" and rows["start"]["dynamics"]["steps"] > 0
    for label in ("start", "dpo"):  # the SFT model is judged against the data's chosen answers
        figures = rows[label]["evaluations"]["vs-chosen"]
        assert figures["n"] + figures["errors"] == 3
    assert rows["dpo"]["stats"]["kl_estimate"] == "sampled"
    assert len(read_jsonl(layout.eval_dir("dpo") / "kl_samples.jsonl")) == 2
    report = (out / "report.md").read_text()
    assert "| sft |" in report and "Monte-Carlo estimate of KL" in report
    # Without a gold reward the sweep is scored by the evaluation's judge against the start's
    # answers on the dev prompts; the test data's own pairs test DPO's implicit reward.
    sweep = json.loads((layout.sweep("dpo") / "sweep.json").read_text())
    assert sweep["metric"].startswith("win rate against start") and sweep["chosen"] == {"lr": 1e-3}
    assert len(read_jsonl(layout.sweep("start") / "dev_samples.jsonl")) == 2
    preference = json.loads(layout.preference("dpo").read_text())
    assert preference["n"] == 3 and preference["pairs_source"] == "test data"
    ranking = json.loads((layout.ranking("vs-chosen") / "ranking.json").read_text())
    assert {row["label"] for row in ranking["ranking"]} == {"start", "dpo"}
    assert (layout.ranking("vs-chosen") / "judgments.jsonl").is_file()  # every pair judged


def test_two_seeds_and_a_sweep_tune_on_dev_and_rank_on_test_prompts(
    tmp_path, length_gold, monkeypatch, tiny_study
):
    runs = []
    real = runner_module.run_training
    monkeypatch.setattr(
        runner_module,
        "run_training",
        lambda values: runs.append(f"{values['output_dir']}/{values['run_name']}") or real(values),
    )
    raw = tiny_study(("dpo", "simpo"))
    raw["seeds"] = [0, 1]
    raw["methods"][0]["sweep"] = {"beta": [0.1, 0.5]}
    raw["data"]["dev"] = {"task": "sentiment", "split": "dev", "limit": 4}
    raw["evaluation"]["preference_prompts"] = 4
    raw["claims"] = ["dpo > simpo"]
    out, lines = tmp_path / "study", []
    StudyRunner(study_from_dict(raw), out, log=lines.append).run()
    layout = StudyLayout(out)

    assert any("plan: 3 rows (start + 2 methods), seeds [0, 1], 4 test prompts" in x for x in lines)
    dev, test = read_jsonl(layout.dev), read_jsonl(layout.heldout)
    assert len(dev) == 4 and not {r["prompt"] for r in dev} & {r["prompt"] for r in test}
    # The sweep: two points trained with the first seed, scored on the dev answers only.
    sweep = json.loads((layout.sweep("dpo") / "sweep.json").read_text())
    assert [p["values"] for p in sweep["points"]] == [{"beta": 0.1}, {"beta": 0.5}]
    for point in sweep["points"]:
        answers = read_jsonl(layout.sweep("dpo") / point["point"] / "dev_samples.jsonl")
        assert {a["id"] for a in answers} == {r["id"] for r in dev}
        assert point["dev_metric"] == pytest.approx(fmean(len(a["response"]) for a in answers))
    best = max(sweep["points"], key=lambda p: p["dev_metric"])
    assert sweep["chosen"] == best["values"] and sweep["chosen_point"] == best["point"]
    # Each method once per seed, the swept one with the chosen setting: its first seed is the
    # chosen point's run, copied, not trained again.
    assert sorted(runs) == sorted(
        [str(layout.sweep("dpo") / p) for p in ("p0", "p1")]
        + [str(layout.run("dpo", 1))]
        + [str(layout.run("simpo", s)) for s in (0, 1)]
    )
    assert (layout.run("dpo", 0) / "final" / "config.json").is_file()
    for seed in (0, 1):
        trained = yaml.safe_load((layout.run("dpo", seed) / "config.yaml").read_text())
        assert trained["seed"] == seed and trained["hparams"] == sweep["chosen"]
        assert len(read_jsonl(layout.samples("simpo", seed))) == 4
    # The ranking pools seeds and prompts; start (no seed) meets every seed.
    ranking = json.loads((layout.ranking("gold") / "ranking.json").read_text())
    assert ranking["seeds"] == 2 and ranking["n_prompts"] == 4
    assert {row["label"] for row in ranking["ranking"]} == {"start", "dpo", "simpo"}
    start = {r["id"]: len(r["response"]) for r in read_jsonl(layout.samples("start"))}
    outcomes = [
        1.0
        if len(r["response"]) > start[r["id"]]
        else 0.5
        if len(r["response"]) == start[r["id"]]
        else 0.0
        for seed in (0, 1)
        for r in read_jsonl(layout.samples("dpo", seed))
    ]
    assert ranking["head_to_head"]["dpo"]["start"]["win_rate"] == pytest.approx(fmean(outcomes))
    # Held-out preference accuracy for the implicit reward of DPO (SimPO has none).
    pairs = read_jsonl(layout.preference_pairs)
    assert pairs and all(len(p["chosen"]) > len(p["rejected"]) for p in pairs)
    for seed in (0, 1):
        accuracy = json.loads(layout.preference("dpo", seed).read_text())
        assert accuracy["n"] == len(pairs) and 0.0 <= accuracy["accuracy"] <= 1.0
        assert accuracy["beta"] == sweep["chosen"]["beta"]
        assert not layout.preference("simpo", seed).exists()
    stages = [stage["name"] for stage in json.loads(layout.timings.read_text())["stages"]]
    assert "sweep dpo (2 points, dev prompts)" in stages and "rank on gold" in stages

    # A rerun trains nothing and says so in one line.
    runs.clear()
    lines.clear()
    StudyRunner(study_from_dict(raw), out, log=lines.append).run()
    assert runs == []
    assert len([line for line in lines if "finished steps skipped" in line]) == 1


LOCK_HOLDER = """
import sys, time
from preftune.io import FolderLock
lock = FolderLock(sys.argv[1], what="study folder").acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_compare_on_a_held_study_folder_exits_2_naming_the_holder(tmp_path, tiny_study):
    import subprocess
    import sys

    out = tmp_path / "study"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        config = study_from_dict(tiny_study(("dpo",)))
        with pytest.raises(
            ConfigError, match=rf"in use by another preftune process \(pid {holder.pid}\)"
        ):
            StudyRunner(config, out, log=lambda line: None).run()
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "study.yaml").exists()  # the refused process wrote nothing
