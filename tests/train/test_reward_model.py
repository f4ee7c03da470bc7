"""`preftune rm`: training drops the loss, final/ loads as a plain Hugging Face reward model,
held-out accuracy matches a count by hand, a stopped run resumes to the same result, bad input
exits 2 with one line and keeps what was done."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import preftune.train.reward_model as reward_model
from preftune.cli import main
from preftune.config import load_reward_model_config
from preftune.judges.reward_model import RewardModelJudge
from preftune.train.metrics import TIMING_KEYS
from preftune.train.reward_model import train_reward_model


@pytest.fixture()
def rm_config(tmp_path, tiny_model_dir):
    """A small reward-model config for the tiny model; `key=value` overrides."""

    def build(data, *overrides):
        base = [
            f"model={tiny_model_dir}",
            f"data.path={data}",
            "batch_size=4",
            "lr=3e-3",
            "max_length=64",
            "max_prompt_length=32",
            f"output_dir={tmp_path / 'runs'}",
        ]
        return load_reward_model_config(None, base + list(overrides))

    return build


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.mark.parametrize(
    "settings",
    [
        ["objective=bradley-terry"],
        ["objective=bradley-terry", "margin=scores", "margin_scale=0.1", "centering=0.01"],
        ["objective=plackett-luce", "centering=0.01"],
    ],
)
def test_a_few_steps_drop_the_loss_on_separable_data(rm_config, scored_file, settings):
    # scored lists: good 9 > mixed 5 > "ok" 4 > bad 2, the same words on every prompt
    config = rm_config(scored_file, "max_steps=12", "data.heldout_fraction=0", *settings)
    run_dir = train_reward_model(config)
    losses = [row["loss"] for row in _metrics(run_dir) if "loss" in row]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["heldout"]["accuracy"] is None and summary["objective"] == config.objective


def test_final_loads_as_a_plain_reward_model_and_scores_like_the_judge(rm_config, paired_file):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = train_reward_model(rm_config(paired_file, "max_steps=3"))
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "final").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "final")
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None

    def plain_score(prompt, response):  # the chat turn up to its end-of-turn token, no padding
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            return model(**ids).logits[0, 0].item()

    judge = RewardModelJudge(run_dir / "final")
    pair = ("how do I bake bread?", "mix flour, water and yeast, then bake it.", "bad acting")
    by_judge = judge.score_batch([pair[0], pair[0]], [pair[1], pair[2]])
    assert by_judge == pytest.approx(
        [plain_score(pair[0], pair[1]), plain_score(*pair[::2])], abs=1e-5
    )
    assert by_judge[0] != by_judge[1]


def test_heldout_accuracy_is_the_hand_count_and_eval_agrees(
    rm_config, scored_file, paired_file, tmp_path, capsys
):
    rows = [json.loads(line) for line in paired_file.read_text().splitlines()]
    for row in rows[:3]:  # against what the training data teaches: both outcomes get counted
        row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    heldout_file = tmp_path / "heldout.jsonl"
    heldout_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = rm_config(scored_file, "max_steps=4", f"data.heldout={heldout_file}")
    run_dir = train_reward_model(config)
    judge = RewardModelJudge(run_dir / "final")
    chosen = judge.score_batch([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = judge.score_batch([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    right = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    assert 0 < right < len(rows)

    heldout = json.loads((run_dir / "summary.json").read_text())["heldout"]
    assert heldout["pairs"] == len(rows)
    assert heldout["accuracy"] == pytest.approx(right / len(rows))
    assert _metrics(run_dir)[-1] == {
        "step": 4,
        "heldout/accuracy": heldout["accuracy"],
        "heldout/pairs": len(rows),
    }

    out = tmp_path / "eval.json"
    args = ["rm", "--eval", "--model", str(run_dir), "--data", str(heldout_file), "--out", str(out)]
    assert main([*args, "--max-length=64", "--max-prompt-length=32"]) == 0
    assert f"({right} of {len(rows)} pairs" in capsys.readouterr().out
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(right / len(rows))


def test_a_stopped_run_resumes_to_the_same_weights_and_metrics(rm_config, paired_file, stopped_run):
    settings = ["max_steps=5", "save_every=2", "data.heldout_fraction=0.3"]  # 3 steps an epoch
    straight = train_reward_model(rm_config(paired_file, "run_name=straight", *settings))

    config = rm_config(paired_file, "run_name=stopped", *settings)
    stopped_run(reward_model.RewardTrainer, 3, lambda: train_reward_model(config))
    assert not (config.run_dir / "summary.json").exists()
    resumed = train_reward_model(config.model_copy(update={"resume": True}))

    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    assert _metrics(resumed) == _metrics(straight)
    assert len(_metrics(straight)) == 6  # five steps and the held-out line


def test_margins_from_the_data_reach_the_loss(rm_config, paired_file, tmp_path, monkeypatch):
    rows = [json.loads(line) for line in paired_file.read_text().splitlines()]
    with_margins = tmp_path / "margins.jsonl"
    with_margins.write_text(
        "".join(json.dumps({**r, "margin": 0.25 * i}) + "\n" for i, r in enumerate(rows))
    )
    seen = []
    real = reward_model.bradley_terry

    def spy(rewards, *, margins, centering):
        seen.extend(margins.tolist())
        return real(rewards, margins=margins, centering=centering)

    monkeypatch.setattr(reward_model, "bradley_terry", spy)
    config = rm_config(with_margins, "margin=data", "max_steps=3", "data.heldout_fraction=0")
    train_reward_model(config)
    # 6 pairs, batch 4: the steps see 4 + 2 + 4 pairs, the first epoch every pair once
    assert len(seen) == 10
    assert sorted(seen[:6]) == pytest.approx([0.25 * i for i in range(6)])


def test_trainable_layers_trains_the_top_layer_and_the_head_only(rm_config, paired_file):
    from transformers import AutoModelForSequenceClassification

    config = rm_config(paired_file, "max_steps=2", "trainable_layers=1")
    final = load_file(train_reward_model(config) / "final" / "model.safetensors")
    start = AutoModelForSequenceClassification.from_pretrained(config.model, num_labels=1)
    start_weights = start.state_dict()
    assert torch.equal(
        final["model.layers.0.mlp.up_proj.weight"],
        start_weights["model.layers.0.mlp.up_proj.weight"],
    )
    assert not torch.equal(
        final["model.layers.1.mlp.up_proj.weight"],
        start_weights["model.layers.1.mlp.up_proj.weight"],
    )
    assert final["score.weight"].shape == (1, start.config.hidden_size)


def test_lora_run_saves_a_merged_reward_model(rm_config, paired_file):
    from transformers import AutoModelForSequenceClassification

    run_dir = train_reward_model(rm_config(paired_file, "max_steps=2", "lora={r: 4}"))
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "final")
    start = AutoModelForSequenceClassification.from_pretrained(
        rm_config(paired_file).model, num_labels=1
    )
    assert model.config.num_labels == 1
    assert not torch.equal(
        model.model.layers[0].self_attn.q_proj.weight, start.model.layers[0].self_attn.q_proj.weight
    )
    assert (run_dir / "final-adapter").is_dir()


def _cli(capsys, *args) -> tuple[int, str]:
    """The exit code and the command's error line(s) (progress bars left out)."""
    code = main(["rm", *args])
    lines = capsys.readouterr().err.splitlines()
    return code, "\n".join(line for line in lines if line.startswith("preftune rm"))


