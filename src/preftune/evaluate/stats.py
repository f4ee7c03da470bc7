"""Statistics over judged outcomes: win rate, bootstrap confidence interval, and the
length-controlled win rate.

An outcome is 1 (win), 0.5 (tie) or 0 (loss) from the evaluated model's side.
"""

from __future__ import annotations

import numpy as np

# Below this many prompts a bootstrap interval is too rough to read (3 prompts that all win
# give [1.0, 1.0]); results then carry a warning instead of looking certain.
MIN_PROMPTS = 20


def small_sample_warning(
    prompts: int, ci_low: float | None, ci_high: float | None, *, minimum: int = MIN_PROMPTS
) -> str | None:
    """A sentence when an interval rests on fewer than `minimum` prompts; None otherwise.

    >>> small_sample_warning(3, 1.0, 1.0)
    'only 3 prompts decided: the 95% interval [1.00, 1.00] rests on too little data to trust; judge at least 20 prompts'
    """
    if prompts >= minimum:
        return None
    if prompts == 0 or ci_low is None or ci_high is None:
        return "no prompt was decided: there is no win rate to report"
    return (
        f"only {prompts} prompt{'s' if prompts != 1 else ''} decided: the 95% interval "
        f"[{ci_low:.2f}, {ci_high:.2f}] rests on too little data to trust; judge at least "
        f"{minimum} prompts"
    )


def bootstrap_ci(
    outcomes: list[float],
    clusters: list[str],
    *,
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean outcome, resampling whole clusters (prompts), so
    several samples of one prompt move together."""
    if not outcomes:
        return float("nan"), float("nan")
    names = sorted(set(clusters))
    index = {name: i for i, name in enumerate(names)}
    sums = np.zeros(len(names))
    counts = np.zeros(len(names))
    np.add.at(sums, [index[c] for c in clusters], outcomes)
    np.add.at(counts, [index[c] for c in clusters], 1)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(samples, len(names)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, *, l2: float = 1e-4, steps: int = 100
) -> np.ndarray:
    """Logistic regression with an intercept (column 0 of the result) by Newton's method.

    `targets` may be fractional (a tie is 0.5): the loss is the binary cross-entropy, whose
    gradient X^T(σ(Xw) - y) and Hessian X^T diag(p(1-p)) X are the same for soft labels.
    A small L2 penalty on the slopes keeps the fit finite when outcomes are separable.
    """
    design = np.column_stack([np.ones(len(targets)), features])
    weights = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 1e-8  # the intercept is (almost) free
    for _ in range(steps):
        probs = 1.0 / (1.0 + np.exp(-(design @ weights)))
        gradient = design.T @ (probs - targets) + penalty * weights
        hessian = (design.T * (probs * (1 - probs))) @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return weights


def length_controlled_win_rate(outcomes: list[float], length_differences: list[float]) -> float:
    """AlpacaEval 2.0's idea (Dubois et al. 2024): regress the outcome on the length
    difference, logit P(win) = θ + φ·tanh(Δlen / std(Δlen)), and report the predicted win
    rate when both answers have the same length, σ(θ). (AlpacaEval's per-instruction
    difficulty term needs many models per prompt and is left out.)"""
    if not outcomes:
        return float("nan")
    differences = np.asarray(length_differences, dtype=float)
    spread = differences.std()
    feature = np.tanh(differences / spread) if spread > 0 else np.zeros_like(differences)
    weights = fit_logistic(feature[:, None], np.asarray(outcomes, dtype=float))
    return float(1.0 / (1.0 + np.exp(-weights[0])))
