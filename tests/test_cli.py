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


def test_a_printed_error_has_registered_secrets_redacted(monkeypatch, capsys):
    register_secret(SECRET)

    def leaky(args):
        raise ConfigError(f"the endpoint said 401 for key {SECRET}")

    monkeypatch.setattr(preftune.commands.methods, "run", leaky)
    assert main(["methods"]) == 2
    assert capsys.readouterr().err == (
        "preftune methods: error: the endpoint said 401 for key [REDACTED]\n"
    )


def test_an_unexpected_error_prints_a_redacted_traceback_and_exits_1(monkeypatch, capsys):
    register_secret(SECRET)

    def broken(args):
        raise RuntimeError(f"Authorization: Bearer {SECRET}")

    monkeypatch.setattr(preftune.commands.methods, "run", broken)
    assert main(["methods"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and SECRET not in err
    assert "RuntimeError: Authorization: Bearer [REDACTED]" in err


@pytest.mark.parametrize("argv", [["methods", "--json"], ["methods"]])
def test_a_normal_run_still_exits_0(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out
