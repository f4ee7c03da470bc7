"""A study's final table and plots in its experiment trackers (the study's `report_to`).

Each training run logs itself (`preftune.train.tracking`: run `<study>/<label>[/seed-<s>]` in
project `<study>`); when the report is written, one more run, `<study>/results`, holds the
results table and every plot, in the form each tracker keeps them: TensorBoard text and
images, a W&B table and images, MLflow artifacts (results.json, report.md, the table as
markdown, the plots), a trackio table and images.
"""

from __future__ import annotations

from pathlib import Path

from preftune.errors import DataError
from preftune.experiments.config import StudyConfig
from preftune.experiments.layout import StudyLayout, read_json
from preftune.experiments.report import results_table
from preftune.experiments.sections import table3
from preftune.train import tracking


def study_plots(layout: StudyLayout) -> list[Path]:
    """The report's plots and each ranking's head-to-head heatmap."""
    return sorted(layout.plots.glob("*.png")) + sorted(layout.root.glob("rank/*/head_to_head.png"))


def log_study(study_dir: str | Path, config: StudyConfig) -> None:
    """Log the study's results.json table and plots as a run `<name>/results` of project
    `<name>` in every tracker of `config.report_to` (nothing when it names none)."""
    if not config.report_to:
        return
    from accelerate import Accelerator

    layout = StudyLayout(Path(study_dir))
    results = read_json(layout.root / "results.json")
    if results is None:
        raise DataError(
            "the study has no report yet (run `preftune report`)", source=str(layout.root)
        )
    options = tracking.accelerator_options(config.report_to, layout.root / "trackers")
    accelerator = Accelerator(**options)
    tracking.start(
        accelerator,
        config.report_to,
        project=config.name,
        run=f"{config.name}/results",
        values=config.model_dump(mode="json"),
    )
    try:
        if accelerator.is_main_process:
            for tracker in accelerator.trackers:
                ARTIFACTS[tracker.name](tracker, layout, results)
    finally:
        tracking.finish(accelerator)


def _relative(layout: StudyLayout, path: Path) -> str:
    return path.relative_to(layout.root).with_suffix("").as_posix()


def _tensorboard(tracker, layout: StudyLayout, results: dict) -> None:
    from matplotlib.image import imread

    tracker.writer.add_text("results", results_table(results))
    for plot in study_plots(layout):
        tracker.writer.add_image(_relative(layout, plot), imread(plot)[..., :3], dataformats="HWC")
    tracker.writer.flush()


def _wandb(tracker, layout: StudyLayout, results: dict) -> None:
    import wandb

    header, rows = table3(results)
    values = {"results": wandb.Table(columns=header, data=rows)}
    values.update({_relative(layout, p): wandb.Image(str(p)) for p in study_plots(layout)})
    tracker.run.log(values)


def _mlflow(tracker, layout: StudyLayout, results: dict) -> None:
    import mlflow

    for name in ("results.json", "report.md"):
        if (layout.root / name).is_file():
            mlflow.log_artifact(str(layout.root / name))
    mlflow.log_text(results_table(results), "results_table.md")
    for plot in study_plots(layout):
        mlflow.log_artifact(str(plot), str(plot.parent.relative_to(layout.root).as_posix()))


def _trackio(tracker, layout: StudyLayout, results: dict) -> None:
    import trackio

    header, rows = table3(results)
    values = {"results": trackio.Table(columns=header, data=rows)}
    values.update({_relative(layout, p): trackio.Image(str(p)) for p in study_plots(layout)})
    tracker.run.log(values)


ARTIFACTS = {
    "tensorboard": _tensorboard,
    "wandb": _wandb,
    "mlflow": _mlflow,
    "trackio": _trackio,
}
