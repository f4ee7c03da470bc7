"""The study config: one model, an optional SFT step, one data set, many methods, evaluations.

A study trains every method from the same starting model (the SFT result, or the model itself)
with the same data order and seed (once per seed of `seeds`), then judges each method's greedy
answers on held-out prompts against a baseline and ranks the rows on every evaluation. Settings
under `train` are shared by every run and map onto `preftune.config.TrainConfig`; a method's own
`train` entries override them for that method, and its `sweep` tunes them on the dev prompts.
Every error names the field it is about.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from preftune.errors import ConfigError

# Or a path to a samples .jsonl file; "served": answers sampled from the evaluation's `generation`.
BASELINES = ("start", "sft", "reference", "served")
RESERVED_LABELS = ("start", "sft")  # rows of every study, never a method's label
# Labels and evaluation names become folder names: letters, digits, "._-", no leading dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
CLAIM_PATTERN = re.compile(r"\s*(\S+)\s*>\s*(\S+)\s*")
SWEEP_TRAIN_KEYS = ("lr",)  # training settings a sweep may vary besides the hyperparameters
BENCHMARK_KINDS = ("alpaca-eval", "arena-hard", "mt-bench-pairwise")  # docs/benchmarks.md
FILE_BASELINE_KINDS = ("arena-hard", "mt-bench-pairwise")  # judged against a file of answers
# The settings each evaluation kind takes besides name, kind and judge.
KIND_SETTINGS = {
    "pairwise": ("baseline", "prompts", "pairs", "generation"),
    "mt-bench": ("limit", "max_new_tokens"),
    "alpaca-eval": ("annotator", "reference", "limit", "max_new_tokens"),
    "arena-hard": ("baseline", "questions", "style_control", "limit", "max_new_tokens"),
    "mt-bench-pairwise": ("baseline", "limit", "max_new_tokens"),
}


def _number_or_text(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_name(where: str, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{where}: {name!r} must be letters, digits, '.', '_' or '-' (a folder name)"
        )


def parse_claim(claim: str) -> tuple[str, str]:
    """("dpo", "slic") from "dpo > slic"; ValueError when it is not of the form `x > y`.

    >>> parse_claim("dpo > slic")
    ('dpo', 'slic')
    """
    match = CLAIM_PATTERN.fullmatch(claim)
    if not match or match.group(1) == match.group(2):
        raise ValueError(f"{claim!r} is not of the form 'x > y' with two different row labels")
    return match.group(1), match.group(2)


def trains_online(method: str, online: dict | None) -> bool:
    """Whether a study's method entry samples its own training data: an online method (its
    registry view is "online"), or an offline one with `online.rounds`.

    >>> trains_online("dpo", None), trains_online("dpo", {"rounds": 2})
    (False, True)
    """
    from preftune.losses import METHODS

    spec = METHODS.get(method)
    return (spec is not None and spec.view == "online") or bool((online or {}).get("rounds"))


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
    """Training data, test prompts (`heldout`) and tuning prompts (`dev`, disjoint from the test
    prompts; a task study takes the task's dev split when a sweep needs one)."""

    train: DataSource
    heldout: DataSource
    dev: DataSource | None = None
    on_policy: OnPolicy | None = None

    @model_validator(mode="after")
    def _dev_apart(self):
        if self.dev is not None and self.dev == self.heldout:
            raise ValueError("dev: the dev prompts are the test prompts ('heldout'); split them")
        return self


class SFTStep(_Strict):
    """Supervised fine-tuning on the preferred responses before the methods run."""

    data: DataSource | None = None  # default: the study's training data (its chosen view)
    train: dict = Field(default_factory=dict)  # TrainConfig overrides for the SFT run


class Generation(_Strict):
    """Where a row's answers are sampled: `local` (the model loaded here, the default) or
    `openai`, the model `model` behind the OpenAI-compatible server at `base_url` (vLLM,
    llama.cpp's server, TGI, `preftune serve`), asked `concurrency` requests at a time with
    the key in the environment variable `api_key_env` (never in the config) when it is set,
    and the server's own request fields `extra_body` (llama.cpp: `{repeat_penalty: 1.0}` for
    plain greedy answers). Served answers carry no log-probs, so a served row has no KL.

    >>> Generation(backend="openai", base_url="http://127.0.0.1:8000/v1", model="dpo").served
    True
    """

    backend: Literal["local", "openai"] = "local"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=8, gt=0)
    extra_body: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self):
        missing = [key for key in ("base_url", "model") if getattr(self, key) is None]
        if self.served and missing:
            raise ValueError(f"{missing[0]}: the openai backend needs base_url and model")
        given = [key for key in ("base_url", "model", "extra_body") if getattr(self, key)]
        if not self.served and given:
            raise ValueError(f"{given[0]}: a setting of backend 'openai' (the backend is local)")
        from preftune.generate.remote import request_field_clash

        clash = request_field_clash(self.extra_body)
        if clash:
            raise ValueError(f"extra_body.{clash}: set by the study's evaluation settings")
        return self

    @property
    def served(self) -> bool:
        return self.backend == "openai"


