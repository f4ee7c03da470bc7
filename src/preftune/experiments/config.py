"""The study config: one model, an optional SFT step, one data set, many methods, evaluations.

A study trains every method from the same starting model (the SFT result, or the model itself)
with the same data order and seed, then judges each method's greedy answers on held-out prompts
against a baseline. Settings under `train` are shared by every run and map onto
`preftune.config.TrainConfig`; a method's own `train` entries override them for that method.
Every error names the field it is about.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from preftune.errors import ConfigError

BASELINES = ("start", "sft", "reference")  # or a path to a samples .jsonl file
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    """Preference data or prompts: a file, folder or Hub id (`path`), or a built-in `task`."""

    path: str | None = None
    task: str | None = None
    format: str | None = None
    split: str | None = None
    limit: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.task is None):
            raise ValueError("give exactly one of 'path' (file, folder or Hub id) or 'task'")
        if self.task is not None:
            from preftune.tasks import get_task

            try:
                get_task(self.task)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return self


class OnPolicy(_Strict):
    """Make the training data by sampling the starting model and scoring with the gold reward."""

    samples_per_prompt: int = Field(default=4, ge=2)
    temperature: float = Field(default=1.0, gt=0)
    top_k: int = Field(default=0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int = Field(default=40, gt=0)
    batch_size: int = Field(default=16, gt=0)


class StudyData(_Strict):
    train: DataSource
    heldout: DataSource
    on_policy: OnPolicy | None = None

    @model_validator(mode="after")
    def _task_needs_on_policy(self):
        if self.train.task is not None and self.on_policy is None:
            raise ValueError(
                "train data from a task has prompts only: add 'on_policy' to sample and score "
                "responses from the starting model"
            )
        return self


class SFTStep(_Strict):
    """Supervised fine-tuning on the preferred responses before the methods run."""

    data: DataSource | None = None  # default: the study's training data (its chosen view)
    train: dict = Field(default_factory=dict)  # TrainConfig overrides for the SFT run


class MethodEntry(_Strict):
    """One method of the study; `label` names its run (default: the method name)."""

    method: str
    label: str | None = None
    hparams: dict = Field(default_factory=dict)
    train: dict = Field(default_factory=dict)

    @property
    def run_label(self) -> str:
        return self.label or self.method


class JudgeSpec(BaseModel):
    """A judge: `type` plus the options its constructor takes (model, base_url, prompt...)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["gold", "reward-model", "openai", "hf-llm"]

    @property
    def options(self) -> dict:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _known_options(self):
        import inspect

        from preftune.judges import build_judge

        known = [p for p in inspect.signature(build_judge).parameters if p != "kind"]
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ValueError(f"{unknown} not judge settings (known: {known})")
        return self


class Evaluation(_Strict):
    """One column of the results table: a judge deciding each answer against a baseline.

    `kind: pairwise` gives a win rate over `baseline` ("start": the starting model's answers;
    "sft": the SFT model's; "reference": the held-out data's preferred response; or a samples
    .jsonl file, e.g. a fixed model's answers as in Arena-Hard). `prompts` defaults to the
    study's held-out data. `kind: mt-bench` grades single answers to MT-Bench's 80 questions
    (1-10) and needs no baseline or prompts.
    """

    name: str
    kind: Literal["pairwise", "mt-bench"] = "pairwise"
    judge: JudgeSpec
    baseline: str = "start"
    prompts: DataSource | None = None


class EvalSettings(_Strict):
    num_prompts: int = Field(default=128, gt=0)  # held-out prompts judged (the seed: 128)
    max_new_tokens: int = Field(default=256, gt=0)
    batch_size: int = Field(default=8, gt=0)
    # Held-out prompts answered once more by plain sampling (temperature 1) for a Monte-Carlo
    # KL(π ‖ π_start); null (the default): every evaluated prompt; 0 uses the log-ratio on the
    # greedy answers instead (no extra sampling, not a KL).
    kl_samples: int | None = Field(default=None, ge=0)
    evaluations: list[Evaluation] = Field(min_length=1)


