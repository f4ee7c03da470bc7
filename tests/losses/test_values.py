"""Every method against a value computed by hand from its formula (plain Python `math`).

Pair data is written chosen/rejected; the tensors put group 1 the other way round with its
scores, so each method must rank by score itself. List data is unsorted and ragged.
"""

from __future__ import annotations

import math

import pytest
import torch

from preftune.errors import MethodDataError
from preftune.losses import METHODS, compute


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# ---------------------------------------------------------------- pairs
PAIRS = [
    dict(s_w=-2.0, s_l=-3.0, ref_w=-2.5, ref_l=-2.8, len_w=2, len_l=3, score_w=4.0, score_l=1.0),
    dict(s_w=-3.5, s_l=-4.0, ref_w=-3.0, ref_l=-3.9, len_w=1, len_l=4, score_w=3.5, score_l=2.0),
    dict(s_w=-1.0, s_l=-1.5, ref_w=-1.2, ref_l=-1.0, len_w=2, len_l=2, score_w=5.0, score_l=4.5),
]
SWAPPED = {1}  # groups given as [rejected, chosen]
EMBEDDINGS = [[2.0, 0.0], [0.6, 0.8], [0.0, 3.0], [0.8, 0.6]]  # rows normalised: e0=(1,0) ...


def pair_tensors() -> dict:
    def column(key):
        rows = [[p[f"{key}_w"], p[f"{key}_l"]] for p in PAIRS]
        return torch.tensor(
            [row[::-1] if g in SWAPPED else row for g, row in enumerate(rows)], dtype=torch.float64
        )

    return {
        "policy_logps": column("s"),
        "ref_logps": column("ref"),
        "lengths": column("len"),
        "scores": column("score"),
    }


def rho_w(p):
    return p["s_w"] - p["ref_w"]


def rho_l(p):
    return p["s_l"] - p["ref_l"]


def delta(p):
    return rho_w(p) - rho_l(p)


def mean_w(p):
    return p["s_w"] / p["len_w"]


def mean_l(p):
    return p["s_l"] / p["len_l"]


def log_odds(x):
    return x - math.log(1 - math.exp(x))


