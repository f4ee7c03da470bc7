"""DPO training steps, preftune vs TRL's DPOTrainer (issues 7 and 19).

    python bench/dpo_vs_trl.py [--quick] [--json] [--comparisons same best checkpointing]

Comparisons:

- `same` (the targets' table): both sides with the same settings (AdamW, constant lr, clip
  1.0, beta 0.1, no accumulation, no dropout, no activation checkpointing), per case. Each
  side runs in its own process, one after the other (the headline `speedup_separate`,
  `memory_ratio_separate`); `preftune train` itself runs as a subprocess on the same data file
  and settings (`cli_step_ratio`: its steady-state s/step from summary.json over the
  in-process `Trainer.step` side's, both in their own process); last, both sides run in this
  process alternating step by step (the load-robust cross-check `speedup`, `memory_ratio`).
- `best`: each side's fastest settings on a CPU with memory to spare, separate processes:
  both precompute the reference; TRL without activation checkpointing (its default turns it on,
  which costs time: see `checkpointing`); TRL 1.16's DPOTrainer turns `padding_free` off
  ("temporarily unavailable"), so TRL pads; preftune with its defaults.
- `checkpointing`: preftune with `gradient_checkpointing: true` vs TRL's default settings
  (activation checkpointing on), live reference, separate processes: memory and time. preftune
  also runs without checkpointing in a third process: `checkpointing_time_cost` is the
  checkpointed s/step over that plain s/step, beside both sides' peak memory
  (`checkpointed_peak_mib`, `plain_peak_mib`).

Every side trains on the same token ids in the same order: paired records of random words are
written to a file and tokenized by preftune (chat template included), as `preftune train`
reads them; the steps take the groups in the CLI's shuffled order. TRL's tokenization is
bypassed (it gets preftune's token ids). preftune's side is `preftune.train.Trainer.step`
(what `preftune train` runs: engine + `losses.compute("dpo")` + optimizer); TRL's step is timed
from its `on_step_begin` to `on_step_end` (its data loading is not counted). Reference
precomputation, on both sides, runs before the timed steps.

Cases: data shape hh (~256 prompt / 64 response words) or uf (~64 / 256), reference live or
precomputed. The default case, whose figures are the top-level ones, is hh with a live
reference.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    SideRecord,
    StepMeter,
    add_common_arguments,
    load,
    machine,
    parse_shape,
    setup_torch,
    step_table,
    synthetic_records,
)

DEFAULT_CASE = "hh-live"
CASES = ("hh-live", "hh-precompute", "uf-live", "uf-precompute")
COMPARISONS = ("same", "best", "checkpointing")
SIDES = ("preftune", "trl")
PLAIN = "preftune_plain"  # preftune without activation checkpointing, beside `checkpointing`


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 steps of 4 pairs; the default case and the `same` comparison unless given",
    )
    parser.add_argument(
        "--cases", nargs="+", help=f"from {CASES} (default: all; --quick: {DEFAULT_CASE})"
    )
    parser.add_argument(
        "--comparisons", nargs="+", help=f"from {COMPARISONS} (default: all; --quick: same)"
    )
    parser.add_argument(
        "--shape", help="override the cases' data shape: PROMPTxRESPONSE tokens, e.g. 768x256"
    )
    parser.add_argument(
        "--steps", type=int, default=5, help="steps per side and case (the first is warm-up)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    add_common_arguments(parser)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--side", choices=(*SIDES, PLAIN), help=argparse.SUPPRESS)  # own process
    parser.add_argument("--comparison", default="same", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size = 4, 4
    args.cases = args.cases or ([DEFAULT_CASE] if args.quick else list(CASES))
    args.comparisons = args.comparisons or (["same"] if args.quick else list(COMPARISONS))
    for name, given, known in (
        ("cases", args.cases, CASES),
        ("comparisons", args.comparisons, COMPARISONS),
    ):
        if set(given) - set(known):
            parser.error(f"unknown {name} {sorted(set(given) - set(known))}; choose from {known}")
    return args


def side_settings(comparison: str, case: str) -> dict:
    """(reference, activation checkpointing) of each side in a comparison, in running order."""
    reference = case.split("-")[1]
    return {
        "same": {"preftune": (reference, False), "trl": (reference, False)},
        "best": {"preftune": ("precompute", False), "trl": ("precompute", False)},
        "checkpointing": {
            "preftune": (reference, True),
            "trl": (reference, True),
            PLAIN: (reference, False),
        },
    }[comparison]


class CaseData:
    """A case's model, tokenizer and training groups in step order (what every side trains on),
    and the data file they come from."""

    def __init__(self, case: str, args, workdir: Path):
        from preftune.config import TrainConfig
        from preftune.losses import METHODS
        from preftune.train.dataset import StepOrder, read_view, tokenize_view

        prompt_length, response_length = parse_shape(args.shape or case.split("-")[0])
        self.source, self.tokenizer, self.policy = load(args.model, args.dtype, args.device)
        records = synthetic_records(
            args.batch_size * args.steps,
            prompt_length,
            response_length,
            tokenizer=self.tokenizer,
            seed=args.seed,
        )
        self.data_file = workdir / "pairs.jsonl"
        self.data_file.write_text("".join(json.dumps(r) + "\n" for r in records))
        self.workdir, self.args = workdir, args
        config = TrainConfig(**self.config_values("live", False))
        view, counts = read_view(config, METHODS["dpo"])
        groups = tokenize_view(view, self.tokenizer, config, counts)
        order = StepOrder(len(groups), args.batch_size, args.seed)  # the CLI's order
        self.groups = [groups[i] for step in range(args.steps) for i in order.indices(step)]

    def config_values(self, reference: str, checkpointing: bool, **extra) -> dict:
        """`preftune train`'s settings for this case (no limit on the lengths)."""
        args = self.args
        bf16 = args.dtype == "bf16" and args.device == "cuda"
        return dict(
            model=self.source,
            method="dpo",
            hparams={"beta": args.beta},
            data={"path": str(self.data_file)},
            batch_size=args.batch_size,
            optimizer="adamw",
            lr=args.lr,
            scheduler="constant",
            warmup_steps=0,
            max_grad_norm=1.0,
            seed=args.seed,
            dtype=args.dtype,
            mixed_precision="bf16" if bf16 else "no",
            reference=reference,
            gradient_checkpointing=checkpointing,
            max_prompt_length=8191,
            max_length=8192,
            output_dir=str(self.workdir / "runs"),
            **extra,
        )


