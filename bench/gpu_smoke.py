"""GPU smoke runs for bench/gpu.sh: `preftune train` as a user runs it, on a tiny random
Llama-style model and a few preference pairs written to a temporary folder (no Hub access).

    python bench/gpu_smoke.py qlora   # 4-bit NF4 base + LoRA adapters (bitsandbytes, peft)
    python bench/gpu_smoke.py fsdp    # 2 processes under `accelerate launch --use_fsdp`

Prints one JSON object: {"case", "ok", "seconds", "steps", "final_loss"} or, when the run
cannot start or fails, {"case", "ok": false, "reason"} with the command's last output line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from preftune.testing import save_tiny_model, write_preference_files

STEPS = 3


def _train_config(folder: Path, **extra) -> Path:
    """A 3-step DPO run of the tiny model on the paired test data, as a config file."""
    data = write_preference_files(folder)["paired"]
    config = {
        "model": str(save_tiny_model(folder / "model")),
        "method": "dpo",
        "data": {"path": str(data)},
        "batch_size": 2,
        "max_steps": STEPS,
        "lr": 1e-4,
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(folder / "runs"),
        "run_name": "smoke",
        **extra,
    }
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _command(case: str, config: Path) -> list[str]:
    train = ["-m", "preftune.cli", "train", "--config", str(config)]
    if case == "qlora":
        return [sys.executable, *train]
    launch = ["-m", "accelerate.commands.launch", "--num_processes", "2", "--use_fsdp"]
    return [sys.executable, *launch, *train]


def run(case: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        extra = {"quantization": {"bits": 4}, "lora": {"r": 4}} if case == "qlora" else {}
        config = _train_config(folder, **extra)
        started = time.perf_counter()
        done = subprocess.run(_command(case, config), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
            return {"case": case, "ok": False, "reason": last[-1], "seconds": seconds}
        summary = json.loads((folder / "runs" / "smoke" / "summary.json").read_text())
        return {
            "case": case,
            "ok": summary["steps"] == STEPS,
            "seconds": round(seconds, 1),
            "steps": summary["steps"],
            "final_loss": summary["final_metrics"].get("loss"),
        }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["qlora", "fsdp"])
    print(json.dumps(run(parser.parse_args(argv).case)))


if __name__ == "__main__":
    main()
