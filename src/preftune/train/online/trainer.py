"""`OnlineTrainer`: one optimizer step = sample, score, then `num_iterations` updates.

Each step: the prompts of the step (a seeded shuffle per epoch, `StepOrder`) are sampled
`samples_per_prompt` times from the current policy (rollout.py), scored by the reward source,
scored again by the reference (and, when the method needs them, by the sampling policy) under
no_grad, turned into advantages once, and trained on `num_iterations` times (objectives.py),
in micro-batches of `micro_batch_size` prompt groups. The scheduler counts updates.

It offers what the offline loop drives (`step`, `modules`, `policy`, `optimizer`,
`scheduler`, `state_dict`), so the run folder, checkpoints, resume, metrics and final save
are the offline run's (train/loop.py).
"""

from __future__ import annotations

import math
import time
import warnings
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
from preftune.train.metrics import weighted_mean
from preftune.train.online.objectives import OBJECTIVES, MicroBatch, flat, token_kl
from preftune.train.online.rollout import Rollout, Sampler
from preftune.train.optim import build_optimizer, build_scheduler
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
        self.reference = (
            build_reference(config, model, [], self.pad_token_id) if spec.needs_reference else None
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

    def state_dict(self) -> dict:
        return {"budget": asdict(self.budget), "objective": self.objective.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.budget = Budget(**state.get("budget", {}))
        self.objective.load_state_dict(state.get("objective", {}))

    def step(self, step: int, indices: list[int]) -> tuple[dict[str, float], int]:
        """Sample, score and update on the prompts `indices`; returns the step's metrics and
        the tokens the updates processed."""
        started = time.perf_counter()
        rows = [self.prompts[i] for i in indices]
        rollout = self.sampler(self.modules["model"], rows)
        generation_s = time.perf_counter() - started
        rewards = self._score(step, rows, rollout)
        self._count(rollout)
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

    def _score(self, step: int, rows: list[dict], rollout: Rollout) -> torch.Tensor:
        """The rewards [P, G]; a reward source that keeps failing stops the run."""
        attempt = 1
        while True:
            try:
                scores = self.reward.group_scores(rows, rollout.texts)
                return torch.tensor(scores, dtype=torch.float32)
            except JudgeError as error:
                if attempt == REWARD_TRIES:
                    raise TrainingError(
                        f"the reward source failed at step {step + 1} ({REWARD_TRIES} tries): "
                        f"{error}"
                    ) from None
                time.sleep(RETRY_WAIT_S * attempt)
                attempt += 1

    def _count(self, rollout: Rollout) -> None:
        budget = self.budget
        budget.prompts += len(rollout.groups)
        budget.samples += rollout.num_samples
        budget.tokens += rollout.num_tokens
        budget.reward_calls += self.reward.requests_for([len(t) for t in rollout.texts])

    def _micro_batches(self, groups) -> list[MicroBatch]:
        """The batch in micro-batches of `groups_per_forward` groups, with the log-probs that
        stay fixed over its updates, computed once under no_grad."""
        objective, size = self.objective, self.groups_per_forward
        micros, row = [], 0
        with torch.no_grad():
            for start in range(0, len(groups), size):
                batch = collate(groups[start : start + size])
                rows = slice(row, row + batch.num_groups * batch.max_responses)
                row = rows.stop
                micro = MicroBatch(batch, rows, _token_mask(batch).to(self.accelerator.device))
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
        """Advantages once, then `num_iterations` optimizer updates on the batch."""
        objective = self.objective
        micros = self._micro_batches(groups)
        joined = _joined(micros) if objective.per_token else (None,) * 4
        advantages = objective.advantages(rewards.to(self.accelerator.device), *joined)
        total_tokens = sum(int(micro.mask.sum()) for micro in micros)
        parts, losses, metrics = [], [], {}
        for _ in range(self.config.online.num_iterations):
            batch_loss = 0.0
            self.policy.train()
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.zero_grad(set_to_none=True)
            for micro in micros:
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
                weight = objective.weight(micro, len(groups), total_tokens)
                self.accelerator.backward(loss * weight)
                batch_loss += loss.item() * weight
                parts.append((micro.batch.num_groups, loss_metrics))
            losses.append(batch_loss)
            metrics = self._optimizer_step(step)
        loss = sum(losses) / len(losses)  # the batch's loss, averaged over its updates
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
    """The micro-batches' (old, ref, mask, old_values) token tensors as whole-batch [N, L] tensors, padded
    to the longest response (None where the micro-batches have none), for advantages that
    look at the whole batch."""
    longest = max(micro.mask.shape[1] for micro in micros)

    def join(name: str):
        parts = [getattr(micro, name) for micro in micros]
        if any(part is None for part in parts):
            return None
        padded = [part.new_zeros(part.shape[0], longest) for part in parts]
        for target, part in zip(padded, parts, strict=True):
            target[:, : part.shape[1]] = part
        return torch.cat(padded)

    return join("old"), join("ref"), join("mask"), join("old_values")


def _reward_metrics(rewards: torch.Tensor) -> dict[str, float]:
    flat_rewards = rewards.reshape(-1).double()
    std = float(flat_rewards.std()) if flat_rewards.numel() > 1 else 0.0
    return {"reward_mean": float(flat_rewards.mean()), "reward_std": std}
