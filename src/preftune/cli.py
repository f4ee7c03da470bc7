"""The one entry point: `preftune <command>`. Thin: parses arguments and hands over to a module.

Each command lives in `preftune.commands.<name>` and exposes `add_arguments(parser)` and
`run(args) -> int | None`. Modules are imported only when their command runs, so `preftune
methods` does not pay for importing transformers.

A user error (`PreftuneError`) is one line on stderr and exit code 2; every printed error,
and the traceback of an unexpected one, goes through `preftune.io.redact` so no registered
API key reaches a terminal or log. A reader that stops early (`preftune methods | head`)
ends the command quietly, as Unix tools do.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback

from preftune import __version__
from preftune.errors import PreftuneError
from preftune.io import redact

COMMANDS = {
    "methods": "list every alignment method with its data view, reference and hyperparameters",
    "data": "inspect preference data files",
    "sft": "supervised fine-tuning on the preferred responses",
    "train": "preference training with any method",
    "rm": "train a reward model on pair or ranked-list data, or score one (--eval)",
    "generate": "sample responses from a model, a run or an OpenAI-compatible server",
    "judge": "judge samples against a baseline: win rate with confidence interval",
    "rank": "rank several models' samples: head-to-head win rates, intervals, tests, tiers",
    "compare": "the comparative study: SFT, many methods, sampling, judging, report",
    "report": "rebuild a study's report from what is on disk",
    "push": "push a finished run (weights, tokenizer, model card) to the Hugging Face Hub",
    "card": "write a finished run's model card (README.md) locally",
    "serve": "serve a model or run over an OpenAI-compatible HTTP API",
}

DESCRIPTION = "Align causal language models with preference data and compare the methods."
START_HERE = """\
start with:
  preftune compare --quick     the comparative study on the offline demo model, small
  preftune methods             every alignment method, its data and hyperparameters

`preftune COMMAND --help` shows a command's options."""


def _command_module(name: str):
    return importlib.import_module(f"preftune.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preftune",
        description=DESCRIPTION,
        epilog=START_HERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"preftune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    requested = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == requested:  # only the command that runs pays for its imports
            _command_module(name).add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        code = _command_module(args.command).run(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except PreftuneError as error:
        print(redact(f"preftune {args.command}: error: {error}"), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"preftune {args.command}: interrupted; finished work is on disk", file=sys.stderr)
        return 130
    except Exception:
        sys.stderr.write(redact(traceback.format_exc()))
        return 1
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Tear down torch.distributed's process group if the command joined one (under
    `accelerate launch`). Left to interpreter shutdown, gloo's threads can abort a process whose
    work is done ("terminate called without an active exception"), and the launcher then
    reports the whole job as failed."""
    distributed = sys.modules.get("torch.distributed")  # never imports torch for a command
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _reader_went_away() -> int:
    """stdout's reader closed the pipe: drop what is left unprinted and exit as a process
    killed by SIGPIPE would (128 + 13), without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
