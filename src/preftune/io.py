"""Every file preftune writes goes through here: atomic writes, JSON Lines, folder locks and
secret redaction.

- Atomic: a file is written to a temporary sibling, flushed to disk and renamed over the
  target, so a reader (or the next run after a kill) sees the old file or the new one, never
  half of one. New files get the permissions the user's umask gives (not mkstemp's 0600).
- JSON Lines: one row per `\\n`; the Unicode line separators U+2028, U+2029 and U+0085 are
  written escaped, and reading splits on `\\n` only, so text holding them round-trips. Files
  are read one line at a time (`iter_lines`); a line over `max_row_bytes()` (16 MiB, or
  `PREFTUNE_MAX_ROW_BYTES`) is refused with its file and line instead of filling memory.
  `read_numbered_jsonl` + `require_fields` name the line and field of a row that lacks one.
- Locks: a run or study folder is held by one process at a time (`FolderLock`); a second one
  is refused with the holder's pid.
- Redaction: a secret registered with `register_secret` (an API key read from the
  environment) is replaced by `[REDACTED]` in everything written through this module and in
  the errors the CLI prints, together with `Authorization:` / `Bearer` header values.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> path = write_jsonl(folder / "rows.jsonl", [{"text": "a\\u2028b"}])
>>> read_jsonl(path)
[{'text': 'a\\u2028b'}]
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from preftune.errors import ConfigError, DataError

# -- secrets -------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
_SECRETS: set[str] = set()
# An Authorization header's value, or a bearer token (8+ token characters, so that prose such
# as "the bearer of" is left alone).
_HEADER = re.compile(
    r"(?i)\b(authorization\s*[:=]\s*(?:bearer\s+|basic\s+)?|bearer\s+)(?=[\w.~+/=-]{8})[^\s\"',}]+"
)


def register_secret(value: str | None) -> None:
    """Redact `value` from everything written or printed from now on (ignored when short:
    redacting a 3-character string would mangle ordinary text)."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret and every Authorization/Bearer value replaced.

    >>> register_secret("sk-test-0123456789")
    >>> redact("401: key sk-test-0123456789 rejected; Authorization: Bearer abc.def.123")
    '401: key [REDACTED] rejected; Authorization: Bearer [REDACTED]'
    """
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    return _HEADER.sub(lambda match: match.group(1) + REDACTED, text)


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside a JSON-like value (dicts, lists, strings)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    return value


# -- atomic writes ----------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(stream)` on a temporary file beside `path`, then move it into place.

    The parent folder is created; on any error the temporary file is removed and `path` is
    left as it was. Used for every file the project writes (tensors via `torch.save` too).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8, secrets redacted) atomically."""
    return atomic_write_bytes(path, redact(text).encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write `data` as JSON (secrets redacted, NaN kept as JSON's NaN literal) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def read_text(path: str | Path, *, what: str = "file") -> str:
    """A UTF-8 text file; a missing file, a folder or other bytes are a DataError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"is a folder, expected a {what}", source=str(path))
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"no such {what}", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise not_utf8(error, str(path)) from None


def not_utf8(error: UnicodeDecodeError, source: str) -> DataError:
    """The one-line error for a file that is not UTF-8 (`source` names it, and the line)."""
    return DataError(
        f"not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8", source=source
    )


# -- JSON Lines -------------------------------------------------------------------------------

_LINE_SEPARATORS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}


def json_line(row: Any) -> str:
    """One JSONL line (with its `\\n`): UTF-8 kept readable, line separators escaped, secrets
    redacted."""
    text = redact(json.dumps(row, ensure_ascii=False))
    for raw, escaped in _LINE_SEPARATORS.items():
        text = text.replace(raw, escaped)
    return text + "\n"


MAX_ROW_BYTES_VARIABLE = "PREFTUNE_MAX_ROW_BYTES"
DEFAULT_MAX_ROW_BYTES = 16 * 2**20
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_SKIP_CHUNK = 2**20


def max_row_bytes() -> int:
    """The longest JSONL line read (16 MiB unless `PREFTUNE_MAX_ROW_BYTES` says otherwise)."""
    value = os.environ.get(MAX_ROW_BYTES_VARIABLE, "")
    try:
        limit = int(value) if value.strip() else DEFAULT_MAX_ROW_BYTES
    except ValueError:
        raise ConfigError(
            f"{MAX_ROW_BYTES_VARIABLE}={value!r} is not a whole number of bytes"
        ) from None
    if limit < 1:
        raise ConfigError(f"{MAX_ROW_BYTES_VARIABLE} must be at least 1, got {limit}")
    return limit


def too_long_problem(limit: int) -> str:
    return (
        f"the line is longer than {limit:,} bytes; set {MAX_ROW_BYTES_VARIABLE} to a larger "
        "number of bytes to read it"
    )


def iter_lines(
    path: str | Path, *, max_bytes: int | None = None
) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each non-blank line of a UTF-8 file, read one line at a time.

    Lines end at `\n` only (U+2028 and friends are text). A line longer than `max_bytes`
    (default `max_row_bytes()`) is skipped without being held in memory and given as
    (number, None). Bytes that are not UTF-8 are a DataError naming the file and line.
    """
    path = Path(path)
    limit = max_row_bytes() if max_bytes is None else max_bytes
    if path.is_dir():
        raise DataError("is a folder, expected a JSON Lines file", source=str(path))
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError("no such JSON Lines file", source=str(path)) from None
    with handle:
        number = 0
        while line := handle.readline(limit + 1):
            number += 1
            if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
                while not line.endswith(b"\n") and (line := handle.readline(_SKIP_CHUNK)):
                    pass  # the rest of the over-long line, a chunk at a time
                yield number, None
                continue
            if number == 1 and line.startswith(_BYTE_ORDER_MARK):
                line = line[len(_BYTE_ORDER_MARK) :]
            if not line.strip():
                continue
            try:
                yield number, line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise not_utf8(error, f"{path}:{number}") from None


def parse_row(line: str) -> tuple[dict | None, str | None]:
    """(row, None) for a line holding a JSON object, else (None, what is wrong with it)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        return None, f"invalid JSON: {error.msg} (character {error.pos + 1})"
    if not isinstance(row, dict):
        return None, f"each line must be a JSON object, got {_json_kind(row)}"
    return row, None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", list: "an array", str: "a string"}.get(type(value), "a number")


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = True) -> list[dict]:
    """Every row of `path` ([] when it does not exist), split on `\\n` only, streamed.

    Only the last line may be torn (a writer killed mid-row) and is skipped then; anything
    else that is not a JSON object, or a line over `max_row_bytes()`, is a DataError naming
    the file and line.
    """
    return [row for _, row in read_numbered_jsonl(path, tolerate_torn_tail=tolerate_torn_tail)]


def read_numbered_jsonl(
    path: str | Path, *, tolerate_torn_tail: bool = True
) -> list[tuple[int, dict]]:
    """`read_jsonl` with each row's line number: [(line, row)]."""
    path = Path(path)
    if not path.exists():
        return []
    limit = max_row_bytes()
    rows, torn = [], None
    for number, line in iter_lines(path, max_bytes=limit):
        if torn is not None:  # a torn line with rows after it is damage, not a killed writer
            raise DataError(torn[1], source=f"{path}:{torn[0]}")
        if line is None:
            raise DataError(too_long_problem(limit), source=f"{path}:{number}")
        row, problem = parse_row(line)
        if row is not None:
            rows.append((number, row))
        elif problem.startswith("invalid JSON") and tolerate_torn_tail:
            torn = (number, problem)
        else:
            raise DataError(problem, source=f"{path}:{number}")
    return rows


def require_fields(path: str | Path, rows: list[tuple[int, dict]], keys: Iterable[str]) -> None:
    """A DataError naming the file, line and field of the first row (from
    `read_numbered_jsonl`) that lacks one of `keys` or holds null there."""
    for number, row in rows:
        for key in keys:
            if row.get(key) is None:
                state = "null" if key in row else f"missing; the row has {sorted(row)}"
                raise DataError(state, source=f"{path}:{number}", field=key)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write a whole JSONL file atomically."""
    return atomic_write_bytes(path, "".join(json_line(row) for row in rows).encode("utf-8"))


class JsonlAppender:
    """Appends rows to a JSONL file, flushed after each row; safe to share between threads.

    A half-written last line left by a killed writer is cut on open; finished rows stay.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def _repair_torn_tail(self) -> None:
        """Cut everything after the last `\\n`, reading the file backwards from its end."""
        if not self.path.exists():
            return
        with self.path.open("r+b") as handle:
            end = position = handle.seek(0, os.SEEK_END)
            while position > 0:
                start = max(0, position - _SKIP_CHUNK)
                handle.seek(start)
                chunk = handle.read(position - start)
                if position == end and chunk.endswith(b"\n"):
                    return
                if (cut := chunk.rfind(b"\n")) >= 0:
                    handle.truncate(start + cut + 1)
                    return
                position = start
            handle.truncate(0)

    def write(self, row: Any) -> None:
        line = json_line(row)
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- folder locks -----------------------------------------------------------------------------


class FolderLock:
    """Hold `folder` for this process: a second preftune process on the same run or study
    folder gets a ConfigError (exit 2) naming the holder's pid instead of corrupting files.

    The lock is an advisory `flock` on `<folder>/.lock`, released when the process ends, even
    by a kill, so a crashed run never leaves the folder locked.

    >>> import tempfile
    >>> with FolderLock(tempfile.mkdtemp(), what="run folder") as lock:
    ...     lock.held
    True
    """

    def __init__(self, folder: str | Path, *, what: str = "folder"):
        self.folder = Path(folder)
        self.what = what
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> FolderLock:
        import fcntl

        if self.held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = (self.folder / ".lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigError(
                f"{self.what} {self.folder} is in use by another preftune process (pid "
                f"{holder}); wait for it to finish or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
