"""DPO training steps, preftune vs TRL's DPOTrainer, side by side in one process (issue 7).

    python bench/dpo_vs_trl.py [--quick] [--json]

Both sides start from the same weights, train on the same synthetic batches in the same order
with the same settings (AdamW, constant lr, clip 1.0, beta 0.1, no accumulation, no dropout,
no activation checkpointing: TRL's default turns it on, `--trl-checkpointing` keeps it)
and alternate step by step: TRL's trainer runs its own loop, and a callback runs one preftune
step after each of TRL's (`preftune.train.Trainer.step`, what `preftune train` runs: engine +
`losses.compute("dpo")` + optimizer). TRL's tokenization is bypassed so both see identical token ids (it runs once
before training, outside the timed steps). TRL's step is timed from its `on_step_begin` to
`on_step_end` (its data loading is not counted).

Cases: data shape hh (~256 prompt / 64 response tokens) or uf (~64 / 256), reference live or
precomputed. The default case, whose figures are the top-level `speedup`, `memory_ratio` and
`loss_diff`, is hh with a live reference.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import tempfile
from pathlib import Path

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
    synthetic_groups,
)

DEFAULT_CASE = "hh-live"
CASES = ("hh-live", "hh-precompute", "uf-live", "uf-precompute")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the default case only, 4 steps of 4 pairs (< 5 min on 2 idle cores)",
    )
    parser.add_argument("--cases", nargs="+", default=list(CASES), help=f"from {CASES}")
    parser.add_argument(
        "--shape", help="override the cases' data shape: PROMPTxRESPONSE tokens, e.g. 768x256"
    )
    parser.add_argument(
        "--steps", type=int, default=5, help="steps per side and case (the first is warm-up)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    add_common_arguments(parser)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument(
        "--trl-checkpointing",
        action="store_true",
        help="keep TRL's default activation checkpointing (preftune has none: settings then differ)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.cases, args.steps, args.batch_size = [DEFAULT_CASE], 4, 4
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {CASES}")
    return args


class PreftuneSide:
    """preftune's `Trainer` (what `preftune train` steps) around the benchmark's policy."""

    def __init__(
        self, policy, groups, source: str, reference: str, args, workdir: Path, pad_token_id: int
    ):
        from accelerate import Accelerator

        from preftune.config import TrainConfig
        from preftune.train import Trainer

        data_file = workdir / "synthetic.json"
        data_file.write_text(json.dumps([vars(g) for g in groups]))
        bf16 = args.dtype == "bf16" and args.device == "cuda"
        config = TrainConfig(
            model=source,
            method="dpo",
            hparams={"beta": args.beta},
            data={"path": str(data_file)},
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
            max_prompt_length=8191,
            max_length=8192,
            output_dir=str(workdir),
        )
        accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=args.device == "cpu")
        self.trainer = Trainer(
            config,
            accelerator,
            groups,
            pad_token_id=pad_token_id,
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


def _trl_trainer(policy, reference, groups, tokenizer, args, workdir: Path, callback):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    class SameTokensDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer fed the token ids preftune trains on, recording each step's loss."""

        step_losses: list[float] = []
        step_logps: list[float] = []

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.step_losses.append(float(loss.detach()))
            self.step_logps.append(self._metrics["train"]["logps/chosen"][-1])
            return loss

    dataset = Dataset.from_list(
        [
            {
                "prompt_ids": g.prompt_ids,
                "chosen_ids": g.response_ids[0],
                "rejected_ids": g.response_ids[1],
            }
            for g in groups
        ]
    )
    config = DPOConfig(
        output_dir=str(workdir / "trl"),
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
        gradient_checkpointing=args.trl_checkpointing,  # TRL defaults to True; preftune recomputes nothing
        precompute_ref_log_probs=reference is None,
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
        ref_model=reference,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[callback],
    )


def run_case(case: str, args) -> dict:
    from transformers import TrainerCallback

    shape, reference = case.split("-")
    prompt_length, response_length = parse_shape(args.shape or shape)
    source, tokenizer, policy = load(args.model, args.dtype, args.device)
    groups = synthetic_groups(
        args.batch_size * args.steps,
        prompt_length,
        response_length,
        2,
        tokenizer=tokenizer,
        model=policy,
        seed=args.seed,
    )
    trl_policy = copy.deepcopy(policy)
    trl_reference = (
        copy.deepcopy(policy).eval().requires_grad_(False) if reference == "live" else None
    )
    meter = StepMeter(args.device)
    ours, theirs = SideRecord("preftune"), SideRecord("trl")
    workdir = Path(tempfile.mkdtemp(prefix="preftune-bench-"))
    preftune = PreftuneSide(
        policy, groups, source, reference, args, workdir, tokenizer.pad_token_id
    )
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

    trainer = _trl_trainer(trl_policy, trl_reference, groups, tokenizer, args, workdir, Alternate())
    trainer.train()

    params = sum(p.numel() for p in policy.parameters())
    result = {"case": case, "prompt_tokens": prompt_length, "response_tokens": response_length}
    for side in (ours, theirs):
        result[side.name] = side.summary(
            groups[: args.batch_size], params, args.device, live_reference=reference == "live"
        )
    result["speedup"] = result["trl"]["median_step_s"] / result["preftune"]["median_step_s"]
    result["memory_ratio"] = result["preftune"]["peak_mib"] / result["trl"]["peak_mib"]
    result["loss_diff"] = abs(ours.losses[0] - theirs.losses[0])
    result["max_loss_diff"] = max(
        abs(a - b) for a, b in zip(ours.losses, theirs.losses, strict=True)
    )
    result["first_logps_chosen"] = {"preftune": logps[0], "trl": trainer.step_logps[0]}
    return result


def _table(results: list[dict]) -> str:
    lines = step_table(results, "case", "side", ("preftune", "trl"), "pairs")
    for r in results:
        lines.append(
            f"{r['case']}: speedup {r['speedup']:.2f}x, memory ratio {r['memory_ratio']:.2f}, "
            f"first-step loss diff {r['loss_diff']:.2e} (max over steps {r['max_loss_diff']:.2e})"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_torch(args.device, args.threads)
    results = []
    for case in args.cases:
        print(f"== case {case}", file=sys.stderr, flush=True)
        # the trainer prints its logs; stdout is the result
        with contextlib.redirect_stdout(sys.stderr):
            results.append(run_case(case, args))
    default = next((r for r in results if r["case"] == DEFAULT_CASE), results[0])
    report = {
        "speedup": default["speedup"],
        "memory_ratio": default["memory_ratio"],
        "loss_diff": default["loss_diff"],
        "default_case": default["case"],
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "batch_pairs": args.batch_size,
        "steps": args.steps,
        "trl_checkpointing": args.trl_checkpointing,
        "machine": machine(),
        "cases": results,
    }
    print(json.dumps(report, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
