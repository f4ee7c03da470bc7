"""`preftune data inspect PATH`: what a preference data set holds, and what is wrong with it.

Every bad row is found (the first `MAX_PROBLEMS_SHOWN` are listed with their line, then a
count of the rest); with bad rows and no `--skip-invalid` the report is printed and the
command exits 2 saying so.
"""

from __future__ import annotations

import dataclasses
import json

from preftune.data.formats import FORMATS
from preftune.errors import DataError

MAX_PROBLEMS_SHOWN = 20


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    inspect = sub.add_parser(
        "inspect",
        help="format, groups, responses, scores/labels/ties, token lengths, bad rows",
        description="Read a preference data file, a saved `datasets` folder or a Hub id and "
        "say what it holds.",
    )
    inspect.add_argument(
        "path", metavar="PATH", help="file (.jsonl/.json/.parquet/.csv), folder or Hub id"
    )
    inspect.add_argument("--format", choices=list(FORMATS), help="override the detected format")
    inspect.add_argument("--split", help="split of a data set with several (default: train)")
    inspect.add_argument("--limit", type=int, help="read a seeded random subset of this many rows")
    inspect.add_argument("--seed", type=int, default=0, help="seed for --limit (default 0)")
    inspect.add_argument("--tokenizer", metavar="NAME_OR_PATH", help="report token lengths with it")
    inspect.add_argument("--max-prompt-length", type=int, default=256)
    inspect.add_argument("--max-length", type=int, default=512)
    inspect.add_argument(
        "--skip-invalid",
        action="store_true",
        help="report on the usable rows and exit 0 even when some rows are bad",
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object")


def inspect_data(args) -> dict:
    """The facts `data inspect` prints, as one dict."""
    from preftune.data import check_records, summarize, tokenize

    result = check_records(
        args.path, args.format, split=args.split, limit=args.limit, seed=args.seed
    )
    report = {
        "source": result.source,
        **summarize(result.groups),
        "format": result.format,
        "bad_rows": result.skipped,
        "problems": result.problems[:MAX_PROBLEMS_SHOWN],
    }
    if args.tokenizer and result.groups:
        from preftune.models.loading import load_tokenizer

        _, stats = tokenize(
            result.groups,
            load_tokenizer(args.tokenizer),
            max_prompt_length=args.max_prompt_length,
            max_length=args.max_length,
        )
        report["tokens"] = {
            "tokenizer": args.tokenizer,
            "max_prompt_length": args.max_prompt_length,
            "max_length": args.max_length,
            **dataclasses.asdict(stats),
        }
    return report


def _text(report: dict) -> str:
    sizes = ", ".join(f"{count} of {n}" for n, count in report["responses_per_group"].items())
    lines = [
        f"source     {report['source']}",
        f"format     {report['format']}",
        f"groups     {report['groups']}  (groups of n responses: {sizes})",
        f"responses  {report['responses']}",
        f"scores     {report['with_scores']} groups with scores from the data",
        f"labels     {report['with_labels']} groups with labels",
        f"ties       {report['ties']} groups",
        f"margins    {report['with_margins']} groups",
        f"bad rows   {report['bad_rows']}",
    ]
    tokens = report.get("tokens")
    if tokens:
        lines.append(
            f"tokens     with {tokens['tokenizer']}; max prompt {tokens['max_prompt_length']}, "
            f"max length {tokens['max_length']}"
        )
        for part, truncated in (("prompt", "prompts"), ("response", "responses")):
            lines.append(
                f"  {part:<9}mean {tokens[f'{part}_tokens_mean']:.1f}  "
                f"max {tokens[f'{part}_tokens_max']}  truncated {tokens[f'{truncated}_truncated']}"
            )
    if report["problems"]:
        lines.append(f"problems   {report['bad_rows']} bad rows:")
        lines.extend(f"  {problem}" for problem in report["problems"])
        if report["bad_rows"] > len(report["problems"]):
            lines.append(f"  and {report['bad_rows'] - len(report['problems'])} more")
    return "\n".join(lines)


def run(args) -> int:
    report = inspect_data(args)
    print(json.dumps(report, indent=2) if args.json else _text(report), flush=True)
    bad = report["bad_rows"]
    if not report["groups"]:
        raise DataError(f"no usable rows ({bad} bad, listed above)", source=report["source"])
    if bad and not args.skip_invalid:
        raise DataError(
            f"{bad} bad row{'s' if bad > 1 else ''} (listed above); fix them, or pass "
            "--skip-invalid to use the other rows",
            source=report["source"],
        )
    return 0
