"""`Trainer`: one run's policy, loss inputs, optimizer and schedule, stepped one optimizer step
at a time.

`train` (loop.py) drives it over the run's step order with logging and checkpoints; a benchmark
can step it directly on batches of its choice and time exactly what `train` runs.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from preftune.config import TrainConfig
from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import TrainingError
from preftune.losses import METHODS, compute
from preftune.models.policy import PolicyForward
from preftune.train.backend import configure_backend, is_sharded
from preftune.train.batching import micro_batches
from preftune.train.metrics import weighted_mean
from preftune.train.optim import apply_gradients, build_optimizer, build_scheduler
from preftune.train.processes import all_processes, gather_loss_inputs
from preftune.train.providers import provider_classes
from preftune.train.setup import build_loss_inputs, build_policy


class Trainer:
    """The prepared pieces of a run on `accelerator`, built from `config` and the tokenized
    `groups`; `model` replaces loading `config.model` (a benchmark shares its weights).

    `modules` are the unwrapped trained modules (what checkpoints save: the model and any head
    an input provider trains with it); `policy` is the accelerate-prepared `PolicyForward`
    around them that every forward pass goes through; `inputs` builds the loss's inputs.
    """

    def __init__(
        self,
        config: TrainConfig,
        accelerator,
        groups: list[TokenizedGroup],
        *,
        pad_token_id: int,
        total_steps: int,
        model: torch.nn.Module | None = None,
    ):
        from accelerate.utils import set_seed

        spec = METHODS[config.method]
        reads_hidden_states = any(p.reads_hidden_states for p in provider_classes(spec))
        layout = configure_backend(accelerator, config, reads_hidden_states=reads_hidden_states)
        set_seed(config.seed)
        model = build_policy(config, model=model)
        model.to(accelerator.device)
        self.inputs = build_loss_inputs(config, spec, model, groups, pad_token_id=pad_token_id)
        heads = self.inputs.heads()
        self.modules = {"model": model, **heads}
        for module in heads.values():
            module.to(accelerator.device)
        parameters = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        optimizer = build_optimizer(parameters, config)
        self.scheduler = build_scheduler(optimizer, config, total_steps)
        self.policy, self.optimizer = accelerator.prepare(
            PolicyForward(model, heads, layout, trunk=self.inputs.trunk), optimizer
        )
        if is_sharded(accelerator):  # accelerate clips a sharded model's norm only given all
            parameters = list(self.policy.parameters())
        self.parameters = parameters
        self.config = config
        self.accelerator = accelerator
        self.groups = groups

    def state_dict(self) -> dict:
        """What checkpoints keep besides weights and optimizer: the input providers' state."""
        return self.inputs.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inputs.load_state_dict(state)

    def step(self, step: int, indices: list[int]) -> tuple[dict[str, float], int]:
        """One optimizer step on the groups `indices` (the same list on every process): each
        process runs its part of every global micro-batch with accumulated gradients and the
        loss is the global one (processes.py); then a finite-loss check, clipping, the
        optimizer and the schedule. Returns the step's metrics and its token count.
        """
        config, accelerator = self.config, self.accelerator
        self.policy.train()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        plan = micro_batches(
            indices,
            config.groups_per_forward,
            accelerator.process_index,
            accelerator.num_processes,
        )
        parts, tokens = [], 0
        for k, (chunk, global_size) in enumerate(plan):
            batch = collate([self.groups[i] for i in chunk])
            syncing = k == len(plan) - 1
            with nullcontext() if syncing else accelerator.no_sync(self.policy):
                with accelerator.autocast():
                    kwargs = gather_loss_inputs(self.inputs(self.policy, batch, chunk))
                    loss, metrics = compute(config.method, **kwargs, **config.hparams)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step + 1} (batch ids: {batch.ids})"
                    )
                accelerator.backward(loss * global_size / len(indices))
            self.inputs.observe(metrics, global_size)
            parts.append((global_size, {"loss": loss.item(), **metrics}))
            tokens += batch.num_tokens()
        tokens = sum(all_processes(tokens))
        where = f"step {step + 1} (batch ids: {[self.groups[i].id for i in indices]})"
        norms = apply_gradients(
            accelerator,
            self.parameters,
            self.optimizer,
            self.scheduler,
            config.max_grad_norm,
            where,
        )
        return {**weighted_mean(parts), "lr": lr, **norms}, tokens
