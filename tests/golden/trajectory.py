"""Golden trajectories: a few methods trained for a few steps on the tiny seeded model.

Each case's per-step loss and gradient norm are stored in `trajectories.json`; the test
retrains and compares, so a refactor that changes the numbers is caught at once. When a
change is meant to move them (a loss fixed to follow its paper), regenerate and say why in
the commit:

    PYTHONPATH=src python tests/golden/trajectory.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

STORE = Path(__file__).with_name("trajectories.json")
STEPS = 3
# method -> the preference file shape it trains on (preftune.testing.write_preference_files)
CASES = {"dpo": "paired", "kto": "binary", "simpo": "paired", "mppo-pair-mnm": "scored"}
FIELDS = ("loss", "grad_norm")


def run_case(method: str, folder: Path) -> list[dict]:
    """Train `method` for STEPS steps from the tiny model (seed 0); the logged figures."""
    import os

    from preftune.config import build_train_config
    from preftune.io import read_jsonl
    from preftune.testing import save_tiny_model, write_preference_files
    from preftune.train import train

    os.environ["PREFTUNE_CACHE"] = str(folder / "cache")  # never reuse another run's cache
    data = write_preference_files(folder)[CASES[method]]
    config = build_train_config(
        {
            "model": str(save_tiny_model(folder / "model")),
            "method": method,
            "data": {"path": str(data)},
            "batch_size": 4,
            "micro_batch_size": 2,
            "lr": 1e-3,
            "max_steps": STEPS,
            "max_length": 64,
            "max_prompt_length": 32,
            "output_dir": str(folder / "runs"),
            "seed": 0,
        }
    )
    rows = read_jsonl(train(config) / "metrics.jsonl")
    return [{field: row[field] for field in FIELDS} for row in rows]


def regenerate() -> None:
    from preftune.io import atomic_write_json

    trajectories = {}
    for method in CASES:
        with tempfile.TemporaryDirectory() as folder:
            trajectories[method] = run_case(method, Path(folder))
        print(f"{method}: {trajectories[method]}")
    atomic_write_json(STORE, trajectories)
    print(f"wrote {STORE}")


if __name__ == "__main__":
    sys.exit(regenerate())
