"""Chat messages: checking them, turning Anthropic HH dialogues into them, and the one rule
for turning them into plain text.

A message is `{"role": ..., "content": str}`. Problems raise `RowError` naming the field, so
the reader can add the file and line. Wherever several messages become one text (a prompt
for a judge, a multi-turn response for a judge or a scorer), they are joined with a blank
line, `TURN_SEPARATOR` ("\\n\\n"), as HH dialogues and TL;DR prompts already are.
"""

from __future__ import annotations

import re

from preftune.data.records import Message, Text

ROLES = ("system", "user", "assistant", "tool")
TURN_SEPARATOR = "\n\n"
HH_TURN = re.compile(r"(?:\A|\n\n)(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


class RowError(ValueError):
    """A problem with one field of one row; the reader adds where the row is."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        self.message = message
        super().__init__(f"field '{field}': {message}" if field else message)


def shown(value) -> str:
    """A value as a message shows it: JSON's words for null and booleans, else a short repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value!r:.60}"


def is_messages(value) -> bool:
    """True for a non-empty list of dicts (a conversation), False for anything else."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def check_messages(value, field: str) -> list[Message]:
    """Validate a list of messages and return them as plain `{"role", "content"}` dicts."""
    if not is_messages(value):
        raise RowError(field, f"expected a list of {{role, content}} messages, got {shown(value)}")
    checked = []
    for i, message in enumerate(value):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"{field}[{i}].role", f"unknown role {role!r}; expected one of {ROLES}")
        if not isinstance(content, str):
            raise RowError(f"{field}[{i}].content", f"expected a string, got {shown(content)}")
        checked.append({"role": role, "content": content})
    return checked


def as_messages(prompt: Text) -> list[Message]:
    """A prompt as messages: a plain string is one user turn; a message list is used as given.

    >>> as_messages("Hi?")
    [{'role': 'user', 'content': 'Hi?'}]
    """
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def prompt_text(prompt: Text) -> str:
    """Plain text of a prompt for judges and reports: the messages joined, roles named.

    >>> prompt_text([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}])
    'user: Hi?\\n\\nassistant: Hello.'
    """
    if isinstance(prompt, str):
        return prompt
    return TURN_SEPARATOR.join(f"{m['role']}: {m['content']}" for m in prompt)


def response_text(response: Text) -> str:
    """A response's text; for chat messages, the assistant turns joined.

    >>> response_text([{"role": "assistant", "content": "One."}, {"role": "assistant", "content": "Two."}])
    'One.\\n\\nTwo.'
    """
    if isinstance(response, str):
        return response
    return TURN_SEPARATOR.join(m["content"] for m in response if m.get("role") == "assistant")


def common_prefix(first: list[Message], second: list[Message]) -> int:
    """How many leading messages two conversations share."""
    shared = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        shared += 1
    return shared


def split_hh_dialogue(text: str, field: str) -> tuple[list[Message], str]:
    """Split an HH dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ...") at its last assistant turn.

    Returns the conversation before the last assistant turn as messages, and that turn's text.
    """
    if not isinstance(text, str):
        raise RowError(field, f"expected an HH dialogue string, got {shown(text)}")
    turns = list(HH_TURN.finditer(text))
    if not turns or turns[-1].group(1) != "Assistant":
        raise RowError(field, "no '\\n\\nAssistant:' turn to split the dialogue at")
    messages = []
    for turn, following in zip(turns[:-1], turns[1:], strict=True):
        content = text[turn.end() : following.start()].strip()
        messages.append({"role": HH_ROLES[turn.group(1)], "content": content})
    if not messages:
        raise RowError(field, "the dialogue has no '\\n\\nHuman:' turn before the last answer")
    return messages, text[turns[-1].end() :].strip()
