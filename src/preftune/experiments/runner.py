"""Run a study: prompts, SFT (or not), training data, sweeps, every method once per seed,
evaluation, a ranking per evaluation, report.

Every step leaves its result on disk and a completion marker (`layout`), so a killed study
continues where it stopped: finished runs, samples and judgments are skipped (training runs
resume from their last checkpoint; samples and judgments files resume by id), and one line
says how many. A failing method is recorded in `failures/` and the report, and the others go on.

A method with a `sweep` trains every point of its grid (first seed) and scores it on the dev
prompts; the best point's run becomes the method's first-seed run, the other seeds train with
its setting, and only those runs are tested, so tuning never sees a test prompt.

All methods start from the same model, train with the same seed (same data order), and share
precomputed reference log-probs: the trainer caches them on disk keyed by model, data and
tokenization, so the first reference-based method computes them and the others reuse them.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import yaml

from preftune.errors import ConfigError, PreftuneError
from preftune.experiments import evaluation, onpolicy, sweep
from preftune.experiments.config import MethodEntry, StudyConfig, train_values
from preftune.experiments.layout import SFT, START, StudyLayout, read_json
from preftune.experiments.ranking import SCORING_JUDGES, judge_requests, rank_evaluation
from preftune.experiments.report import build_report
from preftune.generate.sampling import LocalModel
from preftune.io import FolderLock, atomic_write_json, atomic_write_text, read_jsonl


class StudyRunner:
    """Runs one study into `out_dir`; `log` receives one line per step (progress for users)."""

    def __init__(self, config: StudyConfig, out_dir: str | Path, log=print):
        self.config = config
        self.layout = StudyLayout(Path(out_dir))
        self.log = log
        self.seeds = StudyLayout.seeds(config.model_dump(mode="json"))  # [None]: one seed
        self._start_model = None  # (model, tokenizer), loaded once when first needed
        self._held_out_pairs = None  # evaluation.HeldOutPairs, built once when first needed
        self._skipped: Counter[str] = Counter()  # finished steps a resume skipped, by kind
        self._ran = 0  # steps that did work in this call

    # -- the pipeline -------------------------------------------------------------------

    def run(self) -> dict:
        """Run (or resume) the study; the folder is held by this process until it returns, so
        a second `preftune compare` on it exits 2 naming this one's pid."""
        missing = self.config.missing_inputs()
        if missing:
            raise ConfigError(f"{missing[0]}; the study needs it, so nothing was started")
        with FolderLock(self.layout.root, what="study folder"):
            return self._run_stages()

    def _run_stages(self) -> dict:
        self._claim_folder()
        self._say_plan()
        began = time.perf_counter()
        stages = self._stages()
        for index, (name, work) in enumerate(stages, start=1):
            self._stage(f"[{index}/{len(stages)}]", name, work)
        if self._skipped:
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self._skipped.items()))
            self._say(f"resumed: {sum(self._skipped.values())} finished steps skipped ({kinds})")
        results = build_report(self.layout.root)
        self._say(f"report: {self.layout.root / 'report.md'} ({time.perf_counter() - began:.0f} s)")
        return results

    def _stages(self) -> list[tuple[str, object]]:
        config, methods = self.config, self.config.methods
        stages = [("prompts", self._prompts)]
        if config.sft:
            stages.append(("SFT", self._sft))
        stages.append(("training data", self._training_data))
        if self._wants_preference_pairs():
            stages.append(("held-out preference pairs", self._preference_pairs))
        for entry in methods:
            if entry.sweep:
                points = len(entry.sweep_points())
                stages.append(
                    (
                        f"sweep {entry.run_label} ({points} points, dev prompts)",
                        lambda e=entry: self._sweep(e),
                    )
                )
        for index, entry in enumerate(methods, start=1):
            where = f"{entry.run_label} ({index}/{len(methods)})"
            stages.append((f"train {where}", lambda e=entry: self._train_method(e)))
        stages.append((f"evaluate {START}", lambda: self._evaluate(START, [None])))
        for index, entry in enumerate(methods, start=1):
            where = f"{entry.run_label} ({index}/{len(methods)})"
            stages.append(
                (f"evaluate {where}", lambda e=entry: self._evaluate(e.run_label, self.seeds))
            )
        for spec in config.evaluation.evaluations:
            stages.append((f"rank on {spec.name}", lambda spec=spec: self._rank(spec)))
        return stages

    def _stage(self, counter: str, name: str, work) -> None:
        began, ran = time.perf_counter(), self._ran
        self._say(f"{counter} {name}")
        work()
        if self._ran > ran:  # something was done, not only skipped: time it
            seconds = time.perf_counter() - began
            self._say(f"{counter} {name}: {seconds:.0f} s")
            self._record_timing(name, seconds)

    def _record_timing(self, name: str, seconds: float) -> None:
        timings = read_json(self.layout.timings) or {"stages": []}
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        timings["stages"].append({"name": name, "seconds": round(seconds, 1), "when": when})
        atomic_write_json(self.layout.timings, timings)

    def _say(self, line: str) -> None:
        self.log(f"preftune compare: {line}")

    def _say_plan(self) -> None:
        """What the study will do, including every judge request, before anything runs."""
        config = self.config
        rows = 1 + len(config.methods)
        seeds = len(self.seeds)
        prompts = config.evaluation.num_prompts
        seed_note = f"seeds {config.seeds}" if config.seeds else f"seed {config.seed}"
        self._say(
            f"plan: {rows} rows (start + {len(config.methods)} methods), {seed_note}, "
            f"{prompts} test prompts"
        )
        online = [entry.run_label for entry in config.methods if entry.is_online]
        if online:
            reward = config.reward_settings
            self._say(
                f"  online: {', '.join(online)} sample their own training data from the "
                f"training prompts, rewarded by {reward['type']} "
                f"{reward.get('name') or reward.get('path') or reward.get('judge')}"
            )
        for entry in config.methods:
            if entry.sweep:
                self._say(
                    f"  sweep {entry.run_label}: {len(entry.sweep_points())} points over "
                    f"{list(entry.sweep)}, scored on the dev prompts"
                )
        for spec in config.evaluation.evaluations:
            if spec.kind == "mt-bench":
                how = "per-question MT-Bench grades, all pairs"
            elif spec.judge.type in SCORING_JUDGES:
                how = f"{spec.judge.type} scores, all pairs, no judge requests"
            else:
                requests = judge_requests(spec, rows, seeds, prompts)
                how = f"pairs: {spec.pairs}, {requests} judge requests at most"
            self._say(f"  rank on {spec.name}: {how}")

    def _claim_folder(self) -> None:
        """Write study.yaml, or check that the folder holds this same study (resuming). A config
        that only adds methods extends the study: finished work is kept, the new methods run."""
        resolved = self.config.model_dump(mode="json")
        if self.layout.config.exists():
            previous = _normalized(yaml.safe_load(self.layout.config.read_text()))
            added = _added_methods(previous, resolved)
            if added:
                labels = ", ".join(entry.run_label for entry in added)
                self._say(f"adding {labels} to the study in {self.layout.root}")
                atomic_write_text(self.layout.config, yaml.safe_dump(resolved, sort_keys=False))
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
        atomic_write_text(self.layout.config, yaml.safe_dump(resolved, sort_keys=False))

    def _once(self, step: str, work) -> bool:
        """Run `work` unless `step` finished before; True when it ran."""
        if self.layout.is_done(step):
            self._skipped[step.split("/")[0]] += 1
            return False
        work()
        self.layout.mark_done(step)
        self._ran += 1
        return True

    # -- steps ---------------------------------------------------------------------------

    def _prompts(self) -> None:
        """The test prompts, and the dev prompts (checked disjoint) when a step needs them."""
        self._once("heldout", lambda: onpolicy.write_heldout(self.config, self.layout.heldout))
        if self._needs_dev():
            test_rows = read_jsonl(self.layout.heldout)
            self._once("dev", lambda: onpolicy.write_dev(self.config, self.layout.dev, test_rows))

    def _needs_dev(self) -> bool:
        config = self.config
        sampled_pairs = config.evaluation.preference_prompts and config.gold_task is not None
        return config.dev_source is not None and (
            any(m.sweep for m in config.methods) or bool(sampled_pairs)
        )

    def _wants_preference_pairs(self) -> bool:
        if not any(evaluation.has_implicit_reward(m.method) for m in self.config.methods):
            return False
        return self.config.data.heldout.path is not None or self._needs_dev()

    def _preference_pairs(self) -> None:
        self._once(
            "preference-pairs",
            lambda: onpolicy.write_preference_pairs(self.config, self.start_model, self.layout),
        )

    @property
    def start_path(self) -> str:
        return str(self.layout.run(SFT)) if self.config.sft else self.config.model

    def start_model(self):
        if self._start_model is None:
            from preftune.generate import load_for_generation

            model, tokenizer, _ = load_for_generation(self.start_path)
            self._start_model = (model, tokenizer)
        return self._start_model

    def _sft(self) -> None:
        self._train(SFT, MethodEntry(method="sft"), [None], sft=True)
        if self.layout.failure(SFT).exists():
            raise PreftuneError(
                f"the SFT step failed ({self.layout.failure(SFT)}); every method starts "
                "from it, so the study stops here"
            )

    def _training_data(self) -> None:
        if all(entry.is_online for entry in self.config.methods):
            self._say("  training data: every method samples its own")
            return
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

    def _run_values(self, entry: MethodEntry, run: Path, seed: int | None, sft=False) -> dict:
        """The TrainConfig values of one run into the folder `run`."""
        if sft and self.config.sft.data is not None:
            data = self.config.sft.data.model_dump(exclude={"task"}, exclude_none=True)
        else:
            data = self._train_data_source()
        model = self.config.model if sft else self.start_path
        overrides = self.config.sft.train if sft else entry.train
        values = train_values(self.config, model, entry, overrides, data, seed)
        values.update(output_dir=str(run.parent), run_name=run.name, resume=True)
        return values

    def _train_method(self, entry: MethodEntry) -> None:
        label = entry.run_label
        if entry.sweep:
            sweep_result = read_json(self.layout.sweep(label) / "sweep.json")
            if sweep_result is None:
                self._say(f"  {label}: not trained, its sweep did not finish")
                return
            entry = entry.at_point(sweep_result["chosen"])
            self._reuse_sweep_run(label, sweep_result["chosen_point"])
        self._train(label, entry, self.seeds)

    def _reuse_sweep_run(self, label: str, point: str) -> None:
        """The chosen point trained exactly the first seed's run (same values, same seed):
        its record is copied and its model moved there instead of training it again."""
        seed, step = self.seeds[0], _step("train", label, self.seeds[0])
        if self.layout.is_done(step):
            return
        source, target = self.layout.sweep(label) / point, self.layout.run(label, seed)
        if (source / "final").is_dir():  # else a stopped earlier call already moved it
            shutil.rmtree(target, ignore_errors=True)
            ignored = shutil.ignore_patterns("final", sweep.DEV_ANSWERS, "dev-judged")
            shutil.copytree(source, target, ignore=ignored)
            shutil.move(source / "final", target / "final")
        self.layout.mark_done(step)
        self._ran += 1

    def _train(self, label: str, entry: MethodEntry, seeds: list, sft: bool = False) -> None:
        if self.layout.failure(label).exists():
            self._say(f"  {label}: failed earlier, retrying")
            self.layout.clear_failure(label)

        def train_every_seed():
            for seed in seeds:
                run = self.layout.run(label, seed)
                values = self._run_values(entry, run, seed, sft)
                self._train_once(_step("train", label, seed), run, values)

        self._guarded(label, "train", train_every_seed)

    def _train_once(self, step: str, run: Path, values: dict) -> None:
        """One training run; the trainer itself keeps only final/ unless checkpoints were asked
        for (save_every, keep_final_checkpoint)."""
        self._once(step, lambda: run_training(values))

    # -- sweeps --------------------------------------------------------------------------

    def _sweep(self, entry: MethodEntry) -> None:
        """Train each grid point (first seed), score it on the dev prompts, keep the best."""
        label = entry.run_label
        if self.layout.failure(label).exists():
            self.layout.clear_failure(label)
        self._guarded(label, "train", lambda: self._sweep_points(entry))

    def _sweep_points(self, entry: MethodEntry) -> None:
        label, folder = entry.run_label, self.layout.sweep(entry.run_label)
        seed = self.seeds[0]
        prompts = read_jsonl(self.layout.dev)
        points = [(f"p{index}", values) for index, values in enumerate(entry.sweep_points())]
        for name, values in points:
            run, step = folder / name, f"sweep/{label}/{name}"
            self._train_once(
                f"{step}/train", run, self._run_values(entry.at_point(values), run, seed)
            )
            self._once(
                f"{step}/answers",
                lambda run=run: evaluation.sample_answers(
                    str(run), prompts, run / sweep.DEV_ANSWERS, self.config, seed
                ),
            )
        self._once(f"sweep/{label}/chosen", lambda: self._choose(entry, points))

    def _choose(self, entry: MethodEntry, points: list[tuple[str, dict]]) -> None:
        """Score every point on the dev prompts and write sweep.json with the best one."""
        label, folder = entry.run_label, self.layout.sweep(entry.run_label)
        scored = []
        for name, values in points:
            metric, n, what = self._dev_metric(folder / name)
            scored.append({"point": name, "values": values, "dev_metric": metric, "dev_n": n})
            self._say(f"  {label} {name} {values}: {what} {metric} (n={n})")
        result = sweep.summary(entry, scored, what)
        atomic_write_json(folder / "sweep.json", result)
        self._say(f"  {label}: chose {result['chosen_point']} {result['chosen']}")

    def _dev_metric(self, point: Path) -> tuple[float | None, int, str]:
        if self.config.gold_task is not None:
            return sweep.mean_gold(self.config, point / sweep.DEV_ANSWERS)
        start_answers = self.layout.sweep(START) / sweep.DEV_ANSWERS
        self._once(
            "sweep/start/answers",
            lambda: evaluation.sample_answers(
                self.start_model(), read_jsonl(self.layout.dev), start_answers, self.config
            ),
        )
        return sweep.win_rate_over_start(self.config, point, start_answers)

    # -- evaluation ----------------------------------------------------------------------

    def _evaluate(self, label: str, seeds: list) -> None:
        failure = read_json(self.layout.failure(label))
        if failure and failure["step"] == "train":
            self._say(f"  {label}: not evaluated, its training failed")
            return
        self.layout.clear_failure(label)  # an evaluation that failed before is tried again
        if label != START and not all(self.layout.is_done(_step("train", label, s)) for s in seeds):
            self._say(f"  {label}: not evaluated, it has not been trained")
            return
        self._guarded(label, "evaluate", lambda: [self._evaluate_row(label, s) for s in seeds])

    def _evaluate_row(self, label: str, seed: int | None) -> None:
        """The row's steps share one load of its model: its greedy answers, its KL samples,
        its preference accuracy and its benchmarks' answers."""
        run = self.layout.run(label, seed)
        local = self.start_model() if label == START else LocalModel(run)
        model = evaluation.row_model(self.config, label, local)  # or its served model
        prompts = read_jsonl(self.layout.heldout)[: self.config.evaluation.num_prompts]
        samples = self.layout.samples(label, seed)
        key = _key(label, seed)
        self._once(
            f"samples/{key}",
            lambda: evaluation.sample_answers(model, prompts, samples, self.config, seed),
        )
        self._once(
            f"stats/{key}",
            lambda: evaluation.write_stats(
                self.config,
                samples,
                self.start_model(),
                self.layout.stats(label, seed),
                model=None if label == START else model,
            ),
        )
        entry = next((m for m in self.config.methods if m.run_label == label), None)
        pairs = read_jsonl(self.layout.preference_pairs)
        if entry is not None and pairs and evaluation.has_implicit_reward(entry.method):
            self._once(
                f"preference/{key}",
                lambda: evaluation.write_preference_accuracy(
                    self._trained_entry(entry),
                    self._scored_pairs(pairs),
                    local,
                    self.layout.preference(label, seed),
                ),
            )
        for spec in self.config.evaluation.evaluations:
            if spec.kind == "pairwise" and spec.baseline in (START, SFT) and label == START:
                continue  # the start is not judged against itself
            self._once(
                f"judged/{key}/{spec.name}",
                lambda spec=spec: evaluation.judge_row(
                    self.config, spec, samples, model, self.layout, label, seed
                ),
            )

    def _scored_pairs(self, rows: list[dict]) -> evaluation.HeldOutPairs:
        """The held-out preference pairs, tokenized and scored under the start model once for
        every row."""
        if self._held_out_pairs is None:
            self._held_out_pairs = evaluation.HeldOutPairs(self.config, rows, self.start_model())
        return self._held_out_pairs

    def _trained_entry(self, entry: MethodEntry) -> MethodEntry:
        """The entry with the setting its runs trained with (a sweep's chosen point)."""
        if not entry.sweep:
            return entry
        return entry.at_point(
            read_json(self.layout.sweep(entry.run_label) / "sweep.json")["chosen"]
        )

    def _rank(self, spec) -> None:
        """Rank every evaluated row on one evaluation (rank/<evaluation>/)."""
        labels = [START] + [m.run_label for m in self.config.methods]
        rows = [
            (label, seed)
            for label in labels
            if not self.layout.failure(label).exists()
            for seed in ([None] if label == START else self.seeds)
            if self.layout.samples(label, seed).is_file()
        ]
        if len({label for label, _ in rows}) < 2:
            self._say(f"  rank on {spec.name}: fewer than two rows evaluated, no ranking")
            return
        try:
            result = rank_evaluation(self.config, spec, self.layout, rows, log=self._say)
        except PreftuneError as error:  # e.g. rows that share no judged prompt
            self._say(f"  rank on {spec.name}: no ranking: {error}")
            return
        self._ran += 1
        best = result["ranking"][0]
        self._say(
            f"  best on {spec.name}: {best['label']} (tier {best['tier']}); "
            f"{self.layout.ranking(spec.name) / 'ranking.md'}"
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
            atomic_write_text(
                self.layout.failure(label).with_suffix(".log"), traceback.format_exc()
            )
            self._say(f"  {label} failed at {step}: {message} (the study goes on)")


def _key(label: str, seed: int | None) -> str:
    """A row's name in completion markers: label[/seed-<s>]."""
    return label if seed is None else f"{label}/seed-{seed}"


def _step(kind: str, label: str, seed: int | None) -> str:
    return f"{kind}/{_key(label, seed)}"


def run_training(values: dict) -> Path:
    """Validate and run one training run (`preftune.train.train`)."""
    from preftune.config import build_train_config
    from preftune.train import train

    return train(build_train_config(values))


def _normalized(previous):
    """A study.yaml as this version writes it (keys added since default), when it is valid."""
    from preftune.experiments.config import study_from_dict

    if not isinstance(previous, dict):
        return previous
    try:
        return study_from_dict(previous).model_dump(mode="json")
    except ConfigError:
        return previous


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
