"""`preftune compare [--config study.yaml] [--quick] [--out DIR]`: the comparative study.

Without --config it runs the built-in offline study (sentiment on SmolLM2-135M-Instruct).
Rerunning with the same --out resumes a stopped study.
"""

from __future__ import annotations

import argparse
import time
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
        "--out",
        help="the study folder; rerun with the same folder to resume (default: studies/NAME-TIME)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved study config and exit"
    )


def default_out(name: str) -> Path:
    return Path("studies") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run(args: argparse.Namespace) -> int:
    from preftune.errors import ConfigError
    from preftune.experiments.builtin import builtin_study
    from preftune.experiments.config import load_study_config

    if args.config and args.quick:
        raise ConfigError("--quick shrinks the built-in study; with --config, edit the config")
    config = load_study_config(args.config) if args.config else builtin_study(quick=args.quick)
    if args.print_config:
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    from preftune.experiments.report import results_table
    from preftune.experiments.runner import StudyRunner

    out = Path(args.out) if args.out else default_out(config.name)
    results = StudyRunner(config, out).run()
    failed = [row["label"] for row in results["rows"] if row["status"] == "failed"]
    print(results_table(results))
    print(f"study folder: {out}\n  report: {out / 'report.md'} and {out / 'report.html'}")
    if failed:
        print(f"  failed: {', '.join(failed)} (see the report's Failures section)")
    return 0
