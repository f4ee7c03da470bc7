"""The report's figures, drawn from collected results and metrics files (matplotlib, Agg).

- training curves: one panel per logged series, one line per method;
- the reward-vs-KL frontier (the DPO paper's figure 2): mean gold reward against KL from the start;
- win rates with their 95% confidence intervals, one chart per pairwise evaluation.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from preftune.experiments.dynamics import SERIES, read_metrics  # noqa: E402
from preftune.experiments.layout import SFT, START, StudyLayout  # noqa: E402
from preftune.experiments.results import KL_SAMPLED, kl_kind  # noqa: E402

CURVES = (
    "loss",
    "reward margin",
    "reward accuracy",
    "chosen log-prob",
    "gradient norm",
    "KL estimate",
)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def training_curves(layout: StudyLayout, results: dict) -> Path | None:
    runs = {}
    for row in results["rows"]:
        if "dynamics" in row:
            run = layout.run(SFT if row["label"] == START else row["label"])
            runs[row["label"]] = read_metrics(run / "metrics.jsonl")
    panels = [name for name in CURVES if any(_values(rows, name)[1] for rows in runs.values())]
    if not panels:
        return None
    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines), squeeze=False)
    for axis, name in zip(axes.flat, panels, strict=False):
        for index, (label, rows) in enumerate(runs.items()):
            steps, values = _values(rows, name)
            if values:  # a method keeps its colour across panels
                axis.plot(steps, values, label=label, color=f"C{index % 10}", linewidth=1.2)
        axis.set_title(name)
        axis.set_xlabel("step")
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save(figure, layout.plots / "training_curves.png")


def _values(rows: list[dict], name: str) -> tuple[list[int], list[float]]:
    for key in SERIES[name]:
        pairs = [
            (row.get("step", index), row[key])
            for index, row in enumerate(rows)
            if isinstance(row.get(key), (int, float))
        ]
        if pairs:
            return [p[0] for p in pairs], [float(p[1]) for p in pairs]
    return [], []


def reward_vs_kl(layout: StudyLayout, results: dict) -> Path | None:
    points = [
        (row["label"], row["stats"]["kl"], row["stats"]["gold_reward"])
        for row in results["rows"]
        if row["stats"].get("kl") is not None and row["stats"].get("gold_reward") is not None
    ]
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for label, kl, reward in points:
        axis.scatter(kl, reward)
        axis.annotate(label, (kl, reward), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xlabel(
        "KL from the starting model (nats, sampled answers)"
        if kl_kind(results) == KL_SAMPLED
        else "log-ratio to the starting model on greedy answers (nats)"
    )
    axis.set_ylabel("mean gold reward")
    axis.set_title("Reward vs KL frontier")
    axis.grid(alpha=0.3)
    return _save(figure, layout.plots / "reward_vs_kl.png")


def _or(value: float | None, fallback: float) -> float:
    return fallback if value is None else value


def win_rate_bars(layout: StudyLayout, results: dict) -> list[Path]:
    paths = []
    for evaluation in results["evaluations"]:
        if evaluation["kind"] != "pairwise":
            continue
        name = evaluation["name"]
        bars = [
            (row["label"], row["evaluations"][name])
            for row in results["rows"]
            if row["evaluations"].get(name) and row["evaluations"][name].get("win_rate") is not None
        ]
        if not bars:
            continue
        labels = [label for label, _ in bars]
        rates = [100 * figures["win_rate"] for _, figures in bars]
        below = [100 * (f["win_rate"] - _or(f["ci_low"], f["win_rate"])) for _, f in bars]
        above = [100 * (_or(f["ci_high"], f["win_rate"]) - f["win_rate"]) for _, f in bars]
        figure, axis = plt.subplots(figsize=(max(4.5, 0.8 * len(bars) + 2), 3.8))
        axis.bar(labels, rates, yerr=[below, above], capsize=4, color="#4c72b0")
        axis.axhline(50, color="grey", linestyle="--", linewidth=1)
        axis.set_ylabel(f"win rate % vs {evaluation['baseline']} (95% CI)")
        axis.set_title(name)
        axis.set_ylim(0, 100)
        axis.tick_params(axis="x", rotation=30)
        paths.append(_save(figure, layout.plots / f"win_rate_{name}.png"))
    return paths
