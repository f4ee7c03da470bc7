"""A run's model card: README.md with the Hub's YAML metadata and what the run did.

Everything comes from the run folder (config.yaml, summary.json): the method with its paper
and hyperparameters, the training settings, the data and the training time. A run inside a
study (`<study>/runs/<label>[/seed-<s>]`) adds its row of the study's results.json and its
rank on every evaluation (rank/<evaluation>/ranking.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from preftune.config import DEMO_MODEL, is_hub_id
from preftune.errors import DataError
from preftune.experiments.layout import SFT, START, StudyLayout, read_json
from preftune.io import atomic_write_text, read_text
from preftune.losses import METHODS

DEMO_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the demo GGUF file holds
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
TRAINING_KEYS = (
    "optimizer",
    "lr",
    "scheduler",
    "warmup_ratio",
    "batch_size",
    "epochs",
    "max_steps",
    "max_length",
    "max_prompt_length",
    "dtype",
    "reference",
    "seed",
)


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """A finished run's config.yaml and summary.json; a DataError naming what is missing."""
    summary_path = run_dir / "summary.json"
    if not run_dir.is_dir():
        raise DataError("no such run folder", source=str(run_dir))
    if not summary_path.is_file():
        raise DataError(
            "not a finished training run (no summary.json); finish it with --resume",
            source=str(run_dir),
        )
    config = yaml.safe_load(read_text(run_dir / "config.yaml", what="run config"))
    return config, json.loads(read_text(summary_path))


def base_model(model: str) -> str | None:
    """The Hub id a run started from: a previous run's own start, the demo model's Hub id,
    or None for a local model folder.

    >>> base_model("smollm2-135m-instruct"), base_model("./my-model")
    ('HuggingFaceTB/SmolLM2-135M-Instruct', None)
    """
    if model == DEMO_MODEL:
        return DEMO_HUB_ID
    path = Path(model)
    if path.name == "final" and (path.parent / "config.yaml").is_file():  # a previous run
        previous = yaml.safe_load(read_text(path.parent / "config.yaml"))
        return base_model(str(previous.get("model", "")))
    return model if is_hub_id(model) else None


def model_card(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    license: str = "other",
    merge: bool = False,
) -> str:
    """The README.md text of a run: YAML metadata, then the method, training, data and, for a
    study's run, its evaluation. A LoRA run's card is its adapter's (peft), or with `merge`
    the merged weights'."""
    from huggingface_hub import ModelCard, ModelCardData

    run_dir = Path(run_dir)
    config, summary = read_run(run_dir)
    adapter = pushes_adapter(run_dir, merge)
    method = config["method"]
    base = base_model(config["model"])
    hub_datasets = [path for path in _data_paths(config["data"]) if _is_hub_dataset(path)]
    metadata = ModelCardData(
        base_model=base,
        datasets=hub_datasets or None,
        license=license,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        tags=["preftune", method] + (["lora"] if config.get("lora") else []),
    )
    name = repo_id or run_dir.name
    sections = [
        f"# {name}\n",
        _summary_line(config, base, adapter),
        _method_section(config),
        _training_section(config, summary),
        _data_section(config, summary),
        _study_section(run_dir),
        _usage_section(repo_id or "PATH", adapter),
    ]
    text = "\n".join(section for section in sections if section)
    card = ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{text}")
    return str(card)


def pushes_adapter(run_dir: Path, merge: bool) -> bool:
    """Whether a run's model is its LoRA adapter (final-adapter/) rather than final/."""
    return (run_dir / "final-adapter").is_dir() and not merge


def _data_paths(data: dict) -> list[str]:
    """The data files or Hub data sets a run read: `path`, or each source of a `train` mix
    (none for a built-in task's prompts)."""
    if data.get("path"):
        return [data["path"]]
    return [source["path"] for source in data.get("train") or []]


def _is_hub_dataset(path: str) -> bool:
    """A data path that names a Hub data set, not a data file (relative paths look alike)."""
    return is_hub_id(path) and Path(path).suffix not in DATA_FILE_SUFFIXES


def write_card(run_dir: str | Path, out: str | Path | None = None, **options) -> Path:
    """Write `model_card(run_dir, **options)` to `out` (default RUN_DIR/README.md)."""
    target = Path(out) if out is not None else Path(run_dir) / "README.md"
    return atomic_write_text(target, model_card(run_dir, **options))


def _summary_line(config: dict, base: str | None, adapter: bool) -> str:
    what = "A LoRA adapter" if adapter else "A causal language model"
    start = f"`{base}`" if base else "a local model"
    return f"{what} aligned with **{config['method']}** from {start}, trained with preftune.\n"


