"""The training config: YAML plus `key=value` overrides, checked before any model loads.

Defaults follow the DPO authors' reference implementation (Rafailov et al. 2023):
RMSprop, lr 5e-7, batch 64 prompt groups per optimizer step, 1 epoch, max prompt 256 tokens,
max prompt + response 512, the method's own hyperparameter defaults (beta 0.1 for DPO...;
see docs/methods.md). Every error names the key or file and what is allowed, on one line, and
is raised as `ConfigError` (the CLI prints it and exits with code 2).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from preftune.errors import ConfigError, DataError
from preftune.io import read_text

DEMO_MODEL = "smollm2-135m-instruct"  # preftune.models.loading.DEMO_MODEL, without importing torch
DEFAULT_EMBEDDER = "all-minilm-l6-v2"  # RPO's default sentence embedder (models/embeddings.py)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_LR = 100.0  # above this a learning rate is a typo, not a setting
# `report_to` names -> the module each needs (installed with `pip install 'preftune[NAME]'`)
TRACKERS = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
}


class _Loader(yaml.SafeLoader):
    """YAML that reads `5e-7` as a number (YAML 1.1 wants `5.0e-7`), as users write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class WeightedSource(_Strict):
    """One of several training sources (`data.train`), used `weight` times (0.5 = a seeded
    half, 2 = every record twice; preftune.data.mixing)."""

    path: str = Field(description="a file, a saved dataset folder or a Hub id")
    weight: float = Field(1.0, gt=0, le=1000)
    format: str | None = Field(None, description="None = data.format, else detected")
    split: str | None = Field(None, description="None = data.split")


class DataConfig(_Strict):
    """Where the preference data comes from and how it is turned into the method's view."""

    path: str | None = Field(
        None, description="a local .jsonl/.json/.parquet/.csv, a saved dataset folder or a Hub id"
    )
    task: str | None = Field(
        None, description="a built-in task's prompts (online training only), e.g. sentiment"
    )
    train: list[WeightedSource] | None = Field(
        None, min_length=1, description="several sources mixed by weight, instead of path"
    )
    format: str | None = Field(None, description="None = detect from the columns")
    split: str | None = None
    limit: int | None = Field(None, gt=0, description="use at most this many records")
    seed: int = Field(0, description="seed for sub-sampling and for picking pairs")
    pairs: Literal["top-vs-random", "top-vs-each", "top-vs-worst", "all"] = "top-vs-random"
    curriculum: bool = Field(False, description="order pairs easy -> hard by score gap (Curry-DPO)")
    skip_invalid: bool = Field(False, description="skip and count bad rows instead of stopping")
    chat_template: str | None = Field(
        None, description="a Jinja chat template, or a file holding one, over the tokenizer's"
    )
    layout: str | None = Field(
        None, description='plain text around each prompt, e.g. "Q: {prompt}\\nA: "'
    )

    @field_validator("chat_template")
    @classmethod
    def _readable_template(cls, value: str | None) -> str | None:
        """The template's text (read from its file), checked by rendering a conversation."""
        if value is None:
            return None
        from preftune.data.templates import check_chat_template, read_chat_template

        template = read_chat_template(value)
        check_chat_template(template)
        return template

    @field_validator("layout")
    @classmethod
    def _one_placeholder(cls, value: str | None) -> str | None:
        if value is not None:
            from preftune.data.templates import layout_template

            layout_template(value)
        return value

    @model_validator(mode="after")
    def _one_way_each(self) -> DataConfig:
        if sum(value is not None for value in (self.path, self.train, self.task)) != 1:
            raise ValueError(
                "give path (one source), train (several, with weights) or task (built-in prompts)"
            )
        if self.task is not None:
            from preftune.tasks import get_task

            try:
                get_task(self.task)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        if self.chat_template is not None and self.layout is not None:
            raise ValueError("chat_template and layout: choose one prompt format")
        return self

    @property
    def sources(self) -> list[dict]:
        """[{"path", "weight", "format", "split"}] of every source (one for `path`)."""
        if self.train is None:
            return [{"path": self.path, "weight": 1.0, "format": self.format, "split": self.split}]
        return [source.model_dump() for source in self.train]

    @property
    def template(self) -> str | None:
        """The chat template the data asks for (a layout as its template), or None."""
        if self.layout is not None:
            from preftune.data.templates import layout_template

            return layout_template(self.layout)
        return self.chat_template


