"""`reward-model` judge: a Hugging Face sequence-classification model whose single logit is
the reward of (prompt, response); pairwise = the higher reward wins."""

from __future__ import annotations

import torch

from preftune.generate.prompts import as_messages, prompt_text
from preftune.judges.base import JudgeError, Judgment, compare_by_scores


class RewardModelJudge:
    def __init__(self, model_or_path, *, dtype: str = "fp32"):
        if isinstance(model_or_path, tuple):
            self.model, self.tokenizer = model_or_path
            name = getattr(self.model.config, "name_or_path", "") or "model"
        else:
            self.model, self.tokenizer = _load(str(model_or_path), dtype)
            name = str(model_or_path)
        if self.model.config.num_labels != 1:
            raise JudgeError(
                f"reward model {name} has {self.model.config.num_labels} outputs; need exactly 1"
            )
        self.identity = f"reward-model:{name}"

    def _text(self, prompt, response: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [*as_messages(prompt), {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt_text(prompt)}\n{response}"

    def score(self, prompt, response: str) -> float:
        encoded = self.tokenizer(self._text(prompt, response), return_tensors="pt")
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(**{k: v.to(device) for k, v in encoded.items()}).logits
        return float(logits[0, 0])

    def score_batch(self, prompts: list, responses: list[str]) -> list[float]:
        """The rewards of several (prompt, response) pairs in one right-padded forward; the
        model reads its score at the last non-pad token, as `score` does for one (a model
        without a pad token is scored one response at a time)."""
        pad_id = self.tokenizer.pad_token_id
        if len(prompts) == 1 or pad_id is None or self.model.config.pad_token_id != pad_id:
            return [self.score(p, r) for p, r in zip(prompts, responses, strict=True)]
        texts = [self._text(p, r) for p, r in zip(prompts, responses, strict=True)]
        self.tokenizer.padding_side = "right"
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(**{k: v.to(device) for k, v in encoded.items()}).logits
        return [float(value) for value in logits[:, 0]]

    def compare(self, prompt, response_a: str, response_b: str) -> Judgment:
        return compare_by_scores(self.score(prompt, response_a), self.score(prompt, response_b))


def _load(path: str, dtype: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from preftune.models.loading import DTYPES

    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=DTYPES[dtype])
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:  # ValueError: a config.json naming no model type
        message = str(error).splitlines()[0]
        raise JudgeError(f"cannot load reward model '{path}': {message}") from None
    return model.eval(), tokenizer
