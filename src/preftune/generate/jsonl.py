"""JSON Lines files that are appended to one finished row at a time, so a crash loses nothing.

Samples, judgments and grades all live in such files; a half-written last line (the process
was killed mid-write) is skipped on reading rather than failing the rerun that repairs it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from preftune.errors import DataError


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = True) -> list[dict]:
    """Every row of `path` ([] when it does not exist). Only the last line may be torn."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if tolerate_torn_tail and number == len(lines):
                break
            raise DataError(f"not valid JSON ({error.msg})", source=f"{path}:{number}") from None
    return rows


class JsonlAppender:
    """Appends rows to a JSONL file, flushed after each row; safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def _repair_torn_tail(self) -> None:
        """Cut a half-written last line (the writer was killed mid-row); finished rows stay."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def write(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
