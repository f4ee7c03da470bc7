"""A minimal client for OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server),
standard library only: timeouts, retries with exponential backoff on network errors,
timeouts, 429 / 5xx answers and malformed bodies; other 4xx answers stop the run.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request

from preftune.judges.base import JudgeError

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class TransientFailure(Exception):
    """Every retry failed; the message says how the last attempt went wrong."""


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
        self.api_key = os.environ.get(api_key_env)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def _request(self, messages: list[dict]) -> str:
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
            reply = json.loads(response.read().decode("utf-8"))
        content = reply["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("the reply's message content is not text")
        return content

    def complete(self, messages: list[dict]) -> str:
        """The reply's text; raises TransientFailure after the last retry, JudgeError at once
        when the server refuses the request (bad key, unknown model, malformed request)."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._request(messages)
            except urllib.error.HTTPError as error:
                detail = error.read().decode("utf-8", "replace")[:300]
                if error.code not in RETRYABLE_STATUS:
                    raise JudgeError(f"{self.url} answered HTTP {error.code}: {detail}") from None
                failure = f"HTTP {error.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                failure = f"{type(error).__name__}: {error}"
            except (ValueError, KeyError, IndexError, TypeError) as error:
                failure = f"malformed reply ({type(error).__name__}: {error})"
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                time.sleep(delay * (0.5 + random.random() / 2))
        raise TransientFailure(f"{self.max_retries + 1} attempts failed; last: {failure}")
