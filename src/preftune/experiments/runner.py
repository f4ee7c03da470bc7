"""Run a study: held-out prompts, SFT (or not), training data, every method, evaluation, report.

Every step leaves its result on disk and a completion marker (`layout`), so a killed study
continues where it stopped: finished runs, samples and judgments are skipped (training runs
resume from their last checkpoint; samples and judgments files resume by id). A failing
method is recorded in `failures/` and the report, and the others go on.

All methods start from the same model, train with the same seed (same data order), and share
precomputed reference log-probs: the trainer caches them on disk keyed by model, data and
tokenization, so the first reference-based method computes them and the others reuse them.
"""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path

import yaml

from preftune.errors import ConfigError, PreftuneError
from preftune.experiments import evaluation, onpolicy
from preftune.experiments.config import MethodEntry, StudyConfig, train_values
from preftune.experiments.layout import SFT, START, StudyLayout, read_json
from preftune.experiments.report import build_report
from preftune.io import read_jsonl


class StudyRunner:
    """Runs one study into `out_dir`; `log` receives one line per step (progress for users)."""

    def __init__(self, config: StudyConfig, out_dir: str | Path, log=print):
        self.config = config
        self.layout = StudyLayout(Path(out_dir))
        self.log = log
        self._start_model = None  # (model, tokenizer), loaded once when first needed
        self._step = 0
        self._steps = 3 + bool(config.sft) + 2 * len(config.methods)

    # -- the pipeline -------------------------------------------------------------------

    def run(self) -> dict:
        self._claim_folder()
        began = time.perf_counter()
        self._stage("held-out prompts", self._heldout)
        if self.config.sft:
            self._stage("SFT", lambda: self._train(SFT, MethodEntry(method="sft"), sft=True))
            if self.layout.failure(SFT).exists():
                raise PreftuneError(
                    f"the SFT step failed ({self.layout.failure(SFT)}); every method starts "
                    "from it, so the study stops here"
                )
        self._stage("training data", self._training_data)
        for index, entry in enumerate(self.config.methods, start=1):
            where = f"{entry.run_label} ({index}/{len(self.config.methods)})"
            self._stage(f"train {where}", lambda entry=entry: self._train(entry.run_label, entry))
        self._stage(f"evaluate {START}", lambda: self._evaluate(START))
        for index, entry in enumerate(self.config.methods, start=1):
            label = entry.run_label
            where = f"{label} ({index}/{len(self.config.methods)})"
            self._stage(f"evaluate {where}", lambda label=label: self._evaluate(label))
        results = build_report(self.layout.root)
        self._say(f"report: {self.layout.root / 'report.md'} ({time.perf_counter() - began:.0f} s)")
        return results

    def _stage(self, name: str, work) -> None:
        self._step += 1
        began = time.perf_counter()
        self._say(f"[{self._step}/{self._steps}] {name}")
        work()
        self._say(f"[{self._step}/{self._steps}] {name}: {time.perf_counter() - began:.0f} s")

    def _say(self, line: str) -> None:
        self.log(f"preftune compare: {line}")

    def _claim_folder(self) -> None:
        """Write study.yaml, or check that the folder holds this same study (resuming). A config
        that only adds methods extends the study: finished work is kept, the new methods run."""
        resolved = self.config.model_dump(mode="json")
        if self.layout.config.exists():
            previous = yaml.safe_load(self.layout.config.read_text())
            added = _added_methods(previous, resolved)
            if added:
                labels = ", ".join(entry.run_label for entry in added)
                self._say(f"adding {labels} to the study in {self.layout.root}")
                self.layout.config.write_text(yaml.safe_dump(resolved, sort_keys=False))
            elif previous != resolved:
                changed = sorted(k for k in resolved if previous.get(k) != resolved[k])
                raise ConfigError(
                    f"--out {self.layout.root} holds another study (differs in {changed}); "
                    "resume with the same config (adding methods is allowed) or choose another "
                    "--out"
                )
            else:
                self._say(f"resuming the study in {self.layout.root}")
            return
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.layout.config.write_text(yaml.safe_dump(resolved, sort_keys=False))

    def _once(self, step: str, work) -> bool:
        """Run `work` unless `step` finished before; True when it ran."""
        if self.layout.is_done(step):
            self._say(f"  {step}: done earlier, skipped")
            return False
        work()
        self.layout.mark_done(step)
        return True

    # -- steps ---------------------------------------------------------------------------

    def _heldout(self) -> None:
        self._once("heldout", lambda: onpolicy.write_heldout(self.config, self.layout.heldout))

    @property
    def start_path(self) -> str:
        return str(self.layout.run(SFT)) if self.config.sft else self.config.model

    def start_model(self):
        if self._start_model is None:
            from preftune.generate import load_for_generation

            model, tokenizer, _ = load_for_generation(self.start_path)
            self._start_model = (model, tokenizer)
        return self._start_model

    def _training_data(self) -> None:
        if self.config.data.train.task is None:
            self._say("  training data: read by the trainer from " + self.config.data.train.path)
            return
        self._once(
            "data",
            lambda: onpolicy.write_scored_lists(self.config, self.start_model(), self.layout),
        )

    def _train_data_source(self) -> dict:
        source = self.config.data.train
        if source.task is not None:
            return {"path": str(self.layout.train_data), "format": "scored"}
        return source.model_dump(exclude={"task"}, exclude_none=True)

    def _train(self, label: str, entry: MethodEntry, sft: bool = False) -> None:
        if self.layout.failure(label).exists():
            self._say(f"  {label}: failed earlier, retrying")
            self.layout.clear_failure(label)
        if sft and self.config.sft.data is not None:
            data = self.config.sft.data.model_dump(exclude={"task"}, exclude_none=True)
        else:
            data = self._train_data_source()
        model = self.config.model if sft else self.start_path
        overrides = self.config.sft.train if sft else entry.train
        values = train_values(self.config, model, entry, overrides, data)
        values.update(output_dir=str(self.layout.root / "runs"), run_name=label, resume=True)
        step = f"train/{label}"
        self._guarded(label, "train", lambda: self._once(step, lambda: run_training(values)))
        if self.layout.is_done(step):  # final/ holds the model; the resume state is not needed
            shutil.rmtree(self.layout.run(label) / "checkpoints", ignore_errors=True)

    def _evaluate(self, label: str) -> None:
        failure = read_json(self.layout.failure(label))
        if failure and failure["step"] == "train":
            self._say(f"  {label}: not evaluated, its training failed")
            return
        self.layout.clear_failure(label)  # an evaluation that failed before is tried again
        self._guarded(label, "evaluate", lambda: self._evaluate_row(label))

    def _evaluate_row(self, label: str) -> None:
        model = self.start_model() if label == START else str(self.layout.run(label))
        prompts = read_jsonl(self.layout.heldout)[: self.config.evaluation.num_prompts]
        samples = self.layout.samples(label)
        self._once(
            f"samples/{label}",
            lambda: evaluation.sample_answers(model, prompts, samples, self.config),
        )
        self._once(
            f"stats/{label}",
            lambda: evaluation.write_stats(
                self.config,
                samples,
                self.start_model(),
                self.layout.stats(label),
                model=None if label == START else model,
            ),
        )
        for spec in self.config.evaluation.evaluations:
            if spec.kind == "pairwise" and spec.baseline in (START, SFT) and label == START:
                continue  # the start is not judged against itself
            self._once(
                f"judged/{label}/{spec.name}",
                lambda spec=spec: evaluation.judge_row(
                    self.config, spec, samples, model, self.layout, label
                ),
            )

    def _guarded(self, label: str, step: str, work) -> None:
        """Run one row's step; a failure is recorded for the report and the study goes on."""
        try:
            work()
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of one method is reported
            message = f"{type(error).__name__}: {error}"
            self.layout.record_failure(label, step, message)
            (self.layout.failure(label).with_suffix(".log")).write_text(traceback.format_exc())
            self._say(f"  {label} failed at {step}: {message} (the study goes on)")


def run_training(values: dict) -> Path:
    """Validate and run one training run (`preftune.train.train`)."""
    from preftune.config import build_train_config
    from preftune.train import train

    return train(build_train_config(values))


def _added_methods(previous: dict, resolved: dict) -> list[MethodEntry]:
    """The methods `resolved` adds to the `previous` study config, when that is all it changes
    (every earlier method entry unchanged, nothing else different); else []."""
    if not isinstance(previous, dict):
        return []
    earlier, now = previous.get("methods") or [], resolved["methods"]
    rest_equal = {k: v for k, v in previous.items() if k != "methods"} == {
        k: v for k, v in resolved.items() if k != "methods"
    }
    if not rest_equal or len(now) <= len(earlier) or any(m not in now for m in earlier):
        return []
    return [MethodEntry(**m) for m in now if m not in earlier]
