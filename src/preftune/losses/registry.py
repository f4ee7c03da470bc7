"""What every method is: its data view, reference model, hyperparameters and paper.

Metadata only, no torch: `preftune methods` reads this module and stays fast. The loss itself
is the function named by `MethodSpec.function` ("module:function" inside `preftune.losses`),
imported when `compute` first runs it. Adding a method = one function + one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

VIEWS = ("pair", "binary", "list", "chosen")
DATA_FIELDS = ("scores", "labels", "ties", "margins")
# The extra inputs a method may take, and how each is laid out (views sort / flatten by it).
EXTRA_LAYOUTS = {
    "kl_policy_logps": "free",  # [M]: any number of mismatched pairs
    "kl_ref_logps": "free",
    "reward_mean": "scalar",  # 0-d
    "prompt_embeddings": "group",  # [G, D]
    "margins": "group_scalar",  # [G]
    "ties": "group_scalar",  # [G] bool
    "token_logps": "response",  # [G, R, L]
    "token_ref_logps": "response",
    "token_mask": "response",  # [G, R, L] bool
    "values": "response",
}
EXTRA_INPUTS = tuple(EXTRA_LAYOUTS)


@dataclass(frozen=True)
class MethodSpec:
    """One alignment method.

    view: which data view it consumes ("pair": [chosen, rejected]; "binary": labelled singles;
    "list": every response of a group, ranked by score; "chosen": the preferred response only).
    needs: data fields the method cannot run without. extra_inputs: named tensors beyond the
    [G, R] statistics that the trainer passes to `compute` (see each function's docstring);
    optional_inputs: those of extra_inputs the method can do without (used when present).
    """

    name: str
    view: str
    needs_reference: bool
    hparams: MappingProxyType
    paper: str
    description: str
    function: str
    needs: tuple[str, ...] = ()
    extra_inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()

    def __post_init__(self):
        assert self.view in VIEWS, self.view
        assert set(self.needs) <= set(DATA_FIELDS), self.needs
        assert set(self.extra_inputs) <= set(EXTRA_INPUTS), self.extra_inputs


def _spec(name, view, reference, hparams, paper, description, function, **rest) -> MethodSpec:
    return MethodSpec(
        name=name,
        view=view,
        needs_reference=reference,
        hparams=MappingProxyType(dict(hparams)),
        paper=paper,
        description=description,
        function=function,
        **rest,
    )


DPO_PAPER = "Rafailov et al. 2023, arXiv 2305.18290"
MPPO_PAPER = "Xie et al. 2024 (MPPO), arXiv 2412.15244"
RPO_PAPER = "Yin et al. 2024 (Relative PO), arXiv 2402.10958"
SEED = "the seed study (METHODS.md section 1)"
BETA = {"beta": 0.1}

_SPECS = [
    _spec("sft", "chosen", False, {}, "SFT stage of " + DPO_PAPER,
          "-mean token log-prob of the preferred response", "sft:sft"),
    # --- the DPO family: a margin (logit) and a link ---
    _spec("dpo", "pair", True, BETA, DPO_PAPER, "-log sigmoid(beta * Delta)", "dpo_family:dpo"),
    _spec("ipo", "pair", True, {"beta": 0.1, "length_normalize": False}, "Azar et al. 2023, arXiv 2310.12036",
          "(Delta - 1/(2 beta))^2; length_normalize uses rho/len", "dpo_family:ipo"),
    _spec("cdpo", "pair", True, {"beta": 0.1, "epsilon": 0.1}, "Mitchell 2023, 'A note on DPO with noisy preferences'",
          "DPO with label smoothing epsilon", "dpo_family:cdpo"),
    _spec("rdpo", "pair", True, {"beta": 0.1, "epsilon": 0.1}, "Chowdhury et al. 2024, arXiv 2403.00409",
          "DPO made unbiased under label flip rate epsilon", "dpo_family:rdpo"),
    _spec("hinge", "pair", True, BETA, "Liu et al. 2023 (RSO), arXiv 2309.06657",
          "max(0, 1 - beta * Delta)", "dpo_family:hinge"),
    _spec("ln-dpo", "pair", True, BETA, "Ahrabian et al. 2024, arXiv 2407.15229",
          "DPO on length-normalised log-ratios rho/len", "dpo_family:ln_dpo"),
    _spec("dpop", "pair", True, {"beta": 0.1, "lam": 50.0}, "Pal et al. 2024 (Smaug), arXiv 2402.13228",
          "DPO-Positive: penalises the chosen log-ratio falling below 0", "dpo_family:dpop"),
    _spec("dpo-shift", "pair", True, {"beta": 0.1, "lam": 0.95}, "Yang et al. 2025, arXiv 2502.07599",
          "-log sigmoid(beta (rho_w - lam rho_l))", "dpo_family:dpo_shift"),
    _spec("h-dpo", "pair", True, {"beta": 0.1, "alpha": 0.95}, "Omura et al. 2024, arXiv 2411.07595",
          "entropy-controllable DPO: rho = alpha s - s_ref", "dpo_family:h_dpo"),
    _spec("odpo", "pair", True, {"beta": 0.1, "alpha": 1.0}, "Amini et al. 2024, arXiv 2402.10571",
          "DPO with an offset alpha log(score_w - score_l), or alpha * margin (needs one of them)",
          "dpo_family:odpo", extra_inputs=("margins",), optional_inputs=("margins",)),
    _spec("mmpo", "pair", True, {"beta": 0.1, "gamma": 1.0}, "Kim et al. 2024, arXiv 2410.03145",
          "soft target sigmoid(gamma (score_w - score_l)) on DPO's logit", "dpo_family:mmpo",
          needs=("scores",)),
    _spec("todo", "pair", True, {"beta": 0.1, "alpha": 0.5}, "Guo et al. 2024 (TODO), arXiv 2411.02442",
          "Rao-Kupper ties model over DPO's logit", "dpo_family:todo",
          extra_inputs=("ties",), optional_inputs=("ties",)),
    _spec("exo", "pair", True, {"beta": 0.1, "epsilon": 1e-3}, "Ji et al. 2024 (EXO), arXiv 2402.00856",
          "reverse KL from the pair's softmax to the smoothed label", "dpo_family:exo"),
    _spec("nca", "pair", True, BETA, "Chen et al. 2024 (NCA), arXiv 2402.05369",
          "noise contrastive alignment on absolute log-ratios", "dpo_family:nca"),
    _spec("apo-zero", "pair", True, BETA, "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266",
          "anchored: raise chosen, lower rejected likelihood", "dpo_family:apo_zero"),
    _spec("apo-down", "pair", True, BETA, "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266",
          "anchored: lower chosen, lower rejected more", "dpo_family:apo_down"),
    _spec("sppo-hard", "pair", True, BETA, "Wu et al. 2024 (SPPO), arXiv 2405.00675",
          "squared regression of log-ratios to +-1/(2 beta)", "dpo_family:sppo_hard"),
    _spec("discopop", "pair", True, {"beta": 0.05, "tau": 0.05}, "Lu et al. 2024 (DiscoPOP), arXiv 2406.08414",
          "log-ratio modulated blend of logistic and exponential losses", "dpo_family:discopop"),
    _spec("bco-pair", "pair", True, BETA, "Jung et al. 2024 (BCO), arXiv 2404.04656",
          "binary classifier on each side of a pair", "dpo_family:bco_pair"),
    # --- reference-free pairwise ---
    _spec("slic", "pair", False, {"delta": 1.0, "lam": 0.1}, "Zhao et al. 2023 (SLiC-HF), arXiv 2305.10425",
          "calibration hinge on sequence log-probs + lam * NLL", "reference_free:slic"),
    _spec("orpo", "pair", False, {"lam": 0.1}, "Hong et al. 2024 (ORPO), arXiv 2403.07691",
          "NLL of chosen + lam * odds-ratio loss", "reference_free:orpo"),
    _spec("simpo", "pair", False, {"beta": 2.0, "gamma": 0.5}, "Meng et al. 2024 (SimPO), arXiv 2405.14734",
          "-log sigmoid(beta (mean logp_w - mean logp_l) - gamma)", "reference_free:simpo"),
    _spec("repo", "pair", False, {"gamma": 0.5}, "Wu et al. 2025 (RePO), arXiv 2503.07426",
          "max(0, gamma - (mean logp_w - mean logp_l))", "reference_free:repo"),
    _spec("mppo-pair-single", "pair", False, {}, MPPO_PAPER,
          "-log sigmoid(pbar_w - pbar_l), one non-top response", "mppo:pair_single"),
    # --- binary feedback ---
    _spec("kto", "binary", True, {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0},
          "Ethayarajh et al. 2024 (KTO), arXiv 2402.01306", "prospect-theoretic value, logistic",
          "binary:kto", needs=("labels",), extra_inputs=("kl_policy_logps", "kl_ref_logps")),
    _spec("kto-tanh", "binary", True, {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0},
          SEED + "; KTO: arXiv 2402.01306", "KTO with a tanh value function",
          "binary:kto_tanh", needs=("labels",), extra_inputs=("kl_policy_logps", "kl_ref_logps")),
    _spec("bco", "binary", True, BETA, "Jung et al. 2024 (BCO), arXiv 2404.04656",
          "binary classifier on beta rho shifted by the running reward mean", "binary:bco",
          needs=("labels",), extra_inputs=("reward_mean",), optional_inputs=("reward_mean",)),
    _spec("ppo-offline", "binary", True,
          {"clip_epsilon": 0.2, "gamma": 0.99, "lam": 0.95, "value_coef": 0.01, "beta": 0.1, "entropy_coef": 0.0},
          SEED + "; PPO: Schulman et al. 2017, arXiv 1707.06347",
          "clipped PPO on fixed data against the static reference, +-1 terminal reward", "ppo:ppo_offline",
          needs=("labels",), extra_inputs=("token_logps", "token_ref_logps", "token_mask", "values")),
    # --- RPO: contrasts across prompts in the batch ---
    _spec("rpo", "pair", True, {"beta": 0.1, "tau": 0.5}, RPO_PAPER,
          "every chosen vs every rejected in the batch, weighted by prompt similarity", "rpo:rpo",
          extra_inputs=("prompt_embeddings",)),
    _spec("rpo-unpaired", "binary", True, {"beta": 0.1, "tau": 0.5}, RPO_PAPER,
          "desirable set x undesirable set, weighted by prompt similarity", "rpo:rpo_unpaired",
          needs=("labels",), extra_inputs=("prompt_embeddings",)),
    _spec("rpo-diagonal", "pair", True, {"beta": 0.1, "alpha": 0.8}, RPO_PAPER,
          "alpha on the own pair's loss, 1 - alpha on the mean of the other contrasts",
          "rpo:rpo_diagonal"),
    # --- MPPO: reference-free, reward = average likelihood pbar ---
    _spec("mppo-point-ce", "list", False, {"score_max": 10.0}, MPPO_PAPER,
          "cross-entropy of pbar against score/score_max", "mppo:point_ce", needs=("scores",)),
    _spec("mppo-point-mse", "list", False, {"score_max": 10.0}, MPPO_PAPER,
          "squared error of pbar against score/score_max", "mppo:point_mse", needs=("scores",)),
    _spec("mppo-pair-mns", "list", False, {}, MPPO_PAPER,
          "sum over negatives of -log sigmoid(pbar_w - pbar_l)", "mppo:pair_mns", needs=("scores",)),
    _spec("mppo-pair-mnm", "list", False, {}, MPPO_PAPER,
          "-log sigmoid(N pbar_w - sum of negatives' pbar)", "mppo:pair_mnm", needs=("scores",)),
    _spec("mppo-pair-mcs", "list", False, {}, MPPO_PAPER,
          "sum over all score-ordered pairs of -log sigmoid(pbar_a - pbar_b)", "mppo:pair_mcs",
          needs=("scores",)),
    _spec("mppo-pair-mcm", "list", False, {}, MPPO_PAPER,
          "-log sigmoid(sum over score-ordered pairs of pbar_a - pbar_b)", "mppo:pair_mcm",
          needs=("scores",)),
    _spec("mppo-list-mle", "list", False, {}, MPPO_PAPER,
          "Plackett-Luce likelihood of the score order with pbar as logits", "mppo:list_mle",
          needs=("scores",)),
    _spec("mpo-set", "list", True, BETA, "Gupta et al. 2024 (MPO), arXiv 2412.04628",
          "above-mean responses vs all, weighted by |score - mean|", "mpo:mpo_set", needs=("scores",)),
]  # fmt: skip

METHODS: MappingProxyType = MappingProxyType({spec.name: spec for spec in _SPECS})

# Modifiers accepted by every pairwise method (see `preftune.losses.dispatch`).
WEIGHTINGS = ("wpo",)
WPO_PAPER = "Zhou et al. 2024 (WPO), arXiv 2406.11827"
