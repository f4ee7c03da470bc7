"""Experiment trackers (`report_to`) through accelerate's tracker API.

The Accelerator is built with `log_with` and a logging folder (`<run>/trackers`: TensorBoard
event files and W&B's local run folder go there; MLflow follows MLFLOW_TRACKING_URI, trackio
its own local store), `init_trackers` opens one tracker run named `tracker_run` in project
`tracker_project` and logs the flattened config once, the loop logs each metrics.jsonl
record under the same names at its step, and `finish` closes the runs (without accelerate's
`end_training`, which would also end the process group a study's next run needs).
"""

from __future__ import annotations

from pathlib import Path

from preftune.config import TrainConfig


def accelerator_options(names: list[str], logging_dir: Path) -> dict:
    """Keyword arguments of `Accelerator` for these trackers ({} for none)."""
    return {"log_with": list(names), "project_dir": str(logging_dir)} if names else {}


def run_options(config: TrainConfig) -> dict:
    return accelerator_options(config.report_to, config.run_dir / "trackers")


def start(accelerator, names: list[str], *, project: str, run: str, values: dict) -> None:
    """Open one run per tracker (main process only) and log `values` (flattened) once."""
    if not names:
        return
    logging_dir = Path(accelerator.logging_dir)
    init_kwargs = {
        "wandb": {"name": run, "dir": str(logging_dir)},
        "mlflow": {"run_name": run},
        "trackio": {"name": run},
    }
    if accelerator.is_main_process:
        logging_dir.mkdir(parents=True, exist_ok=True)
    accelerator.init_trackers(project, config=flatten(values), init_kwargs=init_kwargs)


def start_run(accelerator, config: TrainConfig) -> None:
    run = config.tracker_run or config.run_name or config.method
    values = config.model_dump(mode="json")
    start(accelerator, config.report_to, project=config.tracker_project, run=run, values=values)


def log(accelerator, record: dict) -> None:
    """One metrics.jsonl record at its step (the step is the axis, not a metric: trackio
    reserves the name)."""
    values = {name: value for name, value in record.items() if name != "step"}
    accelerator.log(values, step=record["step"])


def finish(accelerator) -> None:
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested settings as one level of dotted keys with scalar values (lists as text), the
    shape every tracker's hyperparameter view takes.

    >>> flatten({"lr": 0.1, "lora": {"r": 2, "target_modules": ["q", "v"]}, "limit": None})
    {'lr': 0.1, 'lora.r': 2, 'lora.target_modules': 'q,v', 'limit': None}
    """
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(map(str, value))
        else:
            flat[name] = value
    return flat
