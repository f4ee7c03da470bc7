"""What every method is: its data view, reference model, hyperparameters and paper.

Metadata only, no torch: `preftune methods` reads this module and stays fast. Each
hyperparameter is declared once (`Hparam`: default, accepted values, meaning); that declaration
drives the checks of `compute` and of the training config, `preftune methods` and
docs/methods.md. The loss itself is the function named by `MethodSpec.function`
("module:function" inside `preftune.losses`), imported when `compute` first runs it.
Adding a method = one function + one entry here; an extra input it introduces is declared in
`EXTRA_INPUTS` (layout and provider) and computed in training by one provider class
(`preftune.train.providers`). `register_method` adds a method from outside the package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from preftune.errors import ConfigError, MethodDataError

ONLINE = "online"  # the view of methods that learn from the policy's own fresh samples
VIEWS = ("pair", "binary", "list", "chosen", ONLINE)
DATA_FIELDS = ("scores", "labels", "ties", "margins")
# How an extra input lines up with the batch (views sort and flatten by it; processes
# concatenate every layout but "scalar", which is the same on every process).
LAYOUTS = (
    "free",  # 1-D [M]: any number of rows (e.g. mismatched pairs)
    "scalar",  # 0-d
    "group",  # [G, D]
    "group_scalar",  # [G]
    "response",  # [G, R, L]
    "response_scalar",  # [G, R]
)


@dataclass(frozen=True)
class ExtraInput:
    """A tensor a loss takes beyond the [G, R] sequence statistics.

    layout: one of `LAYOUTS`. provider: the name of the class that computes it in training
    (registered in `preftune.train.providers`; one provider may supply several inputs).
    """

    layout: str
    provider: str
    doc: str

    def __post_init__(self):
        assert self.layout in LAYOUTS, self.layout


_INPUTS = {
    "kl_policy_logps": ExtraInput(
        "free", "mismatched_pairs", "policy log-probs of prompts with another example's response"
    ),
    "kl_ref_logps": ExtraInput("free", "mismatched_pairs", "their reference log-probs"),
    "reward_mean": ExtraInput("scalar", "reward_mean", "BCO's running mean reward delta"),
    "prompt_embeddings": ExtraInput(
        "group", "prompt_embeddings", "L2-normalised sentence embedding of each prompt"
    ),
    "margins": ExtraInput("group_scalar", "group_fields", "the data's per-pair margin"),
    "ties": ExtraInput("group_scalar", "group_fields", "bool: the data marks the pair a tie"),
    "token_logps": ExtraInput("response", "token_logps", "policy log-prob of every token"),
    "token_mask": ExtraInput("response", "token_logps", "bool: the token exists"),
    "token_ref_logps": ExtraInput("response", "token_logps", "reference log-prob of every token"),
    "values": ExtraInput("response", "critic_values", "the critic's value of every token"),
    "log_collision": ExtraInput(
        "response_scalar", "log_collision", "WPO's sum_t log sum_v p(v)^2 per response"
    ),
}
# Read-only views: `register_method` adds a method's new inputs.
EXTRA_INPUTS: Mapping[str, ExtraInput] = MappingProxyType(_INPUTS)
_LAYOUT_OF = {name: declaration.layout for name, declaration in _INPUTS.items()}
EXTRA_LAYOUTS: Mapping[str, str] = MappingProxyType(_LAYOUT_OF)


class UnknownOption(ConfigError, MethodDataError):
    """An unknown method, a hyperparameter it does not have or a value out of range: the
    message names the method, the hyperparameter (also in `hparam`) and what is accepted."""

    def __init__(self, message: str, *, hparam: str | None = None):
        super().__init__(message)
        self.hparam = hparam


@dataclass(frozen=True)
class Hparam:
    """One hyperparameter: its default, the values it accepts and what it does.

    A number lies between `low` and `high` (None: unbounded; `*_open`: the bound itself is
    excluded) and is always finite; a bool default makes a true/false switch; `choices`
    a closed set of names (None, the default, switches the option off).
    """

    default: float | bool | str | None
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """What the hyperparameter accepts, in words: "a finite number > 0", "true or false"."""
        if isinstance(self.default, bool):
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"a number in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"a finite number {'<' if self.high_open else '<='} {self.high:g}"
        return "a finite number"

    def accepts(self, value) -> bool:
        if isinstance(self.default, bool):
            return isinstance(value, bool)
        if self.choices:
            return value is None or value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def convert(self, value):
        """`value` as the loss takes it (numbers as float); ValueError naming what is accepted."""
        if not self.accepts(value):
            raise ValueError(self.allowed())
        is_number = not (isinstance(self.default, bool) or self.choices)
        return float(value) if is_number else value


def _number(default: float, doc: str, low=None, high=None, *, low_open=False, high_open=False):
    return Hparam(default, doc, low, high, low_open, high_open)


def _positive(default: float, doc: str) -> Hparam:
    return _number(default, doc, 0, low_open=True)


def _non_negative(default: float, doc: str) -> Hparam:
    return _number(default, doc, 0)


def _switch(default: bool, doc: str) -> Hparam:
    return Hparam(default, doc)


BETA_DOC = "inverse temperature: how far the policy may move from the reference"
BETA = {"beta": _positive(0.1, BETA_DOC)}

# Modifiers every pairwise method accepts (see `preftune.losses.dispatch`).
WEIGHTINGS = ("wpo",)
WPO_PAPER = "Zhou et al. 2024 (WPO), arXiv 2406.11827"
PAIR_MODIFIERS: Mapping[str, Hparam] = MappingProxyType(
    {
        "weighting": Hparam(
            None,
            "'wpo' weighs each pair by how likely the policy is to produce it",
            choices=WEIGHTINGS,
        ),
        "wpo_alignment": _switch(
            True,
            "with weighting 'wpo': true = the paper's per-token aligned weight (needs "
            "log_collision), false = the product of the two mean token probabilities",
        ),
    }
)
PAIR_INPUTS = ("log_collision",)  # WPO's aligned weight


@dataclass(frozen=True)
class MethodSpec:
    """One alignment method.

    view: which data view it consumes ("pair": [chosen, rejected]; "binary": labelled singles;
    "list": every response of a group, ranked by score; "chosen": the preferred response only;
    "online": prompts only, the policy samples its responses during training and a reward
    source scores them: these methods train through `preftune train` with an `online:`
    block, their losses are in `preftune.losses.online`, and `compute` refuses them).
    hparams: name -> `Hparam`, its declared hyperparameters. needs: data fields the method
    cannot run without. extra_inputs: names of `EXTRA_INPUTS`, tensors beyond the [G, R]
    statistics that the trainer passes to `compute` (see each function's docstring);
    optional_inputs: those of extra_inputs the method can do without (used when present).
    function: "module:function" inside `preftune.losses`, or the loss function itself (a
    method registered from outside the package).
    """

    name: str
    view: str
    needs_reference: bool
    hparams: Mapping[str, Hparam]
    paper: str
    description: str
    function: str | Callable
    needs: tuple[str, ...] = ()
    extra_inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()

    def __post_init__(self):
        assert self.view in VIEWS, self.view
        assert set(self.needs) <= set(DATA_FIELDS), self.needs

    @property
    def is_online(self) -> bool:
        """Whether the method learns from its own samples (the "online" view)."""
        return self.view == ONLINE

    @property
    def defaults(self) -> dict:
        """name -> default value of every declared hyperparameter."""
        return {name: hparam.default for name, hparam in self.hparams.items()}

    @property
    def inputs(self) -> tuple[str, ...]:
        """The extra inputs `compute` takes: the declared ones, and for pairwise methods the
        pair modifiers' (`PAIR_INPUTS`, used only when the modifier is on)."""
        return self.extra_inputs + (PAIR_INPUTS if self.view == "pair" else ())

    @property
    def keeps_ties(self) -> bool:
        """Whether the method reads tied pairs (the pair view drops them otherwise)."""
        return "ties" in self.needs or "ties" in self.extra_inputs

    @property
    def accepted(self) -> Mapping[str, Hparam]:
        """What `compute` and the config accept: the declared hyperparameters, and the pair
        modifiers for pairwise methods."""
        return {**self.hparams, **(PAIR_MODIFIERS if self.view == "pair" else {})}


def check_hparams(spec: MethodSpec, given: Mapping) -> dict:
    """The method's hyperparameters: `given` over the defaults, each checked against its
    declaration. Raises UnknownOption naming the method, the hyperparameter and what it
    accepts. Modifiers (weighting...) appear only when given.

    >>> check_hparams(METHODS["dpo"], {"beta": 0.2})
    {'beta': 0.2}
    """
    accepted = spec.accepted
    for name in given:
        if name not in accepted:
            raise UnknownOption(
                f"method '{spec.name}' has no hyperparameter '{name}' "
                f"(it takes: {', '.join(accepted) or 'none'})",
                hparam=name,
            )
    checked = {}
    for name, value in {**spec.defaults, **given}.items():
        try:
            checked[name] = accepted[name].convert(value)
        except ValueError as error:
            raise UnknownOption(
                f"method '{spec.name}': hyperparameter {name} must be {error}, got {value!r}",
                hparam=name,
            ) from None
    if "wpo_alignment" in checked and checked.get("weighting") != "wpo":
        raise UnknownOption(
            f"method '{spec.name}': hyperparameter wpo_alignment only applies with weighting 'wpo'",
            hparam="wpo_alignment",
        )
    return checked


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
MPPO_PAPER = "Xie et al. 2025 (MPPO), arXiv 2412.15244"
RPO_PAPER = "Yin et al. 2024 (Relative PO), arXiv 2402.10958"
KTO_PAPER = "Ethayarajh et al. 2024 (KTO), arXiv 2402.01306"
_EPSILON_SMOOTHING = _number(0.1, "label smoothing: the share of labels taken as flipped", 0, 1)
_KTO = {
    **BETA,
    "desirable_weight": _positive(1.0, "lambda_D, the weight of desirable examples"),
    "undesirable_weight": _positive(1.0, "lambda_U, the weight of undesirable examples"),
}
_RPO = {**BETA, "tau": _positive(0.5, "temperature of the prompt-similarity softmax")}
_EPSILON_LOW = _number(
    0.2,
    "lower clip of the importance ratio: ratio >= 1 - epsilon_low",
    0,
    1,
    low_open=True,
    high_open=True,
)
_EPSILON_HIGH = _positive(
    0.2,
    "upper clip of the importance ratio: ratio <= 1 + epsilon_high "
    "(DAPO, Yu et al. 2025, arXiv 2503.14476, recommends 0.28)",
)
GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
REWARD_SCALINGS = ("group", "batch", "none")  # TRL 1.16's scale_rewards
GRPO_PAPER = "Shao et al. 2024 (GRPO, DeepSeekMath), arXiv 2402.03300"
RLOO_PAPER = "Ahmadian et al. 2024 (RLOO), arXiv 2402.14740"
PPO_RLHF_PAPER = (
    "Ziegler et al. 2019, arXiv 1909.08593; Ouyang et al. 2022, arXiv 2203.02155; "
    "PPO: Schulman et al. 2017, arXiv 1707.06347"
)
# Loss settings only; sampling (samples per prompt, num_iterations...) is the `online:` block's.
_GRPO = {
    "beta": _non_negative(
        0.0,
        "weight of the k3 KL to the reference; 0 (TRL 1.16's default) "
        "leaves the KL out, the GRPO paper used 0.04",
    ),
    "epsilon_low": _EPSILON_LOW,
    "epsilon_high": _EPSILON_HIGH,
    "loss_type": Hparam(
        "dapo",
        "how token losses become the batch loss: 'grpo' per-sequence mean "
        "then mean, 'bnpo' / 'dapo' token mean over the batch, 'dr_grpo' "
        "sum / (sequences * max_new_tokens); default TRL 1.16's",
        choices=GRPO_LOSS_TYPES,
    ),
    "scale_rewards": Hparam(
        "group",
        "divide the advantages by the std of the prompt's rewards ('group', the GRPO paper "
        "and TRL 1.16), of the batch's ('batch'), or not ('none': Dr. GRPO, Liu et al. 2025)",
        choices=REWARD_SCALINGS,
    ),
}
_RLOO = {
    "beta": _non_negative(
        0.05,
        "weight of the KL penalty in the reward, sum_t (log pi - "
        "log pi_ref) per sample (TRL 1.16's default)",
    ),
    "epsilon_low": _EPSILON_LOW,
    "epsilon_high": _EPSILON_HIGH,
    "normalize_advantages": _switch(
        False,
        "whiten the advantages over the batch (TRL 1.16's normalize_advantages, off by default)",
    ),
}
_PPO = {
    "kl_coef": _non_negative(
        0.05,
        "weight of the per-token KL penalty in the reward (initial "
        "value when adaptive; TRL's PPOConfig default)",
    ),
    "adaptive_kl": _switch(False, "adapt kl_coef towards kl_target (Ziegler et al. 2019)"),
    "kl_target": _positive(
        6.0,
        "with adaptive_kl: the KL per sample to hold (Ziegler et al.'s and TRL's former default)",
    ),
    "kl_horizon": _positive(10000.0, "with adaptive_kl: samples over which kl_coef adapts"),
    "gamma": _number(1.0, "discount of GAE (1: the RLHF setting)", 0, 1),
    "lam": _number(0.95, "GAE's lambda", 0, 1),
    "epsilon": _number(
        0.2, "PPO's ratio clip (TRL's cliprange)", 0, 1, low_open=True, high_open=True
    ),
    "vf_coef": _non_negative(0.1, "weight of the value loss (TRL's default)"),
    "cliprange_value": _positive(0.2, "how far a value may move from the sampling one"),
    "whiten_rewards": _switch(False, "rescale the token rewards to unit variance before GAE"),
}
_SCORE_MAX = {
    "score_max": _positive(10.0, "the top of the rating scale: target = score / score_max")
}

_SPECS = [
    _spec("sft", "chosen", False, {}, "SFT stage of " + DPO_PAPER,
          "-mean token log-prob of the preferred response", "sft:sft"),
    # --- the DPO family: a margin (logit) and a link ---
    _spec("dpo", "pair", True, BETA, DPO_PAPER, "-log sigmoid(beta * Delta)", "dpo_family:dpo"),
    _spec("ipo", "pair", True,
          {**BETA, "length_normalize": _switch(False, "build Delta from rho / l (TRL's average) "
                                                       "instead of the paper's summed rho")},
          "Azar et al. 2023, arXiv 2310.12036",
          "(Delta - 1/(2 beta))^2; length_normalize uses rho/len", "dpo_family:ipo"),
    _spec("cdpo", "pair", True, {**BETA, "epsilon": _EPSILON_SMOOTHING},
          "Mitchell 2023, 'A note on DPO with noisy preferences'",
          "DPO with label smoothing epsilon", "dpo_family:cdpo"),
    _spec("rdpo", "pair", True,
          {**BETA, "epsilon": _number(0.1, "the label flip rate", 0, 0.5, high_open=True)},
          "Chowdhury et al. 2024, arXiv 2403.00409",
          "DPO made unbiased under label flip rate epsilon", "dpo_family:rdpo"),
    _spec("hinge", "pair", True, BETA, "Liu et al. 2023 (RSO), arXiv 2309.06657",
          "max(0, 1 - beta * Delta)", "dpo_family:hinge"),
    _spec("ln-dpo", "pair", True, BETA, "Ahrabian et al. 2024, arXiv 2407.15229",
          "DPO on length-normalised log-ratios rho/len", "dpo_family:ln_dpo"),
    _spec("dpop", "pair", True,
          {**BETA, "lam": _non_negative(50.0, "weight of the penalty on a falling chosen log-ratio")},
          "Pal et al. 2024 (Smaug), arXiv 2402.13228",
          "DPO-Positive: penalises the chosen log-ratio falling below 0", "dpo_family:dpop"),
    _spec("dpo-shift", "pair", True,
          {**BETA, "lam": _number(0.95, "scale of the rejected log-ratio", 0, 1)},
          "Yang et al. 2025, arXiv 2502.07599",
          "-log sigmoid(beta (rho_w - lam rho_l))", "dpo_family:dpo_shift"),
    _spec("h-dpo", "pair", True,
          {**BETA, "alpha": _positive(0.95, "entropy scale: < 1 sharpens the policy, 1 is DPO")},
          "Omura et al. 2024, arXiv 2411.07595",
          "entropy-controllable DPO: rho = alpha s - s_ref", "dpo_family:h_dpo"),
    _spec("odpo", "pair", True,
          {**BETA, "alpha": _non_negative(1.0, "scale of the offset")},
          "Amini et al. 2024, arXiv 2402.10571",
          "DPO with an offset alpha log(score_w - score_l), or alpha * margin (needs one of them)",
          "dpo_family:odpo", extra_inputs=("margins",), optional_inputs=("margins",)),
    _spec("mmpo", "pair", True,
          {**BETA, "gamma": _non_negative(1.0, "how sharply the score gap sets the soft label")},
          "Kim et al. 2024, arXiv 2410.03145",
          "soft target sigmoid(gamma (score_w - score_l)) on DPO's logit", "dpo_family:mmpo",
          needs=("scores",)),
    _spec("todo", "pair", True,
          {**BETA, "alpha": _positive(0.5, "the ties threshold of the Rao-Kupper model")},
          "Guo et al. 2024 (TODO), arXiv 2411.02442",
          "Rao-Kupper ties model over DPO's logit", "dpo_family:todo",
          extra_inputs=("ties",), optional_inputs=("ties",)),
    _spec("exo", "pair", True,
          {**BETA, "epsilon": _number(1e-3, "smoothing of the target label", 0, 1,
                                      low_open=True, high_open=True)},
          "Ji et al. 2024 (EXO), arXiv 2402.00856",
          "reverse KL from the pair's softmax to the smoothed label", "dpo_family:exo"),
    _spec("nca", "pair", True, BETA, "Chen et al. 2024 (NCA), arXiv 2402.05369",
          "noise contrastive alignment on absolute log-ratios", "dpo_family:nca"),
    _spec("apo-zero", "pair", True, BETA, "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266",
          "anchored: raise chosen, lower rejected likelihood", "dpo_family:apo_zero"),
    _spec("apo-down", "pair", True, BETA, "D'Oosterlinck et al. 2024 (APO), arXiv 2408.06266",
          "anchored: lower chosen, lower rejected more", "dpo_family:apo_down"),
    _spec("sppo-hard", "pair", True, BETA, "Wu et al. 2024 (SPPO), arXiv 2405.00675",
          "squared regression of log-ratios to +-1/(2 beta)", "dpo_family:sppo_hard"),
    _spec("discopop", "pair", True,
          {"beta": _positive(0.05, BETA_DOC),
           "tau": _positive(0.05, "temperature of the logistic / exponential mix")},
          "Lu et al. 2024 (DiscoPOP), arXiv 2406.08414",
          "log-ratio modulated blend of logistic and exponential losses", "dpo_family:discopop"),
    _spec("bco-pair", "pair", True, BETA, "Jung et al. 2024 (BCO), arXiv 2404.04656",
          "binary classifier on each side of a pair", "dpo_family:bco_pair"),
    # --- reference-free pairwise ---
    _spec("slic", "pair", False,
          {"delta": _non_negative(1.0, "the calibration margin"),
           "lam": _non_negative(0.1, "weight of the chosen response's NLL")},
          "Zhao et al. 2023 (SLiC-HF), arXiv 2305.10425",
          "calibration hinge on sequence log-probs + lam * NLL", "reference_free:slic"),
    _spec("orpo", "pair", False, {"lam": _non_negative(0.1, "weight of the odds-ratio term")},
          "Hong et al. 2024 (ORPO), arXiv 2403.07691",
          "NLL of chosen + lam * odds-ratio loss", "reference_free:orpo"),
    _spec("simpo", "pair", False,
          {"beta": _positive(2.0, "scale of the length-normalised reward"),
           "gamma": _non_negative(0.5, "target reward margin")},
          "Meng et al. 2024 (SimPO), arXiv 2405.14734",
          "-log sigmoid(beta (mean logp_w - mean logp_l) - gamma)", "reference_free:simpo"),
    _spec("repo", "pair", False, {"gamma": _non_negative(0.5, "target margin of mean log-probs")},
          "Wu et al. 2025 (RePO), arXiv 2503.07426",
          "max(0, gamma - (mean logp_w - mean logp_l))", "reference_free:repo"),
    _spec("mppo-pair-single", "pair", False, {}, MPPO_PAPER,
          "-log sigmoid(pbar_w - pbar_l), one non-top response", "mppo:pair_single"),
    # --- binary feedback ---
    _spec("kto", "binary", True, _KTO, KTO_PAPER, "prospect-theoretic value, logistic",
          "binary:kto", needs=("labels",), extra_inputs=("kl_policy_logps", "kl_ref_logps")),
    _spec("kto-tanh", "binary", True, _KTO, KTO_PAPER + ", with a tanh value function",
          "KTO with a tanh value function",
          "binary:kto_tanh", needs=("labels",), extra_inputs=("kl_policy_logps", "kl_ref_logps")),
    _spec("bco", "binary", True, BETA, "Jung et al. 2024 (BCO), arXiv 2404.04656",
          "binary classifier on beta rho shifted by the running reward mean", "binary:bco",
          needs=("labels",), extra_inputs=("reward_mean",), optional_inputs=("reward_mean",)),
    _spec("ppo-offline", "binary", True,
          {"clip_epsilon": _number(0.2, "PPO's ratio clip", 0, 1, low_open=True, high_open=True),
           "gamma": _number(0.99, "discount", 0, 1),
           "lam": _number(0.95, "GAE's lambda", 0, 1),
           "value_coef": _non_negative(0.01, "weight of the critic loss"),
           "beta": _non_negative(0.1, "weight of the per-token KL to the reference"),
           "entropy_coef": _non_negative(0.0, "weight of the entropy bonus")},
          "Schulman et al. 2017 (PPO), arXiv 1707.06347; offline, as in " + KTO_PAPER,
          "clipped PPO on fixed data against the static reference, +-1 terminal reward", "ppo:ppo_offline",
          needs=("labels",), extra_inputs=("token_logps", "token_ref_logps", "token_mask", "values")),
    # --- RPO: contrasts across prompts in the batch ---
    _spec("rpo", "pair", True, _RPO, RPO_PAPER,
          "every chosen vs every rejected in the batch, weighted by prompt similarity", "rpo:rpo",
          extra_inputs=("prompt_embeddings",)),
    _spec("rpo-unpaired", "binary", True, _RPO, RPO_PAPER,
          "desirable set x undesirable set, weighted by prompt similarity", "rpo:rpo_unpaired",
          needs=("labels",), extra_inputs=("prompt_embeddings",)),
    _spec("rpo-diagonal", "pair", True,
          {**BETA, "alpha": _number(0.8, "weight of the own pair against the other contrasts", 0, 1)},
          RPO_PAPER,
          "alpha on the own pair's loss, 1 - alpha on the mean of the other contrasts",
          "rpo:rpo_diagonal"),
    # --- MPPO: reference-free, reward = average likelihood pbar ---
    _spec("mppo-point-ce", "list", False, _SCORE_MAX, MPPO_PAPER,
          "cross-entropy of pbar against score/score_max", "mppo:point_ce", needs=("scores",)),
    _spec("mppo-point-mse", "list", False, _SCORE_MAX, MPPO_PAPER,
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
    # --- online: the policy samples, a reward source scores, these losses update ---
    _spec("grpo", ONLINE, True, _GRPO, GRPO_PAPER,
          "group-relative advantages over each prompt's samples, clipped ratio, k3 KL",
          "online:clipped_policy_loss"),
    _spec("rloo", ONLINE, True, _RLOO, RLOO_PAPER,
          "REINFORCE, leave-one-out baseline, KL-shaped reward, clipped sequence ratio",
          "online:rloo_loss"),
    _spec("online-dpo", ONLINE, True, BETA,
          "Guo et al. 2024 (online AI feedback), arXiv 2402.04792; DPO: Rafailov et al. 2023",
          "DPO on each prompt's best-vs-worst fresh samples, generated every batch",
          "dpo_family:dpo"),
    _spec("ppo", ONLINE, True, _PPO, PPO_RLHF_PAPER,
          "value head, GAE on KL-shaped token rewards, clipped policy and value losses",
          "online:ppo_loss"),
]  # fmt: skip

_METHODS: dict[str, MethodSpec] = {}
METHODS: Mapping[str, MethodSpec] = MappingProxyType(_METHODS)
_INTRODUCED: dict[str, tuple[str, ...]] = {}  # method -> the inputs registered with it


def register_method(spec: MethodSpec, inputs: Mapping[str, ExtraInput] | None = None) -> None:
    """Add a method, with the extra inputs it introduces (each computed in training by the
    provider it names, see `preftune.train.providers`). Raises ValueError for a name already
    taken or an extra input nobody declares. `unregister_method` undoes it.
    """
    inputs = dict(inputs or {})
    taken = sorted(({spec.name} & set(_METHODS)) | (set(inputs) & set(_INPUTS)))
    if taken:
        raise ValueError(f"already registered: {', '.join(taken)}")
    unknown = sorted(set(spec.extra_inputs) - set(_INPUTS) - set(inputs))
    if unknown:
        raise ValueError(f"method '{spec.name}': undeclared extra inputs {', '.join(unknown)}")
    _INPUTS.update(inputs)
    _LAYOUT_OF.update({name: declaration.layout for name, declaration in inputs.items()})
    _METHODS[spec.name] = spec
    _INTRODUCED[spec.name] = tuple(inputs)


def unregister_method(name: str) -> None:
    """Remove a method added by `register_method`, and the inputs it introduced."""
    del _METHODS[name]
    for introduced in _INTRODUCED.pop(name):
        del _INPUTS[introduced], _LAYOUT_OF[introduced]


for _method in _SPECS:
    register_method(_method)
