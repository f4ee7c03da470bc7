"""The `preftune compare` command line (the study itself is tested in test_runner.py)."""

from __future__ import annotations

import yaml

from preftune.cli import main


def test_print_config_shows_the_builtin_quick_study(capsys):
    assert main(["compare", "--quick", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "smollm2-135m-instruct"
    assert [m["method"] for m in printed["methods"]][0] == "dpo" and len(printed["methods"]) == 3


def test_a_config_with_a_mistake_exits_2_naming_the_field(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"model": "m", "methods": [{"method": "dpo"}]}))
    assert main(["compare", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert "data: Field required" in error and "evaluation: Field required" in error


def test_quick_goes_with_the_builtin_study_only(tmp_path, capsys):
    assert main(["compare", "--config", str(tmp_path / "x.yaml"), "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err
