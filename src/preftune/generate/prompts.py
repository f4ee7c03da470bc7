"""Turn a prompt (a string or chat messages) into the token ids a model continues from.

Generation, KL measurement and the local LLM judge all render prompts here, so the ids a
response was sampled after are the ids it is scored after.
"""

from __future__ import annotations

from preftune.data.messages import as_messages, prompt_text
from preftune.errors import ConfigError

__all__ = ["as_messages", "prompt_text", "render_prompt"]


def render_prompt(tokenizer, prompt: str | list[dict], *, chat_template: bool = True) -> list[int]:
    """Token ids of `prompt`, ending where the assistant's answer begins."""
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "the tokenizer has no chat template; pass chat_template=False "
                "(CLI: --no-chat-template) to feed prompts as plain text"
            )
        text = tokenizer.apply_chat_template(
            as_messages(prompt), add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    if not isinstance(prompt, str):
        raise ConfigError("a prompt given as chat messages needs chat_template=True")
    return tokenizer(prompt)["input_ids"]