class StudyConfig(_Strict):
    name: str = "study"
    model: str
    seed: int = 0
    sft: SFTStep | None = None
    data: StudyData
    train: dict = Field(default_factory=dict)
    methods: list[MethodEntry] = Field(min_length=1)
    evaluation: EvalSettings

    @model_validator(mode="after")
    def _consistent(self):
        _check_methods(self.methods)
        if self.sft and self.sft.data is None and self.data.train.task is not None:
            raise ValueError(
                "sft.data: the training data of a task study is sampled from the SFT model, "
                "so the SFT step needs its own data"
            )
        _check_training_settings(self)
        for index, evaluation in enumerate(self.evaluation.evaluations):
            where = f"evaluation.evaluations.{index}"
            if evaluation.baseline == "sft" and self.sft is None:
                raise ValueError(f"{where}.baseline: 'sft' needs an 'sft' step in the study")
            if evaluation.judge.type == "gold" and self.gold_task is None:
                raise ValueError(
                    f"{where}.judge: a gold judge needs a task with a gold reward "
                    "(data.heldout.task or data.train.task)"
                )
        names = [e.name for e in self.evaluation.evaluations]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluation.evaluations: names must be unique, got {names}")
        return self

    @property
    def gold_task(self) -> str | None:
        """The task whose gold reward scores answers, when the study has one."""
        return self.data.heldout.task or self.data.train.task


def _check_methods(methods: list[MethodEntry]) -> None:
    from preftune.losses import METHODS

    labels = [m.run_label for m in methods]
    for index, entry in enumerate(methods):
        where = f"methods.{index}"
        if entry.method not in METHODS:
            raise ValueError(f"{where}.method: '{entry.method}' is not one of {sorted(METHODS)}")
        unknown = sorted(set(entry.hparams) - set(METHODS[entry.method].hparams))
        if unknown:
            raise ValueError(
                f"{where}.hparams: {unknown} not hyperparameters of '{entry.method}' "
                f"(it has {sorted(METHODS[entry.method].hparams)})"
            )
        if not LABEL_PATTERN.match(entry.run_label):
            raise ValueError(f"{where}.label: '{entry.run_label}' must be letters, digits, . _ -")
        if entry.run_label in labels[:index]:
            raise ValueError(f"{where}.label: '{entry.run_label}' names two methods; set 'label'")


STUDY_SETS = ("model", "method", "hparams", "output_dir", "run_name", "resume")


def train_values(
    study: StudyConfig, model: str, entry: MethodEntry, overrides: dict, data: dict
) -> dict:
    """The TrainConfig fields of one run: the study's shared `train` settings, then the run's
    own overrides, then what the study fixes (model, method, hyperparameters, seed)."""
    values = {**study.train, **overrides}
    values["data"] = {**data, "seed": study.seed, **study.train.get("data", {})}
    values["data"].update(overrides.get("data", {}))
    values.update(model=model, method=entry.method, hparams=entry.hparams, seed=study.seed)
    return values


def _check_training_settings(study: StudyConfig) -> None:
    """Validate every run's training settings now, before anything loads or trains.

    The data file of a study may not exist yet (on-policy data is sampled later), so the
    check stands in the current folder for it; the trainer checks the real one.
    """
    from preftune.config import TrainConfig

    runs = [("sft.train", MethodEntry(method="sft"), study.sft.train)] if study.sft else []
    runs += [(f"methods.{i}.train", m, m.train) for i, m in enumerate(study.methods)]
    for where, entry, overrides in runs:
        for key in (*study.train, *overrides):
            if key in STUDY_SETS:
                raise ValueError(f"{where}: '{key}' is set by the study, not per run")
        values = train_values(study, study.model, entry, overrides, {"path": "."})
        try:
            TrainConfig.model_validate(values)
        except ValidationError as error:
            raise ValueError(
                f"{where} (with the shared 'train' settings): {_describe(error)}"
            ) from None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def study_from_dict(raw: dict, source: str = "study config") -> StudyConfig:
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


def load_study_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a study config is a mapping of fields, got {type(raw).__name__}"
        )
    return study_from_dict(raw, str(path))