def _config_file(tmp_path, tiny_model_dir, data_path, **extra) -> str:
    path = tmp_path / "rm.yaml"
    values = {
        "model": str(tiny_model_dir),
        "data": {"path": str(data_path)},
        "batch_size": 2,
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(tmp_path / "runs"),
        **extra,
    }
    path.write_text(json.dumps(values))  # JSON is YAML
    return str(path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing model", "model: './no-such-model' does not exist"),
        ("data without pairs", "needs pairs"),
        ("margin with plackett-luce", "margin: a margin applies to bradley-terry pairs only"),
        ("unknown key", "unknown key (allowed: model, data, objective"),
        ("margin from data without margins", "needs a 'margin' column"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path, tiny_model_dir, paired_file, binary_file, capsys, case, expected
):
    extra = {
        "missing model": {"model": "./no-such-model"},
        "data without pairs": {"data": {"path": str(binary_file)}},
        "margin with plackett-luce": {"objective": "plackett-luce", "margin": "scores"},
        "unknown key": {"bogus": 1},
        "margin from data without margins": {"margin": "data"},
    }[case]
    code, err = _cli(
        capsys, "--config", _config_file(tmp_path, tiny_model_dir, paired_file, **extra)
    )
    assert code == 2
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs" / "reward-model" / "config.yaml").exists()  # nothing started


def test_nan_loss_exits_2_and_keeps_the_last_checkpoint(
    tmp_path, tiny_model_dir, paired_file, capsys, monkeypatch
):
    real = reward_model.bradley_terry
    calls = {"n": 0}

    def nan_on_third_call(rewards, **kwargs):
        calls["n"] += 1
        loss, metrics = real(rewards, **kwargs)
        return (loss * float("nan") if calls["n"] == 3 else loss), metrics

    monkeypatch.setattr(reward_model, "bradley_terry", nan_on_third_call)
    config = _config_file(tmp_path, tiny_model_dir, paired_file, save_every=1, max_steps=4)
    code, err = _cli(capsys, "--config", config, "micro_batch_size=2")
    assert code == 2 and len(err.splitlines()) == 1
    assert "loss became nan at step 3" in err and "step-2" in err and "--resume" in err
    assert (tmp_path / "runs" / "reward-model" / "checkpoints" / "step-2").is_dir()


def test_eval_refuses_a_model_with_two_outputs_and_incomplete_arguments(
    tmp_path, tiny_tokenizer, paired_file, capsys
):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_labels=2,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "two")
    tiny_tokenizer.save_pretrained(tmp_path / "two")
    code, err = _cli(capsys, "--eval", "--model", str(tmp_path / "two"), "--data", str(paired_file))
    assert code == 2 and "has 2 outputs; need exactly 1" in err
    code, err = _cli(capsys, "--eval", "--data", str(paired_file))
    assert code == 2 and err.endswith(
        "--eval needs --model (a reward model or rm run folder) and --data"
    )


