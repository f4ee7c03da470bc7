"""`preftune sft --config FILE [--resume] [key=value ...]`: an ordinary run of method "sft".

Supervised fine-tuning on the preferred responses (the "chosen" view); its run folder can be
the `model:` of a later preference run.
"""

from __future__ import annotations

import argparse

from preftune.commands import train as train_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML training config; its method is set to sft")
    train_command.add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return train_command.run(args, method="sft")
