"""`preftune --help` is written for users; `preftune --version` says the version."""

from __future__ import annotations

import pytest

from preftune import __version__
from preftune.cli import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"preftune {__version__}\n"


@pytest.mark.parametrize("argv", [["--help"], []])
def test_help_lists_every_command_and_where_to_start(capsys, argv):
    if argv:
        with pytest.raises(SystemExit):
            main(argv)
    else:
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: preftune")
    assert "Align causal language models with preference data" in out
    for name, line in COMMANDS.items():
        assert f"    {name}" in out and line[:40] in out
    assert "preftune compare --quick" in out and "preftune methods" in out
    assert "entry point" not in out and "Thin" not in out  # no developer notes
