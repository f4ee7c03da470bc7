"""A minimal client for OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server),
standard library only.

- Network errors, timeouts, 408 / 409 / 429 / 5xx answers and malformed bodies are retried
  with jittered exponential backoff; a `Retry-After` header (seconds or an HTTP date) sets
  the wait instead, capped at `RETRY_AFTER_CAP` seconds. The last failure is a
  `TransientFailure`.
- `timeout` bounds a whole request, not one socket read: reading stops once `timeout`
  seconds have passed since the request was sent, so a server that trickles its reply byte
  by byte holds a request for at most about twice `timeout` (one read may begin just before
  the deadline and wait `timeout` itself).
- 401 / 403 (the key is refused): `KeyRefused`, and every later request of this client fails
  the same way without being sent, so a run stops paying at once.
- Any other 4xx: `RequestRejected` for that one request (asking again would not help).
- The API key is registered with `preftune.io.register_secret` and every error message is
  redacted, so a server that echoes the key does not leak it into files or the terminal.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from preftune.io import redact, register_secret
from preftune.judges.base import JudgeError

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
AUTH_STATUS = {401, 403}
RETRY_AFTER_CAP = 120.0  # seconds; a longer Retry-After is waited this long, then asked again
ERROR_BODY_LIMIT = 4096  # bytes of an error body kept for the message


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


def read_within(stream, deadline: float, *, limit: int | None = None) -> bytes:
    """Read `stream` to its end (or `limit` bytes), raising TimeoutError once `deadline`
    (time.monotonic()) has passed: each read returns what has arrived, so a trickling server
    is noticed between reads."""
    read = getattr(stream, "read1", stream.read)
    chunks, size = [], 0
    while limit is None or size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError("the reply did not arrive in time (timeout)")
        chunk = read(65536 if limit is None else min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _one_line(text: str, limit: int = 300) -> str:
    return redact(" ".join(text.split()))[:limit]


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

    def _request(self, messages: list[dict], deadline: float) -> str:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(read_within(response, deadline).decode("utf-8"))
        content = reply["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("the reply's message content is not text")
        return content

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
        for attempt in range(self.max_retries + 1):
            if self.refusal is not None:
                raise KeyRefused(self.refusal)
            deadline = time.monotonic() + self.timeout
            wait = None
            try:
                return self._request(messages, deadline)
            except urllib.error.HTTPError as error:
                try:
                    body = read_within(error, deadline, limit=ERROR_BODY_LIMIT)
                except (OSError, AttributeError, ValueError):  # no body, or it timed out
                    body = b""
                detail = _one_line(body.decode("utf-8", "replace"))
                if error.code in AUTH_STATUS:
                    raise self._refuse(error.code, detail) from None
                if error.code not in RETRYABLE_STATUS:
                    raise RequestRejected(f"HTTP {error.code}: {detail}") from None
                failure = f"HTTP {error.code}: {detail}"
                wait = retry_after_seconds(error.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                failure = f"{type(error).__name__}: {_one_line(str(error))}"
            except (ValueError, KeyError, IndexError, TypeError) as error:
                failure = f"malformed reply ({type(error).__name__}: {_one_line(str(error))})"
            if attempt < self.max_retries:
                if wait is None:
                    delay = min(self.max_backoff, self.backoff * 2**attempt)
                    wait = delay * (0.5 + random.random() / 2)
                time.sleep(wait)
        raise TransientFailure(f"{self.max_retries + 1} attempts failed; last: {failure}")
