"""The frozen-trunk cache: a training step with and without it, in one process, alternating.

    python bench/trunk_cache.py [--method dpo|kto] [--steps 6] [--json]

The built-in study's step shape: SmolLM2-135M-Instruct, the top 10 of 30 layers training,
8 prompt groups a step, AdamW, reference precomputed; random-token prompts and ~40-token
answers (the study's on-policy samples are about that long). `--method kto` splits each pair
into a desirable and an undesirable single (KTO's binary view, with its mismatched KL pairs).
Both sides are preftune `Trainer`s on copies of the same weights, stepped alternately on the
same batches; the first step of each is warm-up and left out of the medians. `speedup` is the
ratio of the median s/step, `speedup_paired_median` the median of each step's own ratio. The caches go to
a temporary folder, so each side's setup (reference precompute, trunk states) starts cold.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_arguments, load, machine, setup_torch, synthetic_groups  # noqa: E402
from preftune.data.batch import TokenizedGroup  # noqa: E402


def _singles(groups: list[TokenizedGroup]) -> list[TokenizedGroup]:
    """KTO's binary view of pairs: the first response desirable, the second undesirable."""
    return [
        TokenizedGroup(f"{g.id}/{r}", g.prompt_ids, [response], [None], [r == 0])
        for g in groups
        for r, response in enumerate(g.response_ids)
    ]


def _trainer(args, source, model, groups, pad_token_id, trunk_cache: str, workdir: Path):
    from accelerate import Accelerator

    from preftune.config import TrainConfig
    from preftune.train import Trainer

    config = TrainConfig(
        model=source,
        method=args.method,
        data={"path": str(workdir / "unused.jsonl")},
        batch_size=args.groups,
        optimizer="adamw",
        lr=1e-4,
        max_prompt_length=64,
        max_length=128,
        trainable_layers=args.trainable_layers,
        trunk_cache=trunk_cache,
        output_dir=str(workdir / "runs"),
    )
    began = time.perf_counter()
    trainer = Trainer(
        config,
        Accelerator(cpu=True),
        groups,
        pad_token_id=pad_token_id,
        total_steps=args.steps,
        model=model,
    )
    return trainer, time.perf_counter() - began


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="dpo", choices=["dpo", "kto"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--groups", type=int, default=8, help="prompt groups a step")
    parser.add_argument("--prompt-length", type=int, default=40)
    parser.add_argument("--response-length", type=int, default=40)
    parser.add_argument("--trainable-layers", type=int, default=10)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    setup_torch(args.device, args.threads)

    workdir = Path(tempfile.mkdtemp(prefix="preftune-bench-trunk-"))
    os.environ["PREFTUNE_CACHE"] = str(workdir / "cache")
    (workdir / "unused.jsonl").write_text("")  # the groups are passed in directly
    source, tokenizer, model = load(args.model, args.dtype, args.device)
    pairs = synthetic_groups(
        args.steps * args.groups,
        args.prompt_length,
        args.response_length,
        2,
        tokenizer=tokenizer,
        model=model,
        seed=args.seed,
    )
    groups = _singles(pairs) if args.method == "kto" else pairs
    pad = tokenizer.pad_token_id
    sides = {}
    for trunk_cache in ("off", "on"):
        weights = copy.deepcopy(model) if trunk_cache == "on" else model
        sides[trunk_cache] = _trainer(args, source, weights, groups, pad, trunk_cache, workdir)
    assert sides["on"][0].inputs.trunk is not None and sides["off"][0].inputs.trunk is None

    seconds = {side: [] for side in sides}
    losses = {side: [] for side in sides}
    for step in range(args.steps):
        indices = list(range(step * args.groups, (step + 1) * args.groups))
        for side, (trainer, _) in sides.items():
            began = time.perf_counter()
            metrics, _ = trainer.step(step, indices)
            seconds[side].append(time.perf_counter() - began)
            losses[side].append(metrics["loss"])
    median = {side: statistics.median(values[1:]) for side, values in seconds.items()}
    cache_bytes = sum(f.stat().st_size for f in (workdir / "cache" / "trunk").rglob("*.pt"))
    result = {
        "method": args.method,
        "groups": args.groups,
        "steps": args.steps,
        "trainable_layers": args.trainable_layers,
        "seconds_per_step": median,
        "step_seconds": seconds,
        "setup_seconds": {side: setup for side, (_, setup) in sides.items()},
        "speedup": median["off"] / median["on"],
        # each step's pair ran back to back: the median of their ratios resists load swings
        "speedup_paired_median": statistics.median(
            off / on for off, on in zip(seconds["off"][1:], seconds["on"][1:], strict=True)
        ),
        "max_loss_relative_difference": max(
            abs(a - b) / max(abs(a), 1e-12)
            for a, b in zip(losses["off"], losses["on"], strict=True)
        ),
        "trunk_cache_mib": cache_bytes / 2**20,
        "load_average": os.getloadavg(),
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.method}: {median['off']:.2f} s/step without the cache, {median['on']:.2f} with "
        f"it: {result['speedup']:.2f}x, paired {result['speedup_paired_median']:.2f}x (setup {result['setup_seconds']['off']:.1f} s vs "
        f"{result['setup_seconds']['on']:.1f} s; cache {result['trunk_cache_mib']:.1f} MiB; "
        f"losses agree to {result['max_loss_relative_difference']:.1e} relative)"
    )


if __name__ == "__main__":
    main()
