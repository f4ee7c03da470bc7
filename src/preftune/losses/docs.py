"""docs/methods.md, generated from the registry's declarations and each loss's docstring.

`preftune methods --markdown` prints it; `python -m preftune.losses.docs` rewrites
docs/methods.md (`--check` exits 1 when the file is out of date). A test compares the file
with `render()`, so the reference can never drift from the code.

>>> "### `dpo`" in render()
True
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path

from preftune.io import atomic_write_text
from preftune.losses.dispatch import _function, _wpo_weights
from preftune.losses.registry import METHODS, PAIR_MODIFIERS, WPO_PAPER, Hparam, MethodSpec

DOC_PATH = Path(__file__).resolve().parents[3] / "docs" / "methods.md"  # in a checkout

VIEW_TITLES = {
    "chosen": "Supervised fine-tuning (the `chosen` view: each group's preferred response)",
    "pair": "Pairwise methods (the `pair` view: a chosen and a rejected response per prompt)",
    "binary": "Binary feedback (the `binary` view: single responses labelled desirable or not)",
    "list": "List methods (the `list` view: every scored response of a prompt, best first)",
    "online": "Online methods (the `online` view: the policy's own samples, scored as it trains)",
}
VIEW_DATA = {
    "chosen": "one preferred response per prompt (any format; the best scored one of a list)",
    "pair": "a chosen and a rejected response per prompt (paired data, or pairs drawn from "
    "scored lists by `data.pairs`)",
    "binary": "single responses with a desirable / undesirable label (binary data, or each "
    "side of a pair: chosen desirable, rejected undesirable)",
    "list": "two or more scored responses per prompt (scored data)",
    "online": "prompts only: the policy samples its responses during training and the run's "
    "`reward:` source scores them",
}
# What an online method computes once per generation batch, before its loss.
ONLINE_STEPS = {
    "grpo": ("online:group_advantages",),
    "rloo": ("online:rloo_advantages",),
    "ppo": ("online:ppo_advantages", "online:value_loss", "online:AdaptiveKLController"),
}
EXTRA_DATA = {
    "kl_policy_logps": "mismatched pairs for the KL reference point (built by the trainer)",
    "kl_ref_logps": "mismatched pairs for the KL reference point (built by the trainer)",
    "reward_mean": "the running mean reward (kept by the trainer)",
    "prompt_embeddings": "prompt embeddings from a sentence embedder (`prompt_embedder`)",
    "margins": "a per-pair `margin` column in the data",
    "ties": "a per-pair `tie` column in the data",
    "token_logps": "per-token log-probs and a value head (computed by the trainer)",
    "token_ref_logps": "per-token log-probs and a value head (computed by the trainer)",
    "token_mask": "per-token log-probs and a value head (computed by the trainer)",
    "values": "per-token log-probs and a value head (computed by the trainer)",
}

HEADER = """# Methods

Every method preftune trains with: its loss, the paper it comes from, its hyperparameters
(defaults and the values accepted) and the data it needs. This file is generated from the
registry (`src/preftune/losses/registry.py`) and each loss function's docstring by
`preftune methods --markdown`; regenerate it with `python -m preftune.losses.docs` (a test
fails when it is out of date).

A hyperparameter outside its accepted values stops `compute`, `preftune train` and
`preftune compare` with exit code 2 and one line naming the method, the hyperparameter and
what it accepts. In a training config, `hparams.NAME=null` on the command line removes a
setting (the method's default applies again).

## Notation

For a prompt x and a response y with l(y) tokens: s = s(y), the summed token log-prob under
the policy; s_ref the same under the reference model; rho = s - s_ref, the log-ratio;
Delta = rho(y_w) - rho(y_l) for a chosen y_w and a rejected y_l; r = beta * rho, the implicit
reward; pbar = exp(s / l), the average likelihood (geometric mean of the token probabilities,
in (0, 1]); s( ) in formulas is the logistic sigmoid. Formulas are written in plain text.
"""

DEVIATIONS = """## Where preftune departs from TRL or from the formula as printed

- `ipo` sums the token log-ratios in Delta, as the IPO paper writes its loss; TRL's `ipo`
  averages them over the response tokens. `length_normalize: true` gives TRL's form.
- `weighting: wpo` uses the paper's aligned weight (each token's probability divided by
  sum_v p(v)^2 at its position), as TRL's `use_weighting` does; `wpo_alignment: false` gives
  the cruder sequence-level exp(s / l).
