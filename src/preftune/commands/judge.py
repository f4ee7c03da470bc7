"""`preftune judge --samples A.jsonl --baseline B.jsonl --judge KIND [...] --out DIR`,
`preftune judge --mtbench --model RUN_OR_MODEL --judge openai [...] --out DIR`, and the
published benchmarks (docs/benchmarks.md): `--alpaca-eval`, `--arena-hard`,
`--mtbench-pairwise`, each with --samples FILE or --model RUN and an OpenAI-compatible judge."""

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

    add_judge_arguments(parser)

    mtbench = parser.add_argument_group("MT-Bench")
    mtbench.add_argument(
        "--mtbench", action="store_true", help="answer and grade the 80 MT-Bench questions"
    )
    mtbench.add_argument("--model", help="model to answer MT-Bench with (run folder, path, Hub id)")
    mtbench.add_argument("--limit", type=int, help="only the first N questions")
    add_benchmark_arguments(parser)
    add_sampling_arguments(parser)
    parser.set_defaults(max_new_tokens=None)


def add_judge_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The judge options, shared by `preftune judge` and `preftune rank`."""
    judge = parser.add_argument_group("judge")
    judge.add_argument(
        "--judge",
        choices=JUDGES,
        required=required,
        help=None if required else "required except for the benchmarks",
    )
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


BENCHMARK_FLAGS = ("alpaca_eval", "arena_hard", "mtbench_pairwise")


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("benchmarks (docs/benchmarks.md)")
    group.add_argument(
        "--alpaca-eval", action="store_true", help="AlpacaEval 2.0 via the alpaca-eval package"
    )
    group.add_argument("--arena-hard", action="store_true", help="Arena-Hard-Auto v0.1")
    group.add_argument(
        "--mtbench-pairwise", action="store_true", help="MT-Bench pairwise against --baseline"
    )
    group.add_argument(
        "--reference", help="AlpacaEval set with reference outputs (default: the Hub's 805)"
    )
    group.add_argument(
        "--annotator",
        default="weighted_alpaca_eval_gpt4_turbo",
        help="AlpacaEval annotator config (default: the leaderboard's)",
    )
    group.add_argument("--questions", help="Arena-Hard questions JSONL (default: the Hub's)")
    group.add_argument(
        "--style-control", action="store_true", help="Arena-Hard: control for length/markdown"
    )


def judge_from_args(args: argparse.Namespace):
    """The judge the options of `add_judge_arguments` describe."""
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
    judge = judge_from_args(args)
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
    return win_rate(args.samples, baseline, judge_from_args(args), args.out, seed=args.seed)


def _benchmark_judge(args: argparse.Namespace, flag: str):
    """The benchmarks judge through an OpenAI-compatible endpoint."""
    from preftune.errors import ConfigError

    if args.judge not in (None, "openai"):
        raise ConfigError(f"{flag} calls an OpenAI-compatible endpoint: use --judge openai")
    if bool(args.samples) == bool(args.model):
        raise ConfigError(f"{flag} needs exactly one of --samples FILE / --model RUN")
    args.judge = "openai"
    return judge_from_args(args)


def _answer_options(args: argparse.Namespace, max_new_tokens: int) -> dict:
    return {**sampling_options(args), "max_new_tokens": args.max_new_tokens or max_new_tokens}


def _run_alpaca_eval(args: argparse.Namespace) -> dict:
    from preftune.evaluate.benchmarks import alpaca_eval as ae

    ae.check_annotator(args.annotator)
    judge = _benchmark_judge(args, "--alpaca-eval")
    evaluation = ae.evaluation_set(args.reference)
    if args.samples:
        outputs = ae.outputs_from_samples(args.samples, evaluation)
    evaluation = evaluation[: args.limit]
    if args.model:
        options = _answer_options(args, 2048)
        outputs = ae.generate_outputs(args.model, evaluation, args.out, **options)
    return ae.alpaca_eval(
        outputs,
        evaluation,
        args.out,
        judge.client,
        annotator=args.annotator,
        concurrency=args.concurrency,
    )


def _run_arena_hard(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from preftune.errors import ConfigError
    from preftune.evaluate.benchmarks import arena_hard as ah

    judge = _benchmark_judge(args, "--arena-hard")
    judge.client.max_tokens = ah.JUDGE_MAX_TOKENS  # the judge answers the prompt itself first
    if not args.baseline:
        raise ConfigError("--arena-hard needs --baseline FILE (GPT-4-0314's answers for v0.1)")
    baseline = ah.load_answers(args.baseline, what="baseline answers")
    questions = ah.load_questions(args.questions)
    if args.samples:
        answers = ah.load_answers(args.samples, what="samples")
        ah.check_answer_ids(questions, answers, args.samples)
    questions = questions[: args.limit]
    if args.model:
        answers = ah.answer_questions(
            args.model, questions, Path(args.out) / "answers.jsonl", **_answer_options(args, 4096)
        )
    return ah.arena_hard(
        questions,
        answers,
        baseline,
        judge,
        args.out,
        style_control=args.style_control,
        seed=args.seed,
    )


def _run_mtbench_pairwise(args: argparse.Namespace) -> dict:
    from preftune.errors import ConfigError
    from preftune.evaluate.benchmarks import mtbench_pairwise as mp
    from preftune.evaluate.mtbench import generate_answers

    judge = _benchmark_judge(args, "--mtbench-pairwise")
    if not args.baseline:
        raise ConfigError("--mtbench-pairwise needs --baseline FILE (the baseline's answers)")
    baseline = mp.load_answers(args.baseline, what="baseline answers")
    if args.samples:
        answers = mp.load_answers(args.samples, what="samples")
    else:
        rows = generate_answers(
            args.model, args.out, limit=args.limit, **_answer_options(args, 512)
        )
        answers = {row["id"]: row["answers"] for row in rows}
    return mp.mtbench_pairwise(answers, baseline, judge, args.out, limit=args.limit)


def run(args: argparse.Namespace) -> int:
    from preftune.errors import ConfigError
    from preftune.io import redact

    chosen = [flag for flag in BENCHMARK_FLAGS if getattr(args, flag)]
    if len(chosen) > 1 or (chosen and args.mtbench):
        raise ConfigError(
            "choose one of --mtbench, --alpaca-eval, --arena-hard, --mtbench-pairwise"
        )
    if chosen:
        benchmark = {
            "alpaca_eval": _run_alpaca_eval,
            "arena_hard": _run_arena_hard,
            "mtbench_pairwise": _run_mtbench_pairwise,
        }[chosen[0]]
        results = benchmark(args)
        print(redact(json.dumps({k: v for k, v in results.items() if k != "judgments"}, indent=2)))
        return 0
    if args.judge is None:
        raise ConfigError(f"--judge is required, one of {list(JUDGES)}")
    results = _run_mtbench(args) if args.mtbench else _run_win_rate(args)
    print(redact(json.dumps(results, indent=2)))
    for warning in results.get("warnings", []):
        print(f"preftune judge: warning: {redact(warning)}", file=sys.stderr)
    return 0
