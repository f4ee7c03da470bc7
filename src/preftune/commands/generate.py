"""`preftune generate --model RUN_OR_MODEL --prompts SOURCE --out samples.jsonl [...]`."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="a training run folder (uses its final/), a model folder, a Hub id, "
        "or smollm2-135m-instruct",
    )
    parser.add_argument(
        "--prompts",
        required=True,
        help='a .jsonl/.json file of {"id", "prompt"} rows, any preference data file, '
        "or task:NAME[:SPLIT] (e.g. task:sentiment:heldout)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="samples JSONL; re-running resumes it when the model, settings and prompts match",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start --out over instead of resuming it"
    )
    parser.add_argument("--limit", type=int, help="only the first N prompts")
    add_sampling_arguments(parser)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=int, default=128)
    group.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy (the seed study's setting)"
    )
    group.add_argument("--top-k", type=int, default=0, help="0 = off")
    group.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
    group.add_argument(
        "--n", type=int, default=1, help="samples per prompt (needs temperature > 0)"
    )
    group.add_argument("--batch-size", type=int, default=8)
    group.add_argument("--seed", type=int, default=0, help="sampling (and bootstrap) seed")
    group.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    group.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="feed prompts as plain text instead of through the tokenizer's chat template",
    )


def sampling_options(args: argparse.Namespace) -> dict:
    return {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "n": args.n,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "chat_template": args.chat_template,
        "dtype": args.dtype,
    }


def run(args: argparse.Namespace) -> int:
    from preftune.evaluate.text_stats import text_stats
    from preftune.generate import generate, resolve_model_path
    from preftune.generate.prompt_sources import read_prompts
    from preftune.models.loading import check_model_source

    check_model_source(resolve_model_path(args.model))  # a typo fails before the prompts load
    prompts = read_prompts(args.prompts, limit=args.limit)
    rows = generate(
        args.model, prompts, args.out, overwrite=args.overwrite, **sampling_options(args)
    )
    print(f"{len(rows)} samples in {args.out}")
    print(json.dumps(text_stats(rows), indent=2))
    return 0
