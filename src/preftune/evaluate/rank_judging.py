"""Reading the entries of a ranking and turning their answers into per-unit outcomes.

A gold (or reward-model) judge scores each answer once (`score_entries`); an LLM judge
compares answers in both orders, every pair of entries (`judge_all_pairs`) or each entry
against a baseline (`judge_anchored`). LLM decisions go through `judge_pairs` and the
`JudgmentStore` of `preftune judge` (DIR/judgments.jsonl): a decision already on disk is
never paid again, and an interrupted run resumes. Two identical answers are a tie without
asking the judge.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations
from pathlib import Path

from preftune.errors import DataError
from preftune.evaluate.rank import Unit, match_units
from preftune.evaluate.win_rate import OUTCOME
from preftune.io import read_numbered_jsonl, require_fields
from preftune.judges.runner import judge_pairs
from preftune.judges.store import JudgmentStore, judgment_key

REQUIRED_FIELDS = ("id", "prompt", "response")
REQUESTS_PER_COMPARISON = 2  # LLM judges ask both orders (disagreement is a tie)


def unit_of(row: dict) -> Unit:
    """(seed, prompt id) of a sample row; rows without "seed" do not vary by seed."""
    return row.get("seed"), str(row["id"])


def read_samples(path: str | Path) -> list[dict]:
    """The rows of a samples file; a row without id/prompt/response, or with a seed that is
    not an integer, is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such samples file", source=str(path))
    numbered = read_numbered_jsonl(path, tolerate_torn_tail=False)
    if not numbered:
        raise DataError("has no samples", source=str(path))
    require_fields(path, numbered, REQUIRED_FIELDS)
    for line, row in numbered:
        seed = row.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise DataError(f"{seed!r} is not an integer", source=f"{path}:{line}", field="seed")
    return [row for _, row in numbered]


def by_unit(rows: list[dict]) -> dict[Unit, dict]:
    """Each unit's row; of several samples of one prompt, the first."""
    index: dict[Unit, dict] = {}
    for row in rows:
        index.setdefault(unit_of(row), row)
    return index


def common_prompts(
    files: dict[str, list[dict]], *, intersect: bool = False, log: Callable = print
) -> dict[str, list[dict]]:
    """The rows of every file restricted to the prompt ids all files share. Without
    `intersect`, a file lacking ids that another file has is a DataError naming both."""
    ids = {name: {str(row["id"]) for row in rows} for name, rows in files.items()}
    every = set().union(*ids.values())
    shared = set.intersection(*ids.values())
    if shared == every:
        return files
    if not intersect:
        name = next(name for name in files if ids[name] != every)
        missing = sorted(every - ids[name])
        raise DataError(
            f"lacks {len(missing)} prompt id(s) that other files have (first: {missing[:5]}); "
            f"give --intersect to rank on the {len(shared)} common prompts",
            source=name,
        )
    if not shared:
        raise DataError("the sample files share no prompt ids")
    log(f"rank: --intersect drops {len(every - shared)} prompt(s) not in every file")
    return {name: [r for r in rows if str(r["id"]) in shared] for name, rows in files.items()}


def score_entries(entries: dict[str, list[dict]], judge) -> dict[str, dict[Unit, float]]:
    """Every answer scored once by `judge.score(prompt, response)` (gold, reward model)."""
    return {
        label: {unit: judge.score(row["prompt"], row["response"]) for unit, row in rows.items()}
        for label, rows in ((label, by_unit(rows)) for label, rows in entries.items())
    }


def _decide(comparisons: list[dict], judge, out_dir: Path, log: Callable) -> list[float | None]:
    """The outcome for "a" of each comparison ({"prompt", "a", "b", context...}); None
    where the judge gave no usable verdict. Prints the plan (needed vs cached) first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [judgment_key(judge.identity, c["prompt"], c["a"], c["b"]) for c in comparisons]
    unique = {key: c for key, c in zip(keys, comparisons, strict=True) if c["a"] != c["b"]}
    store = JudgmentStore(out_dir / "judgments.jsonl")
    try:
        cached = sum(store.lookup(key) is not None for key in unique)
        to_ask = len(unique) - cached
        log(
            f"rank: {len(comparisons)} comparisons, {len(comparisons) - len(unique)} free "
            f"(identical answers or repeats); {len(unique)} for the judge, {cached} cached: "
            f"{to_ask * REQUESTS_PER_COMPARISON} judge requests to make "
            f"({REQUESTS_PER_COMPARISON} orders each)"
        )
        judgments, _ = judge_pairs(judge, list(unique.values()), store)
    finally:
        store.close()
    decided = dict(zip(unique, judgments, strict=True))
    outcomes = []
    for key, comparison in zip(keys, comparisons, strict=True):
        if comparison["a"] == comparison["b"]:
            outcomes.append(OUTCOME["tie"])
        else:
            winner = decided[key].winner
            outcomes.append(None if winner == "error" else OUTCOME[winner])
    errors = outcomes.count(None)
    if errors:
        log(f"rank: warning: {errors} comparisons got no usable verdict and are left out")
    return outcomes


def _comparison(unit: Unit, row_a: dict, row_b: dict, **context) -> dict:
    return {
        "id": unit[1],
        "seed": unit[0],
        "prompt": row_a["prompt"],
        "a": row_a["response"],
        "b": row_b["response"],
        **context,
    }


def judge_all_pairs(
    entries: dict[str, list[dict]], judge, out_dir: Path, *, log: Callable = print
) -> dict[tuple[str, str], dict[Unit, float]]:
    """Every pair of entries judged on every unit they share; outcomes for both orders."""
    indexed = {label: by_unit(rows) for label, rows in entries.items()}
    labels = list(indexed)
    jobs, comparisons = [], []
    for i, x in enumerate(labels):
        for y in labels[i + 1 :]:
            for unit, unit_x, unit_y in match_units(indexed[x], indexed[y]):
                jobs.append((x, y, unit))
                comparisons.append(
                    _comparison(unit, indexed[x][unit_x], indexed[y][unit_y], entries=[x, y])
                )
    outcomes: dict[tuple[str, str], dict[Unit, float]] = {p: {} for p in permutations(labels, 2)}
    for (x, y, unit), outcome in zip(
        jobs, _decide(comparisons, judge, Path(out_dir), log), strict=True
    ):
        if outcome is not None:
            outcomes[(x, y)][unit] = outcome
            outcomes[(y, x)][unit] = 1.0 - outcome
    return outcomes


def judge_anchored(
    entries: dict[str, list[dict]],
    baseline: list[dict],
    judge,
    out_dir: Path,
    *,
    log: Callable = print,
) -> dict[str, dict[Unit, float]]:
    """Each entry judged against the baseline's answer to the same prompt: per-unit outcome
    1 / 0.5 / 0 for the entry, to be fed to `outcomes_from_scores`."""
    base = by_unit(baseline)
    jobs, comparisons = [], []
    for label, rows in entries.items():
        indexed = by_unit(rows)
        for unit, unit_entry, unit_base in match_units(indexed, base):
            jobs.append((label, unit))
            comparisons.append(
                _comparison(unit, indexed[unit_entry], base[unit_base], entries=[label, "baseline"])
            )
    outcomes: dict[str, dict[Unit, float]] = {label: {} for label in entries}
    for (label, unit), outcome in zip(
        jobs, _decide(comparisons, judge, Path(out_dir), log), strict=True
    ):
        if outcome is not None:
            outcomes[label][unit] = outcome
    return outcomes
