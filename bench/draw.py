"""Choosing the next token alone: the decode loop's choice before issue 19 (softmax,
`torch.multinomial`, then `log_softmax` for the raw log-prob; `argmax` when greedy) against
`preftune.generate.draw.next_tokens`, alternating call by call in one process.

    python bench/draw.py [--rows 128] [--vocab 49152] [--repeats 30] [--threads 2] [--json]

Random logits of a sampling step's shape (the built-in study samples 128 rows of
SmolLM2's 49,152-token vocabulary). Reports each side's median milliseconds per call at
temperature 1 and greedy, and the ratio (old / new).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from preftune.generate.draw import next_tokens  # noqa: E402

SAMPLE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
GREEDY = {"temperature": 0.0, "top_k": 0, "top_p": 1.0}


def multinomial_choice(logits: torch.Tensor, config: dict):
    """The choice as the decode loop made it before: a full softmax and `torch.multinomial`
    (or `argmax`), then `log_softmax` for the raw log-prob."""
    if config["temperature"] == 0:
        tokens = logits.argmax(dim=-1)
    else:
        tokens = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(1)
    return tokens, torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=49_152)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logits = torch.randn(args.rows, args.vocab, generator=torch.Generator().manual_seed(0)) * 3
    sides = {"multinomial": multinomial_choice, "inverse_cdf": next_tokens}
    report = {"machine": machine(), "rows": args.rows, "vocab": args.vocab, "cases": {}}
    for case, config in (("temperature-1", SAMPLE), ("greedy", GREEDY)):
        seconds = {side: [] for side in sides}
        for repeat in range(args.repeats + 2):  # the first two warm up
            for side, choose in sides.items():
                start = time.perf_counter()
                choose(logits, config)
                if repeat >= 2:
                    seconds[side].append(time.perf_counter() - start)
        ms = {side: 1e3 * statistics.median(s) for side, s in seconds.items()}
        ratios = [old / new for old, new in zip(*seconds.values(), strict=True)]
        report["cases"][case] = {"median_ms": ms, "speedup": statistics.median(ratios)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for case, result in report["cases"].items():
        ms = result["median_ms"]
        print(
            f"{case}: multinomial {ms['multinomial']:.1f} ms, inverse CDF "
            f"{ms['inverse_cdf']:.1f} ms, {result['speedup']:.1f}x"
        )


if __name__ == "__main__":
    main()
