"""The `preftune compare` command line (the study itself is tested in test_runner.py)."""

from __future__ import annotations

from pathlib import Path

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


def test_seeds_flag_sets_the_seeds_and_a_bad_count_exits_2(capsys):
    assert main(["compare", "--quick", "--seeds", "2", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seeds"] == [0, 1]
    assert main(["compare", "--quick", "--seeds", "0", "--print-config"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_the_default_folder_is_fixed_and_ctrl_c_prints_how_to_resume(tmp_path, monkeypatch, capsys):
    from preftune.experiments import runner

    folders = []

    def interrupted(self):
        folders.append(self.layout.root)
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner.StudyRunner, "run", interrupted)
    for _ in range(2):  # the same command twice: the same folder, so the second resumes
        assert main(["compare", "--quick", "--seeds", "2"]) == 130
    assert folders == [Path("studies/sentiment-quick-seeds2")] * 2
    printed = capsys.readouterr().out
    resume = "preftune compare --quick --seeds 2 --out studies/sentiment-quick-seeds2"
    assert printed.count(f"resume with: {resume}") == 2  # at the start
    assert printed.count(f"Resume with: {resume}") == 2  # on Ctrl-C