class LoraConfig(_Strict):
    """LoRA adapters through peft; the reference is the same model with adapters disabled."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


def check_trackers(value) -> list[str]:
    """`report_to` as a list of installed tracker names: "none", null or [] is none.

    >>> check_trackers("none"), check_trackers(None)
    ([], [])
    """
    names = [] if value in (None, "none") else [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"expected a tracker name or a list of them, got {value!r}")
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"'{name}' is not one of: none, {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(
                f"'{name}' needs the {TRACKERS[name]} package: pip install 'preftune[{name}]'"
            )
    return list(dict.fromkeys(names))


def is_hub_id(value: str) -> bool:
    """Whether `value` names a Hub repository (USER/NAME) rather than a local path."""
    return not _looks_local(value) and not Path(value).expanduser().exists()


class PushToHub(_Strict):
    """Push the finished run to the Hugging Face Hub (`preftune push`; token: HF_TOKEN)."""

    repo_id: str = Field(description="USER/NAME or ORG/NAME")
    private: bool = False
    license: str = Field("other", description="the model card's license (a Hub license id)")

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not _HUB_ID.match(value):
            raise ValueError(f"'{value}' is not a Hub repository id (USER/NAME)")
        return value


class QuantizationConfig(_Strict):
    """The base model's weights in 4 or 8 bits through bitsandbytes, LoRA adapters trained on
    top (QLoRA: Dettmers et al. 2023, arXiv 2305.14314); needs a CUDA GPU."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit only: NormalFloat or FP4")
    double_quant: bool = Field(True, description="4-bit only: quantize the quantization constants")
    compute_dtype: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16", description="4-bit only: the dtype matrix products run in"
    )


class RewardConfig(_Strict):
    """Where online training's rewards come from (preftune.judges.rewards): a gold function,
    a reward model (one output), or a `preftune judge` judge; each type takes its own keys."""

    type: Literal["gold", "model", "judge"]
    name: str | None = Field(None, description="gold: the gold function, e.g. vader-sentiment")
    path: str | None = Field(None, description="model: the reward model's folder or Hub id")
    batch_size: int = Field(16, gt=0, description="model: responses scored per forward")
    judge: Literal["gold", "reward-model", "openai", "hf-llm"] | None = Field(
        None, description="judge: the kind, as `preftune judge --judge`"
    )
    gold: str | None = Field(None, description="judge gold: the gold function")
    model: str | None = Field(None, description="judge: reward model / local LLM / endpoint model")
    base_url: str | None = Field(None, description="judge openai: the endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="judge openai: the key's variable")
    prompt: str = Field("pair-v2", description="judge: the judge prompt")
    decision: Literal["both-orders", "average"] = "both-orders"
    concurrency: int = Field(8, ge=1, description="judge openai: requests in flight")
    timeout: float = Field(60.0, gt=0, description="judge openai: seconds per request")
    max_retries: int = Field(4, ge=0, description="judge openai: retries of a failed request")

    _KEYS: ClassVar[dict[str, set[str]]] = {
        "gold": {"name"},
        "model": {"path", "batch_size"},
        "judge": {
            "judge", "gold", "model", "base_url", "api_key_env", "prompt", "decision",
            "concurrency", "timeout", "max_retries",
        },
    }  # fmt: skip

    @model_validator(mode="after")
    def _keys_of_its_type(self) -> RewardConfig:
        foreign = sorted(self.model_fields_set - self._KEYS[self.type] - {"type"})
        if foreign:
            raise ValueError(
                f"{foreign[0]}: not a setting of type {self.type} (it takes: "
                f"{', '.join(sorted(self._KEYS[self.type]))})"
            )
        needed = {"gold": "name", "model": "path", "judge": "judge"}[self.type]
        if getattr(self, needed) is None:
            raise ValueError(f"{needed}: type {self.type} needs it")
        if self.type == "model":
            _check_source("path", self.path)
        return self

    def judge_settings(self) -> dict[str, Any]:
        """type judge: the keyword arguments of `preftune.judges.build_judge` besides the kind."""
        keys = self._KEYS["judge"] - {"judge"}
        return {key: getattr(self, key) for key in sorted(keys)}


class OnlineConfig(_Strict):
    """Online training: each step samples `samples_per_prompt` responses to `prompts_per_step`
    prompts from the current policy, scores them and updates `num_iterations` times."""

    samples_per_prompt: int = Field(4, ge=1, description="G: responses sampled per prompt")
    max_new_tokens: int = Field(40, gt=0)
    temperature: float = Field(1.0, gt=0, description="sampling temperature (> 0)")
    top_k: int = Field(0, ge=0, description="0 = no top-k filter")
    top_p: float = Field(1.0, gt=0, le=1)
    prompts_per_step: int = Field(8, gt=0, description="prompts per generation batch")
    num_iterations: int = Field(1, gt=0, description="mu: updates per generation batch")
    generation_batch_size: int = Field(32, gt=0, description="sequences per generate() call")
    rounds: int | None = Field(
        None, gt=0, description="iterative training of an offline method (rounds of sampling)"
    )

    @property
    def sampling(self) -> dict[str, Any]:
        """The settings `preftune.generate.sampling.sample_batch` takes."""
        keys = ("max_new_tokens", "temperature", "top_k", "top_p")
        return {key: getattr(self, key) for key in keys}


def validate_section(model: type[BaseModel], values, key: str):
    """`values` validated as `model`; errors become one ConfigError naming `key.field`.

    >>> validate_section(OnlineConfig, {"samples_per_prompt": 0}, "online")
    Traceback (most recent call last):
    preftune.errors.ConfigError: invalid config: online.samples_per_prompt: Input should be greater than or equal to 1
    """
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_describe(error, prefix=(key,), root=model)) from None


