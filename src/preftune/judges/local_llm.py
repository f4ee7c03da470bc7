"""`hf-llm` judge: a local causal LM as pairwise judge, offline.

The pairwise prompt is rendered with the model's chat template, the answer is begun with the
prompt's `answer_prefix` (e.g. "[[" for MT-Bench pair-v2), and the verdict is read from the
next-token probabilities of "A" and "B" instead of generated text. Both orders are asked;
`combine_orders` merges them (disagreement is a tie).
"""

from __future__ import annotations

import torch

from preftune.generate.prompts import prompt_text, render_prompt
from preftune.generate.sampling import load_for_generation
from preftune.judges.base import Judgment, combine_orders
from preftune.judges.prompts import pair_prompt


class LocalLLMJudge:
    concurrency = 1

    def __init__(self, model_or_path, *, prompt: str = "pair-v2", dtype: str = "fp32"):
        self.model, self.tokenizer, name = load_for_generation(model_or_path, dtype)
        self.prompt = pair_prompt(prompt)
        self.letter_ids = [
            self.tokenizer(letter, add_special_tokens=False)["input_ids"][0] for letter in "AB"
        ]
        self.identity = f"hf-llm:{name}:{prompt}"

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
        return combine_orders(
            _slot(p_first), _slot(p_swapped), raw={"p_A_a_first": p_first, "p_A_b_first": p_swapped}
        )


def _slot(p_first_slot: float) -> str:
    return "A" if p_first_slot > 0.5 else "B" if p_first_slot < 0.5 else "tie"