- `mppo-point-mse` is (t - pbar)^2: the MPPO paper prints a minus sign, a typo.
- `discopop` computes its exponential term in log space, so large negative margins give a
  finite loss and gradient in float32 (written directly it returns NaN below beta Delta = -88.7).
- `rloo` penalises the sampled sequence's summed log-ratio log pi_old - log pi_ref (the k1
  estimate, as TRL 1.16), while `grpo` adds the k3 estimate to each token's loss, as TRL does.
- `ppo` puts the score on the last valid token; TRL's former PPOTrainer put it one position
  further when the response ended before its length limit.
- `orpo` computes log(1 - pbar) exactly (log1mexp) instead of clamping pbar, so its gradient
  stays finite and non-zero as pbar nears 1.
"""


def _value(value) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _hparam_table(hparams: dict[str, Hparam]) -> list[str]:
    if not hparams:
        return ["No hyperparameters."]
    rows = ["| hyperparameter | default | accepts | meaning |", "|---|---|---|---|"]
    rows += [
        f"| `{name}` | {_value(h.default)} | {h.allowed()} | {h.doc} |"
        for name, h in hparams.items()
    ]
    return rows


def _data(spec: MethodSpec) -> str:
    parts = [VIEW_DATA[spec.view]]
    parts += [f"needs {field}" for field in spec.needs]
    required = [name for name in spec.extra_inputs if name not in spec.optional_inputs]
    optional = [name for name in spec.extra_inputs if name in spec.optional_inputs]
    parts += sorted({EXTRA_DATA[name] for name in required})
    parts += [f"optionally {EXTRA_DATA[name]}" for name in optional]
    return "; ".join(parts)


def _docstring(function) -> list[str]:
    return ["```text", inspect.getdoc(function), "```"]


def _method(spec: MethodSpec) -> list[str]:
    if spec.is_online:
        how = "- Trains through `preftune train` with an `online:` block, not `compute`"
    else:
        how = f"- Extra inputs to `compute`: {', '.join(spec.extra_inputs) or 'none'}"
    steps = [_function(step) for step in ONLINE_STEPS.get(spec.name, ())]
    lines = [
        f"### `{spec.name}`",
        "",
        f"{spec.description}. Paper: {spec.paper}.",
        "",
        f"- Reference model: {'yes' if spec.needs_reference else 'no'}",
        f"- Data: {_data(spec)}",
        how,
        "",
    ]
    for function in [*steps, _function(spec.function)]:
        lines += [*_docstring(function), ""]
    return lines + [*_hparam_table(dict(spec.hparams)), ""]


def _summary(specs: list[MethodSpec]) -> list[str]:
    rows = ["| method | view | reference | defaults | paper |", "|---|---|---|---|---|"]
    for spec in specs:
        defaults = ", ".join(f"{k}={_value(v)}" for k, v in spec.defaults.items()) or "-"
        reference = "yes" if spec.needs_reference else "no"
        rows.append(f"| `{spec.name}` | {spec.view} | {reference} | {defaults} | {spec.paper} |")
    return rows


def _modifiers() -> list[str]:
    return [
        "## Pairwise modifiers: WPO weighting",
        "",
        f"Every pairwise method takes `weighting: wpo` ({WPO_PAPER}): each pair's loss is",
        "multiplied by a detached weight. The trainer computes the per-token statistic the",
        "aligned weight needs inside the chunked LM head (no extra full-vocabulary logits).",
        "",
        *_docstring(_wpo_weights),
        "",
        *_hparam_table(dict(PAIR_MODIFIERS)),
        "",
    ]


def render(specs: Iterable[MethodSpec] | None = None) -> str:
    """The methods reference as markdown: every method of `specs` (default: all), grouped
    by data view, then the pairwise modifiers and the deliberate departures from TRL."""
    specs = list(METHODS.values() if specs is None else specs)
    lines = [HEADER, "## Summary", "", *_summary(specs), ""]
    for view, title in VIEW_TITLES.items():
        members = [spec for spec in specs if spec.view == view]
        if members:
            lines += [f"## {title}", ""]
            for spec in members:
                lines += _method(spec)
    lines += _modifiers()
    lines.append(DEVIATIONS)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) docs/methods.md.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--path", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is out of date: run python -m preftune.losses.docs")
            return 1
        return 0
    atomic_write_text(args.path, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
