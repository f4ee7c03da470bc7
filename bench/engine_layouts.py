"""The log-prob engine alone: time and peak memory of forward + backward, layout by layout.

    python bench/engine_layouts.py [--layouts shared padded plain] [--shape hh]

No optimizer and no loss beyond `logps.sum()`: this isolates what a layout costs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preftune.data.batch import collate
from preftune.models.engine import sequence_logps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    SHAPES,
    StepMeter,
    add_common_arguments,
    load,
    setup_torch,
    synthetic_groups,
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layouts", nargs="+", default=["shared", "padded", "plain"])
    parser.add_argument("--shape", default="hh", choices=sorted(SHAPES))
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--responses", type=int, default=2)
    add_common_arguments(parser, training=False)
    args = parser.parse_args(argv)
    setup_torch(args.device, args.threads)

    _, tokenizer, model = load(args.model, args.dtype, args.device)
    model.train()
    prompt_length, response_length = SHAPES[args.shape]
    batch = collate(
        synthetic_groups(
            args.groups,
            prompt_length,
            response_length,
            args.responses,
            tokenizer=tokenizer,
            model=model,
        )
    )
    meter = StepMeter(args.device)
    print("| layout | forward peak MiB | forward + backward peak MiB | s |\n|---|---|---|---|")
    for layout in args.layouts:
        meter.start()
        out = sequence_logps(model, batch, layout=layout, pad_token_id=tokenizer.pad_token_id)
        _, forward_peak = meter.stop()
        out.logps.sum().backward()
        seconds, peak = meter.stop()
        model.zero_grad(set_to_none=True)
        del out
        print(f"| {layout} | {forward_peak:.0f} | {peak:.0f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
