"""`preftune rank --samples A.jsonl --samples B.jsonl [...] --judge KIND [...] --out DIR`:
rank several models' answers to the same prompts, with head-to-head win rates, intervals,
tests and tiers (docs/ranking.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preftune.commands.judge import add_judge_arguments, judge_from_args

SCORING_JUDGES = ("gold", "reward-model")  # one score per answer, every pair for free


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples",
        action="append",
        required=True,
        metavar="FILE",
        help="samples JSONL of one entry (as `preftune generate` writes); repeat per entry",
    )
    parser.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="the entry's name, once per --samples in the same order (default: file stems)",
    )
    parser.add_argument(
        "--pairs",
        choices=["all", "anchored"],
        default="all",
        help="LLM judges: judge every pair, or each entry against --baseline only",
    )
    parser.add_argument("--baseline", help="baseline samples JSONL for --pairs anchored")
    parser.add_argument(
        "--intersect",
        action="store_true",
        help="rank on the prompt ids every file has, instead of refusing files that differ",
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--title", default="Ranking", help="heading of ranking.md")
    parser.add_argument("--out", required=True, help="folder for ranking.json/.md/.png")
    add_judge_arguments(parser, required=True)


def _labels(args: argparse.Namespace) -> list[str]:
    from preftune.errors import ConfigError
    from preftune.evaluate.rank import check_labels

    if args.label and len(args.label) != len(args.samples):
        raise ConfigError(
            f"--label is given {len(args.label)} times for {len(args.samples)} --samples; "
            "give one per --samples or none"
        )
    labels = args.label or [Path(path).stem for path in args.samples]
    check_labels(labels)
    return labels


def _outcomes(args: argparse.Namespace, entries: dict, baseline: list | None, log):
    from preftune.evaluate.rank import outcomes_from_scores
    from preftune.evaluate.rank_judging import judge_all_pairs, judge_anchored, score_entries

    judge = judge_from_args(args)
    if args.judge in SCORING_JUDGES:
        if args.pairs == "anchored":
            log(f"rank: --judge {args.judge} scores each answer once; every pair is free")
        return judge, outcomes_from_scores(score_entries(entries, judge))
    if args.pairs == "anchored":
        return judge, outcomes_from_scores(judge_anchored(entries, baseline, judge, args.out))
    return judge, judge_all_pairs(entries, judge, args.out)


def run(args: argparse.Namespace) -> int:
    from preftune.errors import ConfigError
    from preftune.evaluate.rank import rank
    from preftune.evaluate.rank_judging import common_prompts, read_samples
    from preftune.evaluate.rank_report import write_ranking

    labels = _labels(args)
    if (args.pairs == "anchored") != bool(args.baseline):
        raise ConfigError("--baseline goes with --pairs anchored, and --pairs anchored needs it")
    files = {path: read_samples(path) for path in args.samples}
    if args.baseline:
        files[args.baseline] = read_samples(args.baseline)
    files = common_prompts(files, intersect=args.intersect)
    entries = dict(zip(labels, (files[path] for path in args.samples), strict=True))
    baseline = files.get(args.baseline) if args.baseline else None

    args.out = Path(args.out)
    judge, outcomes = _outcomes(args, entries, baseline, print)
    result = rank(outcomes, labels, bootstrap=args.bootstrap, seed=args.seed)
    result["method"]["judge"] = judge.identity
    result["method"]["pairs"] = "all" if args.judge in SCORING_JUDGES else args.pairs
    write_ranking(result, args.out, title=args.title)
    for warning in result["warnings"]:
        print(f"preftune rank: warning: {warning}", file=sys.stderr)
    for entry in result["ranking"]:
        print(
            f"tier {entry['tier']}  {entry['label']:<24} {100 * entry['score']:5.1f}% "
            f"[{100 * entry['ci_low']:.1f}, {100 * entry['ci_high']:.1f}]  n={entry['n']}"
        )
    print(f"wrote {args.out / 'ranking.json'}, ranking.md, head_to_head.png")
    return 0