# name -> (hyperparameters, loss of one pair)
PAIR_CASES = {
    "dpo": ({"beta": 0.5}, lambda p: -log_sigmoid(0.5 * delta(p))),
    "ipo": ({"beta": 0.5}, lambda p: (delta(p) - 1 / (2 * 0.5)) ** 2),
    "cdpo": (
        {"beta": 0.5, "epsilon": 0.2},
        lambda p: -0.8 * log_sigmoid(0.5 * delta(p)) - 0.2 * log_sigmoid(-0.5 * delta(p)),
    ),
    "rdpo": (
        {"beta": 0.5, "epsilon": 0.2},
        lambda p: (-0.8 * log_sigmoid(0.5 * delta(p)) + 0.2 * log_sigmoid(-0.5 * delta(p))) / 0.6,
    ),
    "hinge": ({"beta": 2.0}, lambda p: max(0.0, 1 - 2.0 * delta(p))),
    "ln-dpo": (
        {"beta": 0.5},
        lambda p: -log_sigmoid(0.5 * (rho_w(p) / p["len_w"] - rho_l(p) / p["len_l"])),
    ),
    "dpop": (
        {"beta": 0.5, "lam": 5.0},
        lambda p: -log_sigmoid(0.5 * (delta(p) - 5.0 * max(0.0, -rho_w(p)))),
    ),
    "dpo-shift": (
        {"beta": 0.5, "lam": 0.8},
        lambda p: -log_sigmoid(0.5 * (rho_w(p) - 0.8 * rho_l(p))),
    ),
    "h-dpo": (
        {"beta": 0.5, "alpha": 0.9},
        lambda p: (
            -log_sigmoid(0.5 * ((0.9 * p["s_w"] - p["ref_w"]) - (0.9 * p["s_l"] - p["ref_l"])))
        ),
    ),
    "odpo": (
        {"beta": 0.5, "alpha": 2.0},
        lambda p: -log_sigmoid(0.5 * delta(p) - 2.0 * math.log(p["score_w"] - p["score_l"])),
    ),
    "mmpo": (
        {"beta": 0.5, "gamma": 2.0},
        lambda p: (
            -sigmoid(2.0 * (p["score_w"] - p["score_l"])) * log_sigmoid(0.5 * delta(p))
            - (1 - sigmoid(2.0 * (p["score_w"] - p["score_l"]))) * log_sigmoid(-0.5 * delta(p))
        ),
    ),
    "exo": (
        {"beta": 0.5, "epsilon": 0.1},
        lambda p: (
            sigmoid(0.5 * delta(p)) * (log_sigmoid(0.5 * delta(p)) - math.log(0.9))
            + sigmoid(-0.5 * delta(p)) * (log_sigmoid(-0.5 * delta(p)) - math.log(0.1))
        ),
    ),
    "nca": (
        {"beta": 0.5},
        lambda p: (
            -log_sigmoid(0.5 * rho_w(p))
            - 0.5 * log_sigmoid(-0.5 * rho_w(p))
            - 0.5 * log_sigmoid(-0.5 * rho_l(p))
        ),
    ),
    "apo-zero": ({"beta": 0.5}, lambda p: 1 - sigmoid(0.5 * rho_w(p)) + sigmoid(0.5 * rho_l(p))),
    "apo-down": ({"beta": 0.5}, lambda p: sigmoid(0.5 * rho_w(p)) + 1 - sigmoid(0.5 * delta(p))),
    "sppo-hard": ({"beta": 0.5}, lambda p: (rho_w(p) - 1.0) ** 2 + (rho_l(p) + 1.0) ** 2),
    "discopop": (
        {"beta": 0.5, "tau": 0.2},
        lambda p: (
            (1 - sigmoid(0.5 * delta(p) / 0.2)) * -log_sigmoid(0.5 * delta(p))
            + sigmoid(0.5 * delta(p) / 0.2) * math.exp(-0.5 * delta(p))
        ),
    ),
    "bco-pair": (
        {"beta": 0.5},
        lambda p: -log_sigmoid(0.5 * rho_w(p)) - log_sigmoid(-0.5 * rho_l(p)),
    ),
    "slic": (
        {"delta": 0.8, "lam": 0.3},
        lambda p: max(0.0, 0.8 - p["s_w"] + p["s_l"]) - 0.3 * p["s_w"],
    ),
    "orpo": (
        {"lam": 0.3},
        lambda p: -mean_w(p) - 0.3 * log_sigmoid(log_odds(mean_w(p)) - log_odds(mean_l(p))),
    ),
    "simpo": (
        {"beta": 1.5, "gamma": 0.3},
        lambda p: -log_sigmoid(1.5 * (mean_w(p) - mean_l(p)) - 0.3),
    ),
    "repo": ({"gamma": 0.3}, lambda p: max(0.0, 0.3 - (mean_w(p) - mean_l(p)))),
    "mppo-pair-single": ({}, lambda p: -log_sigmoid(math.exp(mean_w(p)) - math.exp(mean_l(p)))),
}


def unit(row):
    norm = math.sqrt(sum(x * x for x in row))
    return [x / norm for x in row]


def similarity_weights(rows, columns, tau):
    """softmax_j(-(1 - cos(e_i, e_j)) / tau), lists of lists."""
    weights = []
    for a in rows:
        logits = [
            -(1 - sum(x * y for x, y in zip(unit(a), unit(b), strict=True))) / tau for b in columns
        ]
        total = sum(math.exp(v) for v in logits)
        weights.append([math.exp(v) / total for v in logits])
    return weights


def rpo_expected(weights, chosen_rho, rejected_rho, beta):
    return mean(
        mean(-log_sigmoid(beta * w * (cw - rl)) for w, rl in zip(row, rejected_rho, strict=True))
        for row, cw in zip(weights, chosen_rho, strict=True)
    )


def expected_rpo():
    weights = similarity_weights(EMBEDDINGS[:3], EMBEDDINGS[:3], 0.5)
    return rpo_expected(weights, [rho_w(p) for p in PAIRS], [rho_l(p) for p in PAIRS], 0.5)


def expected_rpo_diagonal(alpha=0.7, beta=0.5):
    """alpha * own pair's loss + (1 - alpha) * uniform mean of the other contrasts."""
    losses = []
    for i, p in enumerate(PAIRS):
        others = [-log_sigmoid(beta * (rho_w(p) - rho_l(q))) for j, q in enumerate(PAIRS) if j != i]
        losses.append(alpha * -log_sigmoid(beta * delta(p)) + (1 - alpha) * mean(others))
    return mean(losses)


