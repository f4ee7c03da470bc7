"""A ranking on disk: ranking.json (what `rank` returned), ranking.md (tables for people)
and head_to_head.png (the win-rate matrix as a heatmap, matplotlib with the Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from preftune.io import atomic_write, atomic_write_json, atomic_write_text


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def ranking_markdown(result: dict, title: str = "Ranking") -> str:
    """The ranking table, the head-to-head win rates (row vs column, * = significant after
    Holm) and how the numbers were computed."""
    labels = [entry["label"] for entry in result["ranking"]]
    lines = [f"# {title}", ""]
    lines += [f"> Warning: {warning}\n" for warning in result["warnings"]]
    lines += [
        f"{result['n_prompts']} prompts, {result['seeds']} seed(s). Score = "
        f"{result['method']['score']}; interval = {result['method']['ci']}.",
        "",
        "| rank | tier | entry | score % | 95% interval | prompts |",
        "|---:|---:|---|---:|---|---:|",
    ]
    for place, entry in enumerate(result["ranking"], start=1):
        lines.append(
            f"| {place} | {entry['tier']} | {entry['label']} | {_percent(entry['score'])} | "
            f"[{_percent(entry['ci_low'])}, {_percent(entry['ci_high'])}] | {entry['n']} |"
        )
    lines += [
        "",
        "## Head to head",
        "",
        "Win rate % of the row against the column (ties count half); "
        "`*` = significant after Holm's correction.",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    h2h = result["head_to_head"]
    for row in labels:
        cells = ["" if row == column else _cell(h2h[row][column]) for column in labels]
        lines.append(f"| **{row}** | " + " | ".join(cells) + " |")
    lines += ["", "## Pairs", "", "| pair | W-L-T | win rate % | 95% interval | p | p (Holm) |"]
    lines.append("|---|---|---:|---|---:|---:|")
    for i, x in enumerate(labels):
        for y in labels[i + 1 :]:
            c = h2h[x][y]
            lines.append(
                f"| {x} vs {y} | {c['wins']}-{c['losses']}-{c['ties']} | "
                f"{_cell(c)} | [{_percent(c['ci_low'])}, {_percent(c['ci_high'])}] | "
                f"{c['p_value']:.3g} ({c['test']}) | {c['p_holm']:.3g} |"
            )
    lines += ["", "## Method", ""]
    lines += [f"- {key}: {value}" for key, value in result["method"].items()]
    return "\n".join(lines) + "\n"


def _cell(cell: dict) -> str:
    return _percent(cell["win_rate"]) + ("*" if cell["significant"] else "")


def head_to_head_heatmap(result: dict, stream: IO[bytes]) -> None:
    """Win rate of each row entry against each column entry, best entry first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [entry["label"] for entry in result["ranking"]]
    h2h = result["head_to_head"]
    matrix = np.array(
        [[np.nan if r == c else h2h[r][c]["win_rate"] for c in labels] for r in labels]
    )
    size = 1.6 + 0.8 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.2, size))
    image = axes.imshow(matrix, cmap="RdBu", vmin=0.0, vmax=1.0)
    for i, row in enumerate(labels):
        for j, column in enumerate(labels):
            if i != j:
                text = _cell(h2h[row][column])
                axes.text(j, i, text, ha="center", va="center", fontsize=8)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("against")
    axes.set_title("win rate % of row vs column (* significant after Holm)")
    figure.colorbar(image, ax=axes, label="win rate")
    figure.tight_layout()
    figure.savefig(stream, dpi=110, format="png")
    plt.close(figure)


def write_ranking(result: dict, out_dir: Path, *, title: str = "Ranking") -> None:
    """DIR/ranking.json, DIR/ranking.md and DIR/head_to_head.png, each written atomically.

    >>> import tempfile
    >>> from preftune.evaluate.rank import rank
    >>> result = rank({("a", "b"): {(None, "p"): 1.0}}, ["a", "b"], bootstrap=10)
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_ranking(result, folder)
    >>> sorted(p.name for p in folder.iterdir())
    ['head_to_head.png', 'ranking.json', 'ranking.md']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "ranking.json", result)
    atomic_write_text(out_dir / "ranking.md", ranking_markdown(result, title))
    atomic_write(out_dir / "head_to_head.png", lambda stream: head_to_head_heatmap(result, stream))
