"""Input providers: what computes each extra loss input in training (see `base`).

Built-in providers, by the name `preftune.losses.registry.EXTRA_INPUTS` refers to them:
mismatched_pairs (KTO), reward_mean (BCO), prompt_embeddings (RPO), group_fields (ODPO's
margins, TODO's ties), token_logps and critic_values (offline PPO), log_collision (WPO).
A new one is a subclass of `InputProvider` decorated with `register_provider`.
"""

from preftune.train.providers import (  # noqa: F401  (registers the built-in providers)
    critic_values,
    group_fields,
    mismatched_pairs,
    prompt_embeddings,
    reward_mean,
    token_statistics,
)
from preftune.train.providers.base import (
    PROVIDERS,
    InputProvider,
    MicroBatch,
    RunData,
    provider_classes,
    register_provider,
)

__all__ = [
    "PROVIDERS",
    "InputProvider",
    "MicroBatch",
    "RunData",
    "provider_classes",
    "register_provider",
]
