"""Ranking several models from paired outcomes: head-to-head win rates with bootstrap
intervals, paired tests with Holm's correction, a score per entry and tiers.

The unit of observation is `(seed, prompt id)`. An outcome is 1 (win), 0.5 (tie) or 0
(loss) from the first entry's side. An entry that does not vary by seed (the starting
model) has seed None and meets every seed of the other entry.

Statistics (docs/ranking.md says why each was chosen):

- win rate: mean outcome over the pair's units (ties count half);
- interval: percentile bootstrap (Efron & Tibshirani 1993, ch. 13) over seeds and prompts:
  seeds with replacement and prompts with replacement, the same prompt draw for every drawn
  seed (`_bootstrap_counts`). With one seed this is the plain bootstrap over prompts. The
  same draws serve every pair, so the score intervals keep the pairs' correlation;
- test: the exact two-sided sign test (scipy.stats.binomtest on wins vs losses, ties
  dropped) when the pair spans at most one seed; with several seeds the normal test with
  the bootstrap standard error, 2·Φ(-|win rate - 1/2| / se), whose p-values are not
  limited to multiples of 1/draws (Holm over 55 pairs needs p < 0.0009);
- Holm's step-down correction (statsmodels' multipletests) across all unordered pairs;
- score: the mean head-to-head win rate against all other entries.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations, permutations

import numpy as np
from scipy.stats import binomtest, norm
from statsmodels.stats.multitest import multipletests

from preftune.errors import ConfigError, DataError

Unit = tuple[int | None, str]
Outcomes = dict[tuple[str, str], dict[Unit, float]]

FEW_PROMPTS = 20
SAFE_LABEL = r"[A-Za-z0-9_.-]+"
_OUTCOMES = (0.0, 0.5, 1.0)


def check_labels(labels: list[str]) -> None:
    """At least two entries, no label twice, each a safe file name (letters, digits, -_.)."""
    if len(labels) < 2:
        raise ConfigError(f"a ranking needs at least two entries, got {len(labels)}")
    seen = set()
    for label in labels:
        if not re.fullmatch(SAFE_LABEL, label) or label in (".", ".."):
            raise ConfigError(
                f"label '{label}' is not a safe file name (letters, digits, '-', '_', '.')"
            )
        if label in seen:
            raise ConfigError(f"label '{label}' is given twice")
        seen.add(label)


def match_units(units_x: Iterable[Unit], units_y: Iterable[Unit]) -> list[tuple[Unit, Unit, Unit]]:
    """(compared unit, x's unit, y's unit) for every comparison of x with y: the same seed
    and prompt, where a seed of None meets every seed of the other side.

    >>> match_units([(None, "p")], [(0, "p"), (1, "p"), (0, "q")])
    [((0, 'p'), (None, 'p'), (0, 'p')), ((1, 'p'), (None, 'p'), (1, 'p'))]
    """
    by_prompt: dict[str, list[Unit]] = defaultdict(list)
    for unit in units_y:
        by_prompt[unit[1]].append(unit)
    matched = []
    for seed_x, prompt in units_x:
        for seed_y, _ in by_prompt.get(prompt, ()):
            if seed_x is None or seed_y is None or seed_x == seed_y:
                seed = seed_x if seed_x is not None else seed_y
                matched.append(((seed, prompt), (seed_x, prompt), (seed_y, prompt)))
    return sorted(matched, key=lambda m: _unit_order(m[0]))


def _unit_order(unit: Unit) -> tuple:
    return (unit[0] is not None, unit[0] or 0, unit[1])


def _outcome(score_x: float, score_y: float) -> float:
    return 1.0 if score_x > score_y else 0.0 if score_x < score_y else 0.5


def outcomes_from_scores(scores: dict[str, dict[Unit, float]]) -> Outcomes:
    """Per-unit scalars per entry (a gold reward, or an outcome against a baseline), higher
    is better, -> the outcome of every ordered pair on every unit they share, from the
    first entry's side: 1 (higher), 0.5 (equal), 0 (lower).

    >>> o = outcomes_from_scores({"a": {(None, "p"): 2.0}, "b": {(None, "p"): 1.0}})
    >>> o[("a", "b")], o[("b", "a")]
    ({(None, 'p'): 1.0}, {(None, 'p'): 0.0})
    """
    return {
        (x, y): {
            unit: _outcome(scores[x][unit_x], scores[y][unit_y])
            for unit, unit_x, unit_y in match_units(scores[x], scores[y])
        }
        for x, y in permutations(scores, 2)
    }


def _oriented_pairs(outcomes: Outcomes, labels: list[str]) -> dict[tuple[str, str], dict]:
    """Each unordered pair once, in label order, with outcomes from the first label's side."""
    pairs = {}
    for x, y in combinations(labels, 2):
        if (x, y) in outcomes:
            units = dict(outcomes[(x, y)])
        elif (y, x) in outcomes:
            units = {unit: 1.0 - value for unit, value in outcomes[(y, x)].items()}
        else:
            raise ConfigError(f"there are no outcomes for '{x}' vs '{y}'")
        if not units:
            raise DataError(f"'{x}' and '{y}' have no prompt they were compared on")
        for unit, value in units.items():
            if value not in _OUTCOMES:
                raise DataError(f"outcome {value!r} of '{x}' vs '{y}' on {unit} is not 1, 0.5 or 0")
        pairs[(x, y)] = units
    return pairs


