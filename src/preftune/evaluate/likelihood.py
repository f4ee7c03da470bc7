"""Evaluations from log-probs rather than a judge (log-probs from `models.engine`).

- Ranking accuracy on held-out preference pairs: does the policy give the chosen response the
  higher likelihood, and the higher implicit reward β·(s − s_ref)? Chen et al. 2024,
  "Preference learning algorithms do not learn preference rankings", show these can stay near
  chance while win rates improve.
- KL from the reference on the policy's own samples: the mean of s_policy(y) − s_ref(y) over
  y ~ policy, a Monte-Carlo estimate of KL(π ‖ π_ref) when the samples come from plain
  sampling (temperature 1, no top-k / top-p); for other samples it is the mean log-ratio.
  Its 95% interval is a percentile bootstrap over prompts (`evaluate.stats.bootstrap_ci`):
  one sampled answer per prompt makes the estimate noisy, and the interval says how much.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from tqdm.auto import tqdm

from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import MethodDataError
from preftune.evaluate.stats import bootstrap_ci
from preftune.generate.prompts import render_prompt
from preftune.models.engine import resolve_layout, sequence_logps
from preftune.models.trunk import TrunkStates


def summed_logps(
    model,
    groups: list[TokenizedGroup],
    *,
    batch_size: int = 8,
    pad_token_id=0,
    trunk: TrunkStates | None = None,
    keep_states: TrunkStates | None = None,
):
    """[G, R] summed response log-probs and token counts of `groups` under `model`.

    `trunk`: `model` runs only its layers above `trunk.depth`, on the states kept there
    (those missing are computed with its own bottom layers), which must be `model`'s own
    (`preftune.models.trunk.shared_depth`); `keep_states`: the pass keeps its layer states
    there for such a model. Scored in the same batches, both give the numbers of the full pass
    bit for bit (the top layers see the same inputs).
    """
    logps, lengths = [], []
    layout = resolve_layout(model, "auto")
    with torch.no_grad():
        for start in tqdm(range(0, len(groups), batch_size), desc="log-probs", unit="batch"):
            batch = collate(groups[start : start + batch_size])
            keeping = keep_states.capturing(model, batch, layout) if keep_states else nullcontext()
            with keeping:
                out = sequence_logps(model, batch, pad_token_id=pad_token_id, trunk=trunk)
            logps.append(out.logps.double().cpu())
            lengths.append(out.lengths.cpu())
    return torch.cat(logps), torch.cat(lengths)


def usable_pairs(pairs: list[TokenizedGroup]) -> list[TokenizedGroup]:
    """The [chosen, rejected] pairs that are not ties: what `ranking_accuracy` scores."""
    usable = [g for g in pairs if len(g.response_ids) == 2 and not g.tie]
    if not usable:
        raise MethodDataError("ranking accuracy needs [chosen, rejected] pairs that are not ties")
    return usable


def ranking_accuracy(
    policy,
    pairs: list[TokenizedGroup],
    *,
    reference=None,
    reference_logps: torch.Tensor | None = None,
    beta: float = 0.1,
    batch_size: int = 8,
    pad_token_id: int = 0,
    trunk: TrunkStates | None = None,
) -> dict:
    """Shares of held-out pairs ([chosen, rejected], ties left out) the policy ranks right.

    `likelihood_accuracy`: s(chosen) > s(rejected); `mean_likelihood_accuracy` the same with
    per-token means; with a reference, `reward_accuracy`: β(s − s_ref) higher for chosen, and
    `reference_likelihood_accuracy` for comparison. `reference_logps` is the reference's
    `summed_logps` of `usable_pairs(pairs)` when already computed (several policies compared
    with one reference score it once). `trunk`: the policy's bottom-layer states of the pairs,
    shared with the reference that kept them (`summed_logps`).
    """
    usable = usable_pairs(pairs)
    options = {"batch_size": batch_size, "pad_token_id": pad_token_id}
    logps, lengths = summed_logps(policy, usable, **options, trunk=trunk)
    per_token = logps / lengths.clamp(min=1)
    results = {
        "n": len(usable),
        "ties_skipped": sum(g.tie for g in pairs),
        "likelihood_accuracy": float((logps[:, 0] > logps[:, 1]).double().mean()),
        "mean_likelihood_accuracy": float((per_token[:, 0] > per_token[:, 1]).double().mean()),
    }
    if reference_logps is None and reference is not None:
        reference_logps, _ = summed_logps(reference, usable, **options)
    if reference_logps is not None:
        rewards = beta * (logps - reference_logps)
        results["reward_accuracy"] = float((rewards[:, 0] > rewards[:, 1]).double().mean())
        results["reward_margin"] = float((rewards[:, 0] - rewards[:, 1]).mean())
        results["reference_likelihood_accuracy"] = float(
            (reference_logps[:, 0] > reference_logps[:, 1]).double().mean()
        )
    return results


def _sample_groups(tokenizer, samples: list[dict]) -> list[TokenizedGroup]:
    groups = []
    for row in samples:
        if "response_token_ids" not in row:
            raise MethodDataError(
                f"sample '{row.get('id')}' has no response_token_ids; KL needs samples written "
                "by preftune generate"
            )
        chat = row.get("generation_config", {}).get("chat_template", True)
        prompt_ids = render_prompt(tokenizer, row["prompt"], chat_template=chat)
        groups.append(
            TokenizedGroup(str(row["id"]), prompt_ids, [row["response_token_ids"]], [None], [None])
        )
    return groups


def kl_from_reference(
    policy, reference, tokenizer, samples: list[dict], *, batch_size: int = 8, seed: int = 0
) -> dict:
    """Mean s_policy − s_ref over the policy's own samples (rows from `generate`), with a 95%
    bootstrap interval over prompts (`kl_ci_low`, `kl_ci_high`).

    The policy side reuses the `logp` each sample carries (its log-prob under the model that
    generated it, which must be `policy`) and is computed only when a row lacks it; `policy`
    may be None when every row carries its logp.
    """
    groups = _sample_groups(tokenizer, samples)
    pad = tokenizer.pad_token_id or 0
    ref_logps, lengths = summed_logps(reference, groups, batch_size=batch_size, pad_token_id=pad)
    if all("logp" in row for row in samples):
        policy_logps = torch.tensor([row["logp"] for row in samples], dtype=torch.float64)
    elif policy is None:
        raise MethodDataError("samples without a logp field need the policy model to score them")
    else:
        policy_logps = summed_logps(policy, groups, batch_size=batch_size, pad_token_id=pad)[0]
        policy_logps = policy_logps[:, 0]
    log_ratio = policy_logps - ref_logps[:, 0]
    configs = [row.get("generation_config", {}) for row in samples]
    plain = all(
        c.get("temperature") == 1.0 and c.get("top_k", 0) == 0 and c.get("top_p", 1.0) == 1.0
        for c in configs
    )
    low, high = bootstrap_ci(log_ratio.tolist(), [str(row["id"]) for row in samples], seed=seed)
    return {
        "kl": float(log_ratio.mean()),
        "kl_ci_low": low,
        "kl_ci_high": high,
        "kl_per_token": float(log_ratio.sum() / lengths.sum().clamp(min=1)),
        "n": len(samples),
        "mean_length": float(lengths.double().mean()),
        "plain_sampling": plain,
    }
