"""Run-level behaviour: LoRA outputs, non-finite losses, the CLI, chaining SFT into a method."""

import json
import math

import pytest
import yaml

import preftune.train.trainer as trainer_module
from preftune.cli import main
from preftune.errors import TrainingError
from preftune.train import train
from preftune.train.checkpoint import latest_checkpoint


@pytest.mark.parametrize("reference", ["live", "precompute"])
def test_lora_run_saves_merged_weights_and_adapters(make_config, paired_file, reference):
    lora = {"r": 2, "target_modules": ["q_proj"]}
    config = make_config("dpo", paired_file, max_steps=2, reference=reference, lora=lora)
    run_dir = train(config)
    assert (run_dir / "final-adapter" / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_non_finite_loss_stops_naming_step_and_batch(make_config, paired_file, monkeypatch):
    real, calls = trainer_module.compute, {"n": 0}

    def poisoned(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), metrics

    monkeypatch.setattr(trainer_module, "compute", poisoned)
    config = make_config("dpo", paired_file, max_steps=3, save_every=1)  # 2 micro-batches a step
    with pytest.raises(TrainingError, match=r"loss became nan at step 2 \(batch ids: \[") as error:
        train(config)
    assert "checkpoint" in str(error.value)
    assert latest_checkpoint(config.run_dir).name == "step-1"
    assert not (config.run_dir / "final").exists()


def test_cli_sft_then_train_from_the_sft_run(tmp_path, tiny_model_dir, paired_file, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "method": "dpo",
                "data": {"path": str(paired_file)},
                "batch_size": 2,
                "max_steps": 1,
                "max_length": 64,
                "max_prompt_length": 32,
                "output_dir": str(tmp_path / "runs"),
            }
        )
    )
    assert main(["sft", "--config", str(path), "run_name=sft", "lr=1e-3"]) == 0
    sft_dir = tmp_path / "runs" / "sft"
    assert yaml.safe_load((sft_dir / "config.yaml").read_text())["method"] == "sft"
    args = ["train", "--config", str(path), "--method", "simpo", f"model={sft_dir}"]
    assert main(args) == 0
    resolved = yaml.safe_load((tmp_path / "runs" / "simpo" / "config.yaml").read_text())
    assert resolved["model"] == str(sft_dir / "final")
    finished = capsys.readouterr().out
    assert "run finished" in finished and "tokens/s, peak memory" in finished
    summary = json.loads((tmp_path / "runs" / "simpo" / "summary.json").read_text())
    assert summary["model"] == str(sft_dir / "final")
    # --resume on a finished run returns at once; without it the folder is refused.
    assert main([*args, "--resume"]) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_bf16_mixed_precision_trains(make_config, paired_file):
    run_dir = train(make_config("dpo", paired_file, max_steps=1, mixed_precision="bf16"))
    line = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(line["loss"]) and line["grad_norm"] > 0
