"""Reading one field of a row: present, of the right kind, usable. Problems raise `RowError`."""

from __future__ import annotations

import math

from preftune.data.messages import RowError, check_messages, shown
from preftune.data.records import Message, Text

TRUE_WORDS = {"true": True, "false": False, "1": True, "0": False}


def optional(row: dict, key: str):
    """The value of `key`, or None when the column is absent or the cell is empty."""
    value = row.get(key)
    return None if value is None or value == "" else value


def _name(key: str, parent: str | None) -> str:
    return f"{parent}.{key}" if parent else key


def required(row: dict, key: str, parent: str | None = None):
    """The value of `key`; `parent` names the object it sits in ("completions[2]")."""
    value = optional(row, key)
    if value is None and key in row:
        raise RowError(_name(key, parent), "null" if row[key] is None else "empty")
    if value is None:
        raise RowError(_name(key, parent), f"missing; it has {sorted(map(str, row))}")
    return value


def first_present(row: dict, keys: tuple[str, ...], parent: str | None = None) -> str:
    """The first of `keys` the row has (for columns with several common names)."""
    for key in keys:
        if optional(row, key) is not None:
            return key
    raise RowError(
        _name(keys[0], parent), f"missing (nor {list(keys[1:])}); it has {sorted(map(str, row))}"
    )


def text(value, field: str) -> str:
    if not isinstance(value, str):
        raise RowError(field, f"expected a string, got {shown(value)}")
    if not value.strip():
        raise RowError(field, "empty text")
    return value


def messages(value, field: str) -> list[Message]:
    checked = check_messages(value, field)
    for i, message in enumerate(checked):
        if not message["content"].strip():
            raise RowError(f"{field}[{i}].content", "empty text")
    return checked


def prompt(value, field: str) -> Text:
    """A prompt: a non-empty string or a list of messages."""
    return messages(value, field) if isinstance(value, list) else text(value, field)


def response(value, field: str) -> Text:
    """A response: a non-empty string, or messages starting with the assistant's.

    A single assistant message is returned as its content, so most responses are strings.
    """
    if not isinstance(value, list):
        return text(value, field)
    checked = messages(value, field) if value else []
    if not checked:
        raise RowError(field, "empty response (no messages)")
    if checked[0]["role"] != "assistant":
        raise RowError(
            f"{field}[0].role", f"a response starts with 'assistant', not {checked[0]['role']!r}"
        )
    return checked[0]["content"] if len(checked) == 1 else checked


def score(value, field: str) -> float:
    """A finite number; numeric strings ("7.5", as in CSV files and UltraFeedback ratings) count."""
    if isinstance(value, bool):
        raise RowError(field, f"expected a number, got the boolean {shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(field, f"expected a number, got {shown(value)}") from None
    if not math.isfinite(number):
        raise RowError(field, f"expected a finite number, got {value!r}")
    return number


def label(value, field: str) -> bool:
    """A boolean; 0/1 and the strings "true"/"false"/"0"/"1" (CSV cells) count."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS:
        return TRUE_WORDS[value.strip().lower()]
    raise RowError(field, f"expected a boolean (true/false), got {shown(value)}")
