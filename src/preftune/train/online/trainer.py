"""`OnlineTrainer`: one optimizer step = sample, score, then `num_iterations` updates.

Each step: the prompts of the step (a seeded shuffle per epoch, `StepOrder`) are sampled
`samples_per_prompt` times from the current policy (rollout.py), scored by the reward source,
scored again by the reference (and, when the method needs them, by the sampling policy) under
no_grad, turned into advantages once, and trained on `num_iterations` times (objectives.py),
in micro-batches of `micro_batch_size` prompt groups. The scheduler counts updates.

It offers what the offline loop drives (`step`, `modules`, `policy`, `optimizer`,
`scheduler`, `state_dict`, `final_writers`), so the run folder, checkpoints, resume, metrics and
final save are the offline run's (train/loop.py).

Several processes (DDP): each samples its share of the step's prompts (whole groups, from its
own RNG stream: `ProcessRNG`), the rollouts are shared, the main process scores them all (its
reward cache is the only writer), and the update's global micro-batches are split between the
processes as in offline training (`preftune.train.batching`); the log-probs the advantages
read are gathered, so advantages, KL statistics and the adaptive KL coefficient are the whole
batch's, and each process's loss is weighed by its share of the global batch.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from preftune.config import TrainConfig
from preftune.data.batch import collate
from preftune.errors import TrainingError
from preftune.judges.base import JudgeError
from preftune.losses import METHODS
from preftune.models.policy import PolicyForward
from preftune.models.value_head import ValueHead
from preftune.train.backend import configure_backend
from preftune.train.batching import micro_batches
from preftune.train.metrics import weighted_mean
from preftune.train.online.heads import value_head_writer
from preftune.train.online.objectives import OBJECTIVES, MicroBatch, flat, token_kl
from preftune.train.online.rollout import ProcessRNG, Rollout, Sampler
from preftune.train.optim import build_optimizer, build_scheduler
from preftune.train.processes import all_processes, gather_rows, main_outcome
from preftune.train.setup import build_policy, build_reference

REWARD_TRIES = 3  # a reward source that raises JudgeError is asked this many times
RETRY_WAIT_S = 2.0


@dataclass
class Budget:
    """What the run consumed (summary.json's "budget"): prompts sampled, samples and tokens
    generated, reward evaluations asked for (cache hits included, so a resumed run reports the
    same budget as an uninterrupted one)."""

    prompts: int = 0
    samples: int = 0
    tokens: int = 0
    reward_calls: int = 0


class OnlineTrainer:
    def __init__(
        self,
        config: TrainConfig,
        accelerator,
        prompts: list[dict],
        tokenizer,
        reward,
        *,
        total_steps: int,
    ):
        from accelerate.utils import set_seed

        online = config.online
        self.objective = OBJECTIVES[config.method](
            config.hparams, online.num_iterations, online.max_new_tokens
        )
        layout = configure_backend(
            accelerator, config, reads_hidden_states=self.objective.value_head
        )
        set_seed(config.seed)
        model = build_policy(config)
        model.to(accelerator.device)
        self.pad_token_id = tokenizer.pad_token_id
        spec = METHODS[config.method]
        uses_reference = spec.needs_reference and self.objective.uses_reference
        self.reference = (
            build_reference(config, model, [], self.pad_token_id) if uses_reference else None
        )
        heads = {"value": ValueHead(model.config.hidden_size)} if self.objective.value_head else {}
        for head in heads.values():
            head.to(accelerator.device)
        self.modules = {"model": model, **heads}
        parameters = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        optimizer = build_optimizer(parameters, config)
        self.scheduler = build_scheduler(optimizer, config, total_steps * online.num_iterations)
        self.policy, self.optimizer = accelerator.prepare(
            PolicyForward(model, heads, layout), optimizer
        )
        self.parameters = parameters
        self.config, self.accelerator = config, accelerator
        self.prompts, self.reward = prompts, reward
        self.sampler = Sampler(tokenizer, model, online, max_prompt_length=config.max_prompt_length)
        self.groups_per_forward = config.micro_batch_size or online.prompts_per_step
        self.budget = Budget()
        self.rng = None  # one process: torch's global RNG, which checkpoints keep
        if accelerator.num_processes > 1:
            self.rng = ProcessRNG(config.seed, accelerator.process_index, accelerator.device)

    def state_dict(self) -> dict:
        state = {"budget": asdict(self.budget), "objective": self.objective.state_dict()}
        if self.rng is not None:  # every process's, in process order
            state["sampling"] = all_processes(self.rng.saved())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.budget = Budget(**state.get("budget", {}))
        self.objective.load_state_dict(state.get("objective", {}))
        if self.rng is not None:
            self.rng.restore(state.get("sampling", []))

    def final_writers(self) -> list:
        """What final/ holds besides the model: PPO's value head (`heads.py`)."""
        return [value_head_writer(self.modules["value"])] if "value" in self.modules else []

    def step(self, step: int, indices: list[int]) -> tuple[dict[str, float], int]:
        """Sample (this process: its share of `indices`), score and update on the prompts
        `indices`; returns the step's metrics and the tokens the updates processed."""
        started = time.perf_counter()
        rollout, generation_s = self._sample(indices)
        rows = [self.prompts[i] for i in indices]
        rewards = self._score(step, rows, rollout)
        groups, kept_rewards = self.objective.select(rollout.groups, rewards)
        metrics = self._update(step, groups, kept_rewards) if groups else self._skip()
        seconds = time.perf_counter() - started
        tokens = collate(groups).num_tokens() * self.config.online.num_iterations if groups else 0
        return {
            **metrics,
            **_reward_metrics(rewards),
            "trained_groups": len(groups),
            "response_length": rollout.num_tokens / rollout.num_samples,
            "truncated_share": rollout.truncated / rollout.num_samples,
            "samples_per_second": rollout.num_samples / max(generation_s, 1e-9),
            "generation_share": generation_s / max(seconds, 1e-9),
        }, tokens

    def _sample(self, indices: list[int]) -> tuple[Rollout, float]:
        """The step's rollout (every process's share, in order) and the longest time a process
        took to sample its share."""
        accelerator, started = self.accelerator, time.perf_counter()
        share = micro_batches(indices, len(indices), accelerator.process_index, self.processes)
        rows = [self.prompts[i] for i in share[0][0]]
        with nullcontext() if self.rng is None else self.rng.active():
            rollout = self.sampler(self.modules["model"], rows)
        seconds = time.perf_counter() - started
        if self.processes == 1:
            return rollout, seconds
        shares = all_processes((rollout, seconds))
        joined = Rollout(
            [group for part, _ in shares for group in part.groups],
            [texts for part, _ in shares for texts in part.texts],
            sum(part.truncated for part, _ in shares),
        )
        return joined, max(took for _, took in shares)

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    def _score(self, step: int, rows: list[dict], rollout: Rollout) -> torch.Tensor:
        """The rewards [P, G], scored by the main process (the only one with the reward
        source) and shared with the budget; a reward source that keeps failing stops the run."""

        def score() -> tuple[list, int]:
            sizes = [len(texts) for texts in rollout.texts]
            attempt = 1
            while True:
                try:
                    scores = self.reward.group_scores(rows, rollout.texts)
                    return scores, self.reward.requests_for(sizes)
                except JudgeError as error:
                    if attempt == REWARD_TRIES:
                        raise TrainingError(
                            f"the reward source failed at step {step + 1} ({REWARD_TRIES} "
                            f"tries): {error}"
                        ) from None
                    time.sleep(RETRY_WAIT_S * attempt)
                    attempt += 1

        scores, reward_calls = main_outcome(self.accelerator.is_main_process, score)
        budget = self.budget
        budget.prompts += len(rollout.groups)
        budget.samples += rollout.num_samples
        budget.tokens += rollout.num_tokens
        budget.reward_calls += reward_calls
        return torch.tensor(scores, dtype=torch.float32)

    def _micro_batches(self, groups) -> list[MicroBatch]:
        """This process's part of each global micro-batch of `groups_per_forward` groups per
        process, with the log-probs that stay fixed over its updates, computed once under
        no_grad. `rows` are the part's rows of the whole (global) batch. A process with no
        group in a micro-batch (fewer groups than processes) runs the first group with weight
        0, so every process runs the same forward and backward passes."""
        objective, accelerator = self.objective, self.accelerator
        width = len(groups[0].response_ids)  # responses per group: the same for every group
        plan = micro_batches(
            list(range(len(groups))),
            self.groups_per_forward,
            accelerator.process_index,
            self.processes,
        )
        micros = []
        with torch.no_grad():
            for chunk, _ in plan:
                stand_in = not chunk
                picked = chunk or [0]
                batch = collate([groups[i] for i in picked])
                rows = slice(picked[0] * width, (picked[-1] + 1) * width)
                mask = _token_mask(batch).to(accelerator.device)
                micro = MicroBatch(batch, rows, mask, stand_in=stand_in)
                if self.reference is not None:
                    out = self.reference(batch, per_token=objective.per_token)
                    micro.ref = flat(out.token_logps) if objective.per_token else out.logps
                if objective.needs_old:
                    out, heads = self.policy(batch, per_token=True, pad_token_id=self.pad_token_id)
                    micro.old = flat(out.token_logps)
                    if "value" in heads:
                        micro.old_values = flat(heads["value"])
                micros.append(micro)
        return micros

    def _update(self, step: int, groups, rewards: torch.Tensor) -> dict[str, float]:
        """Advantages once (over the whole batch), then `num_iterations` optimizer updates on
        it. Each process's micro-batch loss is weighed by its share of the global batch, times
        the process count, since DDP averages the processes' gradients."""
        objective, accelerator = self.objective, self.accelerator
        micros = self._micro_batches(groups)
        joined = _joined(micros) if objective.per_token else (None,) * 4
        advantages = objective.advantages(rewards.to(accelerator.device), *joined)
        own_tokens = sum(int(micro.mask.sum()) for micro in micros if not micro.stand_in)
        total_tokens = sum(all_processes(own_tokens))
        parts, losses, metrics = [], [], {}
        for _ in range(self.config.online.num_iterations):
            batch_loss = 0.0
            self.policy.train()
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.zero_grad(set_to_none=True)
            for k, micro in enumerate(micros):
                syncing = k == len(micros) - 1
                with nullcontext() if syncing else accelerator.no_sync(self.policy):
                    out, heads = self.policy(
                        micro.batch, per_token=objective.per_token, pad_token_id=self.pad_token_id
                    )
                    loss, loss_metrics = objective.loss(out, heads, micro, advantages, total_tokens)
                    if "kl" not in loss_metrics and objective.per_token and micro.ref is not None:
                        loss_metrics["kl"] = token_kl(out, micro)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss became {loss.item()} at step {step + 1} (prompt ids: "
                            f"{micro.batch.ids})"
                        )
                    weight = 0.0
                    if not micro.stand_in:
                        weight = objective.weight(micro, len(groups), total_tokens)
                    accelerator.backward(loss * (weight * self.processes))
                if not micro.stand_in:
                    batch_loss += loss.item() * weight
                    parts.append((micro.batch.num_groups, loss_metrics))
            losses.append(sum(all_processes(batch_loss)))
            metrics = self._optimizer_step(step)
        loss = sum(losses) / len(losses)  # the batch's loss, averaged over its updates
        parts = [part for shared in all_processes(parts) for part in shared]
        return {**weighted_mean(parts), "loss": loss, "lr": lr, **metrics}

    def _skip(self) -> dict[str, float]:
        """A batch with nothing to train on (online DPO, every group tied): no update, but the
        schedule moves on as if there had been, so it ends where it was planned to."""
        lr = self.scheduler.get_last_lr()[0]
        with warnings.catch_warnings():  # torch warns of a schedule stepped before any update
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for _ in range(self.config.online.num_iterations):
                self.scheduler.step()
        return {"lr": lr}

    def _optimizer_step(self, step: int) -> dict[str, float]:
        max_norm = self.config.max_grad_norm or math.inf
        norm = self.accelerator.clip_grad_norm_(self.parameters, max_norm)
        grad_norm = math.nan if norm is None else float(norm)
        if norm is not None and not math.isfinite(grad_norm):
            raise TrainingError(f"gradient norm became {grad_norm} at step {step + 1}")
        self.optimizer.step()
        self.scheduler.step()
        return {} if norm is None else {"grad_norm": grad_norm}


def _token_mask(batch) -> torch.Tensor:
    """[G * R, L] True on each response's tokens, L its longest (the engine's layout)."""
    lengths = torch.tensor([len(r) for responses in batch.response_ids for r in responses])
    return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]


