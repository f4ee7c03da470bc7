"""Where a study keeps things on disk. The runner writes here and the report reads only here.

```
<study>/study.yaml                       the resolved study config
<study>/data/train.jsonl                 on-policy scored lists (built-in task studies)
<study>/data/heldout.jsonl               the held-out prompts {"id", "prompt"[, "response"]}
<study>/runs/<label>/                    a training run (metrics.jsonl, final/, summary.json)
<study>/eval/<label>/samples.jsonl       greedy answers on the held-out prompts
<study>/eval/<label>/stats.json          gold reward, KL from the start, length, repetition
<study>/eval/<label>/<evaluation>/       results.json + judgments.jsonl of one evaluation
<study>/failures/<label>.json            why a row failed: {"step", "error"}
<study>/done/<step>                      completion markers: a finished step is never redone
<study>/report.md, report.html, results.json, plots/*.png
```
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

START = "start"  # the row of the starting model (the SFT model when the study has SFT)
SFT = "sft"


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2, allow_nan=True)
    os.replace(temporary, path)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class StudyLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "study.yaml"

    @property
    def train_data(self) -> Path:
        return self.root / "data" / "train.jsonl"

    @property
    def heldout(self) -> Path:
        return self.root / "data" / "heldout.jsonl"

    def run(self, label: str) -> Path:
        return self.root / "runs" / label

    def eval_dir(self, label: str) -> Path:
        return self.root / "eval" / label

    def samples(self, label: str) -> Path:
        return self.eval_dir(label) / "samples.jsonl"

    def stats(self, label: str) -> Path:
        return self.eval_dir(label) / "stats.json"

    def judged(self, label: str, evaluation: str) -> Path:
        return self.eval_dir(label) / evaluation

    def failure(self, label: str) -> Path:
        return self.root / "failures" / f"{label}.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def is_done(self, step: str) -> bool:
        return (self.root / "done" / step).is_file()

    def mark_done(self, step: str) -> None:
        marker = self.root / "done" / step
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def record_failure(self, label: str, step: str, error: str) -> None:
        write_json_atomic(self.failure(label), {"step": step, "error": error})

    def clear_failure(self, label: str) -> None:
        self.failure(label).unlink(missing_ok=True)
