"""Prompt groups into token ids: rendering, EOS, truncation, and the prompt/response split.

Rendering: with a chat template (the tokenizer's, or `chat_template=` a Jinja string) the
prompt is rendered with the generation prompt and each response as the assistant's turn after
it; a plain-string prompt becomes one user message. Without one (`chat_template=False`, or a
tokenizer that has none) text is concatenated as is, and conversations are written in the
Anthropic HH style ("\\n\\nHuman: ...\\n\\nAssistant: ...").

Responses end with EOS: whatever a template puts after its last EOS (ChatML's newline) is cut,
and EOS is appended when the text has none. Truncation follows the HH/TL;DR comparison study:
the prompt is cut from the left to `max_prompt_length`, then each response from the right so
that prompt + response fits `max_length` (a response cut this way no longer ends with EOS).
Nothing is dropped: `max_prompt_length < max_length` leaves every response at least one
token. Responses that differ only after the cut become identical and give no gradient: such
groups are counted (`identical_after_truncation`) with a warning naming the setting to raise.

The response's tokens must follow the prompt's tokens exactly as the model will see them at
generation time. Tokenizing prompt + response together is used when the prompt's tokens are a
prefix of it; when a merge across the boundary breaks that, the response is tokenized on its
own (counted in `prefix_fixed`, with a warning). When a template renders the conversation so
that the prompt text is not a prefix, the response is its text + EOS (`template_fixed`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from tqdm.auto import tqdm

from preftune.data.batch import TokenizedGroup
from preftune.data.messages import as_messages, is_messages
from preftune.data.records import PromptGroup, Text
from preftune.errors import ConfigError

CHUNK = 512
PLAIN_ROLES = {"user": "Human", "assistant": "Assistant", "system": "System", "tool": "Tool"}


@dataclass
class TokenizeStats:
    """What tokenization did; token lengths are before truncation."""

    groups: int = 0
    responses: int = 0
    prompts_truncated: int = 0
    responses_truncated: int = 0
    prefix_fixed: int = 0
    template_fixed: int = 0
    identical_after_truncation: int = 0
    prompt_tokens_mean: float = 0.0
    prompt_tokens_max: int = 0
    response_tokens_mean: float = 0.0
    response_tokens_max: int = 0


def _response_messages(response: Text) -> list[dict]:
    if is_messages(response):
        return response
    return [{"role": "assistant", "content": response.strip()}]


def _plain_turns(messages: list[dict]) -> str:
    return "".join(f"\n\n{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages)


def _plain_prompt(prompt: Text) -> str:
    """A string as is; a conversation in the HH style, ending at "Assistant:"."""
    return prompt if isinstance(prompt, str) else _plain_turns(prompt) + "\n\nAssistant:"


def _plain_response(prompt: Text, response: Text) -> str:
    if isinstance(prompt, str) and isinstance(response, str):
        return response
    messages = _response_messages(response)
    return " " + messages[0]["content"].strip() + _plain_turns(messages[1:])


class _Renderer:
    """Turns (prompt, response) into (prompt text, response text) for one tokenizer."""

    def __init__(self, tokenizer, chat_template):
        self.tokenizer = tokenizer
        if chat_template is False or isinstance(chat_template, str):
            self.template = chat_template or None
        else:
            self.template = getattr(tokenizer, "chat_template", None)
        self.template_fixed = 0

    def prompt(self, prompt: Text) -> str:
        if self.template is None:
            return _plain_prompt(prompt)
        return self.tokenizer.apply_chat_template(
            as_messages(prompt),
            tokenize=False,
            add_generation_prompt=True,
            chat_template=self.template,
        )

    def response(self, prompt: Text, prompt_text: str, response: Text) -> str:
        if self.template is None:
            return _plain_response(prompt, response)
        messages = _response_messages(response)
        full = self.tokenizer.apply_chat_template(
            as_messages(prompt) + messages, tokenize=False, chat_template=self.template
        )
        if full.startswith(prompt_text):
            return full[len(prompt_text) :]
        self.template_fixed += 1
        return "".join(m["content"] for m in messages) + self.tokenizer.eos_token


def _end_with_eos(ids: list[int], eos: int) -> list[int]:
    """Cut what follows the last EOS, or append EOS when there is none."""
    if eos in ids:
        return ids[: len(ids) - ids[::-1].index(eos)]
    return [*ids, eos]


def _check_lengths(tokenizer, max_prompt_length: int, max_length: int) -> None:
    if not 1 <= max_prompt_length < max_length:
        raise ConfigError(
            f"need 1 <= max_prompt_length < max_length, got {max_prompt_length} and {max_length}"
        )
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token; responses must end with one")


class _Encoder:
    """Rendered texts into untruncated ids: the prompt's, and each response's ending with EOS."""

    def __init__(self, tokenizer, chat_template):
        self.tokenizer = tokenizer
        self.renderer = _Renderer(tokenizer, chat_template)
        self.specials = self.renderer.template is None  # a template writes its own specials
        self.prefix_fixed = 0

    def ids(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]

    def groups(self, groups: list[PromptGroup]) -> list[tuple[str, list[int], list[list[int]]]]:
        """(prompt text, prompt ids, response ids) per group, in one tokenizer call per kind."""
        prompt_texts = [self.renderer.prompt(g.prompt) for g in groups]
        response_texts = [
            [self.renderer.response(g.prompt, p, r.text) for r in g.responses]
            for g, p in zip(groups, prompt_texts, strict=True)
        ]
        joined = [
            p + r for p, texts in zip(prompt_texts, response_texts, strict=True) for r in texts
        ]
        fulls = iter(self.ids(joined, self.specials))
        encoded = []
        for prompt_text, prompt_ids, texts in zip(
            prompt_texts, self.ids(prompt_texts, self.specials), response_texts, strict=True
        ):
            responses = [self._response(prompt_ids, next(fulls), text) for text in texts]
            encoded.append((prompt_text, prompt_ids, responses))
        return encoded

    def _response(self, prompt_ids: list[int], full: list[int], text: str) -> list[int]:
        if full[: len(prompt_ids)] == prompt_ids:
            response_ids = full[len(prompt_ids) :]
        else:  # a token merged across the boundary: tokenize the response on its own
            response_ids = self.ids([text], False)[0]
            self.prefix_fixed += 1
        return _end_with_eos(response_ids, self.tokenizer.eos_token_id)


def _truncate(group: PromptGroup, encoded, limits, stats: TokenizeStats) -> TokenizedGroup:
    """Cut the prompt from the left, then each response from the right (see the module doc)."""
    prompt_text, prompt_ids, responses = encoded
    max_prompt_length, max_length = limits
    if len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
        stats.prompts_truncated += 1
    room = max_length - len(prompt_ids)
    stats.responses_truncated += sum(len(r) > room for r in responses)
    kept = [r[:room] for r in responses]
    if len(responses) > 1 and _all_equal(kept) and not _all_equal(responses):
        stats.identical_after_truncation += 1
    return TokenizedGroup(
        id=group.id,
        prompt_ids=prompt_ids,
        response_ids=kept,
        scores=[r.score for r in group.responses],
        labels=[r.label for r in group.responses],
        margin=group.margin,
        tie=group.tie,
        prompt_text=prompt_text,
    )


def _all_equal(responses: list[list[int]]) -> bool:
    return all(response == responses[0] for response in responses)


def _record_lengths(stats: TokenizeStats, prompt_lengths: list[int], response_lengths: list[int]):
    if prompt_lengths:
        stats.prompt_tokens_mean = sum(prompt_lengths) / len(prompt_lengths)
        stats.prompt_tokens_max = max(prompt_lengths)
        stats.response_tokens_mean = sum(response_lengths) / len(response_lengths)
        stats.response_tokens_max = max(response_lengths)


def tokenize(
    groups: list[PromptGroup],
    tokenizer,
    *,
    max_prompt_length: int = 256,
    max_length: int = 512,
    chat_template: str | bool | None = None,
) -> tuple[list[TokenizedGroup], TokenizeStats]:
    """Token ids for every group (see the module doc for rendering and truncation).

    `chat_template`: None uses the tokenizer's (plain text when it has none), a string is a
    Jinja template to use instead, False forces plain concatenation. Texts are tokenized in
    batches of `CHUNK` groups (one call into the fast tokenizer per batch).
    """
    _check_lengths(tokenizer, max_prompt_length, max_length)
    encoder = _Encoder(tokenizer, chat_template)
    stats = TokenizeStats(groups=len(groups), responses=sum(len(g.responses) for g in groups))
    out, prompt_lengths, response_lengths = [], [], []
    with tqdm(total=len(groups), desc="tokenize", disable=None) as progress:
        for start in range(0, len(groups), CHUNK):
            chunk = groups[start : start + CHUNK]
            for group, encoded in zip(chunk, encoder.groups(chunk), strict=True):
                prompt_lengths.append(len(encoded[1]))
                response_lengths.extend(len(r) for r in encoded[2])
                out.append(_truncate(group, encoded, (max_prompt_length, max_length), stats))
            progress.update(len(chunk))
    stats.prefix_fixed = encoder.prefix_fixed
    stats.template_fixed = encoder.renderer.template_fixed
    _record_lengths(stats, prompt_lengths, response_lengths)
    if stats.prefix_fixed or stats.template_fixed:
        warnings.warn(
            f"{stats.prefix_fixed} responses tokenized apart from their prompt (a token merged "
            f"across the boundary) and {stats.template_fixed} rendered without the template "
            "(the prompt text was not a prefix of the conversation)",
            stacklevel=2,
        )
    if stats.identical_after_truncation:
        warnings.warn(
            f"{stats.identical_after_truncation} of {len(groups)} groups have responses that "
            f"truncation to max_length={max_length} (prompt up to max_prompt_length="
            f"{max_prompt_length}) made identical: they give no gradient; raise max_length",
            stacklevel=2,
        )
    return out, stats
