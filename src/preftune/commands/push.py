"""`preftune push RUN_DIR --repo-id USER/NAME [--private] [--merge] [--license ID]`.

Pushes a finished run's model (safetensors), tokenizer, generation config and model card to
the Hugging Face Hub; the token comes from HF_TOKEN.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run folder")
    parser.add_argument("--repo-id", required=True, help="the Hub repository, USER/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    add_card_arguments(parser)


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--merge",
        action="store_true",
        help="LoRA runs: the merged weights (final/) instead of the adapter",
    )
    parser.add_argument(
        "--license", default="other", help="the model card's license, a Hub id (default: other)"
    )


def run(args: argparse.Namespace) -> int:
    from preftune.integrations.hub import push_run

    target = push_target(args.repo_id, args.private, args.license)
    url = push_run(
        args.run_dir,
        target.repo_id,
        private=target.private,
        merge=args.merge,
        license=target.license,
    )
    print(f"pushed {args.run_dir} to {target.repo_id}: {url}")
    return 0


def push_target(repo_id: str, private: bool, license: str):
    """The push target, validated as the config's `push_to_hub` is (--repo-id named on error)."""
    from pydantic import ValidationError

    from preftune.config import PushToHub
    from preftune.errors import ConfigError

    try:
        return PushToHub(repo_id=repo_id, private=private, license=license)
    except ValidationError as error:
        message = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--repo-id: {message}") from None
