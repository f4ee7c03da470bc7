"""What ran, with which settings, at what cost: read from a study folder for the report.

- settings: each run's resolved config (runs/<label>[/seed-<s>]/config.yaml), the study's seeds
  and each sweep's points and chosen setting (sweeps/<label>/sweep.json);
- cost: wall time per stage (timings.json, appended by the runner when a stage runs), tokens
  generated (the `num_tokens` of every generated row) and judge requests (the rows of every
  judge's record: judgments.jsonl, MT-Bench's grades.jsonl, AlpacaEval's annotations.json).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from preftune.experiments.layout import StudyLayout, read_json
from preftune.io import read_jsonl

# Files that hold no generated answers: training logs and the judges' decisions.
NOT_GENERATED = {"metrics.jsonl", "judgments.jsonl", "grades.jsonl"}


def _run_configs(layout: StudyLayout, label: str, seeds: list[int | None]) -> list[dict]:
    runs = []
    for seed in seeds:
        path = layout.run(label, seed) / "config.yaml"
        if path.is_file():
            runs.append(
                {
                    "label": label,
                    "seed": seed,
                    "path": path.relative_to(layout.root).as_posix(),
                    "config": yaml.safe_load(path.read_text()),
                }
            )
    return runs


def settings(layout: StudyLayout, study: dict, labels: list[str]) -> dict:
    """The study's seed(s), every run's resolved config and every sweep, by label."""
    seeds = StudyLayout.seeds(study)
    runs = []
    if study.get("sft"):
        runs += _run_configs(layout, "sft", [None])
    for label in labels:
        runs += _run_configs(layout, label, seeds)
    sweeps = {}
    for label in labels:
        sweep = read_json(layout.root / "sweeps" / label / "sweep.json")
        if sweep is not None:
            sweeps[label] = sweep
    return {
        "seed": study.get("seed", 0),
        "seeds": study.get("seeds"),
        "runs": runs,
        "sweeps": sweeps,
    }


def _jsonl_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


def generated_tokens(root: Path) -> int:
    """Tokens generated for the study: the sum of `num_tokens` over every generated row."""
    return sum(
        int(row.get("num_tokens") or 0)
        for path in _jsonl_files(root)
        if path.name not in NOT_GENERATED
        for row in read_jsonl(path)
    )


def judge_requests(root: Path) -> int:
    """Decisions asked of a judge: the rows of every judgments.jsonl (pairwise judges, Arena-Hard,
    MT-Bench pairwise), grades.jsonl (MT-Bench single grades) and annotations.json (AlpacaEval's
    annotator, one request per annotated pair)."""
    records = sum(
        len(read_jsonl(path))
        for name in ("judgments.jsonl", "grades.jsonl")
        for path in root.rglob(name)
    )
    return records + sum(len(read_json(path) or []) for path in root.rglob("annotations.json"))


def cost(layout: StudyLayout) -> dict:
    """Wall time of every stage that ran (and their total), tokens generated, judge requests."""
    stages = (read_json(layout.root / "timings.json") or {}).get("stages", [])
    return {
        "stages": stages,
        "seconds_total": sum(float(stage.get("seconds") or 0.0) for stage in stages),
        "generated_tokens": generated_tokens(layout.root),
        "judge_requests": judge_requests(layout.root),
    }
