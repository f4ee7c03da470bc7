"""Iterative training of any offline method: `online: {rounds: N, samples_per_prompt: k}`.

Each round samples k answers per prompt from the current policy (`preftune.generate`), scores
them with the `reward:` source (`preftune.judges.rewards`, cached), writes them as scored lists
and trains the method on them through the ordinary offline loop (`train`, its `epochs` /
`max_steps` per round). The next round starts from this round's final model, which is also its
reference, as in iterative DPO (Xu et al. 2023, arXiv 2312.16682; Yuan et al. 2024,
Self-Rewarding Language Models, arXiv 2401.10020). The method's view
(pairs by `data.pairs`, binary, lists) comes from the lists through the data path, so every
offline method iterates with no code of its own.

Prompts: `data.task` (its `data.split`, default "train") or `data.path` (a prompts or
preference file), at most `data.limit`.

```
<run>/config.yaml, metrics.jsonl (every round's steps, numbered on, with "round"),
<run>/rewards.jsonl (the reward cache of every round),
<run>/summary.json (finished: "budget" and "per_round"), final/ (the last round's model)
<run>/rounds/r<i>/samples/<shard>.jsonl   the round's samples, one file per generation batch
<run>/rounds/r<i>/lists.jsonl, round.json the scored lists and their counts
<run>/rounds/r<i>/train/                  the round's offline run
```

A kill at any point resumes to the same result: finished rounds are skipped (their train/
has summary.json); a sample shard is written under a temporary name, renamed when complete and
sampled again with its own seed when it was not; rewards come from the cache; the round's
training resumes exactly from its last checkpoint (`save_every`) like any offline run.

Under `accelerate launch` (DDP, several processes): the sample shards are shared between the
processes (each shard has its own seed, so the samples do not depend on the process count),
the main process writes them, scores and writes the lists, and every process trains the round
as an offline multi-process run; the main process writes the run folder.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from preftune.config import TrainConfig, build_train_config
from preftune.data.sampled import distinct_responses, scored_row
from preftune.errors import DataError, TrainingError
from preftune.io import (
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    read_text,
    write_jsonl,
)
from preftune.judges.base import JudgeError
from preftune.train.online import read_training_prompts
from preftune.train.processes import (
    all_processes,
    barrier,
    main_outcome,
    process_count,
    process_index,
)
from preftune.train.run import check_run_dir, hold_run_folder, make_accelerator

BUDGET_FIELDS = ("prompts", "samples", "tokens", "reward_calls")
SUMMED_TRAINING = ("epochs", "train_groups", "tokens")  # of the rounds' training summaries


def train_rounds(config: TrainConfig) -> Path:
    """Run (or resume) `config.online.rounds` rounds of sample, score, train; returns the run
    folder, laid out as the module's docstring says."""
    # joins the launch's processes (and GPUs), if any; each round's training makes its own
    main = make_accelerator(config.mixed_precision).is_main_process
    run_dir = config.run_dir
    check_run_dir(config)  # the config checked the rest (TrainConfig._check_online)
    if config.resume and (run_dir / "summary.json").exists():
        return run_dir
    from preftune.judges.rewards import reward_source

    lock = hold_run_folder(run_dir, main)
    try:
        if main:
            atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        prompts = read_training_prompts(config.data)
        # loaded before any sampling, so a source that cannot load costs nothing; the main
        # process scores (and writes the cache)
        source = main_outcome(
            main,
            lambda: reward_source(config.reward, cache_path=run_dir / "rewards.jsonl"),
            share=False,
        )
        model, finished = config.model, []
        try:
            for number in range(1, config.online.rounds + 1):
                round_run = Round(config, number, source, main).run(model, prompts)
                finished.append(round_run)
                model = str(round_run.train_dir / "final")
                if main:
                    _write_metrics(run_dir, finished)
        finally:
            if source is not None:
                source.close()
        if main:
            last_final = finished[-1].train_dir / "final"
            if last_final.is_dir():  # else a stopped earlier call moved it already
                os.replace(last_final, run_dir / "final")
            _write_summary(config, finished)
        barrier()
    finally:
        lock.release()
    return run_dir


