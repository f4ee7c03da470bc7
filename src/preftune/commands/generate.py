"""`preftune generate --model RUN_OR_MODEL --prompts SOURCE --out samples.jsonl [...]`, or
`--backend openai --base-url URL --served-model NAME [--extra-body JSON]` to sample from an
OpenAI-compatible server."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="a training run folder (uses its final/), a model folder, a Hub id, "
        "or smollm2-135m-instruct (the local backend)",
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
    add_backend_arguments(parser)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("served model (--backend openai)")
    group.add_argument(
        "--backend",
        choices=["local", "openai"],
        default="local",
        help="local: load --model here; openai: ask an OpenAI-compatible server "
        "(vLLM, llama.cpp, TGI, preftune serve)",
    )
    group.add_argument("--base-url", help="the server's API root, e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--served-model", help="the model name the server knows")
    group.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key"
    )
    group.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    group.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    group.add_argument("--max-retries", type=int, default=4)
    group.add_argument(
        "--extra-body",
        metavar="JSON",
        help="a JSON object of the server's own request fields, sent with every request, e.g. "
        "'{\"repeat_penalty\": 1.0}' for greedy answers from llama.cpp's server",
    )


def model_from_args(args: argparse.Namespace):
    """What to sample from: --model (local backend) or the served model of --backend openai."""
    from preftune.errors import ConfigError

    if args.backend == "local":
        if not args.model:
            raise ConfigError("--model is required (or --backend openai with --base-url)")
        from preftune.generate import resolve_model_path
        from preftune.models.loading import check_model_source

        if args.extra_body is not None:
            raise ConfigError("--extra-body: a server's request fields; it needs --backend openai")
        check_model_source(resolve_model_path(args.model))  # a typo fails before prompts load
        return args.model
    missing = [flag for flag in ("base_url", "served_model") if not getattr(args, flag)]
    if missing:
        flags = " and ".join("--" + flag.replace("_", "-") for flag in missing)
        raise ConfigError(f"--backend openai needs {flags}")
    if args.model:
        raise ConfigError("--model is for the local backend; --backend openai uses --served-model")
    if args.concurrency < 1 or args.max_retries < 0 or args.timeout <= 0:
        raise ConfigError("--concurrency must be >= 1, --max-retries >= 0, --timeout > 0")
    from preftune.judges.http_chat import served_model

    return served_model(
        args.base_url,
        args.served_model,
        concurrency=args.concurrency,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        max_retries=args.max_retries,
        extra_body=extra_body(args.extra_body),
    )


def extra_body(text: str | None) -> dict:
    """`--extra-body`: a JSON object (None: none); anything else is a ConfigError naming it.

    >>> extra_body('{"repeat_penalty": 1.0}')
    {'repeat_penalty': 1.0}
    """
    from preftune.errors import ConfigError
    from preftune.generate.remote import check_extra_body

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"--extra-body: not valid JSON ({error.msg} at character {error.pos + 1}); expected "
            "an object such as '{\"repeat_penalty\": 1.0}'"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"--extra-body: expected a JSON object ({{...}}), got a {type(value).__name__}"
        )
    check_extra_body(value, "--extra-body")
    return value


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=int, default=128)
    group.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0 = greedy (the usual setting for judged win rates)",
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
    from preftune.generate import generate
    from preftune.generate.prompt_sources import read_prompts

    model = model_from_args(args)
    prompts = read_prompts(args.prompts, limit=args.limit)
    rows = generate(model, prompts, args.out, overwrite=args.overwrite, **sampling_options(args))
    print(f"{len(rows)} samples in {args.out}")
    print(json.dumps(text_stats(rows), indent=2))
    return 0
