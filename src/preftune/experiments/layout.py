"""Where a study keeps things on disk. The runner writes here and the report reads only here.

```
<study>/study.yaml                       the resolved study config
<study>/data/train.jsonl                 on-policy scored lists (built-in task studies)
<study>/data/samples.jsonl               their samples (the offline methods' sample budget)
<study>/data/heldout.jsonl               the test prompts {"id", "prompt"[, "response", "rejected"]}
<study>/data/dev.jsonl                   dev prompts, disjoint from the test prompts (sweeps)
<study>/data/preference_pairs.jsonl      held-out pairs {"id", "prompt", "chosen", "rejected"}
<study>/runs/<label>[/seed-<s>]/         a training run (metrics.jsonl, final/, summary.json)
<study>/eval/<label>[/seed-<s>]/samples.jsonl     greedy answers on the test prompts
<study>/eval/<label>[/seed-<s>]/stats.json        gold reward, KL from the start, length...
<study>/eval/<label>[/seed-<s>]/preference.json   held-out preference accuracy (implicit reward)
<study>/eval/<label>[/seed-<s>]/<evaluation>/     results.json + judgments.jsonl of one evaluation
<study>/rank/<evaluation>/               ranking.json, ranking.md, head_to_head.png
<study>/sweeps/<label>/sweep.json        a method's sweep: every point's dev metric, the chosen one
<study>/sweeps/<label>/<point>/          the point's training run and its dev answers
<study>/timings.json                     {"stages": [{"name", "seconds", "when"}]}, stages run
<study>/failures/<label>.json            why a row failed: {"step", "error"}
<study>/done/<step>                      completion markers: a finished step is never redone
<study>/report.md, report.html, results.json, plots/*.png
```
`[/seed-<s>]` appears only when the study has `seeds`; `start` never varies by seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from preftune.io import atomic_write_json

START = "start"  # the row of the starting model (the SFT model when the study has SFT)
SFT = "sft"


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _seeded(folder: Path, label: str, seed: int | None) -> Path:
    """`folder`/seed-<s> for a method's seed; the starting model's rows never vary by seed."""
    return folder if seed is None or label in (START, SFT) else folder / f"seed-{seed}"


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

    @property
    def dev(self) -> Path:
        return self.root / "data" / "dev.jsonl"

    @property
    def preference_pairs(self) -> Path:
        return self.root / "data" / "preference_pairs.jsonl"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @staticmethod
    def seeds(study: dict) -> list[int | None]:
        """The seeds of a study's method rows: [None] (paths without seed-<s>) for one seed.

        >>> StudyLayout.seeds({"seeds": [0, 1]}), StudyLayout.seeds({"seed": 3})
        ([0, 1], [None])
        >>> StudyLayout(Path("s")).samples("dpo", 1).as_posix()
        's/eval/dpo/seed-1/samples.jsonl'
        """
        return list(study.get("seeds") or [None])

    def run(self, label: str, seed: int | None = None) -> Path:
        return _seeded(self.root / "runs" / label, label, seed)

    def eval_dir(self, label: str, seed: int | None = None) -> Path:
        return _seeded(self.root / "eval" / label, label, seed)

    def samples(self, label: str, seed: int | None = None) -> Path:
        return self.eval_dir(label, seed) / "samples.jsonl"

    def stats(self, label: str, seed: int | None = None) -> Path:
        return self.eval_dir(label, seed) / "stats.json"

    def preference(self, label: str, seed: int | None = None) -> Path:
        return self.eval_dir(label, seed) / "preference.json"

    def judged(self, label: str, evaluation: str, seed: int | None = None) -> Path:
        return self.eval_dir(label, seed) / evaluation

    def ranking(self, evaluation: str) -> Path:
        return self.root / "rank" / evaluation

    def sweep(self, label: str) -> Path:
        return self.root / "sweeps" / label

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
        atomic_write_json(self.failure(label), {"step": step, "error": error})

    def clear_failure(self, label: str) -> None:
        self.failure(label).unlink(missing_ok=True)
