"""judgments.jsonl: every decision with the judge's raw output, doubling as a cache.

A decision is keyed by the judge's identity, the prompt and both responses (in order), so a
rerun, or another comparison that meets the same pair, never pays for it twice. Rows are
appended and flushed one at a time: a crash or Ctrl-C loses no finished decision. Decisions
that ended in "error" are kept on disk but not reused: a rerun asks again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from preftune.io import JsonlAppender, read_jsonl
from preftune.judges.base import Judgment


def judgment_key(identity: str, prompt, response_a: str, response_b: str) -> str:
    payload = json.dumps([identity, prompt, response_a, response_b], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgmentStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cached = {
            row["key"]: row for row in read_jsonl(self.path) if row.get("winner") != "error"
        }
        self._appender = JsonlAppender(self.path)

    def lookup(self, key: str) -> Judgment | None:
        row = self._cached.get(key)
        if row is None:
            return None
        return Judgment(
            row["winner"],
            raw=row.get("raw"),
            verdicts=row.get("verdicts", []),
            score_a=row.get("score_a"),
            score_b=row.get("score_b"),
        )

    def record(self, key: str, judge_identity: str, judgment: Judgment, **context) -> None:
        row = {
            "key": key,
            "judge": judge_identity,
            **context,
            "winner": judgment.winner,
            "verdicts": judgment.verdicts,
            "score_a": judgment.score_a,
            "score_b": judgment.score_b,
            "raw": judgment.raw,
        }
        self._appender.write(row)
        if judgment.winner != "error":
            self._cached[key] = row

    def close(self) -> None:
        self._appender.close()
