"""`reward-model` judge: a Hugging Face sequence-classification model whose single logit is
the reward of (prompt, response); pairwise = the higher reward wins.

Responses are tokenized as training data is (`preftune.data.tokenize`: the tokenizer's chat
template, the response ending with EOS), so a reward model from `preftune rm` scores exactly
the sequences it was trained on; `score_batch` scores many in padded batches.
"""

from __future__ import annotations

import torch

from preftune.data import PromptGroup, Response, collate, tokenize
from preftune.judges.base import JudgeError, Judgment, compare_by_scores
from preftune.models.reward import batch_rewards


class RewardModelJudge:
    """Scores with a reward model given as a folder or a (model, tokenizer) pair.

    >>> from preftune.testing import build_tiny_tokenizer
    >>> from transformers import LlamaConfig, LlamaForSequenceClassification
    >>> tokenizer = build_tiny_tokenizer()
    >>> model = LlamaForSequenceClassification(LlamaConfig(
    ...     vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    ...     num_attention_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id))
    >>> judge = RewardModelJudge((model, tokenizer))
    >>> scores = judge.score_batch(["q", "q"], ["the movie was great", "a terrible film"])
    >>> abs(scores[1] - judge.score("q", "a terrible film")) < 1e-5  # padding changes nothing
    True
    """

    def __init__(
        self,
        model_or_path,
        *,
        dtype: str = "fp32",
        batch_size: int = 16,
        max_prompt_length: int = 1024,
        max_length: int = 2048,
    ):
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
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # the head needs it to find the last token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self.lengths = {"max_prompt_length": max_prompt_length, "max_length": max_length}
        self.identity = f"reward-model:{name}"

    def score_batch(self, prompts: list, responses: list[str]) -> list[float]:
        """The reward of each (prompt, response), `batch_size` sequences per forward pass."""
        groups = [
            PromptGroup(prompt, [Response(response)], id=str(index))
            for index, (prompt, response) in enumerate(zip(prompts, responses, strict=True))
        ]
        tokenized, _ = tokenize(groups, self.tokenizer, **self.lengths)
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(tokenized), self.batch_size):
                batch = collate(tokenized[start : start + self.batch_size])
                rewards = batch_rewards(self.model, batch, self.model.config.pad_token_id)
                scores.extend(rewards[:, 0].float().tolist())
        return scores

    def score(self, prompt, response: str) -> float:
        return self.score_batch([prompt], [response])[0]

    def compare(self, prompt, response_a: str, response_b: str) -> Judgment:
        score_a, score_b = self.score_batch([prompt, prompt], [response_a, response_b])
        return compare_by_scores(score_a, score_b)


def _load(path: str, dtype: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from preftune.models.loading import DTYPES

    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=DTYPES[dtype])
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise JudgeError(f"cannot load reward model '{path}': {reason}") from None
    return model.eval(), tokenizer
