"""A local model behind OpenAI's chat-completions API, so that any OpenAI client can use it
(`preftune serve`): `GET /v1/models` and `POST /v1/chat/completions`.

Answers are sampled by the same code as `preftune generate` (prompt rendering through the
tokenizer's chat template, `sample_batch`), so greedy answers are the local backend's token for
token. One request at a time (the standard library's HTTP server); no streaming. Request fields
read: messages, model (must be the served name when given), temperature (default 1, as in
OpenAI's API), top_p, top_k (vLLM's extension; 0 or -1 = off), max_tokens or
max_completion_tokens, seed, n (only 1). A bad request is a 400 naming the field, in OpenAI's
error shape.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import torch

from preftune.errors import ConfigError
from preftune.generate.prompts import render_prompt
from preftune.generate.sampling import (
    load_for_generation,
    pad_token_id,
    sample_batch,
    stop_token_ids,
)

MAX_BODY = 16 * 1024 * 1024  # bytes; a larger request is refused
FINISH_REASONS = {"eos": "stop", "length": "length"}  # ours -> OpenAI's


class BadRequest(Exception):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(body: dict, name: str, default, *, low: float, high: float = math.inf, whole=False):
    """`body[name]` (or `default` when absent or null), checked to lie in [low, high]."""
    value = body.get(name)
    if value is None:
        return default
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise BadRequest(f"'{name}' must be {kind} in [{low:g}, {high:g}], not {value!r}")
    return int(value) if whole else float(value)


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BadRequest(f"'messages[{index}]' must be {{role, content}} with text content")
        if message.get("role") not in ("system", "user", "assistant"):
            raise BadRequest(f"'messages[{index}].role' must be system, user or assistant")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class ChatModel:
    """A loaded model answering chat-completions request bodies."""

    def __init__(self, model, tokenizer, name: str, *, max_new_tokens: int = 512):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.eos_ids = stop_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(tokenizer, self.eos_ids)

    def complete(self, body: dict) -> dict:
        """The chat.completion object answering `body` (BadRequest when it cannot)."""
        if body.get("model") not in (None, self.name):
            raise BadRequest(f"model '{body['model']}' is not served here ('{self.name}' is)", 404)
        if body.get("stream"):
            raise BadRequest("'stream' is not supported: ask without streaming")
        if body.get("n", 1) != 1:
            raise BadRequest("'n' must be 1: send one request per sample")
        prompt_ids = render_prompt(self.tokenizer, _messages(body))
        limit = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        config = {
            "max_new_tokens": _number(body, limit, self.max_new_tokens, low=1, whole=True),
            "temperature": _number(body, "temperature", 1.0, low=0, high=2),
            "top_p": _number(body, "top_p", 1.0, low=0, high=1),
            "top_k": max(_number(body, "top_k", 0, low=-1, whole=True), 0),
        }
        seed = _number(body, "seed", None, low=0, high=2**63 - 1, whole=True)
        if seed is not None:
            torch.manual_seed(seed)
        (result,) = sample_batch(self.model, [prompt_ids], self.eos_ids, self.pad_id, config)
        text = self.tokenizer.decode(result["token_ids"], skip_special_tokens=True)
        tokens = len(result["token_ids"])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": FINISH_REASONS[result["finish_reason"]],
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": tokens,
                "total_tokens": len(prompt_ids) + tokens,
            },
        }

    def models(self) -> dict:
        return {
            "object": "list",
            "data": [{"id": self.name, "object": "model", "created": 0, "owned_by": "preftune"}],
        }


def _handler(chat: ChatModel, log) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, chat.models())
            else:
                self._error(404, f"no route {self.path}: GET /v1/models")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self.rfile.read(min(length, MAX_BODY))
                return self._error(404, f"no route {self.path}: POST /v1/chat/completions")
            if length > MAX_BODY:
                self.close_connection = True
                return self._error(413, f"the request body is over {MAX_BODY} bytes")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
                if not isinstance(body, dict):
                    raise BadRequest("the request body must be a JSON object")
                self._send(200, chat.complete(body))
            except json.JSONDecodeError as error:
                self._error(400, f"the request body is not JSON: {error.msg}")
            except BadRequest as error:
                self._error(error.status, str(error))
            except Exception as error:  # the model failed: answer, and keep serving
                self._error(500, f"{type(error).__name__}: {' '.join(str(error).split())}")

        def log_message(self, format, *args):
            log(f"{self.address_string()} {format % args}")

    return Handler


class ChatServer(HTTPServer):
    """The standard library's HTTP server (one request at a time) over a `ChatModel`."""

    def __init__(self, address: tuple[str, int], chat: ChatModel, log):
        self.chat = chat
        super().__init__(address, _handler(chat, log))


def make_server(
    model_or_path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    dtype: str = "fp32",
    max_new_tokens: int = 512,
    log=lambda line: None,
) -> ChatServer:
    """An HTTP server (not yet serving) over `model_or_path` (a path, Hub id, run folder or
    loaded (model, tokenizer) pair), answering as model `name` (default: the label rows get).
    `port` 0 picks a free one: `server.server_address` tells which."""
    model, tokenizer, label = load_for_generation(model_or_path, dtype)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"model '{label}': its tokenizer has no chat template, which a chat-completions "
            "server needs; serve a chat model, or train with data.chat_template or data.layout"
        )
    chat = ChatModel(model, tokenizer, name or label, max_new_tokens=max_new_tokens)
    return ChatServer((host, port), chat, log)