def test_tensorboard_gets_the_steps_and_the_heldout_accuracy(rm_config, paired_file):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = rm_config(paired_file, "max_steps=2", "report_to=tensorboard", "tracker_run=rm")
    run_dir = train_reward_model(config)
    events = EventAccumulator(str(run_dir / "trackers" / "preftune"))
    events.Reload()
    rows = _metrics(run_dir)
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([r["loss"] for r in rows[:2]])
    heldout = events.Scalars("heldout/accuracy")
    assert [(e.step, e.value) for e in heldout] == [(2, pytest.approx(rows[2]["heldout/accuracy"]))]


def test_task_prompts_are_refused_for_a_reward_model():
    from preftune.config import load_reward_model_config
    from preftune.errors import ConfigError

    with pytest.raises(ConfigError, match="data.task"):
        load_reward_model_config(None, ["model=x", "data.task=sentiment"])


def test_sharded_backends_are_refused_naming_the_key(rm_config, paired_file, monkeypatch):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from preftune.errors import ConfigError

    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=2)
    monkeypatch.setattr(reward_model, "make_accelerator", lambda *a, **k: fsdp)
    with pytest.raises(ConfigError, match="^distributed_type: .*DDP, not FSDP"):
        train_reward_model(rm_config(paired_file, "max_steps=1"))