def _joined(micros: list[MicroBatch]) -> tuple:
    """The whole batch's (old, ref, mask, old_values) token tensors [N, L], from every
    process's micro-batches (gathered: global micro-batch by micro-batch, each in process order,
    which is the batch's group order), padded to the longest response (None where the
    micro-batches have none), for advantages that look at the whole batch."""
    names = ("old", "ref", "mask", "old_values")
    shared = []
    for micro in micros:
        local = {name: getattr(micro, name) for name in names}
        rows = local["mask"].shape[0]
        if micro.stand_in:  # no rows of its own
            local = {name: None if value is None else value[:0] for name, value in local.items()}
            rows = 0
        shared.append(gather_rows(local, rows=rows))
    longest = max(part["mask"].shape[1] for part in shared)

    def join(name: str):
        parts = [part[name] for part in shared]
        if any(part is None for part in parts):
            return None
        padded = [part.new_zeros(part.shape[0], longest) for part in parts]
        for target, part in zip(padded, parts, strict=True):
            target[:, : part.shape[1]] = part
        return torch.cat(padded)

    return tuple(join(name) for name in names)


def _reward_metrics(rewards: torch.Tensor) -> dict[str, float]:
    flat_rewards = rewards.reshape(-1).double()
    std = float(flat_rewards.std()) if flat_rewards.numel() > 1 else 0.0
    return {"reward_mean": float(flat_rewards.mean()), "reward_std": std}
