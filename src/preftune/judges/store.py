"""judgments.jsonl: every decision with the judge's raw output, doubling as a cache.

A decision is keyed by the judge's identity, the prompt and both responses (in order), so a
rerun, or another comparison that meets the same pair, never pays for it twice. Rows are
appended and flushed one at a time: a crash or Ctrl-C loses no finished decision. Decisions
that ended in "error" are kept on disk but not reused: a rerun asks again, handing the judge
the `earlier` error decision so that an order already answered is not paid for twice.
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
        self._cached: dict[str, dict] = {}
        self._errors: dict[str, dict] = {}  # the last error decision of each undecided key
        for row in read_jsonl(self.path):
            self._remember(row)
        self._appender = JsonlAppender(self.path)

    def _remember(self, row: dict) -> None:
        if row.get("winner") == "error":
            if row["key"] not in self._cached:
                self._errors[row["key"]] = row
        else:
            self._cached[row["key"]] = row
            self._errors.pop(row["key"], None)

    def lookup(self, key: str) -> Judgment | None:
        """The cached decision of `key`, None when there is none (or only errors)."""
        return _judgment(self._cached.get(key))

    def earlier(self, key: str) -> Judgment | None:
        """The last decision of `key` that ended in "error", for a judge to resume from."""
        return _judgment(self._errors.get(key))

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
        self._remember(row)

    def close(self) -> None:
        self._appender.close()


def _judgment(row: dict | None) -> Judgment | None:
    if row is None:
        return None
    return Judgment(
        row["winner"],
        raw=row.get("raw"),
        verdicts=row.get("verdicts", []),
        score_a=row.get("score_a"),
        score_b=row.get("score_b"),
    )