class MethodEntry(_Strict):
    """One method of the study; `label` names its run (default: the method name).

    `sweep` maps hyperparameters of the method (and `lr`) to the values to try: every point of
    the grid trains and is scored on the dev prompts, and the best point is the one the study
    trains and tests (its `hparams` / `train` entries are the rest of the setting).
    `generation` (backend openai) samples the row's test answers from a server the user runs
    over the trained model (`preftune serve <out>/runs/<label>`) instead of loading it here.

    `online` (`preftune.config.OnlineConfig`'s keys) sets an online method's sampling (grpo,
    rloo, online-dpo...), or with `rounds` trains an offline method in rounds on its own
    samples; online runs sample the study's training prompts and score with its `reward`.
    """

    method: str
    label: str | None = None
    hparams: dict = Field(default_factory=dict)
    train: dict = Field(default_factory=dict)
    online: dict | None = None
    sweep: dict[str, list[float | int | str | bool]] | None = None
    generation: Generation | None = None

    @field_validator("sweep")
    @classmethod
    def _numbers(cls, sweep):
        """YAML 1.1 reads `1e-4` (no dot) as text: such values are numbers here."""
        if sweep is None:
            return None
        return {key: [_number_or_text(v) for v in values] for key, values in sweep.items()}

    @property
    def run_label(self) -> str:
        return self.label or self.method

    @property
    def is_online(self) -> bool:
        """Whether the run samples and scores its own data (see `trains_online`)."""
        return trains_online(self.method, self.online)

    def sweep_points(self) -> list[dict]:
        """The grid of `sweep` in order, each point a {key: value} dict ([] without a sweep).

        >>> MethodEntry(method="dpo", sweep={"beta": [0.1, 0.5], "lr": [1e-4]}).sweep_points()
        [{'beta': 0.1, 'lr': 0.0001}, {'beta': 0.5, 'lr': 0.0001}]
        """
        if not self.sweep:
            return []
        keys = list(self.sweep)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*self.sweep.values())
        ]

    def at_point(self, values: dict) -> MethodEntry:
        """This entry with a sweep point's values set (hyperparameters, or `train` settings)."""
        hparams = {**self.hparams, **{k: v for k, v in values.items() if k in self.hparams_of}}
        train = {**self.train, **{k: v for k, v in values.items() if k in SWEEP_TRAIN_KEYS}}
        return self.model_copy(update={"hparams": hparams, "train": train, "sweep": None})

    @property
    def hparams_of(self) -> set[str]:
        from preftune.losses import METHODS

        return set(METHODS[self.method].hparams)


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
    .jsonl file, e.g. a fixed model's answers; or "served": a served model's answers to the
    same prompts, sampled from `generation`, backend openai, docs/served-models.md). `prompts`
    defaults to the study's held-out data. `kind: mt-bench` grades single answers to MT-Bench's 80 questions (1-10) and needs no
    baseline or prompts. The published benchmarks (docs/benchmarks.md) answer their own
    prompts and judge through an OpenAI-compatible endpoint (`judge: {type: openai}`):
    `alpaca-eval` against a reference set's outputs (`reference`, default the Hub's 805 with
    GPT-4 Turbo's; `annotator`), `arena-hard` against a fixed model's answers (`baseline`
    file; `questions`, default the Hub's 500; `style_control`), `mt-bench-pairwise` against a
    baseline's MT-Bench answers (`baseline` file). `limit` keeps a benchmark's first prompts,
    `max_new_tokens` overrides the study's for its answers. A file an evaluation reads must
    exist when the study starts (`missing_inputs`), so a config can be checked before it is
    fetched.
    """

    name: str
    kind: Literal["pairwise", "mt-bench", "alpaca-eval", "arena-hard", "mt-bench-pairwise"] = (
        "pairwise"
    )
    judge: JudgeSpec
    baseline: str = "start"
    prompts: DataSource | None = None
    # How the ranking compares rows with an LLM judge: "anchored" reuses each row's judgments
    # against the baseline; "all" judges every pair of rows on every prompt (R(R-1)/2 times as
    # many requests). Gold judges always compare all pairs (scores cost nothing).
    pairs: Literal["anchored", "all"] = "anchored"
    annotator: str | None = None  # AlpacaEval's annotator config (None: the leaderboard's)
    reference: str | None = None  # AlpacaEval set with reference outputs (None: the Hub's)
    questions: str | None = None  # Arena-Hard questions (None: the Hub's v0.1)
    style_control: bool = False  # Arena-Hard: the win rate at equal length and markdown
    limit: int | None = Field(default=None, gt=0)  # a benchmark's first prompts only
    max_new_tokens: int | None = Field(default=None, gt=0)  # answers to a benchmark's prompts
    generation: Generation | None = None  # the server of a "served" baseline

    @model_validator(mode="after")
    def _checked(self):
        _check_name("name", self.name)
        served = self.generation is not None and self.generation.served
        if (self.baseline == "served") != served and self.kind == "pairwise":
            raise ValueError(
                "baseline: 'served' and generation (backend openai) name the baseline's server "
                "together; give both or neither"
            )
        allowed = KIND_SETTINGS[self.kind]
        for field in sorted(set().union(*KIND_SETTINGS.values()) - set(allowed)):
            if getattr(self, field) != type(self).model_fields[field].default:
                raise ValueError(
                    f"{field}: not a setting of kind '{self.kind}' (it takes: "
                    f"{', '.join(allowed) or 'none'})"
                )
        if self.kind in BENCHMARK_KINDS:
            self._check_benchmark()
        elif self.baseline not in BASELINES and not self.baseline.endswith(".jsonl"):
            raise ValueError(
                f"baseline: {self.baseline!r} is not one of {list(BASELINES)} nor a .jsonl file "
                "of answers"
            )
        return self

    def _check_benchmark(self) -> None:
        """A benchmark judges through an OpenAI-compatible endpoint with its own prompts, and
        reads its baseline answers, questions or reference set from JSON/JSONL files."""
        if self.judge.type != "openai":
            raise ValueError(
                f"judge.type: {self.kind} calls an OpenAI-compatible endpoint; use type 'openai'"
            )
        own = sorted(set(self.judge.options) & {"prompt", "decision", "gold"})
        if own:
            raise ValueError(
                f"judge.{own[0]}: {self.kind} judges with the benchmark's own prompts; remove it"
            )
        if self.kind in FILE_BASELINE_KINDS and self.baseline in BASELINES:
            raise ValueError(
                f"baseline: {self.kind} judges against a fixed model's answers: give their "
                ".jsonl file (GPT-4-0314's for Arena-Hard v0.1)"
            )
        for field, path in self.input_files().items():
            if not path.endswith((".jsonl", ".json")):
                raise ValueError(f"{field}: {path!r} is not a .jsonl or .json file")

    def input_files(self) -> dict[str, str]:
        """{field: path} of the files this evaluation reads (baseline answers, questions, a
        reference set).

        >>> judge = {"type": "openai"}
        >>> Evaluation(name="a", kind="arena-hard", judge=judge, baseline="b.jsonl").input_files()
        {'baseline': 'b.jsonl'}
        """
        fields = ("baseline", "questions", "reference")
        found = {field: getattr(self, field) for field in fields}
        return {
            field: path
            for field, path in found.items()
            if path is not None and path not in BASELINES and field in KIND_SETTINGS[self.kind]
        }


class EvalSettings(_Strict):
    # Held-out prompts judged (128, as in the HH/TL;DR comparison study).
    num_prompts: int = Field(default=128, gt=0)
    max_new_tokens: int = Field(default=256, gt=0)
    batch_size: int = Field(default=8, gt=0)
    # Held-out prompts answered once more by plain sampling (temperature 1) for a Monte-Carlo
    # KL(π ‖ π_start); null (the default): every evaluated prompt; 0 uses the log-ratio on the
    # greedy answers instead (no extra sampling, not a KL).
    kl_samples: int | None = Field(default=None, ge=0)
    # Task studies: dev prompts sampled twice by the starting model and ordered by the gold
    # reward into held-out pairs for the preference accuracy of implicit rewards (0: none).
    preference_prompts: int = Field(default=0, ge=0)
    evaluations: list[Evaluation] = Field(min_length=1)


class StudyConfig(_Strict):
    name: str = "study"
    model: str
    seed: int = 0
    # Train and evaluate every method once per seed (same data; init, order and sampling
    # differ); the ranking then resamples seeds and prompts together. None: one run, `seed`.
    seeds: list[int] | None = Field(default=None, min_length=1)
    claims: list[str] = Field(default_factory=list)  # orderings the report checks: "dpo > slic"
    sft: SFTStep | None = None
    data: StudyData
    train: dict = Field(default_factory=dict)
    methods: list[MethodEntry] = Field(min_length=1)
    evaluation: EvalSettings
    # Experiment trackers of every run (project: the study's name; run: name/label[/seed-s]),
    # and of the final table and plots (run name/results). Names as TrainConfig's `report_to`.
    report_to: list[str] = Field(default_factory=list)
    # Where the `start` row's answers come from (a server over the starting model); a method's
    # row takes its own `generation`. Sweeps and on-policy data always sample locally.
    generation: Generation | None = None
    # The reward online methods (and `online.rounds`) score their samples with, as
    # TrainConfig's `reward`; default: the task's gold reward in a task study.
    reward: dict | None = None

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value):
        from preftune.config import check_trackers

        return check_trackers(value)

    @model_validator(mode="after")
    def _consistent(self):
        _check_methods(self.methods)
        self._check_data_for_methods()
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.seeds} repeats a seed")
        self._check_claims()
        self._check_dev_split()
        if self.sft and self.sft.data is None and self.data.train.task is not None:
            raise ValueError(
                "sft.data: the training data of a task study is sampled from the SFT model, "
                "so the SFT step needs its own data"
            )
        _check_training_settings(self)
        served = [i for i, m in enumerate(self.methods) if m.generation and m.generation.served]
        if served and len(self.seed_list) > 1:
            raise ValueError(
                f"methods.{served[0]}.generation: one served model answers for one run, and "
                f"this method trains once per seed ({self.seed_list}); sample it locally"
            )
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

    def _check_data_for_methods(self) -> None:
        """Offline methods of a task study need the on-policy step (a task has prompts only);
        online ones need a reward."""
        offline = [m for m in self.methods if not m.is_online]
        if offline and self.data.train.task is not None and self.data.on_policy is None:
            raise ValueError(
                "data.on_policy: train data from a task has prompts only; add 'on_policy' to "
                f"sample and score responses from the starting model for {offline[0].run_label}"
            )
        online = [i for i, m in enumerate(self.methods) if m.is_online]
        if online and self.reward_settings is None:
            raise ValueError(
                f"methods.{online[0]}: an online method scores its own samples; set the "
                "study's 'reward' (e.g. {type: model, path: RM_DIR}); only a task with a gold "
                "reward has a default"
            )

    @property
    def reward_settings(self) -> dict | None:
        """The reward of online runs: `reward`, else the gold task's gold reward.

        >>> study = {"model": "org/model", "methods": [{"method": "dpo"}],
        ...          "data": {"train": {"path": "p.jsonl"}, "heldout": {"task": "sentiment"}},
        ...          "evaluation": {"evaluations": [{"name": "g", "judge": {"type": "gold"}}]}}
        >>> StudyConfig.model_validate(study).reward_settings
        {'type': 'gold', 'name': 'vader-sentiment'}
        """
        if self.reward is not None:
            return self.reward
        if self.gold_task is None:
            return None
        from preftune.tasks import get_task

        return {"type": "gold", "name": get_task(self.gold_task).gold_name}

    @property
    def prompt_source(self) -> dict:
        """Where online runs take their prompts: the study's training data (a task's train
        split, or a data file's prompts), as TrainConfig's `data` keys.

        >>> study = {"model": "org/model", "methods": [{"method": "grpo"}],
        ...          "data": {"train": {"task": "sentiment", "limit": 64},
        ...                   "heldout": {"task": "sentiment"}},
        ...          "evaluation": {"evaluations": [{"name": "g", "judge": {"type": "gold"}}]}}
        >>> StudyConfig.model_validate(study).prompt_source
        {'task': 'sentiment', 'limit': 64}
        """
        return self.data.train.model_dump(exclude_none=True)

    def _check_claims(self) -> None:
        rows = [RESERVED_LABELS[0]] + [m.run_label for m in self.methods]
        for index, claim in enumerate(self.claims):
            try:
                labels = parse_claim(claim)
            except ValueError as error:
                raise ValueError(f"claims.{index}: {error}") from None
            unknown = [label for label in labels if label not in rows]
            if unknown:
                raise ValueError(f"claims.{index}: {unknown} not rows of the study (rows: {rows})")

    def _check_dev_split(self) -> None:
        swept = [i for i, m in enumerate(self.methods) if m.sweep]
        if swept and self.dev_source is None:
            raise ValueError(
                f"methods.{swept[0]}.sweep: a sweep is scored on dev prompts disjoint from the "
                "test prompts: add data.dev (or use a task, which has a dev split)"
            )
        if (
            swept
            and self.gold_task is None
            and not any(e.kind == "pairwise" for e in self.evaluation.evaluations)
        ):
            raise ValueError(
                f"methods.{swept[0]}.sweep: the dev metric needs a gold task or a pairwise "
                "evaluation"
            )
        dev, heldout = self.dev_source, self.data.heldout
        same_task = dev is not None and dev.task is not None and heldout.task == dev.task
        if same_task and (dev.split or "dev") == (heldout.split or "heldout"):
            raise ValueError("data.dev: the dev split is the test split; use split 'dev'")

    def missing_inputs(self) -> list[str]:
        """What the evaluations need that is not there (yet), one line each naming its field:
        files they read, and the alpaca-eval package with a valid `annotator`."""
        problems = []
        for index, evaluation in enumerate(self.evaluation.evaluations):
            where = f"evaluation.evaluations.{index}"
            for field, path in evaluation.input_files().items():
                if not Path(path).is_file():
                    problems.append(f"{where}.{field}: file '{path}' does not exist")
            if evaluation.kind == "alpaca-eval":
                from preftune.experiments.benchmark_kinds import annotator_problem

                problem = annotator_problem(evaluation)
                if problem:
                    problems.append(f"{where}.{problem}")
        return problems

    @property
    def dev_source(self) -> DataSource | None:
        """Where the dev prompts come from: data.dev, else a task's own dev split."""
        if self.data.dev is not None:
            return self.data.dev
        task = self.data.heldout.task or self.data.train.task
        return None if task is None else DataSource(task=task, split="dev")

    @property
    def seed_list(self) -> list[int]:
        """The training seeds: `seeds`, or [seed] for a one-seed study."""
        return list(self.seeds) if self.seeds is not None else [self.seed]

    @property
    def gold_task(self) -> str | None:
        """The task whose gold reward scores answers, when the study has one."""
        return self.data.heldout.task or self.data.train.task


def _check_methods(methods: list[MethodEntry]) -> None:
    from preftune.losses import METHODS
    from preftune.losses.registry import UnknownOption, check_hparams

    labels = [m.run_label for m in methods]
    for index, entry in enumerate(methods):
        where = f"methods.{index}"
        if entry.method not in METHODS:
            raise ValueError(f"{where}.method: '{entry.method}' is not one of {sorted(METHODS)}")
        spec = METHODS[entry.method]
        if entry.online is not None and not entry.is_online:
            raise ValueError(
                f"{where}.online: '{entry.method}' trains offline; add 'rounds: N' to train it "
                "in rounds on its own samples, or remove 'online'"
            )
        try:
            check_hparams(spec, entry.hparams)
        except UnknownOption as error:
            raise ValueError(f"{where}.hparams.{error.hparam}: {error}") from None
        _check_name(f"{where}.label", entry.run_label)
        if entry.run_label in RESERVED_LABELS:
            raise ValueError(
                f"{where}.label: '{entry.run_label}' is a row every study has; choose another"
            )
        if entry.run_label in labels[:index]:
            raise ValueError(f"{where}.label: '{entry.run_label}' names two methods; set 'label'")
        for key, values in (entry.sweep or {}).items():
            if key not in SWEEP_TRAIN_KEYS and key not in spec.accepted:
                raise ValueError(
                    f"{where}.sweep.{key}: not a hyperparameter of '{entry.method}' nor one of "
                    f"{list(SWEEP_TRAIN_KEYS)} (it takes: {', '.join(spec.accepted) or 'none'})"
                )
            if not values:
                raise ValueError(f"{where}.sweep.{key}: give at least one value")
            if key in spec.accepted:
                for value in values:
                    try:
                        check_hparams(spec, {**entry.hparams, key: value})
                    except UnknownOption as error:
                        raise ValueError(f"{where}.sweep.{key}: {error}") from None


STUDY_SETS = (
    *("model", "method", "hparams", "output_dir", "run_name", "resume"),
    *("report_to", "tracker_project", "tracker_run"),  # from the study's `report_to`
)


# Online settings have their own place in a study, not a run's `train` settings.
ONLINE_KEYS = {
    "online": "'online' is a method entry's own key (methods: [{method: grpo, online: {...}}])",
    "reward": "'reward' is the study's, shared by every online method (reward: {...})",
}


def train_values(
    study: StudyConfig,
    model: str,
    entry: MethodEntry,
    overrides: dict,
    data: dict,
    seed: int | None = None,
) -> dict:
    """The TrainConfig fields of one run: the study's shared `train` settings, then the run's
    own overrides, then what the study fixes (model, method, hyperparameters, seed: `seed`,
    default the study's, sets the initialisation, the data order and sampling). `data` is the
    offline training data; an online entry samples the study's training prompts instead, with
    its `online` settings and the study's reward."""
    seed = study.seed if seed is None else seed
    values = {**study.train, **overrides}
    if entry.is_online:
        data = study.prompt_source
        values.update(online=entry.online, reward=study.reward_settings)
    values["data"] = {**data, "seed": seed, **study.train.get("data", {})}
    values["data"].update(overrides.get("data", {}))
    values.update(model=model, method=entry.method, hparams=entry.hparams, seed=seed)
    run = [study.name, entry.run_label] + ([f"seed-{seed}"] if study.seeds else [])
    values.update(report_to=study.report_to, tracker_project=study.name, tracker_run="/".join(run))
    return values


def _check_training_settings(study: StudyConfig) -> None:
    """Validate every run's training settings now, before anything loads or trains.

    The data file of a study may not exist yet (on-policy data is sampled later), so the
    check stands in the current folder for it; the trainer checks the real one.
    """
    from preftune.config import TrainConfig

    runs = [("sft.train", MethodEntry(method="sft"), study.sft.train)] if study.sft else []
    for index, method in enumerate(study.methods):
        points = method.sweep_points() or [{}]
        runs += [
            (f"methods.{index}.train", method.at_point(p), method.at_point(p).train) for p in points
        ]
    for where, entry, overrides in runs:
        for key in (*study.train, *overrides):
            if key in STUDY_SETS:
                raise ValueError(f"{where}: '{key}' is set by the study, not per run")
            if key in ONLINE_KEYS:
                raise ValueError(f"{where}: {ONLINE_KEYS[key]}")
            if key == "push_to_hub":
                raise ValueError(f"{where}: push a study's run with `preftune push RUN_DIR`")
        values = train_values(study, study.model, entry, overrides, {"path": "."})
        if "path" in values["data"]:  # a file that may not exist yet: checked when it trains
            values["data"]["path"] = "."
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
