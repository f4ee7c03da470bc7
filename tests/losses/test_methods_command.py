"""`preftune methods`: the table and the JSON list every registered method."""

from __future__ import annotations

import json
import subprocess
import sys

from preftune.cli import main
from preftune.losses import METHODS


def test_table_lists_every_method_with_view_reference_and_defaults(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    for name, spec in METHODS.items():
        assert spec.view in rows[name]
        assert ("yes" if spec.needs_reference else "no") in rows[name].split()
        for hparam, default in spec.defaults.items():
            assert f"{hparam}={default}" in rows[name]


def test_json_round_trips_the_registry(capsys):
    assert main(["methods", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)["methods"]}
    assert set(listed) == set(METHODS)
    assert listed["kto"]["needs"] == ["labels"]
    assert listed["simpo"]["hparams"] == {"beta": 2.0, "gamma": 0.5}
    assert listed["dpo"]["needs_reference"] is True
    assert listed["rdpo"]["hparam_details"]["epsilon"] == {
        "default": 0.1,
        "allowed": "a number in [0, 0.5)",
        "doc": "the label flip rate",
    }


def test_view_filter(capsys):
    assert main(["methods", "--json", "--view", "binary"]) == 0
    views = {entry["view"] for entry in json.loads(capsys.readouterr().out)["methods"]}
    assert views == {"binary"}


def test_view_filter_lists_the_online_methods(capsys):
    assert main(["methods", "--json", "--view", "online"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)["methods"]}
    assert set(listed) == {"grpo", "rloo", "ppo", "online-dpo"}
    assert listed["grpo"]["hparams"]["loss_type"] == "dapo"  # TRL 1.16's default


def test_listing_methods_does_not_import_torch():
    code = "import sys; from preftune.cli import main; main(['methods']); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().endswith("False")
