"""Win rate of a model's samples against baseline responses, decided by any judge.

Writes <out_dir>/judgments.jsonl (every decision, cached for reruns) and
<out_dir>/results.json: win_rate (ties count half), wins, losses, ties, n, errors, a
bootstrap 95% CI over prompts, the length-controlled win rate, mean response lengths,
repetition/diversity statistics, position bias for two-order judges, mean judge scores
when the judge scores responses (gold, reward model), and `warnings`: sentences about what
makes the figures unreliable (`preftune judge` prints them to stderr):

- fewer than MIN_PROMPTS (20) prompts decided: the interval rests on too little data;
- position bias, over at least BIAS_MIN_DECISIONS (10) two-order decisions: the judge picks
  the response shown first in more than 70% (or less than 30%) of its decisive single-order
  verdicts, or its two orders agree in fewer than half the pairs;
- pairs that ended in "error" (a rerun asks them again).
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean

from preftune.errors import DataError
from preftune.evaluate.stats import (
    bootstrap_ci,
    length_controlled_win_rate,
    small_sample_warning,
)
from preftune.evaluate.text_stats import length_unit, response_length, text_stats
from preftune.io import atomic_write_json, read_numbered_jsonl, require_fields
from preftune.judges.runner import judge_pairs
from preftune.judges.store import JudgmentStore

OUTCOME = {"a": 1.0, "tie": 0.5, "b": 0.0}
REQUIRED_FIELDS = {"samples": ("id", "prompt", "response"), "baseline": ("id", "response")}
BIAS_MIN_DECISIONS = 10
MAX_FIRST_POSITION_SHARE = 0.7  # and at least 1 - this
MIN_ORDER_AGREEMENT = 0.5


def _rows(rows_or_path, role: str) -> list[dict]:
    """The rows of a JSONL file or a list; each must hold REQUIRED_FIELDS[role], with a text
    `response`. A row that does not is a DataError naming the file and line (or row)."""
    if isinstance(rows_or_path, (str, Path)):
        source = str(rows_or_path)
        if not Path(source).exists():
            raise DataError(f"no such {role} file", source=source)
        numbered = read_numbered_jsonl(source, tolerate_torn_tail=False)
    else:
        source, numbered = f"{role} rows", list(enumerate(rows_or_path, start=1))
    require_fields(source, numbered, REQUIRED_FIELDS[role])
    for number, row in numbered:
        if not isinstance(row["response"], str):
            raise DataError(
                f"must be text, got {type(row['response']).__name__}",
                source=f"{source}:{number}",
                field="response",
            )
    return [row for _, row in numbered]


def pair_with_baseline(samples: list[dict], baseline: list[dict]) -> list[tuple[dict, dict]]:
    """Each sample with the baseline row of the same id (its first sample when several)."""
    if not samples:
        raise DataError("there are no samples to judge")
    by_id: dict[str, dict] = {}
    for row in baseline:
        by_id.setdefault(str(row["id"]), row)
    missing = sorted({str(r["id"]) for r in samples} - set(by_id))
    if missing:
        raise DataError(
            f"{len(missing)} sample ids have no baseline response (first: {missing[:3]})"
        )
    return [(row, by_id[str(row["id"])]) for row in samples]


def position_bias(judgments) -> dict | None:
    """For two-order judges: how often both orders agree, and the share of decisive
    single-order verdicts that picked whichever response was shown first (0.5 = unbiased)."""
    both = [j.verdicts for j in judgments if len(j.verdicts) == 2 and "error" not in j.verdicts]
    if not both:
        return None
    first_slot = {0: "a", 1: "b"}  # the response shown first in each order
    decisive = [(order, v) for pair in both for order, v in enumerate(pair) if v in ("a", "b")]
    return {
        "order_agreement": sum(first == second for first, second in both) / len(both),
        "first_position_share": (
            sum(v == first_slot[order] for order, v in decisive) / len(decisive)
            if decisive
            else None
        ),
        "decisions": len(both),
    }


def position_bias_warning(bias: dict | None) -> str | None:
    """A sentence when `position_bias` shows a judge that follows the order more than the
    answers (see the module docstring for the thresholds); None otherwise."""
    if bias is None or bias["decisions"] < BIAS_MIN_DECISIONS:
        return None
    share, agreement = bias["first_position_share"], bias["order_agreement"]
    lopsided = share is not None and abs(share - 0.5) > MAX_FIRST_POSITION_SHARE - 0.5
    if not lopsided and agreement >= MIN_ORDER_AGREEMENT:
        return None
    share_text = "n/a" if share is None else f"{share:.0%}"
    return (
        f"position bias: the judge picked the response shown first in {share_text} of its "
        f"decisive verdicts and its two orders agree in {agreement:.0%} of "
        f"{bias['decisions']} pairs; its verdicts follow the order more than the answers"
    )


def _warnings(results: dict, prompts_decided: int, pairs: int) -> list[str]:
    found = [
        small_sample_warning(prompts_decided, results["ci_low"], results["ci_high"]),
        position_bias_warning(results["position_bias"]),
    ]
    if results["errors"]:
        found.append(
            f'{results["errors"]} of {pairs} pairs ended in error (winner "error" in '
            "judgments.jsonl, not counted); a rerun asks them again"
        )
    return [warning for warning in found if warning]


def win_rate(samples, baseline, judge, out_dir, *, seed: int = 0, bootstrap: int = 2000) -> dict:
    """Judge every sample against the baseline response to its prompt; returns results.json.

    `samples` / `baseline` are rows ({"id", "prompt", "response", ...}) or JSONL paths.

    >>> import tempfile
    >>> from preftune.judges import GoldJudge
    >>> longer_wins = GoldJudge(lambda prompt, response: len(response), name="length")
    >>> samples = [{"id": "1", "prompt": "Hi", "response": "Hello there!"},
    ...            {"id": "2", "prompt": "Bye", "response": "Bye"}]
    >>> baseline = [{"id": "1", "response": "Hi"}, {"id": "2", "response": "Ciao"}]
    >>> results = win_rate(samples, baseline, longer_wins, tempfile.mkdtemp(), bootstrap=100)
    >>> results["wins"], results["losses"], results["ties"], results["win_rate"]
    (1, 1, 0, 0.5)
    >>> results["mean_score_samples"], results["mean_score_baseline"]  # mean lengths in chars
    (7.5, 3.0)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    matched = pair_with_baseline(_rows(samples, "samples"), _rows(baseline, "baseline"))
    pairs = [_judged_pair(row, base) for row, base in matched]
    judgments, cache_hits = _judge_with_cache(judge, pairs, out_dir / "judgments.jsonl")
    decided = [i for i, j in enumerate(judgments) if j.winner != "error"]
    unit = length_unit([r for r, _ in matched], [b for _, b in matched])
    results = {
        "judge": judge.identity,
        **_outcome_figures(
            [judgments[i].winner for i in decided],
            prompts=[pairs[i]["id"] for i in decided],
            length_differences=[_length_difference(*matched[i], unit) for i in decided],
            errors=len(pairs) - len(decided),
            seed=seed,
            bootstrap=bootstrap,
        ),
        "length_unit": unit,
        "mean_length_samples": fmean(response_length(r, unit) for r, _ in matched),
        "mean_length_baseline": fmean(response_length(b, unit) for _, b in matched),
        "position_bias": position_bias(judgments),
        "samples_stats": text_stats([r for r, _ in matched]),
        "baseline_stats": text_stats(list({id(b): b for _, b in matched}.values())),
        "cache_hits": cache_hits,
        "seed": seed,
        **_mean_scores([judgments[i] for i in decided]),
    }
    results = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in results.items()}
    prompts_decided = len({pairs[i]["id"] for i in decided})
    results["warnings"] = _warnings(results, prompts_decided, len(pairs))
    atomic_write_json(out_dir / "results.json", results)
    return results


