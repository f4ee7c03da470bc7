"""The built-in offline study: controlled sentiment generation on SmolLM2-135M-Instruct.

The DPO paper's first experiment (Rafailov et al. 2023, section 6.1), scaled to two CPU cores:
on-policy data (4 samples per training prompt at temperature 1, scored by VADER into scored
lists, so pair, binary and list methods all learn from the same information), then every
method from the same start, then greedy answers on held-out prompts judged by the gold reward
against the starting model's answers. The sizes and the learning rate are the offline study's
own (see the README, "The built-in study"); real, config-driven studies keep the settings of
the HH/TL;DR comparison study (batch 64, lr 5e-7, RMSprop, beta 0.1).
"""

from __future__ import annotations

from preftune.experiments.config import StudyConfig, study_from_dict

# The pair methods of the HH/TL;DR comparison study (DPO, IPO, SLiC) and KTO, and the MPPO
# paper's strongest (SimPO, Pair-MNM). KTO trains on the binary view of the same best and worst
# samples the pair methods use (one desirable and one undesirable single per prompt, as that
# study turns pairs into binary data); an earlier run that gave it all 4 samples as singles
# (3 undesirable to 1 desirable) collapsed. KTO-tanh, ORPO and every other method run from a
# config: `preftune compare --print-config > study.yaml`, add them, `preftune compare --config
# study.yaml`.
DEFAULT_METHODS = ["dpo", "ipo", "slic", "kto", "simpo", "mppo-pair-mnm"]
QUICK_METHODS = ["dpo", "simpo", "mppo-pair-mnm"]
# Orderings the papers report, checked by the report against the ranking: SimPO over DPO
# (Meng et al. 2024) and MPPO Pair-MNM over DPO (the MPPO paper's strongest variant).
CLAIMS = ["simpo > dpo", "mppo-pair-mnm > dpo"]

# Shared by every run: only the top 10 of SmolLM2's 30 layers train (about 2x faster a step on
# CPU than a full fine-tune), AdamW at lr 1e-4 with clipping, batches of 8 prompt groups; pair
# methods take the best against the worst of each prompt's 4 samples.
OFFLINE_TRAINING = {
    "data": {"pairs": "top-vs-worst"},
    "optimizer": "adamw",
    "lr": 1e-4,
    "batch_size": 8,
    "epochs": 1,
    "max_grad_norm": 1.0,
    "trainable_layers": 10,
    "max_prompt_length": 64,
    "max_length": 128,
}


# Prompts per split: training, test (held out, ranked on) and dev (the start model's samples
# on them, ordered by the gold reward, are the held-out pairs of the preference accuracy;
# disjoint from the test prompts), and "kl": test prompts each method answers once more at
# temperature 1 for its KL from the start. With these sizes the full study takes about 10 min
# on 2 idle cores (README, "The built-in study", with every stage's time); trim "kl" and
# "dev" first when a run must be shorter.
SIZES = {"train": 150, "test": 100, "dev": 24, "kl": 25}
# Rows per sampling batch: generate's decode loop shares each prompt's prefill among its 4
# samples and drops finished rows, and on CPU a decode step of 128 rows costs about 0.6 s/128
# per row against 0.25 s/32 for 32 rows (1.7x less per sample; bench/RESULTS.md, "Sampling"),
# so on-policy sampling runs 32 prompts x 4 a batch and the evaluation answers all 100 test
# prompts in one batch.
SAMPLING_BATCH = {"on_policy": 128, "evaluation": 100}
QUICK_SIZES = {"train": 64, "test": 32, "dev": 16, "kl": 16}


def builtin_study(quick: bool = False) -> StudyConfig:
    """The default study (`preftune compare`), or its 3-method smoke version (`--quick`)."""
    sizes = QUICK_SIZES if quick else SIZES
    methods = QUICK_METHODS if quick else DEFAULT_METHODS
    return study_from_dict(
        {
            "name": "sentiment-quick" if quick else "sentiment",
            "model": "smollm2-135m-instruct",
            "seed": 0,
            "sft": None,
            "data": {
                "train": {"task": "sentiment", "limit": sizes["train"]},
                "heldout": {"task": "sentiment", "limit": sizes["test"]},
                "dev": {"task": "sentiment", "split": "dev", "limit": sizes["dev"]},
                "on_policy": {
                    "samples_per_prompt": 4,
                    "max_new_tokens": 40,
                    "batch_size": SAMPLING_BATCH["on_policy"],
                },
            },
            "train": OFFLINE_TRAINING,
            "methods": [{"method": name} for name in methods],
            "claims": CLAIMS,
            "evaluation": {
                "num_prompts": sizes["test"],
                "max_new_tokens": 40,
                "batch_size": SAMPLING_BATCH["evaluation"],
                "preference_prompts": sizes["dev"],
                "kl_samples": sizes["kl"],
                "evaluations": [
                    {"name": "sentiment", "judge": {"type": "gold"}, "baseline": "start"}
                ],
            },
        },
        source="built-in study",
    )
