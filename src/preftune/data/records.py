"""The canonical record every input format is read into (docs/internals.md, "Records")."""

from __future__ import annotations

from dataclasses import dataclass, field

Message = dict  # {"role": str, "content": str}
Text = str | list[Message]


@dataclass(frozen=True)
class Response:
    """One response to a prompt: its text (or assistant messages), a score and/or a label.

    Higher scores are better. `label` is binary feedback: True desirable, False undesirable.
    """

    text: Text
    score: float | None = None
    label: bool | None = None


@dataclass
class PromptGroup:
    """A prompt with its responses. `source` says where it came from ("file.jsonl:12").

    `margin` is an optional per-pair margin from the data (ODPO); `tie` marks a group whose
    responses are judged equally good even when scores are absent.
    """

    prompt: Text
    responses: list[Response]
    id: str
    source: str | None = None
    margin: float | None = None
    tie: bool = False
    meta: dict = field(default_factory=dict)
