"""`preftune serve RUN_OR_MODEL [--host 127.0.0.1 --port 8000]`: the model behind an
OpenAI-compatible API (/v1/chat/completions, /v1/models) until Ctrl-C."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="RUN_OR_MODEL",
        help="a training run folder (uses its final/), a model folder, a Hub id, "
        "or smollm2-135m-instruct",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port")
    parser.add_argument(
        "--served-model-name", help="the model name clients ask for (default: RUN_OR_MODEL)"
    )
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=512,
        help="answer length when a request gives no max_tokens",
    )


def run(args: argparse.Namespace) -> int:
    from preftune.errors import ConfigError
    from preftune.generate.sampling import resolve_model_path
    from preftune.generate.server import make_server
    from preftune.models.loading import check_model_source

    if not 0 <= args.port <= 65535 or args.max_new_tokens < 1:
        raise ConfigError("--port must be in [0, 65535] and --max-new-tokens at least 1")
    check_model_source(resolve_model_path(args.model))
    try:
        server = make_server(
            args.model,
            host=args.host,
            port=args.port,
            name=args.served_model_name,
            dtype=args.dtype,
            max_new_tokens=args.max_new_tokens,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except OSError as error:
        raise ConfigError(
            f"--host/--port: cannot listen on {args.host}:{args.port}: {error}"
        ) from None
    host, port = server.server_address[:2]
    print(
        f"serving '{server.chat.name}' on http://{host}:{port}/v1 "
        "(OpenAI chat completions; Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