class PreftuneSide:
    """preftune's `Trainer` (what `preftune train` steps) around the case's policy."""

    def __init__(self, data: CaseData, policy, reference: str, checkpointing: bool):
        from accelerate import Accelerator

        from preftune.config import TrainConfig
        from preftune.train import Trainer

        args = data.args
        config = TrainConfig(**data.config_values(reference, checkpointing))
        accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=args.device == "cpu")
        self.trainer = Trainer(
            config,
            accelerator,
            data.groups,
            pad_token_id=data.tokenizer.pad_token_id,
            total_steps=args.steps,
            model=policy,
        )
        self.batch_size = args.batch_size

    def step(self, step: int) -> dict:
        indices = list(range(step * self.batch_size, (step + 1) * self.batch_size))
        metrics, _ = self.trainer.step(step, indices)
        # as TRL does after its step, so neither side keeps gradients between steps
        self.trainer.optimizer.zero_grad(set_to_none=True)
        return metrics


def _trl_trainer(data: CaseData, policy, reference: str, checkpointing: bool, callback):
    """TRL's DPOTrainer on the case's token ids (sequential order), recording each step's loss."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    class SameTokensDPOTrainer(DPOTrainer):
        step_losses: list[float] = []
        step_logps: list[float] = []

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.step_losses.append(float(loss.detach()))
            self.step_logps.append(self._metrics["train"]["logps/chosen"][-1])
            return loss

    args = data.args
    dataset = Dataset.from_list(
        [
            {
                "prompt_ids": g.prompt_ids,
                "chosen_ids": g.response_ids[0],
                "rejected_ids": g.response_ids[1],
            }
            for g in data.groups
        ]
    )
    live = reference == "live"
    config = DPOConfig(
        output_dir=str(data.workdir / "trl"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=args.beta,
        loss_type=["sigmoid"],
        max_length=None,
        gradient_checkpointing=checkpointing,
        precompute_ref_log_probs=not live,
        precompute_ref_batch_size=args.batch_size,
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu",
        bf16=args.dtype == "bf16",
        seed=args.seed,
        dataloader_num_workers=0,
    )
    return SameTokensDPOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy).eval().requires_grad_(False) if live else None,
        args=config,
        train_dataset=dataset,
        processing_class=data.tokenizer,
        callbacks=[callback],
    )


def _summaries(data: CaseData, reference: str, records: dict[str, SideRecord]) -> dict:
    params = sum(p.numel() for p in data.policy.parameters())
    batch = data.groups[: data.args.batch_size]
    return {
        name: record.summary(batch, params, data.args.device, live_reference=reference == "live")
        for name, record in records.items()
    }


def _ratios(result: dict) -> dict:
    """speedup, memory ratio and loss differences of a {preftune: summary, trl: summary}."""
    ours, theirs = result["preftune"], result["trl"]
    return {
        "speedup": theirs["median_step_s"] / ours["median_step_s"],
        "memory_ratio": ours["peak_mib"] / theirs["peak_mib"],
        "loss_diff": abs(ours["losses"][0] - theirs["losses"][0]),
        "max_loss_diff": max(
            abs(a - b) for a, b in zip(ours["losses"], theirs["losses"], strict=True)
        ),
    }


def run_alternating(case: str, args, workdir: Path) -> dict:
    """Both sides in this process, same settings, a TRL step then a preftune step on one batch."""
    from transformers import TrainerCallback

    data = CaseData(case, args, workdir)
    reference = case.split("-")[1]
    trl_policy = copy.deepcopy(data.policy)
    meter = StepMeter(args.device)
    ours, theirs = SideRecord("preftune"), SideRecord("trl")
    preftune = PreftuneSide(data, data.policy, reference, False)
    logps = []

    class Alternate(TrainerCallback):
        def on_step_begin(self, *_, **__):
            meter.start()

        def on_step_end(self, _args, state, *__, **___):
            seconds, peak = meter.stop()
            theirs.add(seconds, peak, trainer.step_losses[-1])
            meter.start()
            metrics = preftune.step(state.global_step - 1)
            seconds, peak = meter.stop()
            ours.add(seconds, peak, metrics["loss"])
            logps.append(metrics["logps/chosen"])

    trainer = _trl_trainer(data, trl_policy, reference, False, Alternate())
    trainer.train()
    result = _summaries(data, reference, {"preftune": ours, "trl": theirs})
    result.update(_ratios(result))
    result["first_logps_chosen"] = {"preftune": logps[0], "trl": trainer.step_logps[0]}
    return result


def run_side(side: str, comparison: str, case: str, args, workdir: Path) -> dict:
    """One side alone in this process: its step times, peak memory and losses."""
    from transformers import TrainerCallback

    data = CaseData(case, args, workdir)
    reference, checkpointing = side_settings(comparison, case)[side]
    meter, record = StepMeter(args.device), SideRecord(side)
    if side in ("preftune", PLAIN):
        preftune = PreftuneSide(data, data.policy, reference, checkpointing)
        for step in range(args.steps):
            meter.start()
            metrics = preftune.step(step)
            record.add(*meter.stop(), metrics["loss"])
    else:

        class Measure(TrainerCallback):
            def on_step_begin(self, *_, **__):
                meter.start()

            def on_step_end(self, *_, **__):
                record.add(*meter.stop(), trainer.step_losses[-1])

        trainer = _trl_trainer(data, data.policy, reference, checkpointing, Measure())
        trainer.train()
    summary = _summaries(data, reference, {side: record})[side]
    return {**summary, "reference": reference, "activation_checkpointing": checkpointing}


def _forwarded(args) -> list[str]:
    """The options a side's own process needs to rebuild the same case."""
    options = ["--model", args.model, "--device", args.device, "--dtype", args.dtype]
    options += ["--threads", str(args.threads), "--lr", str(args.lr), "--seed", str(args.seed)]
    options += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    options += ["--beta", str(args.beta)] + (["--shape", args.shape] if args.shape else [])
    return options