def _method_section(config: dict) -> str:
    spec = METHODS.get(config["method"])
    lines = ["## Method\n"]
    if spec is not None:
        lines.append(f"**{spec.name}**: `{spec.description}` ({spec.paper}).\n")
    hparams = config.get("hparams") or {}
    if hparams:
        lines.append("Hyperparameters:\n")
        lines += [f"- {key}: {value}" for key, value in hparams.items()]
        lines.append("")
    return "\n".join(lines)


def _training_section(config: dict, summary: dict) -> str:
    lines = ["## Training\n"]
    lines += [f"- {key}: {config[key]}" for key in TRAINING_KEYS if config.get(key) is not None]
    if config.get("lora"):
        lora = config["lora"]
        lines.append(
            f"- LoRA: r {lora['r']}, alpha {lora['alpha']}, modules {lora['target_modules']}"
        )
    lines.append(
        f"- steps: {summary['steps']} ({summary['epochs']:.2f} epochs, "
        f"{summary['train_groups']} prompt groups, {summary['tokens']} tokens)"
    )
    lines.append(f"- training time: {summary['wall_time_s']:.0f} s")
    final = summary.get("final_metrics") or {}
    shown = {
        k: v for k, v in final.items() if k in ("loss", "rewards/accuracies", "rewards/margins")
    }
    if shown:
        lines.append("- last logged step: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return "\n".join(lines) + "\n"


def _data_section(config: dict, summary: dict) -> str:
    data = config["data"]
    where = ", ".join(
        f"{key} {data[key]}" for key in ("format", "split", "limit") if data.get(key) is not None
    )
    sources = [
        f"`{path if _is_hub_dataset(path) else Path(path).name}`" for path in _data_paths(data)
    ]
    if data.get("task"):
        sources.append(f"the built-in {data['task']} task's prompts")
    listed = ", ".join(sources)
    lines = ["## Data\n", f"- source: {listed}" + (f" ({where})" if where else "")]
    counts = summary.get("data") or {}
    lines += [
        f"- {key.replace('_', ' ')}: {value}"
        for key, value in counts.items()
        if isinstance(value, int)
    ]
    return "\n".join(lines) + "\n"


def study_of(run_dir: Path) -> tuple[StudyLayout, str, int | None] | None:
    """The study a run folder belongs to, with the run's row label and seed (None if none).

    The SFT run is the study's `start` row (every method starts from it)."""
    run_dir = run_dir.resolve()
    candidates = [(run_dir.parent, run_dir.name, None)]
    if run_dir.name.startswith("seed-"):
        candidates.insert(0, (run_dir.parent.parent, run_dir.parent.name, int(run_dir.name[5:])))
    for runs, label, seed in candidates:
        if runs.name == "runs" and (runs.parent / "study.yaml").is_file():
            return StudyLayout(runs.parent), START if label == SFT else label, seed
    return None


def _study_section(run_dir: Path) -> str:
    found = study_of(run_dir)
    if found is None:
        return ""
    layout, label, _ = found
    results = read_json(layout.root / "results.json")
    lines = ["## Evaluation\n"]
    if results is None:
        lines.append(f"Trained in the study `{layout.root.name}`, which has no results yet.")
        return "\n".join(lines) + "\n"
    from preftune.experiments.sections import table3

    header, rows = table3(results)
    row = next(
        (r for r, raw in zip(rows, results["rows"], strict=True) if raw["label"] == label), None
    )
    seeds = results.get("seeds", 1)
    lines.append(
        f"Row `{label}` of the study `{results.get('study')}` ({len(rows)} rows"
        + (f", figures averaged over {seeds} seeds" if seeds > 1 else "")
        + "):\n"
    )
    if row is not None:
        lines += [f"- {name}: {cell}" for name, cell in zip(header[1:], row[1:], strict=True)]
    lines.append("")
    for evaluation, ranking in (results.get("ranking") or {}).items():
        place = next((i for i, e in enumerate(ranking, 1) if e["label"] == label), None)
        if place is None:
            continue
        entry = ranking[place - 1]
        lines.append(
            f"- rank on {evaluation}: {place} of {len(ranking)} (score {entry['score']:.3f} "
            f"[{entry['ci_low']:.3f}, {entry['ci_high']:.3f}], tier {entry['tier']})"
        )
    return "\n".join(lines) + "\n"


def _usage_section(repo_id: str, adapter: bool) -> str:
    if adapter:
        code = (
            "from peft import AutoPeftModelForCausalLM\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")'
        )
    else:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")'
        )
    return f"## Usage\n\n```python\n{code}\n```\n"
