"""`hf-llm` judge: a local causal LM as pairwise judge, offline.

The pairwise prompt is rendered with the model's chat template, the answer is begun with the
prompt's `answer_prefix` (e.g. "[[" for MT-Bench pair-v2), and the verdict is read from the
next-token probabilities of "A" and "B" instead of generated text. Both orders are asked.

`decision="both-orders"` (default) merges the two verdicts by `combine_orders`, like the API
judges: disagreement is a tie. A small model such as SmolLM2 prefers slot A so strongly that
every decision becomes a tie; `decision="average"` instead averages P(a is better) over the
two orders, which cancels a constant slot preference (Zheng et al. 2023 discuss such
position bias), and calls a tie only within `tie_margin` of 0.5.
"""

from __future__ import annotations

import torch

from preftune.errors import ConfigError
from preftune.generate.prompts import prompt_text, render_prompt
from preftune.generate.sampling import load_for_generation
from preftune.judges.base import Judgment, combine_orders
from preftune.judges.prompts import pair_prompt

DECISIONS = ("both-orders", "average")


class LocalLLMJudge:
    concurrency = 1

    def __init__(
        self,
        model_or_path,
        *,
        prompt: str = "pair-v2",
        decision: str = "both-orders",
        tie_margin: float = 0.0,
        dtype: str = "fp32",
    ):
        if decision not in DECISIONS:
            raise ConfigError(f"hf-llm decision '{decision}' is not one of {list(DECISIONS)}")
        self.model, self.tokenizer, name = load_for_generation(model_or_path, dtype)
        self.prompt = pair_prompt(prompt)
        self.decision = decision
        self.tie_margin = tie_margin
        self.letter_ids = [
            self.tokenizer(letter, add_special_tokens=False)["input_ids"][0] for letter in "AB"
        ]
        self.identity = f"hf-llm:{name}:{prompt}:{decision}"
        if decision == "average":
            self.identity += f":margin={tie_margin}"

    def probability_first_slot(self, question: str, first: str, second: str) -> float:
        """P("A") / (P("A") + P("B")) for the next token after the answer prefix."""
        messages = self.prompt.messages(question, first, second)
        prefix = self.tokenizer(self.prompt.answer_prefix, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([render_prompt(self.tokenizer, messages) + prefix])
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(device)).logits[0, -1].float()
        letters = torch.log_softmax(logits[self.letter_ids], dim=-1)
        return float(letters[0].exp())

    def compare(self, prompt, response_a: str, response_b: str) -> Judgment:
        question = prompt_text(prompt)
        p_first = self.probability_first_slot(question, response_a, response_b)
        p_swapped = self.probability_first_slot(question, response_b, response_a)
        raw = {"p_A_a_first": p_first, "p_A_b_first": p_swapped}
        judgment = combine_orders(_slot(p_first, 0.0), _slot(p_swapped, 0.0), raw=raw)
        if self.decision == "average":
            p_a = (p_first + 1.0 - p_swapped) / 2
            judgment.winner = {"A": "a", "B": "b", "tie": "tie"}[_slot(p_a, self.tie_margin)]
        return judgment


def _slot(p_first_slot: float, margin: float) -> str:
    if p_first_slot > 0.5 + margin:
        return "A"
    return "B" if p_first_slot < 0.5 - margin else "tie"