def _subprocess_env(args) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads)}


def run_separate(comparison: str, case: str, args) -> dict:
    """Each side in its own process, one after the other (preftune first, then TRL)."""
    result = {}
    for side in side_settings(comparison, case):
        print(f"== {comparison} {case}: {side} in its own process", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--side", side, "--comparison", comparison]
        command += ["--cases", case, "--json", *_forwarded(args)]
        out = subprocess.run(
            command, stdout=subprocess.PIPE, text=True, check=True, env=_subprocess_env(args)
        )
        result[side] = json.loads(out.stdout)
    result.update(_ratios(result))
    if PLAIN in result:
        checkpointed, plain = result["preftune"], result[PLAIN]
        result.update(
            checkpointing_time_cost=checkpointed["median_step_s"] / plain["median_step_s"],
            checkpointed_peak_mib=checkpointed["peak_mib"],
            plain_peak_mib=plain["peak_mib"],
        )
    return result


def run_cli(case: str, args, workdir: Path, in_process: dict) -> dict:
    """`preftune train` as a subprocess on the case's data file and settings (same settings as
    the `same` comparison); its steady-state s/step over the in-process side's."""
    print(f"== same {case}: preftune train (the CLI)", file=sys.stderr, flush=True)
    data = CaseData(case, args, workdir)
    values = data.config_values(case.split("-")[1], False, max_steps=args.steps, run_name="cli")
    config_file = workdir / "cli.yaml"
    config_file.write_text(yaml.safe_dump(values))
    command = [sys.executable, "-m", "preftune.cli", "train", "--config", str(config_file)]
    subprocess.run(command, check=True, stdout=sys.stderr, env=_subprocess_env(args))
    run_dir = workdir / "runs" / "cli"
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    cli_step_s = summary["speed"]["s_per_step_median"]
    return {
        "median_step_s": cli_step_s,
        "step_s": [m["step_seconds"] for m in metrics],
        "losses": [m["loss"] for m in metrics],
        "in_process_median_step_s": in_process["median_step_s"],
        "cli_step_ratio": cli_step_s / in_process["median_step_s"],
        "max_loss_diff_vs_in_process": max(
            abs(a - m["loss"]) for a, m in zip(in_process["losses"], metrics, strict=True)
        ),
    }


def run_comparison(comparison: str, case: str, args) -> dict:
    result: dict = {"case": case, "comparison": comparison}
    result["separate"] = run_separate(comparison, case, args)
    if comparison == "same":
        workdir = Path(tempfile.mkdtemp(prefix="preftune-bench-"))
        # The CLI first: after the alternating run this process keeps both sides' heap, and
        # with the CLI's own process beside it, uf-live outgrew a 24 GiB machine.
        result["cli"] = run_cli(case, args, workdir, result["separate"]["preftune"])
        print(f"== same {case}: both sides in one process, alternating", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):  # the trainers print their logs
            result["alternating"] = run_alternating(case, args, workdir)
    return result


def _table(results: list[dict]) -> str:
    lines = []
    for r in results:
        label = f"{r['comparison']} {r['case']}"
        runs = {
            "separate": r["separate"],
            **({"alternating": r["alternating"]} if "alternating" in r else {}),
        }
        for how, result in runs.items():
            sides = [side for side in (*SIDES, PLAIN) if side in result]
            lines += step_table(
                [{**result, "run": f"{label} {how}"}], "run", "side", sides, "pairs"
            )
            lines.append(
                f"{label} {how}: speedup {result['speedup']:.2f}x, memory ratio "
                f"{result['memory_ratio']:.2f}, first-step loss diff {result['loss_diff']:.2e}"
            )
        if "cli" in r:
            lines.append(f"{label}: cli_step_ratio {r['cli']['cli_step_ratio']:.3f}")
        if "checkpointing_time_cost" in r["separate"]:
            lines.append(
                f"{label}: checkpointing_time_cost {r['separate']['checkpointing_time_cost']:.2f}x"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_torch(args.device, args.threads)
    if args.side:  # one side of a separate-process comparison; stdout is its summary
        workdir = Path(tempfile.mkdtemp(prefix="preftune-bench-"))
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_side(args.side, args.comparison, args.cases[0], args, workdir)
        print(json.dumps(summary))
        return
    # reference log-probs precomputed here stay out of the user's cache
    os.environ.setdefault("PREFTUNE_CACHE", tempfile.mkdtemp(prefix="preftune-bench-cache-"))
    results = []
    for comparison in args.comparisons:
        cases = args.cases
        if comparison == "best":  # the reference is always precomputed: one case per shape
            cases = list(dict.fromkeys(f"{c.split('-')[0]}-precompute" for c in cases))
        for case in cases:
            results.append(run_comparison(comparison, case, args))
    report: dict = {"default_case": DEFAULT_CASE}
    default = next(
        (r for r in results if r["comparison"] == "same" and r["case"] == DEFAULT_CASE), None
    )
    if default is not None:
        report.update(
            speedup_separate=default["separate"]["speedup"],
            memory_ratio_separate=default["separate"]["memory_ratio"],
            cli_step_ratio=default["cli"]["cli_step_ratio"],
            speedup=default["alternating"]["speedup"],
            memory_ratio=default["alternating"]["memory_ratio"],
            loss_diff=default["alternating"]["loss_diff"],
        )
    checkpointed = next(
        (r for r in results if r["comparison"] == "checkpointing" and r["case"] == DEFAULT_CASE),
        None,
    )
    if checkpointed is not None:
        report.update(
            {
                key: checkpointed["separate"][key]
                for key in ("checkpointing_time_cost", "checkpointed_peak_mib", "plain_peak_mib")
            }
        )
    report.update(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        batch_pairs=args.batch_size,
        steps=args.steps,
        trl_padding_free="unsupported by TRL 1.16's DPOTrainer (it turns it off)",
        machine=machine(),
        results=results,
    )
    print(json.dumps(report, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
