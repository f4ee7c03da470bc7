"""Online training on a tiny random model: GRPO raises a toy reward, RLOO and online DPO run
and save, a run stopped mid-step resumes exactly (sampling included) without paying for a
reward twice, and a failing reward source stops the run saying how to resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from preftune.config import build_train_config
from preftune.errors import ConfigError, TrainingError
from preftune.judges import register_gold
from preftune.judges.base import JudgeError
from preftune.train import train
from preftune.train.metrics import TIMING_KEYS

SCORER = {"calls": 0, "fail_from": None, "error": RuntimeError}


def count_e(prompt, response: str) -> float:
    """The toy reward: how many times the letter e occurs (the tiny model emits it by chance);
    from call `fail_from` on, it raises `error`."""
    SCORER["calls"] += 1
    if SCORER["fail_from"] is not None and SCORER["calls"] >= SCORER["fail_from"]:
        raise SCORER["error"]("the scorer stopped")
    return float(response.count("e"))


register_gold("test-count-e", count_e)


@pytest.fixture(autouse=True)
def fresh_scorer():
    SCORER.update(calls=0, fail_from=None, error=RuntimeError)


@pytest.fixture()
def online_config(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"write a short review {i}"} for i in range(8)]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def build(method: str, **overrides):
        values = {
            "model": str(tiny_model_dir),
            "method": method,
            "data": {"path": str(prompts)},
            "reward": {"type": "gold", "name": "test-count-e"},
            "online": {"samples_per_prompt": 4, "prompts_per_step": 4, "max_new_tokens": 8},
            "optimizer": "adamw",
            "lr": 1e-2,
            "warmup_steps": 0,
            "max_steps": 4,
            "max_length": 64,
            "max_prompt_length": 32,
            "output_dir": str(tmp_path / "runs"),
            **overrides,
        }
        return build_train_config(values)

    return build


def _metrics(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def test_grpo_raises_the_reward(online_config):
    run = train(online_config("grpo", max_steps=12))
    rewards = [row["reward_mean"] for row in _metrics(run)]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.2, rewards
    summary = json.loads((run / "summary.json").read_text())
    # 12 steps x 4 prompts x 4 samples, each scored once
    assert summary["budget"]["prompts"] == 48 and summary["budget"]["samples"] == 192
    assert summary["budget"]["reward_calls"] == 192
    assert 192 <= summary["budget"]["tokens"] <= 192 * 8  # 1 to max_new_tokens per sample
    # beta 0 (the default): no reference is loaded, so no KL is measured
    assert {"clip_ratio", "reward_std", "grad_norm"} <= set(_metrics(run)[-1])
    assert "kl" not in _metrics(run)[-1]


def test_grpo_reads_the_reference_only_with_a_kl_term(online_config, monkeypatch):
    from preftune.train.online import trainer as online_trainer

    built = []
    real = online_trainer.build_reference
    monkeypatch.setattr(
        online_trainer, "build_reference", lambda *a, **k: built.append(1) or real(*a, **k)
    )
    train(online_config("grpo", max_steps=1, run_name="plain"))
    assert built == []
    run = train(online_config("grpo", max_steps=1, run_name="kl", hparams={"beta": 0.04}))
    assert built == [1] and "kl" in _metrics(run)[-1]


@pytest.mark.parametrize("method", ["rloo", "online-dpo", "ppo"])
def test_rloo_online_dpo_and_ppo_train_and_save(online_config, method):
    run = train(online_config(method, max_steps=2))
    assert (run / "final" / "model.safetensors").exists()
    rows = _metrics(run)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(row["loss"])) for row in rows)
    start = load_file(online_config(method).model + "/model.safetensors")
    end = load_file(run / "final" / "model.safetensors")
    assert any(not torch.equal(start[name], end[name]) for name in start)


@pytest.mark.parametrize(
    ("method", "hparams"),
    [("grpo", {}), ("ppo", {"adaptive_kl": True})],  # ppo: value head and KL coefficient too
)
def test_a_stopped_run_resumes_exactly_and_pays_for_no_reward_twice(online_config, method, hparams):
    straight = train(online_config(method, hparams=hparams, save_every=1, run_name="straight"))
    paid_straight = SCORER["calls"]

    SCORER.update(calls=0, fail_from=40)  # 16 samples a step: inside step 3, after step 2's save
    stopped = online_config(method, hparams=hparams, save_every=1, run_name="stopped")
    with pytest.raises(RuntimeError, match="the scorer stopped"):
        train(stopped)
    assert len(_metrics(stopped.run_dir)) == 2
    SCORER["fail_from"] = None
    resumed = train(stopped.model_copy(update={"resume": True}))

    assert _metrics(resumed) == _metrics(straight)
    assert SCORER["calls"] - 1 == paid_straight  # the failed call is the only extra one
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    budget = json.loads((resumed / "summary.json").read_text())["budget"]
    assert budget == json.loads((straight / "summary.json").read_text())["budget"]


def test_a_failing_judge_stops_with_the_last_checkpoint(online_config, monkeypatch):
    import preftune.train.online.trainer as trainer

    monkeypatch.setattr(trainer, "RETRY_WAIT_S", 0.0)
    SCORER.update(fail_from=20, error=JudgeError)  # inside step 2, and every retry after
    config = online_config("grpo", save_every=1)
    with pytest.raises(TrainingError, match=r"failed at step 2 \(3 tries\).*step-1; --resume"):
        train(config)
    assert SCORER["calls"] == 19 + 3


def test_online_dpo_skips_batches_whose_samples_all_tie(online_config):
    register_gold("test-constant", lambda prompt, response: 1.0)
    config = online_config(
        "online-dpo", max_steps=2, reward={"type": "gold", "name": "test-constant"}
    )
    run = train(config)
    assert [row["trained_groups"] for row in _metrics(run)] == [0, 0]
    start = load_file(config.model + "/model.safetensors")
    end = load_file(run / "final" / "model.safetensors")
    assert all(torch.equal(start[name], end[name]) for name in start)


@pytest.mark.parametrize(
    ("method", "hparams"),
    [
        ("grpo", {"loss_type": "dapo"}),
        ("grpo", {"loss_type": "bnpo"}),
        ("grpo", {"loss_type": "grpo"}),
        ("grpo", {"loss_type": "dr_grpo"}),
        ("rloo", {"normalize_advantages": True}),
        ("ppo", {}),
        ("online-dpo", {}),
    ],
)
def test_micro_batches_update_as_one_batch(online_config, method, hparams):
    """Two updates per batch on one forward of 4 groups, or 4 forwards of one group each:
    each micro-batch's weight makes the accumulated gradient the whole batch's."""
    online = {"samples_per_prompt": 4, "prompts_per_step": 4, "max_new_tokens": 8}
    settings = {
        "hparams": hparams,
        "max_steps": 1,
        "online": {**online, "num_iterations": 2},
        "optimizer": "sgd",  # Adam would blow float noise in near-zero gradients up to lr
        "lr": 0.1,
    }
    whole = train(online_config(method, run_name="whole", **settings))
    micro = train(online_config(method, run_name="micro", micro_batch_size=1, **settings))
    a, b = _metrics(whole), _metrics(micro)
    assert [row["loss"] for row in a] == pytest.approx([row["loss"] for row in b], abs=1e-5)
    first, second = (
        load_file(whole / "final/model.safetensors"),
        load_file(micro / "final/model.safetensors"),
    )
    assert all(torch.allclose(first[n], second[n], atol=1e-5) for n in first)


def test_online_dpo_with_a_pairwise_judge(online_config, chat_server):
    """An OpenAI-compatible judge that prefers the answer with more e's decides every pair of
    each group's samples (both orders); its decisions become round-robin rewards."""
    import re

    def more_e(messages, attempt):
        text = messages[-1]["content"]
        a, b = (
            re.search(rf"Assistant {slot}'s Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
            for slot in "AB"
        )
        if a.count("e") == b.count("e"):
            return "[[C]]"
        return "[[A]]" if a.count("e") > b.count("e") else "[[B]]"

    server = chat_server(more_e)
    reward = {"type": "judge", "judge": "openai", "base_url": server.base_url, "model": "judge"}
    online = {"samples_per_prompt": 3, "prompts_per_step": 2, "max_new_tokens": 8}
    run = train(online_config("online-dpo", max_steps=2, reward=reward, online=online))
    budget = json.loads((run / "summary.json").read_text())["budget"]
    assert budget["reward_calls"] == 2 * 2 * 3  # steps x prompts x pairs of 3 samples
    decisions = [json.loads(line) for line in (run / "rewards.jsonl").read_text().splitlines()]
    assert len(server.requests) == 2 * len(decisions) <= 2 * 12  # both orders; repeats cached
    assert {row["winner"] for row in decisions} <= {"a", "b", "tie"}
    rows = _metrics(run)
    assert all(row["reward_mean"] == 1.0 for row in rows)  # 3 pairs shared by 3 samples


def test_ppo_saves_its_value_head_beside_the_final_model(online_config):
    from preftune.models.value_head import ValueHead
    from preftune.train.online.heads import load_value_head

    run = train(online_config("ppo", max_steps=2, keep_final_checkpoint=True))
    head = load_value_head(run / "final")
    assert isinstance(head, ValueHead)
    checkpoint = torch.load(
        run / "checkpoints" / "step-2" / "trainable.pt", weights_only=True, map_location="cpu"
    )
    assert torch.equal(head.linear.weight, checkpoint["value.linear.weight"])
    assert torch.equal(head.linear.bias, checkpoint["value.linear.bias"])
    assert head.linear.weight.abs().max() > 0  # trained: it starts at zero
    grpo = train(online_config("grpo", max_steps=1, run_name="grpo"))
    assert not (grpo / "final" / "value_head.safetensors").exists()
    with pytest.raises(ConfigError, match="no value head"):
        load_value_head(grpo / "final")


def _accelerator(kind, processes=2):
    from types import SimpleNamespace

    return SimpleNamespace(distributed_type=kind, num_processes=processes)


def test_several_processes_are_refused_only_where_sampling_cannot_work(online_config):
    from accelerate.utils import DistributedType

    from preftune.train.online import check_processes

    config = online_config("grpo")  # 4 prompts a step, 8 prompts
    check_processes(config, _accelerator(DistributedType.MULTI_GPU, 4), 8)
    check_processes(config, _accelerator(DistributedType.NO, 1), 8)
    for sharded in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(ConfigError, match="^distributed_type: .*DDP"):
            check_processes(config, _accelerator(sharded), 8)
    with pytest.raises(ConfigError, match="^online.prompts_per_step: .*a step of 2 prompts"):
        check_processes(config, _accelerator(DistributedType.MULTI_GPU, 3), 6)  # steps 4, 2
    with pytest.raises(ConfigError, match="^online.prompts_per_step"):
        check_processes(config, _accelerator(DistributedType.MULTI_GPU, 8), 16)
