"""A minimal client for OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server),
standard library only.

- Network errors, timeouts, 408 / 409 / 429 / 5xx answers and malformed bodies are retried
  with jittered exponential backoff; a `Retry-After` header (seconds or an HTTP date) sets
  the wait instead, capped at `RETRY_AFTER_CAP` seconds. The last failure is a
  `TransientFailure`.
- `timeout` bounds a whole request, not one socket read: a watchdog shuts the connection
  down `timeout` seconds after the request began, so a server that trickles its status line,
  headers or body byte by byte cannot hold a request for longer.
- 401 / 403 (the key is refused): `KeyRefused`, and every later request of this client fails
  the same way without being sent, so a run stops paying at once.
- Any other 4xx: `RequestRejected` for that one request (asking again would not help).
- The API key is registered with `preftune.io.register_secret` and every error message is
  redacted, so a server that echoes the key does not leak it into files or the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from preftune.io import redact, register_secret
from preftune.judges.base import JudgeError

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
AUTH_STATUS = {401, 403}
RETRY_AFTER_CAP = 120.0  # seconds; a longer Retry-After is waited this long, then asked again
ERROR_BODY_LIMIT = 4096  # bytes of an error body kept for the message
# Network errors, timeouts, a connection cut mid-reply, and bodies that are not a reply.
RETRYABLE_ERRORS = (OSError, http.client.HTTPException, ValueError, LookupError, TypeError)


class TransientFailure(Exception):
    """Every retry failed; the message says how the last attempt went wrong."""


class RequestRejected(Exception):
    """The server refused this one request (a 4xx other than 401/403); asking again would not
    help, the other requests may still succeed."""


class KeyRefused(JudgeError):
    """The server refused the API key (HTTP 401/403): no request can succeed."""


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a `Retry-After` header asks for (RFC 9110: seconds or an HTTP date), capped
    at RETRY_AFTER_CAP; None when absent or unreadable.

    >>> retry_after_seconds("3")
    3.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT",
    ...                     now=datetime(2015, 10, 21, 7, 28, tzinfo=timezone.utc))
    30.0
    """
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class _Watchdog:
    """Shuts a request's socket down once its time is up, which ends any read blocked on it
    (status line, headers or body), however slowly the server sends."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._timer: threading.Timer | None = None

    def arm(self, sock: socket.socket) -> None:
        def expire() -> None:
            self.expired = True
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

        self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), expire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _watched(connection_class):
    """`connection_class` whose socket is handed to a `_Watchdog` once connected."""

    class Watched(connection_class):
        def __init__(self, *args, watchdog: _Watchdog, **kwargs):
            super().__init__(*args, **kwargs)
            self.watchdog = watchdog

        def connect(self):
            super().connect()
            self.watchdog.arm(self.sock)

    return Watched


_WATCHED = {cls: _watched(cls) for cls in (http.client.HTTPConnection, http.client.HTTPSConnection)}


class _WatchedOpen:
    """urllib handler mixin: connections are opened as `_watched` ones."""

    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def do_open(self, http_class, request, **kwargs):
        watched = functools.partial(_WATCHED[http_class], watchdog=self.watchdog)
        return super().do_open(watched, request, **kwargs)


class _HTTPHandler(_WatchedOpen, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_WatchedOpen, urllib.request.HTTPSHandler):
    pass


def _one_line(text: str, limit: int = 300) -> str:
    return redact(" ".join(text.split()))[:limit]


def _describe(error: Exception, watchdog: _Watchdog, timeout: float) -> str:
    """How a retryable attempt went wrong, in one redacted line."""
    if watchdog.expired or isinstance(error, TimeoutError):
        return f"TimeoutError: no complete reply within {timeout:g} s"
    kind = type(error).__name__
    if isinstance(error, (OSError, http.client.HTTPException)):
        return f"{kind}: {_one_line(str(error))}"
    return f"malformed reply ({kind}: {_one_line(str(error))})"


@dataclass(frozen=True)
class Reply:
    """A chat completion's first choice: its text, why it stopped ("stop", "length"...) and
    how many tokens it holds, as far as the server says (None when it does not)."""

    text: str
    finish_reason: str | None = None
    completion_tokens: int | None = None


class ChatClient:
    """POSTs `messages` to `{base_url}/chat/completions` and returns the reply's text."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.api_key = os.environ.get(api_key_env)
        register_secret(self.api_key)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.refusal: str | None = None  # set by the first 401/403; later requests fail at once

    def _request(self, messages: list[dict], fields: dict, watchdog: _Watchdog) -> Reply:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            **fields,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers)
        opener = urllib.request.build_opener(_HTTPHandler(watchdog), _HTTPSHandler(watchdog))
        with opener.open(request, timeout=self.timeout) as response:
            reply = json.loads(response.read().decode("utf-8"))
        choice = reply["choices"][0]
        content = choice["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("the reply's message content is not text")
        tokens = (reply.get("usage") or {}).get("completion_tokens")
        return Reply(
            content, choice.get("finish_reason"), tokens if isinstance(tokens, int) else None
        )

    def _refuse(self, status: int, detail: str) -> KeyRefused:
        key = (
            f"the API key in ${self.api_key_env}"
            if self.api_key
            else f"no key (${self.api_key_env} is unset)"
        )
        self.refusal = (
            f"{self.url} refused {key}: HTTP {status}: {detail}; the answers received so far "
            f"are saved: set a valid key and rerun the same command to judge only the rest"
        )
        return KeyRefused(self.refusal)

    def complete(self, messages: list[dict]) -> str:
        """The reply's text. Raises TransientFailure after the last retry, RequestRejected when
        the server refuses this request, KeyRefused when it refuses the key."""
        return self.reply(messages).text

    def reply(self, messages: list[dict], fields: dict | None = None) -> Reply:
        """The reply with its finish reason and token count; `fields` are request fields
        over the client's own (temperature, max_tokens, top_p, seed...). Fails as `complete`."""
        for attempt in range(self.max_retries + 1):
            if self.refusal is not None:
                raise KeyRefused(self.refusal)
            watchdog = _Watchdog(self.timeout)
            wait = None
            try:
                return self._request(messages, fields or {}, watchdog)
            except urllib.error.HTTPError as error:
                try:
                    body = error.read(ERROR_BODY_LIMIT)
                except (OSError, http.client.HTTPException):  # cut off by the watchdog
                    body = b""
                detail = _one_line(body.decode("utf-8", "replace"))
                if error.code in AUTH_STATUS:
                    raise self._refuse(error.code, detail) from None
                if error.code not in RETRYABLE_STATUS:
                    raise RequestRejected(f"HTTP {error.code}: {detail}") from None
                failure = f"HTTP {error.code}: {detail}"
                wait = retry_after_seconds(error.headers.get("Retry-After"))
            except RETRYABLE_ERRORS as error:
                failure = _describe(error, watchdog, self.timeout)
            finally:
                watchdog.disarm()
            if attempt < self.max_retries:
                if wait is None:
                    delay = min(self.max_backoff, self.backoff * 2**attempt)
                    wait = delay * (0.5 + random.random() / 2)
                time.sleep(wait)
        raise TransientFailure(f"{self.max_retries + 1} attempts failed; last: {failure}")


def served_model(
    base_url: str,
    model: str,
    *,
    concurrency: int = 8,
    extra_body: dict | None = None,
    **client_options,
):
    """`model` behind the OpenAI-compatible server at `base_url`, for
    `preftune.generate.generate`: its requests go through a `ChatClient` (`client_options`:
    api_key_env, timeout, max_retries...) with `extra_body`'s fields added, and a request that
    fails every retry, or that the server rejects, stops the run with a `GenerationError` (the
    answers so far are kept).

    >>> served_model("http://127.0.0.1:8080/v1/", "smollm2", extra_body={"repeat_penalty": 1.0})
    ServedModel(base_url='http://127.0.0.1:8080/v1', model='smollm2', concurrency=8, \
extra_body={'repeat_penalty': 1.0})
    """
    from preftune.generate.remote import GenerationError, ServedModel

    def connect():
        client = ChatClient(base_url, model, **client_options)

        def ask(messages: list[dict], fields: dict) -> Reply:
            try:
                return client.reply(messages, fields)
            except (TransientFailure, RequestRejected) as failure:
                raise GenerationError(f"{client.url}: {failure}") from None

        return ask

    return ServedModel(base_url.rstrip("/"), model, connect, concurrency, dict(extra_body or {}))
