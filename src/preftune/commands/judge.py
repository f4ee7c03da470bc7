"""`preftune judge --samples A.jsonl --baseline B.jsonl --judge KIND [...] --out DIR`
and `preftune judge --mtbench --model RUN_OR_MODEL --judge openai [...] --out DIR`."""

from __future__ import annotations

import argparse
import json
import sys

from preftune.commands.generate import add_sampling_arguments, sampling_options
from preftune.judges import JUDGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for results and judgments.jsonl")
    pairwise = parser.add_argument_group("win rate")
    pairwise.add_argument("--samples", help="the evaluated model's samples (JSONL)")
    pairwise.add_argument("--baseline", help="baseline samples (JSONL), matched by id")
    pairwise.add_argument(
        "--baseline-data",
        help="use each prompt's preferred response in this preference data file as the baseline",
    )

    judge = parser.add_argument_group("judge")
    judge.add_argument("--judge", required=True, choices=JUDGES)
    judge.add_argument("--gold", help="gold function for --judge gold (e.g. vader-sentiment)")
    judge.add_argument(
        "--judge-model", help="reward model / local LLM path, or the endpoint's model name"
    )
    judge.add_argument(
        "--base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1"
    )
    judge.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key"
    )
    judge.add_argument(
        "--judge-prompt", default="pair-v2", help="pair-v2 (MT-Bench), dpo-hh or dpo-tldr"
    )
    judge.add_argument(
        "--decision",
        default="both-orders",
        choices=["both-orders", "average"],
        help="hf-llm: a tie when the two orders disagree, or average P(a better) over both",
    )
    judge.add_argument("--concurrency", type=int, default=8, help="requests in flight (openai)")
    judge.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    judge.add_argument("--max-retries", type=int, default=4)

    mtbench = parser.add_argument_group("MT-Bench")
    mtbench.add_argument(
        "--mtbench", action="store_true", help="answer and grade the 80 MT-Bench questions"
    )
    mtbench.add_argument("--model", help="model to answer MT-Bench with (run folder, path, Hub id)")
    mtbench.add_argument("--limit", type=int, help="only the first N questions")
    add_sampling_arguments(parser)
    parser.set_defaults(max_new_tokens=None)


def _judge(args: argparse.Namespace):
    from preftune.judges import build_judge

    return build_judge(
        args.judge,
        gold=args.gold,
        model=args.judge_model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        prompt=args.judge_prompt,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.max_retries,
        decision=args.decision,
    )


def _run_mtbench(args: argparse.Namespace) -> dict:
    from preftune.errors import ConfigError
    from preftune.evaluate.mtbench import generate_answers, grade_answers

    if not args.model:
        raise ConfigError("--mtbench needs --model (the model that answers the questions)")
    judge = _judge(args)
    options = sampling_options(args)
    options["max_new_tokens"] = args.max_new_tokens or 512
    answers = generate_answers(args.model, args.out, limit=args.limit, **options)
    return grade_answers(answers, judge, args.out)


def _run_win_rate(args: argparse.Namespace) -> dict:
    from preftune.errors import ConfigError
    from preftune.evaluate.baselines import preferred_responses
    from preftune.evaluate.win_rate import win_rate

    if not args.samples or bool(args.baseline) == bool(args.baseline_data):
        raise ConfigError("give --samples and exactly one of --baseline / --baseline-data")
    baseline = args.baseline or preferred_responses(args.baseline_data)
    return win_rate(args.samples, baseline, _judge(args), args.out, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from preftune.io import redact

    results = _run_mtbench(args) if args.mtbench else _run_win_rate(args)
    print(redact(json.dumps(results, indent=2)))
    for warning in results.get("warnings", []):
        print(f"preftune judge: warning: {redact(warning)}", file=sys.stderr)
    return 0
