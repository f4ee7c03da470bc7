"""Every alignment method as a pure function of sequence statistics, behind one contract.

    from preftune.losses import compute, METHODS
    loss, metrics = compute("dpo", policy_logps=..., ref_logps=..., lengths=..., mask=..., beta=0.1)

`METHODS` (metadata) imports no torch, so `preftune methods` stays fast; `compute` loads the
loss machinery on first use. Online methods (view "online": grpo, rloo, ppo) learn from the
policy's own samples: their losses are in `preftune.losses.online`, called by the online
training loop, and `compute` refuses them.
"""

from __future__ import annotations

from preftune.losses.registry import METHODS, MethodSpec

__all__ = ["METHODS", "MethodSpec", "compute"]


def __getattr__(name: str):
    if name == "compute":
        from preftune.losses.dispatch import compute

        return compute
    raise AttributeError(f"module 'preftune.losses' has no attribute {name!r}")