# online methods that compare samples within a group of one prompt
GROUP_METHODS = ("grpo", "rloo", "online-dpo")


Optimizer = Literal["rmsprop", "adamw", "sgd"]
Scheduler = Literal["constant", "linear", "cosine"]


class LoopConfig(_Strict):
    """The training loop's settings every run config shares (`TrainConfig`, `RewardModelConfig`):
    lengths and batches, optimizer and schedule, precision, what trains, the run folder,
    checkpoints and trackers. A run config adds its model, data and what it trains (`method`),
    and may give a loop key another default (`loop_field`)."""

    max_prompt_length: int = Field(256, gt=0)
    max_length: int = Field(512, gt=0, description="prompt + response tokens")
    batch_size: int = Field(64, gt=0, description="prompt groups per optimizer step")
    micro_batch_size: int | None = Field(
        None, gt=0, description="groups per forward; None = batch_size"
    )

    optimizer: Optimizer = "rmsprop"
    lr: float = Field(5e-7, gt=0, le=MAX_LR)
    scheduler: Scheduler = Field(
        "constant", description="after warm-up: hold, or decay linearly / by cosine to 0"
    )
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0, description="optimizer steps; overrides epochs")
    warmup_steps: int | None = Field(None, ge=0, description="overrides warmup_ratio")
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(10.0, gt=0, description="None = no clipping")
    seed: int = 0

    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    attn_implementation: str | None = "sdpa"

    lora: LoraConfig | None = None
    trainable_layers: int | None = Field(
        None, gt=0, description="train only the top N transformer layers; None = all"
    )

    output_dir: str = "runs"
    run_name: str | None = Field(
        None, description="None = the method's name (`preftune rm`: reward-model)"
    )
    save_every: int | None = Field(
        None, gt=0, description="checkpoint every N steps (and at the end)"
    )
    keep_final_checkpoint: bool = Field(
        False,
        description="keep the last checkpoint (optimizer state included) after the run finishes; "
        "on with save_every",
    )
    log_every: int = Field(1, gt=0)
    resume: bool = False
    report_to: list[str] = Field(
        default_factory=list,
        description="experiment trackers: tensorboard, wandb, mlflow, trackio; 'none' = none",
    )
    tracker_project: str = Field(
        "preftune", description="the trackers' project (a study: its name)"
    )
    tracker_run: str | None = Field(
        None, description="the run's name in the trackers; None = run_name or the method"
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value):
        return check_trackers(value)

    @property
    def run_dir(self) -> Path:
        """output_dir/run_name, by default named after what the run trains (`method`)."""
        return Path(self.output_dir) / (self.run_name or self.method)

    @property
    def groups_per_forward(self) -> int:
        return self.micro_batch_size or self.batch_size

    def to_yaml(self) -> str:
        """The resolved config as the run folder's config.yaml (`key_order`)."""
        values = self.model_dump(mode="json")
        return yaml.safe_dump({key: values[key] for key in key_order(type(self))}, sort_keys=False)


