"""`openai` judge: an LLM behind an OpenAI-compatible chat-completions endpoint.

Pairwise decisions ask both orders (a first, then b first); the verdicts are merged by
`combine_orders` (disagreement is a tie). An unparseable verdict is asked again up to
`parse_retries` times, then recorded as "error"; so is a request that failed every retry or
that the server rejected (the reason is kept in the raw output). Each order is kept on its
own: given the `earlier` decision of the same pair, only the orders without a verdict are
asked again. When the server refuses the key, the orders already answered travel with the
`KeyRefused` error (`partial`) so that the runner saves them. Single-answer grading (`rate`)
uses the MT-Bench [[rating]] prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from preftune.generate.prompts import prompt_text
from preftune.judges.base import Judgment, combine_orders
from preftune.judges.http_chat import ChatClient, KeyRefused, RequestRejected, TransientFailure
from preftune.judges.prompts import pair_prompt, parse_rating, rating_messages


@dataclass
class Rating:
    """A single-answer grade: `score` is None when the judge never gave a usable rating."""

    score: float | None
    raw: list[str]


class OpenAIJudge:
    def __init__(
        self,
        client: ChatClient,
        *,
        prompt: str = "pair-v2",
        parse_retries: int = 2,
        concurrency: int = 8,
    ):
        self.client = client
        self.prompt = pair_prompt(prompt)
        self.parse_retries = parse_retries
        self.concurrency = concurrency
        self.identity = (
            f"openai:{client.url}:{client.model}:{prompt}:temperature={client.temperature}"
        )

    def ask(self, messages: list[dict], parse):
        """Send chat `messages`; return (`parse(reply)`, every raw reply).

        A reply that `parse` maps to None is asked again, up to `parse_retries` more times;
        after that, or when the request itself failed, the answer is None. Benchmarks with
        their own prompts and verdict formats (Arena-Hard, MT-Bench pairwise) ask through this.
        """
        raws = []
        for _ in range(self.parse_retries + 1):
            try:
                text = self.client.complete(messages)
            except (TransientFailure, RequestRejected) as failure:
                raws.append(f"<request failed: {failure}>")
                return None, raws
            raws.append(text)
            parsed = parse(text)
            if parsed is not None:
                return parsed, raws
        return None, raws

    def _verdict(self, question: str, first: str, second: str):
        def parse(text):
            verdict = self.prompt.parse(text)
            return None if verdict == "error" else verdict

        verdict, raws = self.ask(self.prompt.messages(question, first, second), parse)
        return verdict or "error", raws

    def compare(
        self, prompt, response_a: str, response_b: str, earlier: Judgment | None = None
    ) -> Judgment:
        question = prompt_text(prompt)
        shown = {"a_first": (response_a, response_b), "b_first": (response_b, response_a)}
        answered = _answered_orders(earlier)
        verdicts, raws = {}, {}
        for order, (first, second) in shown.items():
            if order in answered:
                verdicts[order], raws[order] = answered[order]
                continue
            try:
                verdicts[order], raws[order] = self._verdict(question, first, second)
            except KeyRefused as refused:
                if any(verdict != "error" for verdict in verdicts.values()):
                    for missing in shown:
                        verdicts.setdefault(missing, "error")
                        raws.setdefault(missing, [f"<not asked: {refused}>"])
                    refused.partial = combine_orders(
                        verdicts["a_first"], verdicts["b_first"], raw=raws
                    )
                raise
        return combine_orders(verdicts["a_first"], verdicts["b_first"], raw=raws)

    def rate(self, prompt_name: str = "single-v1", **fields: str) -> Rating:
        """Grade one answer 1-10 with an MT-Bench single-answer prompt."""
        score, raws = self.ask(rating_messages(prompt_name, **fields), parse_rating)
        return Rating(score, raws)

    def score(self, prompt, response: str) -> float:
        """MT-Bench single-v1 rating of one response; NaN when no usable rating came back."""
        rating = self.rate("single-v1", question=prompt_text(prompt), answer=response)
        return float("nan") if rating.score is None else rating.score


def _answered_orders(earlier: Judgment | None) -> dict[str, tuple[str, list]]:
    """The orders of an earlier decision that got a verdict, as (slot verdict, raw replies)."""
    if earlier is None or len(earlier.verdicts) != 2 or not isinstance(earlier.raw, dict):
        return {}
    slot_of = {"a_first": {"a": "A", "b": "B"}, "b_first": {"b": "A", "a": "B"}}
    answered = {}
    for order, verdict in zip(slot_of, earlier.verdicts, strict=True):
        if verdict != "error" and order in earlier.raw:
            answered[order] = (slot_of[order].get(verdict, verdict), earlier.raw[order])
    return answered
