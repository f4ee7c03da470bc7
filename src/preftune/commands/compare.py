"""`preftune compare [--config study.yaml] [--quick] [--seeds N] [--out DIR]`: the study.

Without --config it runs the built-in offline study (sentiment on SmolLM2-135M-Instruct).
Without --out the folder is fixed per study (studies/<name>[-seeds<N>]), so running the same
command again resumes a stopped study; the folder and that command are printed at the start
and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="a study config (YAML); default: the built-in offline study"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the built-in study's 3-method smoke version (DPO among them), under 5 minutes",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="train and evaluate every method with N seeds (seed, seed+1, ...); the ranking "
        "resamples seeds and prompts together (overrides the config's `seeds`)",
    )
    parser.add_argument(
        "--out",
        help="the study folder; the same command again resumes it (default: studies/NAME)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved study config and exit"
    )


def default_out(config) -> Path:
    """A fixed folder per study, so a rerun of the same command resumes it."""
    seeds = f"-seeds{len(config.seeds)}" if config.seeds else ""
    return Path("studies") / f"{config.name}{seeds}"


def with_seeds(config, count: int):
    """`config` with `count` seeds from its `seed` on (one seed: no seed folders)."""
    from preftune.errors import ConfigError
    from preftune.experiments.config import study_from_dict

    if count < 1:
        raise ConfigError(f"--seeds: {count} is not a number of seeds (1 or more)")
    seeds = None if count == 1 else list(range(config.seed, config.seed + count))
    return study_from_dict({**config.model_dump(mode="json"), "seeds": seeds}, "--seeds")


def resume_command(args: argparse.Namespace, out: Path) -> str:
    words = ["preftune", "compare"]
    if args.config:
        words += ["--config", args.config]
    if args.quick:
        words.append("--quick")
    if args.seeds is not None:
        words += ["--seeds", str(args.seeds)]
    return shlex.join([*words, "--out", str(out)])


def run(args: argparse.Namespace) -> int:
    from preftune.errors import ConfigError
    from preftune.experiments.builtin import builtin_study
    from preftune.experiments.config import load_study_config

    if args.config and args.quick:
        raise ConfigError("--quick shrinks the built-in study; with --config, edit the config")
    config = load_study_config(args.config) if args.config else builtin_study(quick=args.quick)
    if args.seeds is not None:
        config = with_seeds(config, args.seeds)
    if args.print_config:
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    from preftune.experiments.report import results_table
    from preftune.experiments.runner import StudyRunner

    out = Path(args.out) if args.out else default_out(config)
    resume = resume_command(args, out)
    print(f"study folder: {out} (stop with Ctrl-C; resume with: {resume})", flush=True)
    try:
        results = StudyRunner(config, out).run()
    except KeyboardInterrupt:
        print(f"\nstopped; finished steps are kept in {out}. Resume with: {resume}", flush=True)
        raise
    if config.report_to:
        from preftune.integrations.trackers import log_study

        log_study(out, config)
    failed = [row["label"] for row in results["rows"] if row["status"] == "failed"]
    print(results_table(results))
    print(f"study folder: {out}\n  report: {out / 'report.md'} and {out / 'report.html'}")
    if failed:
        print(f"  failed: {', '.join(failed)} (see the report's Failures section)")
    return 0