def _judged_pair(row: dict, base: dict) -> dict:
    """What the judge sees of a sample and its baseline: the sample is a, the baseline b."""
    return {
        "id": str(row["id"]),
        "sample": row.get("sample", 0),
        "prompt": row["prompt"],
        "a": row["response"],
        "b": base["response"],
    }


def _judge_with_cache(judge, pairs: list[dict], path: Path):
    """(judgments in the order of `pairs`, cache hits); decisions already in `path` are reused."""
    store = JudgmentStore(path)
    try:
        return judge_pairs(judge, pairs, store)
    finally:
        store.close()


def _length_difference(row: dict, base: dict, unit: str) -> float:
    return response_length(row, unit) - response_length(base, unit)


def _outcome_figures(
    winners: list[str],
    *,
    prompts: list[str],
    length_differences: list[float],
    errors: int,
    seed: int,
    bootstrap: int,
) -> dict:
    """Win rate (ties count half), counts, the bootstrap 95% CI over prompts and the
    length-controlled win rate of the decided pairs."""
    outcomes = [OUTCOME[winner] for winner in winners]
    ci_low, ci_high = bootstrap_ci(outcomes, prompts, samples=bootstrap, seed=seed)
    return {
        "win_rate": fmean(outcomes) if outcomes else float("nan"),
        "wins": winners.count("a"),
        "losses": winners.count("b"),
        "ties": winners.count("tie"),
        "n": len(winners),
        "errors": errors,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_level": 0.95,
        "lc_win_rate": length_controlled_win_rate(outcomes, length_differences),
    }


def _mean_scores(decided: list) -> dict:
    """Mean judge scores of each side, for judges that score responses (gold, reward model)."""
    scored = [j for j in decided if j.score_a is not None]
    if not scored:
        return {}
    return {
        "mean_score_samples": fmean(j.score_a for j in scored),
        "mean_score_baseline": fmean(j.score_b for j in scored),
    }
