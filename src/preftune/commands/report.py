"""`preftune report STUDY_DIR`: rebuild a study's report from what is on disk."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "study_dir", metavar="STUDY_DIR", help="a folder written by preftune compare"
    )


def run(args: argparse.Namespace) -> int:
    from preftune.experiments.report import build_report
    from preftune.experiments.sections import best_sentence

    results = build_report(args.study_dir)
    for evaluation in results["evaluations"]:
        sentence = best_sentence(results, evaluation["name"])
        if sentence:
            print(sentence)
    failed = [row["label"] for row in results["rows"] if row["status"] == "failed"]
    print(f"report written: {args.study_dir}/report.md, report.html, results.json")
    if failed:
        print(f"failed rows: {', '.join(failed)} (see the report's Failures section)")
    return 0
