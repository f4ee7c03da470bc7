"""What the benchmarks share: models, synthetic data, a step meter (time + peak memory), MFU.

Benchmarks, not tests: they load real models and take minutes. Both sides of a comparison run
in one process, alternating step by step, so background load on a shared machine slows both
alike and the ratios stay meaningful even when absolute times are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from preftune.data.batch import TokenizedGroup
from preftune.models.loading import DEMO_MODEL, DTYPES, load_model, load_tokenizer

RANDOM_1B = "llama-1b-random"
# Llama-3.2-1B's shape (1.24e9 parameters with tied embeddings); random weights, for timing only.
RANDOM_1B_CONFIG = dict(
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
    attention_dropout=0.0,
)
SHAPES = {
    "hh": (256, 64),
    "uf": (64, 256),
}  # (prompt, response) tokens, like Anthropic HH / UltraFeedback
PEAK_TFLOPS_BF16 = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, per GPU


def add_common_arguments(parser: argparse.ArgumentParser, *, training: bool = True) -> None:
    """The options every benchmark takes (the model and where it runs) and, for the training
    benchmarks, --lr, --seed and --json."""
    parser.add_argument(
        "--model", default=DEMO_MODEL, help=f"{DEMO_MODEL}, {RANDOM_1B} or a local folder"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    if training:
        parser.add_argument("--lr", type=float, default=1e-5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object instead of a table"
        )


def parse_shape(name: str) -> tuple[int, int]:
    """(prompt, response) tokens of a named shape (hh, uf) or of PROMPTxRESPONSE."""
    if name in SHAPES:
        return SHAPES[name]
    prompt, response = name.lower().split("x")
    return int(prompt), int(response)


def setup_torch(device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible")


def model_source(name: str, dtype: str) -> str:
    """A name `load_model` accepts: the demo model, any local folder, or the random 1B model
    (written once to a temporary folder so both sides load the same weights)."""
    if name != RANDOM_1B:
        return name
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(tempfile.gettempdir()) / f"preftune-bench-{RANDOM_1B}-{dtype}"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        config = LlamaConfig(**RANDOM_1B_CONFIG, attn_implementation="sdpa")
        model = LlamaForCausalLM(config).to(DTYPES[dtype])
        model.save_pretrained(folder)
        load_tokenizer(DEMO_MODEL).save_pretrained(folder)
    return str(folder)


def load(name: str, dtype: str, device: str):
    """(source, tokenizer, model): `model_source(name)`, its tokenizer, its model on `device`."""
    source = model_source(name, dtype)
    return source, load_tokenizer(source), load_model(source, dtype=dtype).to(device)


def synthetic_groups(
    count: int,
    prompt_length: int,
    response_length: int,
    responses: int,
    *,
    tokenizer,
    model: torch.nn.Module,
    seed: int = 0,
) -> list[TokenizedGroup]:
    """Random-token prompt groups, lengths uniform in +-25% of the nominal ones, responses
    ending with EOS, distinct scores (the first response is the best). Token ids are ones both
    `tokenizer` and `model` know."""
    rng = torch.Generator().manual_seed(seed)
    vocab_size = min(model.config.vocab_size, len(tokenizer))
    eos_token_id = tokenizer.eos_token_id

    def tokens(nominal: int) -> list[int]:
        n = int(torch.randint(int(nominal * 0.75), int(nominal * 1.25) + 1, (1,), generator=rng))
        return torch.randint(100, vocab_size, (n,), generator=rng).tolist()

    return [
        TokenizedGroup(
            id=f"synthetic-{i}",
            prompt_ids=tokens(prompt_length),
            response_ids=[tokens(response_length - 1) + [eos_token_id] for _ in range(responses)],
            scores=[float(responses - r) for r in range(responses)],
            labels=[None] * responses,
        )
        for i in range(count)
    ]


def synthetic_records(
    count: int, prompt_length: int, response_length: int, *, tokenizer, seed: int = 0
) -> list[dict]:
    """Paired records {prompt, chosen, rejected} of random words, each word one token of
    `tokenizer` (so a text of n words is about n tokens; the chat template adds its own), lengths
    uniform in +-25% of the nominal ones: data `preftune train` reads from a file."""
    rng = torch.Generator().manual_seed(seed)
    words = sorted(
        t
        for t in tokenizer.get_vocab()
        if t[:1] == "\u0120" and t[1:].isascii() and t[1:].isalpha()
    )

    def text(nominal: int) -> str:
        n = int(torch.randint(int(nominal * 0.75), int(nominal * 1.25) + 1, (1,), generator=rng))
        picks = torch.randint(0, len(words), (n,), generator=rng).tolist()
        return "".join(words[i][1:] if k == 0 else " " + words[i][1:] for k, i in enumerate(picks))

    return [
        {
            "prompt": text(prompt_length),
            "chosen": text(response_length),
            "rejected": text(response_length),
        }
        for _ in range(count)
    ]


def _rss_bytes(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} missing from /proc/self/status")


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS so one side's leftovers don't count for the other."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class StepMeter:
    """Wall time and peak memory of one step, above what was resident when it began.

    CPU: the kernel's peak RSS (VmHWM, reset through /proc/self/clear_refs) minus the RSS at
    the start. CUDA: torch.cuda.max_memory_allocated minus memory_allocated at the start.
    """

    def __init__(self, device: str):
        self.device = device

    def start(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            _release_free_heap()
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = _rss_bytes("VmRSS:")
        self.began = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        """(seconds, peak MiB above the start)."""
        if self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _rss_bytes("VmHWM:")
        return time.perf_counter() - self.began, (peak - self.base) / 2**20


@dataclass
class SideRecord:
    """Per-step measurements of one side of a comparison."""

    name: str
    seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def add(self, seconds: float, peak_mib: float, loss: float) -> None:
        self.seconds.append(seconds)
        self.peak_mib.append(peak_mib)
        self.losses.append(loss)

    def measured(self, values: list[float]) -> list[float]:
        """Steps after the first (warm-up), or the only one there is."""
        return values[1:] if len(values) > 1 else values

    def summary(
        self, batch_groups: list[TokenizedGroup], params: int, device: str, live_reference: bool
    ) -> dict:
        """Median step time, rates and peak memory of steps over batches like `batch_groups`,
        and the MFU of a model of `params` parameters (see `mfu`)."""
        seconds = statistics.median(self.measured(self.seconds))
        minimal = unique_tokens(batch_groups)
        return {
            "median_step_s": seconds,
            "step_s": self.seconds,
            "groups_per_s": len(batch_groups) / seconds,
            "tokens_per_s": plain_tokens(batch_groups) / seconds,
            "peak_mib": statistics.median(self.measured(self.peak_mib)),
            "peak_mib_per_step": self.peak_mib,
            "losses": self.losses,
            "mfu": mfu(params, minimal, minimal if live_reference else 0, seconds, device),
        }


def mfu(params: int, policy_tokens: float, ref_tokens: float, seconds: float, device: str):
    """Model FLOP utilisation with the minimal-work numerator: 6·N per policy token (forward +
    backward) plus 2·N per live-reference token, tokens counted once (a shared prompt once per
    group, no padding), over the GPU's peak dense bf16 FLOP/s. None off GPU."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    peak = next((tflops for key, tflops in PEAK_TFLOPS_BF16.items() if key in name), None)
    if peak is None:
        return None
    return (6 * params * policy_tokens + 2 * params * ref_tokens) / seconds / (peak * 1e12)


