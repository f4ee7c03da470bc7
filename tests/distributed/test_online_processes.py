"""Online training on 2 processes: the same samples give the same rewards, advantages, loss,
metrics and update as on 1 process, and a 2-process run stopped mid-step resumes to the run an
uninterrupted one gives, sampling included.

For the comparison each sequence is sampled alone from a seed of its prompt (driver.py's
`per_prompt_sampling`), so both runs draw the same samples; everything after sampling is the
code under test: the shared rollout, main-process scoring, the split of the update, the
gathered log-probs behind batch-level advantages (GRPO's batch scaling, RLOO's normalisation,
PPO's whitening and adaptive KL), the stand-in for a process without a group (online DPO with
fewer pairs than processes) and the loss weights. float32, 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.dist  # about 60 s on a shared 2-core machine

TIMINGS = {"samples_per_second", "generation_share"}
ONLINE = {"samples_per_prompt": 3, "prompts_per_step": 4, "max_new_tokens": 6}


def _jobs(model_dir, prompts: Path, output_dir: Path, run_config) -> list[dict]:
    common = run_config(
        model_dir,
        output_dir,
        data={"path": str(prompts)},
        reward={"type": "gold", "name": "dist-length"},
        online=ONLINE,
    )

    def job(method, **values):
        config = {**common, "method": method, "run_name": method, **values}
        return {"config": config, "sampling": "per-prompt"}

    return [
        job(
            "grpo",
            hparams={"beta": 0.04, "scale_rewards": "batch"},
            online={**ONLINE, "num_iterations": 2},
            micro_batch_size=1,
        ),
        # micro-batches of 2 groups on 1 process and of 2 + 2 on 2: token-level metrics
        # (kl, clip_ratio, PPO's losses) are group-weighted means over micro-batches
        job("rloo", hparams={"normalize_advantages": True}, micro_batch_size=2),
        job(
            "ppo",
            hparams={"whiten_rewards": True, "adaptive_kl": True},
            online={**ONLINE, "samples_per_prompt": 1},
            micro_batch_size=2,
        ),
        job("online-dpo", lr=2.0),  # 1 micro-batch of 4 on 1 process, 2 + 2 on 2
        # 3 prompts a step: sampled 2 + 1; trained in global micro-batches of 1 + 1, then 1 +
        # process 1's stand-in (weight 0)
        job(
            "grpo",
            run_name="grpo-odd",
            online={**ONLINE, "prompts_per_step": 3},
            micro_batch_size=1,
        ),
    ]


@pytest.fixture()
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"write a short review {i}"} for i in range(8)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_one_and_two_processes_train_the_same_on_the_same_samples(
    tiny_model_dir, prompts, driver, run_config, one_and_two, same_runs
):
    one, two, start = one_and_two(
        lambda folder: _jobs(tiny_model_dir, prompts, folder, run_config), driver.run_jobs
    )
    for name in ("grpo", "rloo", "ppo", "online-dpo", "grpo-odd"):
        same_runs(one / name, two / name, start, skip=TIMINGS, loss_moves=name != "rloo")
        budget_one = json.loads((one / name / "summary.json").read_text())["budget"]
        assert json.loads((two / name / "summary.json").read_text())["budget"] == budget_one
        assert budget_one["prompts"] == (6 if name == "grpo-odd" else 8)
    value_one = load_file(one / "ppo" / "final" / "value_head.safetensors")
    value_two = load_file(two / "ppo" / "final" / "value_head.safetensors")
    assert value_one["linear.weight"].abs().max() > 0  # trained from zero
    assert (value_two["linear.weight"] - value_one["linear.weight"]).abs().max() <= 1e-5
    # only the main process scored: one cache line per distinct sample, none twice
    cached = (two / "grpo" / "rewards.jsonl").read_text().splitlines()
    assert len(cached) == len(set(cached))


def test_a_stopped_two_process_run_resumes_exactly(
    tmp_path, tiny_model_dir, prompts, run_config, launch_jobs
):
    def job(name, **values):
        config = run_config(
            tiny_model_dir,
            tmp_path / "runs",
            method="grpo",
            data={"path": str(prompts)},
            reward={"type": "gold", "name": "dist-length"},
            online={**ONLINE, "prompts_per_step": 2},
            optimizer="adamw",
            lr=1e-2,
            max_steps=3,
            save_every=1,
            run_name=name,
        )
        return {"config": config, **values}

    # _token_mask runs once a micro-batch: its 3rd call is in step 3, after step 2's checkpoint
    interrupt = {"interrupt_at": 3, "interrupt_in": "preftune.train.online.trainer:_token_mask"}
    launch_jobs([job("straight"), job("stopped", **interrupt)])

    runs = tmp_path / "runs"
    straight, resumed = runs / "straight", runs / "stopped"
    timing = TIMINGS | {"tokens_per_s", "step_seconds"}

    def logged(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in timing} for row in rows]

    assert logged(resumed) == logged(straight)
    assert len({row["reward_mean"] for row in logged(straight)}) > 1  # new samples each step
    a, b = (
        load_file(straight / "final" / "model.safetensors"),
        load_file(resumed / "final" / "model.safetensors"),
    )
    assert all((a[k] == b[k]).all() for k in a)


def test_rounds_on_two_processes_sample_score_and_train_as_on_one(
    tiny_model_dir, prompts, driver, run_config, one_and_two, same_runs
):
    """`online.rounds`: each samples file has its own seed, so the 2 processes that share the
    files draw what one process draws; the round's training is an offline 2-process run."""

    def jobs(output_dir: Path) -> list[dict]:
        config = run_config(
            tiny_model_dir,
            output_dir,
            method="dpo",
            data={"path": str(prompts)},
            # tie-free, so every prompt gives a pair: 8 groups, 2 steps of 4 on 2 processes
            reward={"type": "gold", "name": "dist-length-distinct"},
            # 2 prompts a samples file: 4 files a round, 2 for each process
            online={**ONLINE, "rounds": 2, "generation_batch_size": 6},
            batch_size=4,
            max_steps=1,
            run_name="rounds",
        )
        return [{"config": config}]

    one, two, start = one_and_two(jobs, driver.run_jobs)
    for number in (1, 2):
        folder = f"rounds/r{number}"
        files_one = sorted((one / "rounds" / folder / "samples").iterdir())
        files_two = sorted((two / "rounds" / folder / "samples").iterdir())
        assert [f.name for f in files_two] == [f.name for f in files_one] and len(files_one) == 4
        for a, b in zip(files_one, files_two, strict=True):
            texts = [json.loads(line)["response"] for line in a.read_text().splitlines()]
            assert texts == [json.loads(line)["response"] for line in b.read_text().splitlines()]
        assert (two / "rounds" / folder / "lists.jsonl").read_text() == (
            one / "rounds" / folder / "lists.jsonl"
        ).read_text()
    # a round's first step has policy = reference: its margins are float noise about 0 (the
    # two runs' round-1 models differ by ~1e-8), so whether each is > 0 is not compared
    same_runs(one / "rounds", two / "rounds", start, skip={"rewards/accuracies"})
    summary_two = json.loads((two / "rounds" / "summary.json").read_text())
    assert (
        summary_two["budget"] == json.loads((one / "rounds" / "summary.json").read_text())["budget"]
    )
