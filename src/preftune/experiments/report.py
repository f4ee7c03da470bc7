"""The study report: report.md, a self-contained report.html (plots inlined) and results.json.

`build_report(study_dir)` reads only files on disk (see `layout`), so `preftune report` can
rebuild it at any time, also for a study that is still running or partly failed. The tables
follow the seed study: Table 3 (methods x evaluations: win rate % with 95% CI, mean gold
reward, KL from the start, length, repetition, share ending at EOS) and Table 2 (training
dynamics per method, derived from metrics.jsonl).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from preftune.experiments import plots
from preftune.experiments.dynamics import SERIES
from preftune.experiments.layout import START, StudyLayout, write_json_atomic
from preftune.experiments.results import KL_GREEDY, KL_SAMPLED, collect, kl_kind

KL_NOTES = {
    KL_SAMPLED: "KL: mean of log π(y) − log π_start(y) over answers sampled from each model at "
    "temperature 1, a Monte-Carlo estimate of KL(π ‖ π_start).",
    KL_GREEDY: "KL: mean of log π(y) − log π_start(y) over each model's greedy "
    "answers; a log-ratio, not a true KL (it can be negative); set evaluation.kl_samples "
    "for a sampled estimate.",
}

# A report is a list of blocks, rendered twice: ("h", text) heading, ("p", text) paragraph,
# ("table", header, rows), ("image", path, caption).


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _win_cell(figures: dict | None) -> str:
    if not figures or figures.get("win_rate") is None:
        return "—"
    return (
        f"{_percent(figures['win_rate'])} "
        f"[{_percent(figures.get('ci_low'))}, {_percent(figures.get('ci_high'))}]"
    )


def verdict(figures: dict | None, baseline: str) -> str | None:
    """What a win rate says, honestly: better, no clear difference, or worse than the baseline."""
    if not figures or figures.get("win_rate") is None or figures.get("ci_low") is None:
        return None
    if figures["ci_low"] > 0.5:
        return f"beats {baseline} (95% CI above 50%)"
    if figures["ci_high"] < 0.5:
        return f"loses to {baseline} (95% CI below 50%)"
    return f"does not beat {baseline} at this size (95% CI includes 50%)"


def _table3(results: dict) -> tuple[list[str], list[list[str]]]:
    evaluations = results["evaluations"]
    header = ["Method"]
    for evaluation in evaluations:
        if evaluation["kind"] == "mt-bench":
            header.append(f"{evaluation['name']} score")
        else:
            header.append(f"{evaluation['name']} win % vs {evaluation['baseline']} [95% CI]")
    header += ["gold reward", "KL", "length", "repetition %", "ends at EOS %", "status"]
    rows = []
    for row in results["rows"]:
        cells = [row["label"] if row["label"] != START else results["start"]]
        for evaluation in evaluations:
            figures = row["evaluations"].get(evaluation["name"])
            if evaluation["kind"] == "mt-bench":
                cells.append(_number((figures or {}).get("score"), 2))
            else:
                cells.append(_win_cell(figures))
        stats = row["stats"]
        cells += [
            _number(stats["gold_reward"]),
            _number(stats["kl"], 2),
            _number(stats["length"], 1),
            _percent(stats["repetition"], 0),
            _percent(stats["eos_share"], 0),
            row["status"],
        ]
        rows.append(cells)
    return header, rows


def _dynamics_cell(series: dict | None) -> str:
    if not series:
        return "—"
    return (
        f"{series['trend']}, {series['stability']} "
        f"({_number(series['start'], 3)} → {_number(series['end'], 3)})"
    )


def _table2(results: dict) -> tuple[list[str], list[list[str]]]:
    rows_with_runs = [row for row in results["rows"] if row.get("dynamics", {}).get("steps")]
    names = [
        name for name in SERIES if any(name in row["dynamics"]["series"] for row in rows_with_runs)
    ]
    header = ["Method", "steps", *names, "flags"]
    rows = []
    for row in rows_with_runs:
        dynamics = row["dynamics"]
        cells = [
            row["label"] if row["label"] != START else results["start"],
            str(dynamics["steps"]),
        ]
        cells += [_dynamics_cell(dynamics["series"].get(name)) for name in names]
        cells.append("; ".join(dynamics["flags"]) or "none")
        rows.append(cells)
    return header, rows


def _blocks(layout: StudyLayout, results: dict) -> list[tuple]:
    blocks = [
        ("h", f"Study: {results['study']}"),
        (
            "p",
            f"Model: {results['model']}. Every method starts from the same model "
            f"(row '{results['start']}') with the same data order and seed. Every figure "
            "is read from the study folder.",
        ),
        ("h", "Results (the seed study's Table 3)"),
        ("table", *_table3(results)),
        (
            "p",
            "Win rate: ties count half; 95% confidence interval by bootstrap over prompts. "
            + KL_NOTES[kl_kind(results)]
            + " Length in tokens; repetition: share of answers with a repeated word trigram "
            "(reward hacking shows here before it shows in the gold reward).",
        ),
    ]
    readings = []
    for evaluation in results["evaluations"]:
        for row in results["rows"]:
            said = verdict(row["evaluations"].get(evaluation["name"]), evaluation["baseline"])
            if said and row["label"] != evaluation["baseline"]:
                readings.append(f"{row['label']} on {evaluation['name']}: {said}.")
    if readings:
        blocks.append(("list", readings))
    failures = [row for row in results["rows"] if row["failure"]]
    if failures:
        blocks.append(("h", "Failures"))
        blocks.append(
            (
                "list",
                [
                    f"{r['label']} failed at {r['failure']['step']}: {r['failure']['error']}"
                    for r in failures
                ],
            )
        )
    header, rows = _table2(results)
    if rows:
        blocks += [
            ("h", "Training dynamics (the seed study's Table 2, from metrics.jsonl)"),
            ("table", header, rows),
            (
                "p",
                "Each cell: trend over training (last third's mean against the first "
                "third's), stability (mean step-to-step change over the range), and the "
                "first-third → last-third means.",
            ),
        ]
    figures = [
        (plots.training_curves(layout, results), "Training curves"),
        (plots.reward_vs_kl(layout, results), "Gold reward against KL from the start"),
        *[
            (path, f"Win rate, {path.stem.removeprefix('win_rate_')}")
            for path in plots.win_rate_bars(layout, results)
        ],
    ]
    drawn = [(path, caption) for path, caption in figures if path is not None]
    if drawn:
        blocks.append(("h", "Plots"))
        blocks += [("image", path, caption) for path, caption in drawn]
    return blocks


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def results_table(results: dict) -> str:
    """Table 3 as markdown, for the console at the end of a study."""
    return _markdown_table(*_table3(results))


def _markdown(blocks: list[tuple], root: Path) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' if not out else '##'} {block[1]}\n")
        elif kind == "p":
            out.append(block[1] + "\n")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]) + "\n")
        elif kind == "table":
            out.append(_markdown_table(block[1], block[2]) + "\n")
        elif kind == "image":
            out.append(f"![{block[2]}]({block[1].relative_to(root).as_posix()})\n")
    return "\n".join(out)


def _html(blocks: list[tuple], title: str) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(
                f"<{'h1' if not out else 'h2'}>{html.escape(block[1])}</{'h1' if not out else 'h2'}>"
            )
        elif kind == "p":
            out.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                for row in block[2]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "image":
            data = base64.b64encode(block[1].read_bytes()).decode("ascii")
            caption = html.escape(block[2])
            out.append(
                f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.9em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(out)}</body></html>\n"
    )


def build_report(study_dir: str | Path) -> dict:
    """Write results.json, plots/, report.md and report.html; return the collected results."""
    layout = StudyLayout(Path(study_dir))
    results = collect(layout)
    write_json_atomic(layout.root / "results.json", results)
    blocks = _blocks(layout, results)
    (layout.root / "report.md").write_text(_markdown(blocks, layout.root))
    (layout.root / "report.html").write_text(_html(blocks, f"preftune study {results['study']}"))
    return results