def expected_todo(ties):
    alpha, beta = 0.4, 0.5
    losses = []
    for p, tie in zip(PAIRS, ties, strict=True):
        d = beta * delta(p)
        if tie:
            losses.append(
                -math.log((math.exp(2 * alpha) - 1) * sigmoid(d - alpha) * sigmoid(-d - alpha))
            )
        else:
            losses.append(-log_sigmoid(d - alpha))
    return mean(losses)


@pytest.mark.parametrize("name", sorted(PAIR_CASES))
def test_pair_method_matches_its_formula(name):
    hparams, per_pair = PAIR_CASES[name]
    loss, _ = compute(name, **pair_tensors(), **hparams)
    assert loss.item() == pytest.approx(mean(per_pair(p) for p in PAIRS), rel=1e-9, abs=1e-12)


def test_ipo_length_normalised():
    loss, _ = compute("ipo", **pair_tensors(), beta=0.5, length_normalize=True)
    expected = mean((rho_w(p) / p["len_w"] - rho_l(p) / p["len_l"] - 1.0) ** 2 for p in PAIRS)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_todo_with_ties():
    ties = torch.tensor([False, True, False])
    loss, _ = compute("todo", **pair_tensors(), beta=0.5, alpha=0.4, ties=ties)
    assert loss.item() == pytest.approx(expected_todo([False, True, False]), rel=1e-9)


def test_rpo_and_rpo_diagonal():
    embeddings = torch.tensor(EMBEDDINGS[:3], dtype=torch.float64)
    loss, _ = compute("rpo", **pair_tensors(), beta=0.5, tau=0.5, prompt_embeddings=embeddings)
    assert loss.item() == pytest.approx(expected_rpo(), rel=1e-9)
    loss, _ = compute("rpo-diagonal", **pair_tensors(), beta=0.5, alpha=0.7)
    assert loss.item() == pytest.approx(expected_rpo_diagonal(), rel=1e-9)


def test_pair_metrics_are_floats_from_the_ranked_pairs():
    _, metrics = compute("dpo", **pair_tensors(), beta=0.5)
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["rewards/chosen"] == pytest.approx(mean(0.5 * rho_w(p) for p in PAIRS))
    assert metrics["rewards/rejected"] == pytest.approx(mean(0.5 * rho_l(p) for p in PAIRS))
    assert metrics["rewards/margins"] == pytest.approx(mean(0.5 * delta(p) for p in PAIRS))
    assert metrics["rewards/accuracies"] == pytest.approx(mean(delta(p) > 0 for p in PAIRS))
    assert metrics["logps/chosen"] == pytest.approx(mean(p["s_w"] for p in PAIRS))
    assert metrics["logps/rejected"] == pytest.approx(mean(p["s_l"] for p in PAIRS))


def test_unaligned_wpo_weights_each_pair_by_its_average_likelihoods():
    loss, metrics = compute("dpo", **pair_tensors(), beta=0.5, weighting="wpo", wpo_alignment=False)
    weights = [math.exp(mean_w(p) + mean_l(p)) for p in PAIRS]
    expected = mean(w * -log_sigmoid(0.5 * delta(p)) for w, p in zip(weights, PAIRS, strict=True))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["wpo/weight"] == pytest.approx(mean(weights))


# Per response: the summed log sum_v p(v)^2 over its tokens (WPO's alignment), chosen first.
COLLISION = [(-0.9, -2.1), (-0.3, -1.6), (-1.2, -0.8)]


def test_aligned_wpo_divides_each_token_probability_by_its_collision_probability():
    inputs = pair_tensors()
    rows = [list(c) for c in COLLISION]
    inputs["log_collision"] = torch.tensor(
        [row[::-1] if g in SWAPPED else row for g, row in enumerate(rows)], dtype=torch.float64
    )
    loss, metrics = compute("dpo", **inputs, beta=0.5, weighting="wpo")
    # w(y) = exp((1/l) sum_t [log p(y_t) - log sum_v p(v)^2]) = exp((s - c) / l)
    weights = [
        math.exp((p["s_w"] - c_w) / p["len_w"] + (p["s_l"] - c_l) / p["len_l"])
        for p, (c_w, c_l) in zip(PAIRS, COLLISION, strict=True)
    ]
    expected = mean(w * -log_sigmoid(0.5 * delta(p)) for w, p in zip(weights, PAIRS, strict=True))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["wpo/weight"] == pytest.approx(mean(weights))


