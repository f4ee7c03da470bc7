"""`preftune train --config FILE [--method NAME] [--resume] [key=value ...]`."""

from __future__ import annotations

import argparse


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
    from preftune.train.distributed import process_index

    config = load_train_config(
        args.config,
        args.overrides,
        method=method or args.method,
        resume=True if args.resume else None,
    )
    run_dir = train(config)
    if process_index() == 0:  # under accelerate launch / torchrun, once for the run
        print(f"run finished: {run_dir} (final model: {run_dir / 'final'})")
    return 0