def _bootstrap_counts(
    n_seeds: int, n_prompts: int, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """How often each seed (draws, n_seeds) and each prompt (draws, n_prompts) is drawn in
    each resample: seeds with replacement and prompts with replacement, one prompt draw for
    all seeds, so cell (s, p) weighs seed_count[s] * prompt_count[p].

    Prompts are crossed with seeds (every seed answers the same prompts), so both are
    resampled as independent factors (Owen 2007, the pigeonhole bootstrap); drawing prompts
    anew within each seed would count one prompt under k seeds as k independent prompts.
    The prompt draws come first, so they do not depend on the number of seeds.
    """
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, n_prompts, size=(draws, n_prompts))
    seeds = rng.integers(0, n_seeds, size=(draws, n_seeds))
    return _counts(seeds, n_seeds), _counts(prompts, n_prompts)


def _counts(indices: np.ndarray, size: int) -> np.ndarray:
    """How often each of `size` items was drawn, per row of `indices`."""
    offsets = np.arange(len(indices))[:, None] * size
    flat = np.bincount((indices + offsets).ravel(), minlength=len(indices) * size)
    return flat.reshape(-1, size).astype(float)


def _grid(units: dict[Unit, float], seed_index: dict, prompt_index: dict) -> np.ndarray:
    """Outcomes on the (seed, prompt) grid, NaN where the pair has no unit; a unit of seed
    None fills its prompt in every seed."""
    grid = np.full((len(seed_index), len(prompt_index)), np.nan)
    for (seed, prompt), value in sorted(units.items(), key=lambda item: item[0][0] is not None):
        if seed is None:
            grid[:, prompt_index[prompt]] = value
        else:
            grid[seed_index[seed], prompt_index[prompt]] = value
    return grid


