"""`report_to`: each tracker, offline, gets the config once and every metrics.jsonl record under
the same names and steps; a study's final table and plots arrive as a run of their own."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from preftune.errors import ConfigError
from preftune.experiments.config import train_values
from preftune.io import read_jsonl
from preftune.train import train


def _metrics(run_dir) -> list[dict]:
    return read_jsonl(run_dir / "metrics.jsonl")


def test_report_to_takes_none_a_name_or_a_list(make_config, monkeypatch):
    assert make_config().report_to == []
    assert make_config(report_to="none").report_to == []
    with pytest.raises(ConfigError, match=r"report_to: 'comet' is not one of: none, tensorboard"):
        make_config(report_to=["comet"])
    import preftune.config as config_module

    monkeypatch.setitem(config_module.TRACKERS, "wandb", "no_such_module_for_preftune")
    with pytest.raises(
        ConfigError,
        match=r"report_to: 'wandb' needs the no_such_module_for_preftune package: "
        r"pip install 'preftune\[wandb\]'",
    ):
        make_config(report_to="wandb")


def test_tensorboard_gets_every_logged_step_and_the_config_once(make_config):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(report_to=["tensorboard"], run_name="tb", lr=2e-3)
    run_dir = train(config)
    logs = run_dir / "trackers" / "preftune"
    events = EventAccumulator(str(logs))
    events.Reload()
    rows = _metrics(run_dir)
    assert [row["step"] for row in rows] == [1, 2, 3]
    for name in ("loss", "rewards/accuracies", "tokens_per_s"):
        logged = events.Scalars(name)
        assert [event.step for event in logged] == [1, 2, 3]
        assert [event.value for event in logged] == pytest.approx([row[name] for row in rows])
    hparams = list(logs.glob("*/hparams.yml"))
    assert len(hparams) == 1
    assert "lr: 0.002" in hparams[0].read_text()


def test_mlflow_file_store_holds_params_and_metric_history(make_config, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database otherwise
    run_dir = train(make_config(report_to="mlflow", tracker_project="proj", tracker_run="p/dpo"))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("proj")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "p/dpo"
    assert run.data.params["method"] == "dpo" and run.data.params["hparams.beta"] == "0.1"
    rows = _metrics(run_dir)
    history = client.get_metric_history(run.info.run_id, "rewards/margins")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([row["rewards/margins"] for row in rows])


def _wandb_records(path):
    """The protobuf records of a W&B offline run file (run-*.wandb): a LevelDB-style log
    (32 KiB blocks of CRC, length, type, data chunks) after a 7-byte header. wandb 0.31 writes
    an offline run only there and ships no Python reader of its own."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _wandb_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_has_the_config_once_and_every_step(make_config, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = train(make_config(report_to=["wandb"], run_name="wb", tracker_project="proj"))
    import wandb

    wandb.teardown()  # the wandb-core service writes the run file out when it stops
    (run_file,) = (run_dir / "trackers" / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(_wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.project) == ("wb", "proj")
    configs = [r.config for r in records if r.WhichOneof("record_type") == "config"]
    assert len(configs) == 1
    config = {_wandb_key(item): json.loads(item.value_json) for item in configs[0].update}
    assert config["method"] == "dpo" and config["lr"] == pytest.approx(1e-3)
    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    logged = [{_wandb_key(item): json.loads(item.value_json) for item in h.item} for h in history]
    rows = _metrics(run_dir)
    assert [h.step.num for h in history] == [1, 2, 3]
    for name in ("loss", "rewards/accuracies"):
        assert [entry[name] for entry in logged] == pytest.approx([row[name] for row in rows])
    assert "step" not in logged[0]  # the step is the axis


def test_trackio_local_store_has_every_logged_step(make_config, tmp_path):
    pytest.importorskip("trackio", reason="the trackio extra is not installed")
    from trackio.sqlite_storage import SQLiteStorage

    project = f"proj-{tmp_path.name}"  # the store is the session's (tests/conftest.py)
    run_dir = train(make_config(report_to=["trackio"], tracker_project=project, tracker_run="r1"))
    db = SQLiteStorage.get_project_db_path(project)
    assert db.is_file() and str(db).startswith(os.environ["TRACKIO_DIR"])
    logs = SQLiteStorage.get_logs(project, "r1")
    rows = _metrics(run_dir)
    assert [log["step"] for log in logs] == [1, 2, 3]
    assert [log["loss"] for log in logs] == pytest.approx([row["loss"] for row in rows])


def test_a_study_names_each_run_study_label_seed_in_project_study(
    tiny_model_dir, paired_file, monkeypatch
):
    import preftune.config as config_module
    from preftune.experiments.config import study_from_dict

    monkeypatch.setitem(config_module.TRACKERS, "wandb", "json")  # "installed"

    study = study_from_dict(
        {
            "name": "mystudy",
            "model": str(tiny_model_dir),
            "seeds": [0, 1],
            "data": {"train": {"path": str(paired_file)}, "heldout": {"path": str(paired_file)}},
            "methods": [{"method": "dpo", "label": "dpo-a"}],
            "evaluation": {"evaluations": [{"name": "j", "judge": {"type": "openai"}}]},
            "report_to": "wandb",
        }
    )
    values = train_values(study, "m", study.methods[0], {}, {"path": "x"}, seed=1)
    assert values["tracker_project"] == "mystudy"
    assert values["tracker_run"] == "mystudy/dpo-a/seed-1"
    assert values["report_to"] == ["wandb"]


def test_a_study_refuses_report_to_per_run(tiny_model_dir, paired_file):
    from preftune.experiments.config import study_from_dict

    with pytest.raises(ConfigError, match="methods.0.train: 'report_to' is set by the study"):
        study_from_dict(
            {
                "model": str(tiny_model_dir),
                "data": {
                    "train": {"path": str(paired_file)},
                    "heldout": {"path": str(paired_file)},
                },
                "methods": [{"method": "dpo", "train": {"report_to": "none"}}],
                "evaluation": {"evaluations": [{"name": "j", "judge": {"type": "openai"}}]},
            }
        )


def test_the_study_table_and_plots_reach_tensorboard(finished_runs, make_study):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from preftune.integrations.trackers import log_study, study_plots

    layout, config = make_study(finished_runs["full"], report_to=["tensorboard"])
    log_study(layout.root, config)
    events = EventAccumulator(str(layout.root / "trackers" / "synthetic"))
    events.Reload()
    table = events.Tensors("results/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "75.0 [60.0, 88.0]" in table  # dpo's win rate, as in the report's table
    plots = study_plots(layout)
    assert plots and sorted(events.Tags()["images"]) == sorted(
        p.relative_to(layout.root).with_suffix("").as_posix() for p in plots
    )


def test_the_study_table_report_and_plots_are_mlflow_artifacts(
    finished_runs, make_study, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    from preftune.integrations.trackers import log_study, study_plots

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    layout, config = make_study(finished_runs["full"], report_to=["mlflow"])
    log_study(layout.root, config)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.info.run_name == "synthetic/results"
    top = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "report.md", "results_table.md", "plots"} <= top
    plots = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {f"plots/{p.name}" for p in study_plots(layout) if p.parent.name == "plots"}
    table = client.download_artifacts(run.info.run_id, "results_table.md", str(tmp_path))
    assert "75.0 [60.0, 88.0]" in Path(table).read_text()