def shard_seed(seed: int, round_number: int, shard: int) -> int:
    """The sampling seed of one shard of one round: independent streams for every pair.

    >>> shard_seed(0, 1, 0) == shard_seed(0, 1, 0) != shard_seed(0, 1, 1)
    True
    """
    return int(np.random.SeedSequence([seed, round_number, shard]).generate_state(1)[0])


class Round:
    """One round in `<run>/rounds/r<number>/`: sample, score, write lists, train. `source` and
    the files are the main process's (`main`); every process samples and trains."""

    def __init__(self, config: TrainConfig, number: int, source, main: bool = True):
        self.config, self.number, self.source, self.main = config, number, source, main
        self.folder = config.run_dir / "rounds" / f"r{number}"
        self.train_dir = self.folder / "train"

    def run(self, model: str, prompts: list[dict]) -> Round:
        if not (self.train_dir / "summary.json").exists():
            started = time.perf_counter()
            self._sample(model, prompts)

            def score() -> Path:
                samples = self._read_samples(prompts)
                return self._score(prompts, samples, seconds=time.perf_counter() - started)

            lists = main_outcome(self.main, score)
            self._train(model, lists)
        barrier()  # the round's final/ and summary.json are written before anyone reads them
        return self

    def _shards(self, prompts: list[dict]) -> list[tuple[Path, list[dict]]]:
        """(samples file, its prompts): one generation batch of prompts per file."""
        online = self.config.online
        per_shard = max(1, online.generation_batch_size // online.samples_per_prompt)
        return [
            (self.folder / "samples" / f"{index:05d}.jsonl", prompts[start : start + per_shard])
            for index, start in enumerate(range(0, len(prompts), per_shard))
        ]

    def _read_samples(self, prompts: list[dict]) -> list[dict]:
        return [
            row
            for path, _ in self._shards(prompts)
            for row in read_jsonl(path, tolerate_torn_tail=False)
        ]

    def _sample(self, model: str, prompts: list[dict]) -> None:
        """k samples per prompt from `model` in the samples files that are missing, shared
        between the processes (file i: process i mod P); the main process writes them."""
        from preftune.generate import generate, load_for_generation

        online, processes = self.config.online, process_count()
        missing = [
            (index, path, shard)
            for index, (path, shard) in enumerate(self._shards(prompts))
            if not path.is_file()
        ]
        loaded, drawn = None, {}
        with tempfile.TemporaryDirectory() as elsewhere:  # where other processes write
            for index, path, shard in missing[process_index() :: processes]:
                if loaded is None:
                    loaded = load_for_generation(model, self.config.dtype)[:2]
                folder = path.parent if self.main else Path(elsewhere)
                partial = folder / f".{path.name}.partial"
                generate(
                    loaded,
                    shard,
                    partial,
                    n=online.samples_per_prompt,
                    batch_size=online.generation_batch_size,
                    seed=shard_seed(self.config.seed, self.number, index),
                    model_name=f"round {self.number} policy",
                    overwrite=True,
                    **online.sampling,
                )
                if self.main:
                    os.replace(partial, path)
                else:
                    drawn[path] = read_jsonl(partial, tolerate_torn_tail=False)
        for shared in all_processes(drawn)[1:]:
            for path, rows in shared.items():
                if self.main:
                    write_jsonl(path, rows)

    def _score(self, prompts: list[dict], samples: list[dict], *, seconds: float) -> Path:
        """Score every prompt's distinct samples, write lists.jsonl and round.json (with
        `seconds` spent sampling so far in this call). A judge that fails (after its own
        retries) stops the run; what it scored is cached."""
        started = time.perf_counter()
        lists, dropped = distinct_responses(prompts, samples)
        if not lists:
            raise DataError(
                f"round {self.number}: no prompt has two distinct non-empty samples, so there "
                "is nothing to prefer; raise online.samples_per_prompt, temperature or "
                "max_new_tokens",
                source=str(self.folder / "samples"),
            )
        groups = [texts for _, texts in lists]
        try:
            scores = self.source.group_scores([prompt for prompt, _ in lists], groups)
        except JudgeError as error:
            raise TrainingError(
                f"round {self.number}: the reward source failed ({error}); its samples and "
                f"the rewards scored so far are kept in {self.config.run_dir}: run it again "
                "with resume (--resume) to go on from there"
            ) from None
        path = self.folder / "lists.jsonl"
        write_jsonl(path, [scored_row(p, t, s) for (p, t), s in zip(lists, scores, strict=True)])
        flat = [score for group in scores for score in group]
        counts = {
            "round": self.number,
            "prompts": len(prompts),
            "samples": len(samples),
            "tokens": sum(int(row.get("num_tokens") or 0) for row in samples),
            "reward_calls": self.source.requests_for([len(texts) for texts in groups]),
            "groups": len(lists),
            "dropped_prompts": dropped,
            "mean_reward": float(np.mean(flat)),
            # sampling and scoring in the call that finished them (a resumed one: its part)
            "generation_seconds": seconds + time.perf_counter() - started,
        }
        atomic_write_json(self.folder / "round.json", counts)
        return path

    def _train(self, model: str, lists: Path) -> None:
        """The method on this round's lists, from (and against) `model`, exactly resumable."""
        from preftune.train.loop import train

        config = self.config
        values = config.model_dump(mode="json")
        values["data"].update(path=str(lists), format="scored", task=None, split=None, limit=None)
        values.update(
            model=model,
            output_dir=str(self.folder),
            run_name="train",
            resume=True,
            online=None,
            reward=None,
            push_to_hub=None,
            tracker_run=f"{config.tracker_run or config.run_dir.name}/round-{self.number}",
        )
        train(build_train_config(values))

    def record(self, name: str) -> dict:
        """One of the round's JSON records: "round.json" or "train/summary.json"."""
        return json.loads(read_text(self.folder / name, what="round record"))


def _write_metrics(run_dir: Path, rounds: list[Round]) -> None:
    """metrics.jsonl: every finished round's steps, numbered on across rounds."""
    rows, offset = [], 0
    for round_run in rounds:
        steps = read_jsonl(round_run.train_dir / "metrics.jsonl")
        rows += [{**row, "step": row["step"] + offset, "round": round_run.number} for row in steps]
        offset += round_run.record("train/summary.json")["steps"]
    write_jsonl(run_dir / "metrics.jsonl", rows)


def _write_summary(config: TrainConfig, rounds: list[Round]) -> None:
    """summary.json (the run is finished): the budget summed over rounds, and per round its
    counts, mean reward and training summary."""
    per_round = []
    for round_run in rounds:
        summary = round_run.record("train/summary.json")
        per_round.append(
            {**round_run.record("round.json"), "steps": summary["steps"], "train": summary}
        )
    summary = {
        "method": config.method,
        "model": config.model,
        "rounds": len(rounds),
        "steps": sum(r["steps"] for r in per_round),
        # summed as an offline run's summary has them (the model card reads them)
        **{key: sum(r["train"][key] for r in per_round) for key in SUMMED_TRAINING},
        "budget": {field: sum(r[field] for r in per_round) for field in BUDGET_FIELDS},
        "wall_time_s": sum(r["generation_seconds"] + r["train"]["wall_time_s"] for r in per_round),
        "per_round": per_round,
        "final_metrics": per_round[-1]["train"].get("final_metrics"),
        "final_dir": str(config.run_dir / "final"),
    }
    atomic_write_json(config.run_dir / "summary.json", summary)