def _resampled_means(grid: np.ndarray, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The weighted mean outcome of the grid's present cells in each resample."""
    seed_counts, prompt_counts = counts
    present = ~np.isnan(grid)
    totals = seed_counts * (prompt_counts @ np.where(present, grid, 0.0).T)
    sizes = seed_counts * (prompt_counts @ present.astype(float).T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals.sum(axis=1) / sizes.sum(axis=1)


def _interval(estimate: float, draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the draws, widened to contain the estimate (it can miss it
    only when a handful of prompts makes the bootstrap distribution lopsided)."""
    tail = (1 - level) / 2
    low, high = np.nanquantile(draws, [tail, 1 - tail])
    return float(min(low, estimate)), float(max(high, estimate))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test of P(win) = 1/2 among decisive prompts (ties dropped).

    >>> round(sign_test(8, 2), 6)
    0.109375
    """
    return float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0


def bootstrap_p_value(estimate: float, draws: np.ndarray) -> float:
    """Two-sided p-value of win rate = 1/2 from the bootstrap standard error:
    2·Φ(-|estimate - 1/2| / se), se the standard deviation of the resampled win rates
    (Efron & Tibshirani 1993, ch. 6). NaN when the draws do not vary (then every unit has
    the same outcome and the caller falls back to the sign test).

    >>> round(bootstrap_p_value(0.6, np.array([0.55, 0.65])), 4)  # se = 0.0707, z = 1.414
    0.1573
    """
    spread = float(np.nanstd(draws, ddof=1))
    if spread == 0.0:
        return float("nan")
    return float(norm.sf(abs(estimate - 0.5) / spread) * 2)


def _head_to_head(units: dict[Unit, float], draws: np.ndarray, level: float) -> dict:
    values = list(units.values())
    wins, losses = values.count(1.0), values.count(0.0)
    estimate = float(np.mean(values))
    ci_low, ci_high = _interval(estimate, draws, level)
    several_seeds = len({seed for seed, _ in units if seed is not None}) > 1
    return {
        "win_rate": estimate,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "wins": wins,
        "losses": losses,
        "ties": len(values) - wins - losses,
        "n": len(values),
        "prompts": len({prompt for _, prompt in units}),
        "test": "bootstrap" if several_seeds else "sign",
        "p_value": _paired_p_value(estimate, draws, wins, losses, several_seeds),
    }


def _paired_p_value(estimate, draws, wins: int, losses: int, several_seeds: bool) -> float:
    """The bootstrap test with several seeds (seed variation counts), else the sign test."""
    p_value = bootstrap_p_value(estimate, draws) if several_seeds else float("nan")
    return sign_test(wins, losses) if np.isnan(p_value) else p_value


def _mirror(cell: dict) -> dict:
    """The same comparison seen from the other entry's side."""
    return {
        **cell,
        "win_rate": 1.0 - cell["win_rate"],
        "ci_low": 1.0 - cell["ci_high"],
        "ci_high": 1.0 - cell["ci_low"],
        "wins": cell["losses"],
        "losses": cell["wins"],
    }


def _tiers(order: list[str], scores: dict[str, float], head_to_head: dict) -> dict[str, int]:
    """Tier 1 starts with the best entry; an entry starts a new tier when the current tier's
    leader beats it significantly and scores higher (an intransitive cycle of equal scores
    stays in one tier)."""
    tiers, tier, leader = {order[0]: 1}, 1, order[0]
    for label in order[1:]:
        cell = head_to_head[leader][label]
        if cell["significant"] and cell["win_rate"] > 0.5 and scores[leader] > scores[label]:
            tier, leader = tier + 1, label
        tiers[label] = tier
    return tiers


def rank(
    outcomes: Outcomes,
    labels: list[str],
    *,
    bootstrap: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    level: float = 0.95,
) -> dict:
    """Head-to-head statistics, scores, tiers: the content of ranking.json.

    `outcomes[(x, y)]` maps each unit to x's outcome against y (only one order of each pair
    is needed). Returns {"ranking", "head_to_head", "method", "seeds", "n_prompts",
    "warnings"}; docs/ranking.md describes every field.

    >>> units = {(None, str(i)): 1.0 for i in range(30)}
    >>> result = rank({("a", "b"): units}, ["a", "b"], bootstrap=200)
    >>> [(e["label"], e["tier"]) for e in result["ranking"]]
    [('a', 1), ('b', 2)]
    >>> result["head_to_head"]["b"]["a"]["win_rate"]
    0.0
    """
    check_labels(labels)
    if bootstrap < 1:
        raise ConfigError(f"bootstrap must be at least 1 draw, got {bootstrap}")
    pairs = _oriented_pairs(outcomes, labels)
    all_units = [unit for units in pairs.values() for unit in units]
    seeds = sorted({s for s, _ in all_units if s is not None}) or [None]
    prompts = sorted({p for _, p in all_units})
    draws, cells = _bootstrap_pairs(pairs, seeds, prompts, bootstrap, seed, level)
    head_to_head = _holm_corrected(cells, labels, alpha)
    return {
        "ranking": _ranking(labels, pairs, draws, head_to_head, level),
        "head_to_head": head_to_head,
        "method": _method(bootstrap, seed, alpha, level, len(cells)),
        "seeds": len(seeds),
        "n_prompts": len(prompts),
        "warnings": _few_prompts_warnings(cells),
    }


def _bootstrap_pairs(pairs, seeds: list, prompts: list, bootstrap: int, seed: int, level: float):
    """Each pair's resampled win rates (the same seed and prompt draws for every pair) and its
    head-to-head cell before the correction."""
    seed_index = {s: i for i, s in enumerate(seeds)}
    prompt_index = {p: i for i, p in enumerate(prompts)}
    counts = _bootstrap_counts(len(seeds), len(prompts), bootstrap, seed)
    draws, cells = {}, {}
    for (x, y), units in pairs.items():
        draws[(x, y)] = _resampled_means(_grid(units, seed_index, prompt_index), counts)
        cells[(x, y)] = _head_to_head(units, draws[(x, y)], level)
    return draws, cells


def _holm_corrected(cells: dict, labels: list[str], alpha: float) -> dict[str, dict[str, dict]]:
    """head_to_head[x][y]: each cell with its Holm-adjusted p-value and verdict, both ways."""
    reject, adjusted, _, _ = multipletests(
        [cell["p_value"] for cell in cells.values()], alpha=alpha, method="holm"
    )
    head_to_head: dict[str, dict[str, dict]] = {label: {} for label in labels}
    for (x, y), significant, p_holm in zip(cells, reject, adjusted, strict=True):
        cell = {**cells[(x, y)], "p_holm": float(p_holm), "significant": bool(significant)}
        head_to_head[x][y], head_to_head[y][x] = cell, _mirror(cell)
    return head_to_head


def _ranking(labels: list[str], pairs, draws, head_to_head, level: float) -> list[dict]:
    """The entries best first: score (mean head-to-head win rate), its interval, tier, prompts."""
    scores, intervals, prompts_seen = {}, {}, {}
    for label in labels:
        others = [other for other in labels if other != label]
        scores[label] = float(np.mean([head_to_head[label][o]["win_rate"] for o in others]))
        resampled = np.nanmean(
            [draws[(label, o)] if (label, o) in draws else 1.0 - draws[(o, label)] for o in others],
            axis=0,
        )
        intervals[label] = _interval(scores[label], resampled, level)
        prompts_seen[label] = len(
            {p for pair, units in pairs.items() if label in pair for _, p in units}
        )
    order = sorted(labels, key=lambda label: -scores[label])
    tiers = _tiers(order, scores, head_to_head)
    return [
        {
            "label": label,
            "score": scores[label],
            "ci_low": intervals[label][0],
            "ci_high": intervals[label][1],
            "tier": tiers[label],
            "n": prompts_seen[label],
        }
        for label in order
    ]


def _method(bootstrap: int, seed: int, alpha: float, level: float, n_pairs: int) -> dict:
    """How the figures were made, in words and settings (ranking.json's "method")."""
    return {
        "score": "mean head-to-head win rate against every other entry (ties count half)",
        "ci": f"{level:.0%} percentile bootstrap, {bootstrap} draws, seed {seed}: seeds "
        "and prompts with replacement (one prompt draw for all seeds)",
        "p_value": "exact two-sided sign test (ties dropped) when a pair spans one seed; "
        "with several seeds 2*Phi(-|win rate - 1/2| / bootstrap standard error)",
        "correction": f"Holm across all {n_pairs} pairs at alpha {alpha}",
        "tier": "a new tier starts at an entry the current tier's leader beats significantly",
        "bootstrap": bootstrap,
        "seed": seed,
        "alpha": alpha,
        "level": level,
    }


def _few_prompts_warnings(cells: dict) -> list[str]:
    fewest = min(cell["prompts"] for cell in cells.values())
    if fewest >= FEW_PROMPTS:
        return []
    return [
        f"only {fewest} prompts in the smallest comparison (fewer than {FEW_PROMPTS}): "
        "the intervals are wide and few differences can be significant"
    ]
