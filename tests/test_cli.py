"""The CLI's own promises: quiet exit on a closed pipe, redacted errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import preftune.commands.methods
from preftune.cli import main
from preftune.errors import ConfigError
from preftune.io import register_secret

SRC = str(Path(__file__).parents[1] / "src")
SECRET = "sk-cli-test-0123456789abcdef"


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """Issue 17.14: `preftune methods --json | head` ended in a BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": SRC}
    command = [sys.executable, "-m", "preftune.cli", "methods", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert stderr == ""


@pytest.mark.parametrize(
    ("error", "code", "printed"),
    [
        (ConfigError(f"401 for key {SECRET}"), 2, "preftune methods: error: 401 for key [REDACTED]\n"),
        (RuntimeError(f"Authorization: Bearer {SECRET}"), 1, "RuntimeError: Authorization: Bearer [REDACTED]\n"),
    ],
)  # fmt: skip
def test_printed_errors_and_tracebacks_have_secrets_redacted(
    monkeypatch, capsys, error, code, printed
):
    """A user error is one redacted line (exit 2); an unexpected one a redacted traceback."""
    register_secret(SECRET)

    def failing(args):
        raise error

    monkeypatch.setattr(preftune.commands.methods, "run", failing)
    assert main(["methods"]) == code
    err = capsys.readouterr().err
    assert err.endswith(printed) and SECRET not in err
    assert err.startswith("Traceback") == (code == 1)


@pytest.mark.parametrize("argv", [["methods", "--json"], ["methods"]])
def test_a_normal_run_still_exits_0(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out


@pytest.mark.parametrize("fails", [False, True])
def test_a_command_that_joined_a_process_group_leaves_it(monkeypatch, tmp_path, capsys, fails):
    """Left to interpreter shutdown, gloo's threads aborted a finished rank (SIGABRT,
    "terminate called without an active exception"), so torchrun failed the job."""
    import torch.distributed as dist

    def joins_a_group(args):
        store = dist.FileStore(str(tmp_path / "store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        if fails:
            raise ConfigError("a bad key")

    monkeypatch.setattr(preftune.commands.methods, "run", joins_a_group)
    assert main(["methods"]) == (2 if fails else 0)
    assert not dist.is_initialized()
    capsys.readouterr()