def test_aligned_wpo_without_the_collision_statistic_says_what_it_needs():
    with pytest.raises(MethodDataError, match="log_collision.*wpo_alignment: false"):
        compute("dpo", **pair_tensors(), beta=0.5, weighting="wpo")


# ---------------------------------------------------------------- binary
SINGLES = [
    dict(s=-2.0, ref=-2.6, label=True),
    dict(s=-3.0, ref=-2.5, label=False),
    dict(s=-1.0, ref=-1.2, label=True),
    dict(s=-2.2, ref=-2.0, label=False),
]
KL_POLICY, KL_REF = [-3.0, -2.0, -4.0], [-3.5, -2.2, -3.9]


def binary_tensors() -> dict:
    def column(key, dtype=torch.float64):
        return torch.tensor([[x[key]] for x in SINGLES], dtype=dtype)

    return {
        "policy_logps": column("s"),
        "ref_logps": column("ref"),
        "lengths": torch.full((len(SINGLES), 1), 3.0),
        "labels": column("label", torch.bool),
    }


def kl_tensors():
    return {
        "kl_policy_logps": torch.tensor(KL_POLICY, dtype=torch.float64),
        "kl_ref_logps": torch.tensor(KL_REF, dtype=torch.float64),
    }


def rho(x):
    return x["s"] - x["ref"]


