"""The study report: report.md, a self-contained report.html (plots inlined) and results.json.

`build_report(study_dir)` reads only files on disk (see `layout`), so `preftune report` can
rebuild it at any time, also for a study that is still running or partly failed. It opens with
the answer to "which method is best?" (each evaluation's ranking, head-to-head heatmap and one
sentence), then the study's claims, Table 3 (win rates, gold reward, sampled KL, length,
repetition), the papers' views of the benchmarks (win rates by evaluation set; MT-Bench and
Arena-Hard), example answers side by side, Table 2 (training dynamics), settings and cost, and
plots (`sections` builds the blocks; this module renders them). Tables 2 and 3 are numbered and
laid out as in the HH/TL;DR comparison study (docs/internals.md, "Experiments").
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from preftune.experiments import sections
from preftune.experiments.layout import StudyLayout
from preftune.experiments.report_settings import settings_section
from preftune.experiments.results import collect, read_study_config
from preftune.io import atomic_write_json, atomic_write_text


def _intro(results: dict) -> str:
    seeds = results["seeds"]
    text = (
        f"Model: {results['model']}. Every method starts from the same model "
        f"(row '{results['start']}') with the same data order and "
        + (
            f"{seeds} seeds ({', '.join(map(str, results['seed_list']))})."
            if seeds > 1
            else "seed."
        )
    )
    if results.get("gold"):
        text += f" Gold reward: {results['gold']}."
    return text + " Every figure is read from the study folder."


def _blocks(layout: StudyLayout, results: dict, study: dict) -> list[tuple]:
    return [
        ("h", f"Study: {results['study']}"),
        ("p", _intro(results)),
        *sections.ranking_section(layout, results),
        *sections.claims_section(results),
        *sections.results_section(results),
        *sections.budget_section(results),
        *sections.paper_views_section(results),
        *sections.examples_section(results),
        *sections.failures_section(results),
        *sections.dynamics_section(results),
        *settings_section(layout, results),
        *sections.plots_section(layout, results, study),
        *sections.configs_section(results),
    ]


def _inert(text: str) -> str:
    """Markdown that shows as written: HTML (an answer may hold some) is not rendered and "$"
    does not open a formula."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("$", "\\$")


def _markdown_cell(text: str) -> str:
    """A table cell that stays one cell: pipes escaped, line breaks as <br>, markup inert."""
    escaped = _inert(text).replace("|", "\\|")
    return escaped.replace("\r\n", "\n").replace("\n", "<br>")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in rows])


def results_table(results: dict) -> str:
    """Table 3 as markdown, for the console at the end of a study."""
    return _markdown_table(*sections.table3(results))


def _markdown_block(block: tuple, root: Path, first: bool) -> str:
    kind, text = block[0], _inert
    if kind == "h":
        return f"{'#' if first else '##'} {text(block[1])}\n"
    if kind == "p":
        return text(block[1]) + "\n"
    if kind == "list":
        return "\n".join(f"- {text(item)}" for item in block[1]) + "\n"
    if kind == "table":
        return _markdown_table(block[1], block[2]) + "\n"
    if kind == "image":
        return f"![{block[2]}]({block[1].relative_to(root).as_posix()})\n"
    fence = "~~~~"  # a config may hold backticks
    return f"<details><summary>{html.escape(block[1])}</summary>\n\n{fence}yaml\n{block[2]}{fence}\n\n</details>\n"


def _markdown(blocks: list[tuple], root: Path) -> str:
    return "\n".join(_markdown_block(block, root, index == 0) for index, block in enumerate(blocks))


def _html_block(block: tuple, first: bool) -> str:
    kind = block[0]
    if kind == "h":
        tag = "h1" if first else "h2"
        return f"<{tag}>{html.escape(block[1])}</{tag}>"
    if kind == "p":
        return f"<p>{html.escape(block[1])}</p>"
    if kind == "list":
        return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>"
    if kind == "table":
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block[1])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in block[2]
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if kind == "image":
        data = base64.b64encode(block[1].read_bytes()).decode("ascii")
        caption = html.escape(block[2])
        return (
            f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return f"<details><summary>{html.escape(block[1])}</summary><pre>{html.escape(block[2])}</pre></details>"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:0.9em;margin-bottom:1em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;"
    "white-space:pre-wrap}"
    "img{max-width:100%}pre{background:#f6f6f6;padding:0.5em;overflow-x:auto}"
)


def _html(blocks: list[tuple], title: str) -> str:
    body = "".join(_html_block(block, index == 0) for index, block in enumerate(blocks))
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def build_report(study_dir: str | Path) -> dict:
    """Write results.json, plots/, report.md and report.html; return the collected results."""
    layout = StudyLayout(Path(study_dir))
    results = collect(layout)
    atomic_write_json(layout.root / "results.json", results)
    blocks = _blocks(layout, results, read_study_config(layout))
    atomic_write_text(layout.root / "report.md", _markdown(blocks, layout.root))
    atomic_write_text(
        layout.root / "report.html", _html(blocks, f"preftune study {results['study']}")
    )
    return results
