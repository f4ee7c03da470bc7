"""`preftune card RUN_DIR [--out FILE] [--repo-id USER/NAME] [--merge] [--license ID]`.

Writes the model card `preftune push` would upload (default RUN_DIR/README.md).
"""

from __future__ import annotations

import argparse

from preftune.commands.push import add_card_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run folder")
    parser.add_argument("--out", help="where to write the card (default: RUN_DIR/README.md)")
    parser.add_argument("--repo-id", help="the Hub repository the card's usage example names")
    add_card_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from preftune.integrations.card import write_card

    path = write_card(
        args.run_dir,
        args.out,
        repo_id=args.repo_id,
        license=args.license,
        merge=args.merge,
    )
    print(f"model card written: {path}")
    return 0
