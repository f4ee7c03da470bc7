"""`preftune train --config FILE [--method NAME] [--resume] [key=value ...]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from preftune.io import read_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML training config (README, 'Training'; methods: docs/methods.md)"
    )
    parser.add_argument("--method", help="overrides the config's method (see `preftune methods`)")
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume", action="store_true", help="continue the run from its last checkpoint"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, dotted for nested keys: lr=1e-4 hparams.beta=0.2 data.limit=100",
    )


def run(args: argparse.Namespace, method: str | None = None) -> int:
    from preftune.config import load_train_config
    from preftune.train import train
    from preftune.train.processes import process_index

    config = load_train_config(
        args.config,
        args.overrides,
        method=method or args.method,
        resume=True if args.resume else None,
    )
    if config.quantization is not None:  # refused here, before any data or model loads
        from preftune.models.loading import check_quantization_support

        check_quantization_support(config.quantization.bits)
    run_dir = train(config)
    if process_index() == 0:  # under accelerate launch / torchrun, once for the run
        print(f"run finished: {run_dir} (final model: {run_dir / 'final'}){_speed(run_dir)}")
        if config.push_to_hub is not None:
            _push(run_dir, config.push_to_hub)
    return 0


def _push(run_dir: Path, target) -> None:
    from preftune.integrations.hub import push_run

    url = push_run(run_dir, target.repo_id, private=target.private, license=target.license)
    print(f"pushed to {target.repo_id}: {url}")


def _speed(run_dir: Path) -> str:
    """'; 1.23 s/step, 456 tokens/s, peak memory 789 MiB' from the run's summary.json."""
    summary = json.loads(read_text(run_dir / "summary.json"))
    speed, parts = summary.get("speed", {}), []
    if speed.get("s_per_step_median") is not None:
        parts.append(f"{speed['s_per_step_median']:.2f} s/step")
    if speed.get("tokens_per_s") is not None:
        parts.append(f"{speed['tokens_per_s']:.0f} tokens/s")
    if summary.get("peak_memory_mib") is not None:
        parts.append(f"peak memory {summary['peak_memory_mib']:.0f} MiB")
    return "; " + ", ".join(parts) if parts else ""