def loop_field(name: str, **changes: Any) -> FieldInfo:
    """`LoopConfig`'s field `name` with other settings (a default, a description), its checks
    kept: how a run config gives a loop key its own default.

    >>> field = loop_field("lr", default=1e-5)
    >>> field.default, field.metadata == LoopConfig.model_fields["lr"].metadata
    (1e-05, True)
    """
    return FieldInfo.merge_field_infos(LoopConfig.model_fields[name], **changes)


def key_order(model: type[BaseModel]) -> list[str]:
    """A config's keys in reading order: a run config's own (model, method, data...) before
    the loop's; any other model's as declared.

    >>> key_order(TrainConfig)[:4]
    ['model', 'method', 'hparams', 'data']
    """
    keys = list(model.model_fields)
    if issubclass(model, LoopConfig):
        keys.sort(key=lambda key: key in LoopConfig.model_fields)  # stable: own keys first
    return keys


class TrainConfig(LoopConfig):
    """One training run: a model, a method with its hyperparameters, data and the loop's settings
    (`LoopConfig`)."""

    model: str = Field(description="Hub id, local folder, a previous run folder, or the demo model")
    method: str = Field(description="a name from `preftune methods`")
    hparams: dict[str, Any] = Field(
        default_factory=dict,
        description="the method's, over its defaults (docs/methods.md); null = the default",
    )
    data: DataConfig

    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    reference: Literal["precompute", "live"] | None = Field(
        "precompute",
        description="precompute = once, cached on disk; None for reference-free methods",
    )
    quantization: QuantizationConfig | None = Field(
        None, description="load the base in 4/8 bits (needs lora and a CUDA GPU)"
    )
    trunk_cache: Literal["auto", "on", "off"] = Field(
        "auto",
        description="with trainable_layers: cache the frozen layers' output on disk and run "
        "only the top ones each step; auto = when the model allows it and it fits 1 GiB",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="recompute the policy's activations in the backward pass: far less "
        "memory for about 10% more time on CPU (the reference keeps none)",
    )
    prompt_embedder: str = Field(
        DEFAULT_EMBEDDER,
        description="RPO's sentence embedder: the bundled model or a local folder",
    )

    push_to_hub: PushToHub | None = Field(
        None, description="push final/ with a model card when the run finishes"
    )
    reward: RewardConfig | None = Field(
        None, description="online training's reward source (preftune.judges.rewards)"
    )
    online: OnlineConfig | None = Field(
        None, description="online sampling settings; default for an online method"
    )

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _unquoted_no(cls, value):
        return "no" if value is False else value  # YAML reads a bare `no` as false

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> TrainConfig:
        from preftune.losses import METHODS

        if self.method not in METHODS:
            raise ValueError(f"method '{self.method}' is not one of: {', '.join(sorted(METHODS))}")
        spec = METHODS[self.method]
        inherited = (info.context or {}).get(INHERITED_HPARAMS)
        self.__dict__["hparams"] = _resolve_hparams(spec, self.hparams, inherited)
        if not spec.needs_reference:
            self.__dict__["reference"] = None
        elif self.reference is None:
            raise ValueError(f"reference: method '{self.method}' needs one: precompute or live")
        self._check_online(spec)
        if self.trunk_cache == "on" and self.trainable_layers is None:
            raise ValueError(
                "trunk_cache: on needs trainable_layers (with every layer training, no layer is "
                "frozen to cache)"
            )
        if self.trunk_cache == "on" and self.online is not None:
            raise ValueError(
                "trunk_cache: on caches fixed data; online training (and online.rounds) scores "
                "fresh samples"
            )
        if self.data.curriculum and spec.view != "pair":
            raise ValueError(
                f"data.curriculum: orders pairs by score gap; '{self.method}' trains on the "
                f"'{spec.view}' view"
            )
        if self.quantization is not None and self.lora is None:
            raise ValueError(
                "quantization: a quantized base trains through LoRA adapters only; add a lora "
                "section (`lora: {}` for the defaults) or remove quantization"
            )
        _check_loop_settings(self)
        if "prompt_embeddings" in spec.extra_inputs and self.prompt_embedder != DEFAULT_EMBEDDER:
            _check_source("prompt_embedder", self.prompt_embedder)
        return self

    def _check_online(self, spec) -> None:
        """An online method needs a reward and an `online` block (its defaults when absent);
        group methods need two samples per prompt; task prompts are for sampling only."""
        online = spec.view == "online"
        iterative = self.online is not None and self.online.rounds is not None  # train/rounds.py
        if online and iterative:
            raise ValueError(
                f"online.rounds: '{self.method}' samples every step already; rounds iterate an "
                "offline method (dpo, kto, mppo-...)"
            )
        if online and self.online is None:
            self.__dict__["online"] = OnlineConfig()
        if online and spec.needs_reference:  # fresh samples every step: nothing to precompute
            self.__dict__["reference"] = "live"
        if (online or iterative) and self.reward is None:
            raise ValueError(
                f"reward: method '{self.method}' trains on rewards of its own samples; add e.g. "
                "reward: {type: gold, name: vader-sentiment}"
            )
        grouped = iterative or (online and self.method in GROUP_METHODS)
        if grouped and self.online.samples_per_prompt < 2:
            raise ValueError(
                f"online.samples_per_prompt: method '{self.method}' compares samples of one "
                f"prompt; it needs >= 2, got {self.online.samples_per_prompt}"
            )
        if self.data.task is not None and not (online or iterative):
            raise ValueError(
                f"data.task: a task gives prompts only; method '{self.method}' trains offline "
                "on preference data (use data.path, or online.rounds to sample its data)"
            )