@pytest.mark.parametrize("name, value", [("kto", sigmoid), ("kto-tanh", math.tanh)])
def test_kto_matches_formula(name, value):
    beta, wd, wu = 0.5, 1.5, 0.7
    kl = max(0.0, mean(p - r for p, r in zip(KL_POLICY, KL_REF, strict=True)))
    z = beta * kl
    expected = mean(
        wd * (1 - value(beta * rho(x) - z)) if x["label"] else wu * (1 - value(z - beta * rho(x)))
        for x in SINGLES
    )
    loss, metrics = compute(
        name,
        **binary_tensors(),
        **kl_tensors(),
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["kto/kl"] == pytest.approx(kl)
    assert metrics["rewards/chosen"] == pytest.approx(
        mean(beta * rho(x) for x in SINGLES if x["label"])
    )
    assert metrics["rewards/rejected"] == pytest.approx(
        mean(beta * rho(x) for x in SINGLES if not x["label"])
    )


def bco_expected(beta, shift):
    return mean(
        -log_sigmoid(beta * rho(x) - shift)
        if x["label"]
        else -log_sigmoid(-(beta * rho(x) - shift))
        for x in SINGLES
    )


def test_bco_uses_batch_mean_or_the_running_mean_it_is_given():
    beta = 0.5
    batch_mean = mean(beta * rho(x) for x in SINGLES)
    loss, metrics = compute("bco", **binary_tensors(), beta=beta)
    assert loss.item() == pytest.approx(bco_expected(beta, batch_mean), rel=1e-9)
    assert metrics["bco/reward_mean"] == pytest.approx(batch_mean)
    loss, metrics = compute("bco", **binary_tensors(), beta=beta, reward_mean=torch.tensor(0.3))
    assert loss.item() == pytest.approx(bco_expected(beta, 0.3), rel=1e-6)
    assert metrics["bco/reward_mean"] == pytest.approx(batch_mean)
    assert metrics["bco/delta"] == pytest.approx(0.3)


def test_rpo_unpaired_contrasts_desirable_with_undesirable():
    desirable = [i for i, x in enumerate(SINGLES) if x["label"]]
    undesirable = [i for i, x in enumerate(SINGLES) if not x["label"]]
    weights = similarity_weights(
        [EMBEDDINGS[i] for i in desirable], [EMBEDDINGS[j] for j in undesirable], 0.5
    )
    expected = rpo_expected(
        weights, [rho(SINGLES[i]) for i in desirable], [rho(SINGLES[j]) for j in undesirable], 0.5
    )
    embeddings = torch.tensor(EMBEDDINGS, dtype=torch.float64)
    loss, _ = compute(
        "rpo-unpaired", **binary_tensors(), beta=0.5, tau=0.5, prompt_embeddings=embeddings
    )
    assert loss.item() == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- offline PPO
TOKENS = [
    dict(logps=[-0.5, -1.0, -0.2], ref=[-0.6, -0.9, -0.4], values=[0.1, -0.2, 0.3], label=True),
    dict(logps=[-0.3, -0.7], ref=[-0.2, -0.9], values=[0.0, 0.5], label=False),
]
PPO = dict(clip_epsilon=0.2, gamma=0.9, lam=0.8, value_coef=0.5, beta=0.1, entropy_coef=0.01)


def ppo_expected():
    losses, entropy, clipped, tokens = [], [], [], 0
    for x in TOKENS:
        n = len(x["logps"])
        rewards = [0.0] * (n - 1) + [1.0 if x["label"] else -1.0]
        advantages, next_value, next_advantage = [0.0] * n, 0.0, 0.0
        for t in reversed(range(n)):
            delta_t = rewards[t] + PPO["gamma"] * next_value - x["values"][t]
            advantages[t] = delta_t + PPO["gamma"] * PPO["lam"] * next_advantage
            next_value, next_advantage = x["values"][t], advantages[t]
        total = 0.0
        for t in range(n):
            log_ratio = x["logps"][t] - x["ref"][t]
            ratio, a = math.exp(log_ratio), advantages[t]
            clip = min(max(ratio, 1 - PPO["clip_epsilon"]), 1 + PPO["clip_epsilon"])
            policy = -min(ratio * a, clip * a)
            critic = 0.5 * (x["values"][t] - (a + x["values"][t])) ** 2
            kl = math.exp(-log_ratio) - 1 + log_ratio
            total += (
                policy
                + PPO["value_coef"] * critic
                + PPO["beta"] * kl
                + PPO["entropy_coef"] * x["logps"][t]
            )
            entropy.append(-x["logps"][t])
            clipped.append(abs(ratio - 1) > PPO["clip_epsilon"])
            tokens += 1
        losses.append(total / n)
    return mean(losses), mean(entropy), mean(clipped)


def ppo_tensors(garbage=9.9):
    width = max(len(x["logps"]) for x in TOKENS)

    def padded(key):
        return torch.tensor(
            [[x[key] + [garbage] * (width - len(x[key]))] for x in TOKENS], dtype=torch.float64
        )

    return {
        "policy_logps": torch.tensor([[sum(x["logps"])] for x in TOKENS], dtype=torch.float64),
        "ref_logps": torch.tensor([[sum(x["ref"])] for x in TOKENS], dtype=torch.float64),
        "lengths": torch.tensor([[len(x["logps"])] for x in TOKENS], dtype=torch.float64),
        "labels": torch.tensor([[x["label"]] for x in TOKENS]),
        "token_logps": padded("logps"),
        "token_ref_logps": padded("ref"),
        "values": padded("values"),
        "token_mask": torch.tensor([[[t < len(x["logps"]) for t in range(width)]] for x in TOKENS]),
    }


def test_ppo_offline_matches_gae_and_clipped_objective():
    loss, metrics = compute("ppo-offline", **ppo_tensors(), **PPO)
    expected, entropy, clip_frac = ppo_expected()
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["ppo/entropy"] == pytest.approx(entropy)
    assert metrics["ppo/clip_frac"] == pytest.approx(clip_frac)
    assert metrics["ppo/critic_loss"] > 0 and metrics["ppo/kl"] > 0


# ---------------------------------------------------------------- lists (unsorted, ragged)
LISTS = [
    [dict(s=-2.0, ref=-2.2, len=2, score=7.0), dict(s=-3.0, ref=-2.9, len=3, score=9.0),
     dict(s=-2.5, ref=-2.4, len=5, score=3.0)],
    [dict(s=-1.5, ref=-1.0, len=3, score=2.0), dict(s=-4.0, ref=-3.0, len=2, score=8.0)],
]  # fmt: skip


def list_tensors() -> dict:
    width = max(len(group) for group in LISTS)

    def column(key, padding=float("nan")):
        return torch.tensor(
            [[x[key] for x in group] + [padding] * (width - len(group)) for group in LISTS],
            dtype=torch.float64,
        )

    return {
        "policy_logps": column("s"),
        "ref_logps": column("ref"),
        "lengths": column("len", 0.0),
        "scores": column("score"),
        "mask": torch.tensor([[r < len(group) for r in range(width)] for group in LISTS]),
    }


def by_score(group):
    return sorted(group, key=lambda x: -x["score"])


def pbar(x):
    return math.exp(x["s"] / x["len"])


def point_ce(x):
    t = x["score"] / 10
    return -(t * math.log(pbar(x)) + (1 - t) * math.log(1 - pbar(x)))


def mns(group):
    best, *rest = by_score(group)
    return sum(-log_sigmoid(pbar(best) - pbar(x)) for x in rest)


def mnm(group):
    best, *rest = by_score(group)
    return -log_sigmoid(len(rest) * pbar(best) - sum(pbar(x) for x in rest))


def ordered_gaps(group):
    ranked = by_score(group)
    return [
        pbar(a) - pbar(b)
        for i, a in enumerate(ranked)
        for b in ranked[i + 1 :]
        if a["score"] > b["score"]
    ]


def list_mle(group):
    ranked = by_score(group)
    return -sum(
        pbar(x) - math.log(sum(math.exp(pbar(y)) for y in ranked[i:])) for i, x in enumerate(ranked)
    )


def mpo_set(group, beta=0.5):
    average = mean(x["score"] for x in group)

    def mass(xs):
        return sum(abs(x["score"] - average) * math.exp(beta * (x["s"] - x["ref"])) for x in xs)

    return -math.log(mass([x for x in group if x["score"] > average]) / mass(group))


LIST_CASES = {
    "mppo-point-ce": ({}, lambda: mean(point_ce(x) for g in LISTS for x in g)),
    "mppo-point-mse": (
        {},
        lambda: mean((x["score"] / 10 - pbar(x)) ** 2 for g in LISTS for x in g),
    ),
    "mppo-pair-mns": ({}, lambda: mean(mns(g) for g in LISTS)),
    "mppo-pair-mnm": ({}, lambda: mean(mnm(g) for g in LISTS)),
    "mppo-pair-mcs": (
        {},
        lambda: mean(sum(-log_sigmoid(d) for d in ordered_gaps(g)) for g in LISTS),
    ),
    "mppo-pair-mcm": ({}, lambda: mean(-log_sigmoid(sum(ordered_gaps(g))) for g in LISTS)),
    "mppo-list-mle": ({}, lambda: mean(list_mle(g) for g in LISTS)),
    "mpo-set": ({"beta": 0.5}, lambda: mean(mpo_set(g) for g in LISTS)),
    "sft": ({}, lambda: mean(-by_score(g)[0]["s"] / by_score(g)[0]["len"] for g in LISTS)),
}


@pytest.mark.parametrize("name", sorted(LIST_CASES))
def test_list_method_matches_its_formula_on_ragged_unsorted_groups(name):
    hparams, expected = LIST_CASES[name]
    loss, metrics = compute(name, **list_tensors(), **hparams)
    assert loss.item() == pytest.approx(expected(), rel=1e-9)
    assert all(math.isfinite(v) for v in metrics.values())


def test_mppo_reports_mean_pbar_of_best_and_rest():
    _, metrics = compute("mppo-pair-mnm", **list_tensors())
    assert metrics["mppo/pbar_best"] == pytest.approx(mean(pbar(by_score(g)[0]) for g in LISTS))
    assert metrics["mppo/pbar_rest"] == pytest.approx(
        mean(pbar(x) for g in LISTS for x in by_score(g)[1:])
    )


HAND_COMPUTED = (
    set(PAIR_CASES)
    | set(LIST_CASES)
    | {"todo", "rpo", "rpo-diagonal", "kto", "kto-tanh", "bco", "rpo-unpaired", "ppo-offline"}
    | {"grpo", "rloo", "ppo"}  # in test_online_losses.py
    | {"online-dpo"}  # its loss is dpo's, through compute("dpo")
)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_has_a_hand_computed_value(name):
    assert name in HAND_COMPUTED, f"add a hand-computed test for '{name}'"
