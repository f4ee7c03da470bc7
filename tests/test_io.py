"""preftune.io: atomic writes, JSON Lines round trips, folder locks, redaction."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from preftune.errors import ConfigError, DataError
from preftune.io import (
    REDACTED,
    FolderLock,
    JsonlAppender,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    iter_lines,
    json_line,
    max_row_bytes,
    read_jsonl,
    read_text,
    redact,
    register_secret,
    write_jsonl,
)

# Every character Python's str.splitlines() breaks on besides "\n" itself.
LINE_BREAKS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r\n"]


@pytest.mark.parametrize("separator", LINE_BREAKS)
def test_jsonl_round_trips_every_unicode_line_separator(tmp_path, separator):
    rows = [{"id": "1", "response": f"one{separator}two"}, {"id": "2", "response": "three"}]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    assert read_jsonl(path) == rows
    with JsonlAppender(tmp_path / "appended.jsonl") as appender:
        for row in rows:
            appender.write(row)
    assert read_jsonl(tmp_path / "appended.jsonl") == rows


def test_the_three_json_legal_separators_are_written_escaped():
    line = json_line({"text": "a\u2028b\u2029c\u0085d"})
    assert "\u2028" not in line and "\u2029" not in line and "\u0085" not in line
    assert line.count("\n") == 1 and json.loads(line) == {"text": "a\u2028b\u2029c\u0085d"}


def test_torn_last_line_is_skipped_and_repaired_but_a_torn_middle_line_is_an_error(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a":')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    with pytest.raises(DataError, match=r"rows.jsonl:3"):
        read_jsonl(path, tolerate_torn_tail=False)
    JsonlAppender(path).close()
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    path.write_text('{"a": 1}\n{"a":\n{"a": 3}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_a_row_that_is_not_an_object_names_its_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(
        DataError, match=r"rows.jsonl:2: each line must be a JSON object, got an array"
    ):
        read_jsonl(path)


def test_read_text_names_non_utf8_files_and_folders(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("model: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.yaml: not UTF-8 text"):
        read_text(tmp_path / "latin1.yaml")
    with pytest.raises(DataError, match=r"is a folder"):
        read_text(tmp_path)


def test_atomic_write_follows_the_umask_and_keeps_the_old_file_on_failure(tmp_path):
    path = atomic_write_json(tmp_path / "results.json", {"win_rate": 0.5})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask

    def broken(stream):
        stream.write(b'{"half": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"win_rate": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_registered_secrets_and_authorization_headers_are_redacted_in_writes(tmp_path):
    key = "sk-live-redact-me-0123456789"
    register_secret(key)
    echoed = f"invalid key {key}; request had Authorization: Bearer tok_abcdefgh1234"
    assert key not in redact(echoed) and "tok_abcdefgh1234" not in redact(echoed)
    assert redact("the bearer of good news") == "the bearer of good news"
    atomic_write_text(tmp_path / "failure.log", echoed)
    write_jsonl(tmp_path / "judgments.jsonl", [{"raw": echoed}])
    for name in ("failure.log", "judgments.jsonl"):
        text = (tmp_path / name).read_text()
        assert key not in text and REDACTED in text


LOCK_HOLDER = """
import sys, time
from preftune.io import FolderLock
lock = FolderLock(sys.argv[1], what="study folder").acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            ConfigError, match=rf"in use by another preftune process \(pid {holder.pid}\)"
        ):
            FolderLock(tmp_path, what="study folder").acquire()
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(tmp_path) as lock:  # a killed holder leaves the folder free
        assert lock.held


def test_an_over_long_line_is_named_without_being_held_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFTUNE_MAX_ROW_BYTES", "64")
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": "' + "x" * 5000 + '"}\n{"a": 3}\n')
    lines = list(iter_lines(path))
    assert lines == [(1, '{"a": 1}\n'), (2, None), (3, '{"a": 3}\n')]
    with pytest.raises(
        DataError,
        match=r"rows.jsonl:2: the line is longer than 64 bytes; set PREFTUNE_MAX_ROW_BYTES",
    ):
        read_jsonl(path)
    monkeypatch.setenv("PREFTUNE_MAX_ROW_BYTES", "10000")
    assert len(read_jsonl(path)) == 3


def test_a_line_of_exactly_the_limit_is_read(tmp_path):
    line = '{"a": "' + "x" * 10 + '"}\n'
    path = tmp_path / "rows.jsonl"
    path.write_text(line * 2)
    assert [text for _, text in iter_lines(path, max_bytes=len(line))] == [line, line]
    assert [text for _, text in iter_lines(path, max_bytes=len(line) - 2)] == [None, None]


def test_a_bad_row_limit_setting_is_a_config_error(monkeypatch):
    monkeypatch.setenv("PREFTUNE_MAX_ROW_BYTES", "16MB")
    with pytest.raises(ConfigError, match="PREFTUNE_MAX_ROW_BYTES='16MB' is not a whole number"):
        max_row_bytes()


def test_non_utf8_bytes_name_the_line_and_a_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n' + '{"a": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"rows.jsonl:2: not UTF-8 text"):
        read_jsonl(path)
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    assert read_jsonl(path) == [{"a": 1}]


def test_appender_repairs_a_torn_tail_longer_than_its_read_chunk(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": "' + "x" * (3 * 2**20))
    JsonlAppender(path).close()
    assert path.read_text() == '{"a": 1}\n'
    path.write_text('{"a": "' + "x" * 100)
    JsonlAppender(path).close()
    assert path.read_text() == ""


def test_tensor_cache_shards_follow_the_umask_like_every_other_file(tmp_path):
    """Issue 17.4: shards (like results.json) were written with mkstemp's 0600."""
    import torch

    from preftune.models.disk_cache import TensorCache

    cache = TensorCache(tmp_path / "cache")
    cache.add({"a": torch.ones(2)})
    (shard,) = (tmp_path / "cache").iterdir()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(shard.stat().st_mode) == 0o666 & ~mask
    assert torch.equal(TensorCache(tmp_path / "cache")["a"], torch.ones(2))
