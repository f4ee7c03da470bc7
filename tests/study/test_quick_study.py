"""`preftune compare --quick` on SmolLM2-135M-Instruct: the CI smoke test of the whole study."""

from __future__ import annotations

import json

import pytest

from preftune.cli import main


@pytest.mark.slow
def test_quick_study_runs_end_to_end_and_writes_the_report(tmp_path):
    out = tmp_path / "study"
    assert main(["compare", "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {row["label"]: row for row in results["rows"]}
    assert set(rows) == {"start", "dpo", "simpo", "mppo-pair-mnm"}
    assert all(row["status"] == "ok" for row in rows.values()), rows
    for label in ("dpo", "simpo", "mppo-pair-mnm"):
        figures = rows[label]["evaluations"]["sentiment"]
        assert 0.0 <= figures["ci_low"] <= figures["win_rate"] <= figures["ci_high"] <= 1.0
        assert rows[label]["dynamics"]["steps"] > 0
    assert rows["dpo"]["stats"]["kl"] != 0.0  # training moved the model away from the start
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # The ranking path: every row ranked on the test prompts, and DPO's implicit reward tested
    # on pairs of the start model's samples on the (disjoint) dev prompts.
    ranking = json.loads((out / "rank" / "sentiment" / "ranking.json").read_text())
    assert {entry["label"] for entry in ranking["ranking"]} == set(rows)
    assert ranking["n_prompts"] == 32 and ranking["seeds"] == 1
    preference = json.loads((out / "eval" / "dpo" / "preference.json").read_text())
    assert preference["n"] > 0 and 0.0 <= preference["accuracy"] <= 1.0
