"""The report's "Settings and cost" section: what each run trained with (and how a sweep chose
it), and what the study cost in wall time, generated tokens and judge requests."""

from __future__ import annotations

from preftune.experiments import plots
from preftune.experiments.layout import StudyLayout
from preftune.experiments.sections import number


def _settings_text(values: dict | None) -> str:
    return ", ".join(f"{key}={value}" for key, value in (values or {}).items()) or "defaults"


def _length(config: dict) -> str:
    if config.get("max_steps"):
        return f"{config['max_steps']} steps"
    epochs = config.get("epochs", 1)
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


def settings_table(settings: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "run",
        "method",
        "seed",
        "hyperparameters",
        "optimizer, lr",
        "batch",
        "length",
        "config",
    ]
    rows = []
    for run in settings["runs"]:
        config = run["config"] or {}
        rows.append(
            [
                run["label"],
                str(config.get("method", "—")),
                str(config.get("seed", run["seed"])),
                _settings_text(config.get("hparams")),
                f"{config.get('optimizer', '—')}, {config.get('lr', '—')}",
                str(config.get("batch_size", "—")),
                _length(config),
                run["path"],
            ]
        )
    return header, rows


def sweeps_table(sweeps: dict) -> tuple[list[str], list[list[str]]]:
    header = ["method", "swept", "points", "chosen", "dev metric at the chosen point", "dev n"]
    rows = []
    for label, sweep in sweeps.items():
        chosen = [p for p in sweep.get("points", []) if p.get("point") == sweep.get("chosen_point")]
        point = chosen[0] if chosen else {}
        rows.append(
            [
                label,
                ", ".join(sweep.get("swept", [])),
                str(len(sweep.get("points", []))),
                _settings_text(sweep.get("chosen")),
                number(point.get("dev_metric")),
                str(point.get("dev_n", "—")),
            ]
        )
    return header, rows


def _cost_sentence(cost: dict) -> str:
    timing = (
        f"Wall time {cost['seconds_total']:.0f} s over {len(cost['stages'])} stages (below)"
        if cost["stages"]
        else "No timings recorded (timings.json is missing)"
    )
    return (
        f"{timing}; {cost['generated_tokens']:,} generated tokens (the sum of num_tokens over "
        f"every generated answer); {cost['judge_requests']:,} judge requests (the rows of every "
        "judgments.jsonl, grades.jsonl and annotations.json)."
    )


def settings_section(layout: StudyLayout, results: dict) -> list[tuple]:
    settings, cost = results["settings"], results["cost"]
    seeds = settings["seeds"] or [settings["seed"]]
    blocks = [
        ("h", "Settings and cost"),
        ("p", f"Seed{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))}."),
    ]
    if settings["runs"]:
        blocks.append(("table", *settings_table(settings)))
    if settings["sweeps"]:
        metrics = {s.get("metric") for s in settings["sweeps"].values()} - {None}
        blocks.append(("p", "Sweeps on the dev split (" + "; ".join(sorted(metrics)) + "):"))
        blocks.append(("table", *sweeps_table(settings["sweeps"])))
        path = plots.sweep_sensitivity(layout, results, settings["sweeps"])
        if path is not None:
            blocks.append(
                ("image", path, "Sweep sensitivity: the dev metric at each swept value (★ chosen)")
            )
    blocks.append(("p", _cost_sentence(cost)))
    if cost["stages"]:
        rows = [[str(s.get("name")), f"{float(s.get('seconds') or 0):.1f}"] for s in cost["stages"]]
        blocks.append(("table", ["stage", "seconds"], rows))
    return blocks
