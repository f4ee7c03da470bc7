"""Sampling from a model behind an OpenAI-compatible chat-completions server (vLLM, llama.cpp's
server, TGI, `preftune serve`) instead of from local weights.

`generate` hands the prompts of a `ServedModel` here; the rows it writes have the local
backend's fields (id, prompt, response, model, generation_config, finish_reason, num_tokens;
no log-probs or token ids, which a chat API does not return), so judging, ranking and the text
statistics read both alike. Requests run `concurrency` at a time; each answer is written as it
arrives, so a stopped run resumes where it stopped. The HTTP client (retries, Retry-After,
deadlines, key redaction) is `preftune.judges.http_chat.ChatClient`:
`preftune.judges.http_chat.served_model(base_url, model)` makes a `ServedModel` on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from preftune.data.messages import as_messages
from preftune.errors import ConfigError, PreftuneError
from preftune.generate.concurrency import run_tasks

# A chat API's finish reasons in the local backend's words ("length" is the same in both).
FINISH_REASONS = {"stop": "eos"}


class GenerationError(PreftuneError):
    """The server failed a request every time it was asked, or rejected it."""


# The request fields `generate`'s settings fill in; `extra_body` may not set them too.
REQUEST_FIELDS = ("model", "messages", "temperature", "max_tokens", "top_p", "top_k", "seed")


@dataclass(frozen=True)
class ServedModel:
    """A model served over HTTP. `connect()` returns `ask(messages, fields) -> reply`, where
    the reply has `text`, `finish_reason` and `completion_tokens` (None when not reported).
    `extra_body` is sent with every request: a server's own sampling fields, e.g.
    `{"repeat_penalty": 1.0}` for plain greedy decoding on llama.cpp's server (its default
    penalises repeated tokens)."""

    base_url: str
    model: str
    connect: Callable[[], Callable] = field(repr=False, compare=False)
    concurrency: int = 8
    extra_body: dict = field(default_factory=dict)

    def __post_init__(self):
        check_extra_body(self.extra_body)

    def settings(self) -> dict:
        """What this backend adds to a row's generation_config (so a local and a served run,
        or runs with other extra fields, never resume each other's file)."""
        extra = {"extra_body": self.extra_body} if self.extra_body else {}
        return {"backend": "openai", "base_url": self.base_url, **extra}


def check_extra_body(extra_body: dict, key: str = "extra_body") -> None:
    """Refuse extra fields that the generation settings fill in (`REQUEST_FIELDS`); the
    ConfigError names `key` and the field.

    >>> check_extra_body({"max_tokens": 3}, "--extra-body")
    Traceback (most recent call last):
    preftune.errors.ConfigError: --extra-body.max_tokens: set by the generation settings, not by --extra-body
    """
    clash = request_field_clash(extra_body)
    if clash:
        raise ConfigError(f"{key}.{clash}: set by the generation settings, not by {key}")


def request_field_clash(extra_body: dict) -> str | None:
    """The first (alphabetical) field of `extra_body` that the generation settings fill in.

    >>> request_field_clash({"repeat_penalty": 1.0, "top_p": 0.9, "seed": 1})
    'seed'
    """
    clash = sorted(set(extra_body) & set(REQUEST_FIELDS))
    return clash[0] if clash else None


def request_fields(config: dict, sample: int) -> dict:
    """The chat-completions fields for `generate`'s settings and the sample's index (each
    sample of a prompt gets its own seed).

    >>> request_fields({"temperature": 0.0, "max_new_tokens": 8, "top_p": 1.0, "top_k": 0,
    ...                 "seed": 3}, sample=1)
    {'temperature': 0.0, 'max_tokens': 8, 'top_p': 1.0, 'seed': 4}
    """
    fields = {
        "temperature": config["temperature"],
        "max_tokens": config["max_new_tokens"],
        "top_p": config["top_p"],
        "seed": config["seed"] + sample,
    }
    if config["top_k"] > 0:  # not OpenAI's own field; vLLM, llama.cpp and `preftune serve` read it
        fields["top_k"] = config["top_k"]
    return fields


def check_served(config: dict) -> None:
    if not config["chat_template"]:
        raise ConfigError(
            "chat_template=False (--no-chat-template): a chat-completions server applies its "
            "own chat template; plain-text prompts need the local backend"
        )


def sample_served(served: ServedModel, jobs: list[tuple[dict, int]], config: dict, write) -> None:
    """Ask `served` for every (prompt, sample) job; `write(job, text, finish_reason,
    num_tokens)` is called in this thread as each answer arrives."""
    ask = served.connect()

    def work(index: int):
        prompt, sample = jobs[index]
        try:
            fields = {**request_fields(config, sample), **served.extra_body}
            return ask(as_messages(prompt["prompt"]), fields)
        except GenerationError as error:
            raise GenerationError(
                f"prompt '{prompt['id']}': {error}; the answers received so far are saved: "
                "rerun the same command to ask only for the rest"
            ) from None

    def finish(index: int, reply) -> None:
        reason = FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)
        write(jobs[index], reply.text, reason, reply.completion_tokens)

    run_tasks(list(range(len(jobs))), work, finish, served.concurrency, desc="generate")
