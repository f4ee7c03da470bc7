"""Sampling, preftune's `generate` vs a plain transformers `generate` loop, in one process (issue 19).

    python bench/generate.py [--quick] [--json]

Both sides answer the built-in study's sentiment prompts (chat template, max_new_tokens 40)
with SmolLM2-135M-Instruct, in two cases:
- greedy: n = 1 at temperature 0, held-out prompts (the study's evaluation);
- sample-n4: n = 4 at temperature 1, training prompts (the study's on-policy sampling).
preftune's side is `preftune.generate.generate` (what `preftune generate` and the study run:
prompt rendering, length-sorted batches, our decode loop, the samples file). The other side is
what a user writes with transformers: prompts rendered the same way and sorted by length too
(so sorting is not counted as our gain), left-padded batches of `--hf-batch` rows through
`model.generate` (`num_return_sequences=4` for the sampling case), answers decoded to text.
Each side runs at its own batch size (the defaults are the best measured on 2 cores, see
bench/RESULTS.md, "Sampling").

The sides alternate, `--repeats` times per case; `speedup` is the median over repeats of the
ratio of samples/s measured back to back, the figure least sensitive to other load on the
machine. CPU seconds of this process (`cpu_speedup`) are reported beside wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_arguments, load, machine, setup_torch  # noqa: E402
from preftune.generate import generate, render_prompt  # noqa: E402
from preftune.generate.decode import left_pad  # noqa: E402
from preftune.generate.sampling import pad_token_id, stop_token_ids  # noqa: E402
from preftune.tasks.sentiment import prompts as task_prompts  # noqa: E402

MAX_NEW_TOKENS = 40
# name: (split, prompts in the full run, in --quick, samples per prompt, temperature)
CASES = {
    "greedy": ("heldout", 100, 16, 1, 0.0),
    "sample-n4": ("train", 48, 8, 4, 1.0),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, training=False)
    parser.add_argument("--quick", action="store_true", help="fewer prompts, one repeat")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="alternations per case")
    parser.add_argument("--batch", type=int, default=128, help="preftune's rows per batch")
    parser.add_argument("--hf-batch", type=int, default=64, help="the plain loop's rows per batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    return args


def plain_transformers(model, tokenizer, prompts, *, n, temperature, batch_size, seed):
    """What a user writes: batches of left-padded prompts through `model.generate`."""
    torch.manual_seed(seed)
    eos_ids = stop_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer, eos_ids)
    rendered = [render_prompt(tokenizer, p["prompt"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(rendered[i]))
    options = {"do_sample": temperature > 0, "num_return_sequences": n}
    if temperature > 0:
        options.update(temperature=temperature, top_k=0, top_p=1.0)
    texts = [[] for _ in prompts]  # each prompt's answers, in prompt order
    per_batch = max(1, batch_size // n)
    for start in range(0, len(order), per_batch):
        chunk = order[start : start + per_batch]
        ids, mask = left_pad([rendered[i] for i in chunk], pad_id)
        longest = ids.shape[1]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=MAX_NEW_TOKENS,
                eos_token_id=eos_ids,
                pad_token_id=pad_id,
                **options,
            )
        answers = tokenizer.batch_decode(out[:, longest:], skip_special_tokens=True)
        for j, i in enumerate(chunk):
            texts[i] = answers[j * n : (j + 1) * n]
    return [text for answers in texts for text in answers]


def preftune_side(model, tokenizer, prompts, *, n, temperature, batch_size, seed, out):
    rows = generate(
        (model, tokenizer),
        prompts,
        out,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=temperature,
        n=n,
        batch_size=batch_size,
        seed=seed,
        overwrite=True,
    )
    return [r["response"] for r in rows]


def timed(run) -> tuple[list[str], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    texts = run()
    return texts, time.perf_counter() - wall, time.process_time() - cpu


def run_case(name: str, args, model, tokenizer, workdir: Path) -> dict:
    split, full, quick, n, temperature = CASES[name]
    prompts = task_prompts(split, quick if args.quick else full)
    common = {"n": n, "temperature": temperature, "seed": args.seed}
    sides = {
        "transformers": lambda: plain_transformers(
            model, tokenizer, prompts, batch_size=args.hf_batch, **common
        ),
        "preftune": lambda: preftune_side(
            model,
            tokenizer,
            prompts,
            batch_size=args.batch,
            out=workdir / f"{name}.jsonl",
            **common,
        ),
    }
    record = {side: {"wall_s": [], "cpu_s": []} for side in sides}
    answers = {}
    for _ in range(args.repeats):
        for side, run in sides.items():
            answers[side], wall, cpu = timed(run)
            record[side]["wall_s"].append(wall)
            record[side]["cpu_s"].append(cpu)
    samples = len(prompts) * n
    result = {
        "prompts": len(prompts),
        "samples_per_prompt": n,
        "samples": samples,
        "temperature": temperature,
        "batch": {"preftune": args.batch, "transformers": args.hf_batch},
        "mean_answer_chars": {s: statistics.mean(map(len, a)) for s, a in answers.items()},
    }
    for side, times in record.items():
        result[side] = {
            **times,
            "samples_per_s": samples / statistics.median(times["wall_s"]),
            "samples_per_cpu_s": samples / statistics.median(times["cpu_s"]),
        }
    for key, label in (("wall_s", "speedup"), ("cpu_s", "cpu_speedup")):
        ratios = [
            hf / ours
            for hf, ours in zip(record["transformers"][key], record["preftune"][key], strict=True)
        ]
        result[label] = statistics.median(ratios)
    if temperature == 0:  # greedy: both sides should give the same answers
        same = sum(
            a == b for a, b in zip(answers["preftune"], answers["transformers"], strict=True)
        )
        result["same_answers"] = same / samples
    return result


def _table(results: dict) -> str:
    lines = [
        "| case | samples | batch (preftune / hf) | preftune samples/s | hf samples/s | speedup | cpu speedup |",  # noqa: E501
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['samples']} | {r['batch']['preftune']} / {r['batch']['transformers']} "
            f"| {r['preftune']['samples_per_s']:.2f} | {r['transformers']['samples_per_s']:.2f} "
            f"| {r['speedup']:.2f}x | {r['cpu_speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_torch(args.device, args.threads)
    _, tokenizer, model = load(args.model, args.dtype, args.device)
    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        warm_up = argparse.Namespace(**{**vars(args), "quick": True, "repeats": 1})
        run_case("greedy", warm_up, model, tokenizer, Path(folder))  # kernels, allocator, caches
        results = {
            name: run_case(name, args, model, tokenizer, Path(folder)) for name in args.cases
        }
    report = {
        "machine": machine(),
        "model": args.model,
        "max_new_tokens": MAX_NEW_TOKENS,
        "repeats": args.repeats,
        "cases": results,
        "speedup": min(r["speedup"] for r in results.values()),
    }
    print(json.dumps(report, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
