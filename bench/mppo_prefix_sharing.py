"""MPPO (`mppo-pair-mnm`, 4 scored responses per prompt): prefix sharing vs the naive layout.

    python bench/mppo_prefix_sharing.py [--quick] [--json]

TRL cannot train this method, so the comparison is within preftune: the same training step
(engine + `losses.compute("mppo-pair-mnm")` + AdamW + clipping) with the engine's layout as
the only difference, alternating step by step in one process on the same batches:

- `plain`: the naive way: each response with its own copy of the prompt, right-padded,
  full-vocabulary logits at every position;
- `padded`: the same rows, logits only at response positions (chunked);
- `shared`: the prompt once per group, its 4 responses behind it (block mask), response-only logits.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from preftune.data.batch import collate
from preftune.losses import compute
from preftune.models.engine import sequence_logps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    SHAPES,
    SideRecord,
    StepMeter,
    add_common_arguments,
    load,
    machine,
    parse_shape,
    setup_torch,
    step_table,
    synthetic_groups,
)

METHOD = "mppo-pair-mnm"
LAYOUTS = ("plain", "padded", "shared")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="hh shape only, 3 steps")
    parser.add_argument(
        "--shapes", nargs="+", default=list(SHAPES), help="hh, uf or PROMPTxRESPONSE"
    )
    parser.add_argument(
        "--steps", type=int, default=4, help="steps per layout and shape (the first is warm-up)"
    )
    parser.add_argument("--groups", type=int, default=4, help="prompts per step")
    parser.add_argument("--responses", type=int, default=4, help="scored responses per prompt")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.steps = ["hh"], 3
    return args


def train_step(policy, optimizer, batch, layout: str, pad_token_id: int) -> float:
    """One optimizer step of `mppo-pair-mnm` with the engine in `layout`."""
    policy.train()
    out = sequence_logps(policy, batch, pad_token_id=pad_token_id, layout=layout)
    device = out.logps.device
    loss, _ = compute(
        METHOD,
        policy_logps=out.logps,
        ref_logps=None,
        lengths=out.lengths,
        scores=batch.scores.to(device, out.logps.dtype),
        labels=None,
        mask=batch.mask.to(device),
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def run_shape(shape: str, args) -> dict:
    prompt_length, response_length = parse_shape(shape)
    _, tokenizer, base = load(args.model, args.dtype, args.device)
    groups = synthetic_groups(
        args.groups * args.steps,
        prompt_length,
        response_length,
        args.responses,
        tokenizer=tokenizer,
        model=base,
        seed=args.seed,
    )
    policies = {
        layout: base if layout == LAYOUTS[-1] else copy.deepcopy(base) for layout in LAYOUTS
    }
    optimizers = {
        layout: torch.optim.AdamW(p.parameters(), lr=args.lr) for layout, p in policies.items()
    }
    records = {layout: SideRecord(layout) for layout in LAYOUTS}
    meter = StepMeter(args.device)
    for step in range(args.steps):
        batch = collate(groups[step * args.groups : (step + 1) * args.groups])
        for layout in LAYOUTS:
            meter.start()
            loss = train_step(
                policies[layout], optimizers[layout], batch, layout, tokenizer.pad_token_id
            )
            records[layout].add(*meter.stop(), loss)
            print(
                f"{shape} step {step + 1} {layout}: {records[layout].seconds[-1]:.1f} s",
                file=sys.stderr,
            )

    params = sum(p.numel() for p in base.parameters())
    result = {"shape": shape, "prompt_tokens": prompt_length, "response_tokens": response_length}
    for layout, record in records.items():
        result[layout] = record.summary(
            groups[: args.groups], params, args.device, live_reference=False
        )
    naive = result["plain"]
    result["speedup"] = naive["median_step_s"] / result["shared"]["median_step_s"]
    result["memory_ratio"] = result["shared"]["peak_mib"] / naive["peak_mib"]
    result["max_loss_diff"] = max(
        abs(a - b) for a, b in zip(records["shared"].losses, records["plain"].losses, strict=True)
    )
    return result


def _table(results: list[dict]) -> str:
    lines = step_table(results, "shape", "layout", LAYOUTS, "prompts")
    for r in results:
        lines.append(
            f"{r['shape']}: shared vs plain speedup {r['speedup']:.2f}x, memory ratio "
            f"{r['memory_ratio']:.2f}, max loss diff {r['max_loss_diff']:.2e}"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_torch(args.device, args.threads)
    results = [run_shape(shape, args) for shape in args.shapes]
    report = {
        "method": METHOD,
        "speedup": results[0]["speedup"],
        "memory_ratio": results[0]["memory_ratio"],
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "groups": args.groups,
        "responses": args.responses,
        "machine": machine(),
        "shapes": results,
    }
    print(json.dumps(report, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