def unique_tokens(groups: list[TokenizedGroup]) -> int:
    """Tokens a step must process at least: each prompt once, every response."""
    return sum(len(g.prompt_ids) + sum(len(r) for r in g.response_ids) for g in groups)


def plain_tokens(groups: list[TokenizedGroup]) -> int:
    """Tokens as a per-sequence layout sees them (the prompt once per response), no padding."""
    return sum(
        len(g.prompt_ids) * len(g.response_ids) + sum(len(r) for r in g.response_ids)
        for g in groups
    )


def step_table(results: list[dict], label: str, side_label: str, sides, unit: str) -> list[str]:
    """Markdown rows, one per (result, side): median step, rate, tokens/s, peak memory, losses."""
    lines = [
        f"| {label} | {side_label} | median step s | {unit}/s | tokens/s | peak MiB | first losses |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for side in sides:
            s = result[side]
            losses = ", ".join(f"{x:.5f}" for x in s["losses"][:3])
            lines.append(
                f"| {result[label]} | {side} | {s['median_step_s']:.2f} | "
                f"{s['groups_per_s']:.3f} | {s['tokens_per_s']:.0f} | {s['peak_mib']:.0f} | "
                f"{losses} |"
            )
    lines.append("")
    return lines


def machine() -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", *sys.argv]),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
