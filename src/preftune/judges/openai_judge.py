"""`openai` judge: an LLM behind an OpenAI-compatible chat-completions endpoint.

Pairwise decisions ask both orders (a first, then b first); the verdicts are merged by
`combine_orders` (disagreement is a tie). An unparseable verdict is asked again up to
`parse_retries` times, then recorded as "error". Single-answer grading (`rate`) uses the
MT-Bench [[rating]] prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from preftune.generate.prompts import prompt_text
from preftune.judges.base import Judgment, combine_orders
from preftune.judges.http_chat import ChatClient, TransientFailure
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

    def _ask(self, messages: list[dict], parse):
        """(parsed answer or None, every raw reply); retries what does not parse."""
        raws = []
        for _ in range(self.parse_retries + 1):
            try:
                text = self.client.complete(messages)
            except TransientFailure as failure:
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

        verdict, raws = self._ask(self.prompt.messages(question, first, second), parse)
        return verdict or "error", raws

    def compare(self, prompt, response_a: str, response_b: str) -> Judgment:
        question = prompt_text(prompt)
        first, raw_first = self._verdict(question, response_a, response_b)
        swapped, raw_swapped = self._verdict(question, response_b, response_a)
        return combine_orders(first, swapped, raw={"a_first": raw_first, "b_first": raw_swapped})

    def rate(self, prompt_name: str = "single-v1", **fields: str) -> Rating:
        """Grade one answer 1-10 with an MT-Bench single-answer prompt."""
        score, raws = self._ask(rating_messages(prompt_name, **fields), parse_rating)
        return Rating(score, raws)

    def score(self, prompt, response: str) -> float:
        """MT-Bench single-v1 rating of one response; NaN when no usable rating came back."""
        rating = self.rate("single-v1", question=prompt_text(prompt), answer=response)
        return float("nan") if rating.score is None else rating.score
