"""Shared fixtures: a tiny random Llama-style model and tokenizer (see `preftune.testing`),
and `chat_server`, a real chat-completions server on 127.0.0.1 for judge tests.

`chat_server(decide)` starts one; `decide(messages, attempt)` returns either the reply text
(str), or ("reply", body) for a whole completion body (tool calls, logprobs), or one of these
to misbehave:
  ("status", code[, body[, headers]])  an error answer (headers: a dict, e.g. Retry-After)
  ("sleep", seconds)                   wait, then an empty JSON object
  ("late", seconds, text)              wait, then the reply text
  ("garbage", bytes)                   a body that is not a reply
  ("trickle", seconds, text)           the reply's headers at once, then one byte per `seconds`
  ("trickle-status", seconds)          the status line itself, one byte per `seconds`
  ("cut", text)                        half the reply, then the connection closes
`attempt` counts the requests seen so far with the same messages (0 for the first), so a test
can fail the first try and answer the second. Every request body is kept in
`server.requests`, the time.monotonic() it arrived in `server.times`.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from preftune.testing import build_tiny_model, build_tiny_tokenizer, save_tiny_model

# trackio reads its store's folder once, when first imported (by whichever test loads it): set
# it for the whole session, so no test writes into the user's ~/.cache/huggingface/trackio.
os.environ.setdefault("TRACKIO_DIR", tempfile.mkdtemp(prefix="preftune-tests-trackio-"))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    return build_tiny_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def reply_body(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


class ChatServer:
    def __init__(self, decide):
        self.decide = decide
        self.requests: list[dict] = []
        self.times: list[float] = []
        self.attempts: Counter = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = json.dumps(body["messages"])
                with server.lock:
                    server.requests.append(body)
                    server.times.append(time.monotonic())
                    attempt = server.attempts[key]
                    server.attempts[key] += 1
                action = server.decide(body["messages"], attempt)
                if isinstance(action, str):
                    self._send(200, reply_body(action))
                elif action[0] == "reply":
                    self._send(200, json.dumps(action[1]).encode())
                elif action[0] == "status":
                    body = action[2] if len(action) > 2 else '{"error": "scripted failure"}'
                    self._send(action[1], body.encode(), action[3] if len(action) > 3 else {})
                elif action[0] == "sleep":
                    time.sleep(action[1])
                    self._send(200, b"{}")
                elif action[0] == "late":
                    time.sleep(action[1])
                    self._send(200, reply_body(action[2]))
                elif action[0] == "garbage":
                    self._send(200, action[1])
                elif action[0] == "trickle":
                    self._send(200, reply_body(action[2]), pause=action[1])
                elif action[0] == "cut":
                    payload = reply_body(action[1])
                    self._send(200, payload[: len(payload) // 2], length=len(payload))
                    self.close_connection = True
                elif action[0] == "trickle-status":
                    self._trickle(b"HTTP/1.1 200 OK" * 100, action[1])

            def _trickle(self, payload, pause):
                try:
                    for byte in payload:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:
                    pass  # the client gave up (timeout)

            def _send(self, code, payload, headers=None, pause=0.0, length=None):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(length or len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    if pause:
                        self._trickle(payload, pause)
                    else:
                        self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def chat_server():
    servers = []

    def start(decide):
        servers.append(ChatServer(decide))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
