"""The report's figures, drawn from collected results and metrics files (matplotlib, Agg).

- training curves: one panel per method (row) and logged series (column), each on its own
  scale, so no method is flattened by another's range;
- the reward-vs-KL frontier (the DPO paper's figure 2): mean gold reward against the sampled
  KL from the start, with the KL's 95% interval (with seeds: the mean, each seed faint);
- win rates with their 95% confidence intervals, one chart per pairwise evaluation;
- sweep sensitivity: the dev metric against each swept value (the other settings at their
  chosen values; other points faint), the chosen point starred.

Every method keeps one colour across every figure (`method_colours`), and labels go into
legends or axis ticks, never annotations that can overprint. Text is passed through
`tex_safe`, so a label such as "$5 budget" is drawn as written instead of as mathtext.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from preftune.experiments.dynamics import SERIES, read_metrics  # noqa: E402
from preftune.experiments.layout import SFT, START, StudyLayout  # noqa: E402
from preftune.experiments.seed_paths import seeded, study_seeds  # noqa: E402
from preftune.io import atomic_write_bytes  # noqa: E402

CURVES = (
    "loss",
    "reward margin",
    "reward accuracy",
    "chosen log-prob",
    "gradient norm",
    "KL estimate",
)
START_COLOUR = "#444444"


def tex_safe(text: object) -> str:
    """`text` with every "$" escaped, so matplotlib draws it literally.

    >>> tex_safe("$5 budget (β=$0.1$)")
    '\\\\$5 budget (β=\\\\$0.1\\\\$)'
    """
    return str(text).replace("$", r"\$")


def method_colours(results: dict) -> dict[str, str]:
    """One colour per row label, the same in every figure (the start in dark grey)."""
    methods = [row["label"] for row in results["rows"] if row["label"] != START]
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    colours = {
        label: matplotlib.colors.to_hex(palette(i % palette.N)) for i, label in enumerate(methods)
    }
    return {START: START_COLOUR, SFT: START_COLOUR, **colours}


def display_name(results: dict, label: str) -> str:
    return results["start"] if label == START else label


def _save(figure, path: Path) -> Path:
    """The figure as a PNG, written atomically (a reader never sees half an image)."""
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    return atomic_write_bytes(path, image.getvalue())


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


def _training_logs(layout: StudyLayout, results: dict, seed: int | None) -> dict[str, list]:
    logs = {}
    for row in results["rows"]:
        if "dynamics" in row:
            label = row["label"]
            run = seeded(layout.run(SFT if label == START else label), label, seed)
            logs[label] = read_metrics(run / "metrics.jsonl")
    return logs


def training_curves(layout: StudyLayout, results: dict, study: dict) -> Path | None:
    """A grid: one row per method, one column per logged series, each panel on its own scale
    (the grid grows downwards with the number of methods, as a page does)."""
    logs = _training_logs(layout, results, study_seeds(study)[0])
    logs = {label: rows for label, rows in logs.items() if rows}
    panels = [name for name in CURVES if any(_values(rows, name)[1] for rows in logs.values())]
    if not panels:
        return None
    colours = method_colours(results)
    figure, axes = plt.subplots(
        len(logs),
        len(panels),
        figsize=(2.7 * len(panels) + 0.6, 1.9 * len(logs) + 0.6),
        squeeze=False,
        sharex="row",
    )
    for column, name in enumerate(panels):
        axes[0, column].set_title(name, fontsize=9)
        axes[-1, column].set_xlabel("step")
    for line, (label, rows) in enumerate(logs.items()):
        axes[line, 0].set_ylabel(tex_safe(display_name(results, label)), color=colours[label])
        for column, name in enumerate(panels):
            steps, values = _values(rows, name)
            axis = axes[line, column]
            if values:
                axis.plot(steps, values, color=colours[label], linewidth=1.1)
            else:
                axis.text(0.5, 0.5, "not logged", ha="center", va="center", color="grey")
                axis.set_yticks([])
            axis.tick_params(labelsize=7)
    return _save(figure, layout.plots / "training_curves.png")


def reward_vs_kl(
    layout: StudyLayout, results: dict, kl_label: str, gold: str | None
) -> Path | None:
    """Mean gold reward against KL from the start, one colour per method, the KL's interval as
    a horizontal bar; names in the legend."""
    points = [
        (row["label"], row["stats"])
        for row in results["rows"]
        if row["stats"].get("kl") is not None and row["stats"].get("gold_reward") is not None
    ]
    if not points:
        return None
    colours = method_colours(results)
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for row in results["rows"]:  # with seeds: each seed faint, the mean with the legend entry
        for seed in row.get("per_seed") or []:
            stats = seed.get("stats") or {}
            if stats.get("kl") is not None and stats.get("gold_reward") is not None:
                axis.plot(
                    stats["kl"], stats["gold_reward"], ".", color=colours[row["label"]], alpha=0.35
                )
    for label, stats in points:
        low, high = stats.get("kl_ci_low"), stats.get("kl_ci_high")
        error = None
        if low is not None and high is not None:
            error = [[max(stats["kl"] - low, 0.0)], [max(high - stats["kl"], 0.0)]]
        axis.errorbar(
            stats["kl"],
            stats["gold_reward"],
            xerr=error,
            fmt="o",
            capsize=3,
            color=colours[label],
            label=tex_safe(display_name(results, label)),
        )
    axis.set_xlabel(tex_safe(kl_label))
    axis.set_ylabel(tex_safe(f"mean gold reward ({gold})" if gold else "mean gold reward"))
    axis.set_title("Reward vs KL frontier")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(figure, layout.plots / "reward_vs_kl.png")


def _or(value: float | None, fallback: float) -> float:
    return fallback if value is None else value


def _win_rate_bar(layout: StudyLayout, results: dict, evaluation: dict) -> Path | None:
    name = evaluation["name"]
    bars = [
        (row["label"], row["evaluations"][name])
        for row in results["rows"]
        if row["evaluations"].get(name) and row["evaluations"][name].get("win_rate") is not None
    ]
    if not bars:
        return None
    colours = method_colours(results)
    rates = [100 * figures["win_rate"] for _, figures in bars]
    below = [100 * (f["win_rate"] - _or(f["ci_low"], f["win_rate"])) for _, f in bars]
    above = [100 * (_or(f["ci_high"], f["win_rate"]) - f["win_rate"]) for _, f in bars]
    figure, axis = plt.subplots(figsize=(max(4.5, 0.8 * len(bars) + 2), 3.8))
    positions = range(len(bars))
    axis.bar(positions, rates, yerr=[below, above], capsize=4, color=[colours[b[0]] for b in bars])
    axis.set_xticks(list(positions), [tex_safe(display_name(results, b[0])) for b in bars])
    axis.axhline(50, color="grey", linestyle="--", linewidth=1)
    axis.set_ylabel(tex_safe(f"win rate % vs {evaluation['baseline']} (95% CI)"))
    axis.set_title(tex_safe(name))
    axis.set_ylim(0, 100)
    axis.tick_params(axis="x", rotation=30)
    return _save(figure, layout.plots / f"win_rate_{_file_name(name)}.png")


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def win_rate_bars(layout: StudyLayout, results: dict) -> list[tuple[Path, str]]:
    """One bar chart per pairwise evaluation: (path, evaluation name)."""
    drawn = []
    for evaluation in results["evaluations"]:
        if evaluation["kind"] == "pairwise":
            path = _win_rate_bar(layout, results, evaluation)
            if path is not None:
                drawn.append((path, evaluation["name"]))
    return drawn


def _sensitivity_panel(axis, sweep: dict, parameter: str, colour: str) -> None:
    """The dev metric against `parameter`: a line through the points whose other swept values
    are the chosen ones, the remaining points as faint dots, the chosen point starred."""
    chosen = sweep.get("chosen") or {}
    points = [p for p in sweep["points"] if p.get("dev_metric") is not None]
    points.sort(key=lambda p: p["values"][parameter])
    others = [q for q in sweep["swept"] if q != parameter]
    on_line = [p for p in points if all(p["values"].get(q) == chosen.get(q) for q in others)]
    off_line = [p for p in points if p not in on_line]
    axis.plot(
        [p["values"][parameter] for p in on_line],
        [p["dev_metric"] for p in on_line],
        "o-",
        color=colour,
        linewidth=1,
    )
    if off_line:
        xs, ys = [p["values"][parameter] for p in off_line], [p["dev_metric"] for p in off_line]
        axis.plot(xs, ys, "o", color=colour, alpha=0.3)
    for point in points:
        if point.get("point") == sweep.get("chosen_point"):
            axis.plot(
                point["values"][parameter], point["dev_metric"], "*", color="black", markersize=12
            )
    numbers = [p["values"][parameter] for p in points]
    numbers = [x for x in numbers if isinstance(x, (int, float))]
    if numbers and min(numbers) > 0 and max(numbers) / min(numbers) >= 10:
        axis.set_xscale("log")
    axis.set_xlabel(tex_safe(parameter))
    axis.tick_params(labelsize=7)


def sweep_sensitivity(layout: StudyLayout, results: dict, sweeps: dict) -> Path | None:
    """One row per swept method, one panel per swept setting: the dev metric at each point,
    the chosen point starred."""
    sweeps = {label: s for label, s in sweeps.items() if s.get("points") and s.get("swept")}
    if not sweeps:
        return None
    colours = method_colours(results)
    columns = max(len(s["swept"]) for s in sweeps.values())
    figure, axes = plt.subplots(
        len(sweeps), columns, figsize=(3.4 * columns + 0.6, 2.6 * len(sweeps)), squeeze=False
    )
    for line, (label, sweep) in enumerate(sweeps.items()):
        for column in range(columns):
            axis = axes[line, column]
            if column >= len(sweep["swept"]):
                axis.axis("off")
                continue
            _sensitivity_panel(axis, sweep, sweep["swept"][column], colours.get(label, "C0"))
            axis.set_title(tex_safe(label), fontsize=9, color=colours.get(label, "C0"))
            if column == 0:
                metric = textwrap.fill(sweep.get("metric", "dev metric"), 28)
                axis.set_ylabel(tex_safe(metric), fontsize=7)
    return _save(figure, layout.plots / "sweep_sensitivity.png")
