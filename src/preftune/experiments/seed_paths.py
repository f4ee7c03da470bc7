"""Where a seed's files live, as the report reads them (the study folder's documented layout).

With study.yaml `seeds: [0, 1, 2]` every method runs once per seed: runs/<label>/seed-<s>/ and
eval/<label>/seed-<s>/. The starting model (`start`, `sft`) does not vary by seed and keeps one
folder; a one-seed study keeps every path as it is without seeds.

>>> from pathlib import Path
>>> seeded(Path("eval/dpo"), "dpo", 1).as_posix(), seeded(Path("eval/start"), "start", 1).as_posix()
('eval/dpo/seed-1', 'eval/start')
"""

from __future__ import annotations

from pathlib import Path

from preftune.experiments.layout import SFT, START


def study_seeds(study: dict) -> list[int | None]:
    """The seeds every method ran with; [None] for a one-seed study (paths as without seeds)."""
    return list(study.get("seeds") or []) or [None]


def seeded(folder: Path, label: str, seed: int | None) -> Path:
    """`folder`/seed-<s> for a method's seed; the start's folders have no seeds."""
    return folder if seed is None or label in (START, SFT) else folder / f"seed-{seed}"
