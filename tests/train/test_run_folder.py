"""What a finished run keeps and reports, and one process per run folder."""

import json
import subprocess
import sys
import warnings

import pytest
import yaml

from preftune.cli import main
from preftune.train import train
from preftune.train.checkpoint import latest_checkpoint

# Trains and blocks inside the first loss call, holding the run folder.
HOLDER = """
import json, sys, time
import preftune.train.trainer as trainer_module
from preftune.config import build_train_config
from preftune.train import train

def blocked(*args, **kwargs):
    print("training", flush=True)
    time.sleep(120)

trainer_module.compute = blocked
train(build_train_config(json.loads(sys.argv[1])))
"""


def test_a_second_train_on_the_same_run_folder_exits_2_naming_the_holder(
    tmp_path, make_config, paired_file, capsys
):
    config = make_config("dpo", paired_file, max_steps=2)
    values = config.model_dump(mode="json")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(config.to_yaml())
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, json.dumps(values)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "training"
        run_dir = config.run_dir
        before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")}
        assert main(["train", "--config", str(config_path), "--resume"]) == 2
        error = capsys.readouterr().err
        assert f"run folder {run_dir} is in use by another preftune process" in error
        assert f"(pid {holder.pid})" in error
        assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")} == before
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "--config", str(config_path), "--resume"]) == 0  # the kill freed it


def test_a_finished_run_keeps_the_final_model_and_reports_its_speed(make_config, paired_file):
    run_dir = train(make_config("dpo", paired_file, max_steps=3))
    assert (run_dir / "final" / "model.safetensors").exists()
    assert not (run_dir / "checkpoints").exists(), "no checkpoint was asked for"
    summary = json.loads((run_dir / "summary.json").read_text())
    speed = summary["speed"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = sorted(row["step_seconds"] for row in rows[1:])  # the first step is warm-up
    assert speed["s_per_step_median"] == pytest.approx((steps[0] + steps[1]) / 2)
    assert "leaving out the first step" in speed["s_per_step_note"]
    assert speed["train_seconds"] >= sum(row["step_seconds"] for row in rows)
    assert speed["tokens_per_s"] == pytest.approx(summary["tokens"] / speed["train_seconds"])
    assert summary["peak_memory_mib"] > 10 and summary["peak_memory_measure"] == "process max RSS"


@pytest.mark.parametrize(
    ("settings", "kept"),
    [({"keep_final_checkpoint": True}, "step-3"), ({"save_every": 2}, "step-3")],
)
def test_the_last_checkpoint_is_kept_only_when_asked(make_config, paired_file, settings, kept):
    run_dir = train(make_config("dpo", paired_file, max_steps=3, **settings))
    assert latest_checkpoint(run_dir).name == kept
    assert (latest_checkpoint(run_dir) / "optimizer.pt").exists()
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [kept]


def test_a_run_folder_from_before_a_new_config_key_resumes_silently(make_config, paired_file):
    config = make_config("dpo", paired_file, max_steps=2, save_every=1)
    train(config)
    (config.run_dir / "summary.json").unlink()
    path = config.run_dir / "config.yaml"
    written = yaml.safe_load(path.read_text())
    del written["keep_final_checkpoint"]  # a key this run's preftune did not have
    path.write_text(yaml.safe_dump(written))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config.model_copy(update={"resume": True}))
    assert not [w for w in caught if "changed settings" in str(w.message)]
    assert (config.run_dir / "summary.json").exists()