INHERITED_HPARAMS = "inherited_hparams"  # validation context: (file, its method, its keys)


def _resolve_hparams(spec, given: dict[str, Any], inherited=None) -> dict[str, Any]:
    """The method's hyperparameters, checked against their one declaration in the registry.

    A null value removes a setting (the default applies). `inherited` = (file, method, keys):
    keys a config file written for another method passed on; an error about one says so.
    """
    from preftune.losses.registry import UnknownOption, check_hparams

    given = {name: value for name, value in given.items() if value is not None}
    try:
        return check_hparams(spec, given)
    except UnknownOption as error:
        where = f"hparams.{error.hparam}"
        note = ""
        if inherited and error.hparam in inherited[2]:
            note = (
                f"; it comes from {inherited[0]}, written for method '{inherited[1]}': "
                f"remove it with {where}=null"
            )
        raise ValueError(f"{where}: {error}{note}") from None


def _looks_local(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or not _HUB_ID.match(value)


def _resolve_model(model: str) -> str:
    """A previous run folder means its final model; a local path must exist."""
    if model == DEMO_MODEL:
        return model
    path = Path(model).expanduser()
    if (path / "final" / "config.json").exists():
        return str(path / "final")
    if path.exists():
        return str(path)
    if _looks_local(model):
        raise ValueError(
            f"model: '{model}' does not exist (a local folder, a Hub id or '{DEMO_MODEL}')"
        )
    return model


def _check_source(key: str, value: str) -> None:
    if not Path(value).expanduser().exists() and _looks_local(value):
        raise ValueError(f"{key}: '{value}' does not exist (a local file or folder, or a Hub id)")


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error on one line: where and what ("line 3, column 5: found a tab")."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`a.b=value` strings into a nested dict; values are YAML (`lora=null`, `hparams.beta=0.2`).

    >>> parse_overrides(["lr=1e-4", "hparams.beta=null"])
    {'lr': 0.0001, 'hparams': {'beta': None}}
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ConfigError(
                f"override '{item}': expected key=value with a dotted key (e.g. hparams.beta=0.2)"
            )
        try:
            value = _yaml(raw) if raw else ""
        except yaml.YAMLError as error:
            raise ConfigError(
                f"override '{item}': the value is not valid YAML ({_yaml_problem(error)})"
            ) from None
        *parents, leaf = parts
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        target[leaf] = value
    return nested


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_train_config(values: dict[str, Any], *, inherited=None) -> TrainConfig:
    """Validate a plain dict into a TrainConfig; errors become one ConfigError naming each key.

    `inherited` = (file, method, hparam names) when the config file was written for another
    method than the one trained: an error about one of those hyperparameters says so.
    """
    try:
        return TrainConfig.model_validate(values, context={INHERITED_HPARAMS: inherited})
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def _describe(
    error: ValidationError, *, prefix: tuple = (), root: type[BaseModel] | None = None
) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in (*prefix, *problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"], root or TrainConfig)
            message = f"unknown key (allowed: {', '.join(allowed)})"
        lines.append(f"{key}: {message}" if key else message)
    if len(lines) == 1:
        return f"invalid config: {lines[0]}"
    return "invalid config:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: tuple, model: type[BaseModel]) -> list[str]:
    for part in loc[:-1]:
        if isinstance(part, int):  # a list item (data.train.0): its model is the list's
            continue
        annotation = model.model_fields[str(part)].annotation
        model = next(_models_in(annotation), model)
    return key_order(model)


def _models_in(annotation):
    """The pydantic models an annotation names, nested ones included (list[M] | None)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _models_in(arg)


def _read_config_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; anything else is a ConfigError naming the file."""
    try:
        text = read_text(path, what="YAML config file")
    except DataError as error:
        raise ConfigError(f"--config: {error}") from None
    try:
        values = _yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(
            f"--config: '{path}' is not valid YAML ({_yaml_problem(error)})"
        ) from None
    if values is None:
        raise ConfigError(f"--config: '{path}' is empty; it needs at least model, method and data")
    if not isinstance(values, dict):
        raise ConfigError(f"--config: '{path}' must hold a mapping of keys to values")
    return values


def load_train_config(
    path: str | Path | None, overrides: list[str] | None = None, **fixed: Any
) -> TrainConfig:
    """Read a YAML config, apply `key=value` overrides, then `fixed` values (e.g. method="sft").

    When `fixed` trains another method than the file names, hyperparameters the file sets
    for its own method are reported as such if the new method does not take them.
    """
    from_file = _read_config_file(Path(path)) if path is not None else {}
    given = parse_overrides(overrides or [])
    values = _merge(from_file, given)
    values = _merge(values, {key: value for key, value in fixed.items() if value is not None})
    inherited = None
    file_hparams = from_file.get("hparams")
    if isinstance(file_hparams, dict) and from_file.get("method") != values.get("method"):
        overridden = set(given.get("hparams") or {})
        inherited = (str(path), from_file.get("method"), set(file_hparams) - overridden)
    return build_train_config(values, inherited=inherited)


class RewardDataConfig(DataConfig):
    """A reward model's data: `DataConfig` (every pairing defaults to all score-ordered pairs)
    plus where the held-out pairs for ranking accuracy come from."""

    pairs: Literal["top-vs-random", "top-vs-each", "top-vs-worst", "all"] = "all"
    heldout: str | None = Field(
        None, description="held-out data (same formats); None = hold out heldout_fraction"
    )
    heldout_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of prompts held out when heldout is None; 0 = none"
    )


class RewardModelConfig(LoopConfig):
    """`preftune rm`: a scalar reward head on a causal LM, trained on pairs or ranked lists
    (docs/reward-models.md). The loop's keys are `LoopConfig`'s, with reward-model defaults:
    AdamW at 1e-5, linear decay, no warm-up, clipping at 1.0, 16 pairs a step."""

    model: str = Field(description="the causal LM to start from: Hub id, folder or run folder")
    data: RewardDataConfig
    objective: Literal["bradley-terry", "plackett-luce"] = Field(
        "bradley-terry", description="pairs (Bradley-Terry) or whole ranked lists (Plackett-Luce)"
    )
    margin: Literal["none", "scores", "data"] = Field(
        "none",
        description="Bradley-Terry margin: none, margin_scale x the pair's score gap, or the "
        "data's margin column",
    )
    margin_scale: float = Field(1.0, gt=0)
    centering: float = Field(
        0.0, ge=0, description="reward centering coefficient (Eisenstein et al. 2023)"
    )

    batch_size: int = loop_field(
        "batch_size", default=16, description="pairs (or lists) per optimizer step"
    )
    optimizer: Optimizer = loop_field("optimizer", default="adamw")
    lr: float = loop_field("lr", default=1e-5)
    scheduler: Scheduler = loop_field("scheduler", default="linear")
    warmup_ratio: float = loop_field("warmup_ratio", default=0.0)
    max_grad_norm: float | None = loop_field("max_grad_norm", default=1.0)
    trainable_layers: int | None = loop_field(
        "trainable_layers", description="train only the top N layers (and the reward head)"
    )

    @model_validator(mode="after")
    def _check(self) -> RewardModelConfig:
        if self.objective == "plackett-luce" and self.margin != "none":
            raise ValueError("margin: a margin applies to bradley-terry pairs only")
        if self.objective == "plackett-luce" and self.data.curriculum:
            raise ValueError("data.curriculum: orders pairs; plackett-luce trains on lists")
        if self.data.task is not None:
            raise ValueError("data.task: a task gives prompts only; a reward model trains on pairs")
        _check_loop_settings(self)
        if self.data.heldout is not None:
            _check_source("data.heldout", self.data.heldout)
        return self

    @property
    def method(self) -> str:
        """What the run trains, as data errors and the progress bar name it."""
        return "reward-model"

    @property
    def view(self) -> str:
        """The data view the objective trains on."""
        return "pair" if self.objective == "bradley-terry" else "list"

    @property
    def needs(self) -> tuple[str, ...]:
        """What the data must carry (`preftune.data.validate_for`)."""
        return {"none": (), "scores": ("scores",), "data": ("margins",)}[self.margin]


def _check_loop_settings(config) -> None:
    """The checks a training loop's settings (`LoopConfig`) need in any run config: batch and
    length limits, one way to limit what trains, model and data sources that exist (the model
    resolved in place)."""
    if config.micro_batch_size is not None and config.micro_batch_size > config.batch_size:
        raise ValueError(
            f"micro_batch_size ({config.micro_batch_size}) must be <= batch_size "
            f"({config.batch_size})"
        )
    if config.max_prompt_length >= config.max_length:
        raise ValueError(
            f"max_prompt_length ({config.max_prompt_length}) must be < max_length "
            f"({config.max_length})"
        )
    if config.lora is not None and config.trainable_layers is not None:
        raise ValueError("lora and trainable_layers: choose one way to limit what trains")
    config.__dict__["model"] = _resolve_model(config.model)
    if config.data.path is not None:
        _check_source("data.path", config.data.path)
    for index, source in enumerate(config.data.train or []):
        _check_source(f"data.train.{index}.path", source.path)


def load_reward_model_config(
    path: str | Path | None, overrides: list[str] | None = None, **fixed: Any
) -> RewardModelConfig:
    """`preftune rm`'s config: a YAML file, `key=value` overrides, then `fixed` values."""
    values = _merge(
        _read_config_file(Path(path)) if path is not None else {}, parse_overrides(overrides or [])
    )
    values = _merge(values, {key: value for key, value in fixed.items() if value is not None})
    try:
        return RewardModelConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_describe(error, root=RewardModelConfig)) from None
