"""A real chat-completions server on 127.0.0.1 for judge tests.

`chat_server(decide)` starts one; `decide(messages, attempt)` returns either the reply text
(str), ("reply", body) for a whole completion body (tool calls, logprobs), or ("status",
code), ("sleep", seconds) or ("garbage", bytes) to misbehave. `attempt`
counts the requests seen so far with the same messages (0 for the first), so a test can fail
the first try and answer the second. Every request body is kept in `server.requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ChatServer:
    def __init__(self, decide):
        self.decide = decide
        self.requests: list[dict] = []
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
                    attempt = server.attempts[key]
                    server.attempts[key] += 1
                action = server.decide(body["messages"], attempt)
                if isinstance(action, str):
                    reply = {"choices": [{"message": {"role": "assistant", "content": action}}]}
                    self._send(200, json.dumps(reply).encode())
                elif action[0] == "reply":
                    self._send(200, json.dumps(action[1]).encode())
                elif action[0] == "status":
                    self._send(action[1], b'{"error": "scripted failure"}')
                elif action[0] == "sleep":
                    time.sleep(action[1])
                    self._send(200, b"{}")
                elif action[0] == "garbage":
                    self._send(200, action[1])

            def _send(self, code, payload):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
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
