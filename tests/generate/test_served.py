"""`preftune serve` and the `openai` generation backend, end to end on 127.0.0.1: a served
tiny model answers greedily exactly as the local backend does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from preftune.cli import main
from preftune.errors import ConfigError
from preftune.generate import generate
from preftune.generate.server import make_server
from preftune.io import read_jsonl
from preftune.judges.http_chat import served_model
from preftune.testing import build_tiny_model, build_tiny_tokenizer

SRC = str(Path(__file__).parents[2] / "src")
PROMPTS = [
    {"id": "p1", "prompt": "write a short review of a film about robots"},
    {"id": "p2", "prompt": "summarize the post: my cat knocks cups"},
    {"id": "p3", "prompt": [{"role": "user", "content": "how do I bake bread?"}]},
]


@pytest.fixture(scope="module")
def lively_model_dir(tmp_path_factory):
    """The tiny model with weights of std 0.3: its greedy answers differ from prompt to prompt
    (at the default init every answer is the same repeated newline, which would prove little)."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    folder = tmp_path_factory.mktemp("lively")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def served_cli(lively_model_dir):
    """`preftune serve` on the tiny model, in its own process, on a free port."""
    command = [sys.executable, "-m", "preftune.cli", "serve", str(lively_model_dir), "--port", "0"]
    command += ["--served-model-name", "tiny"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = process.stdout.readline().decode()
        assert line.startswith("serving 'tiny' on http://127.0.0.1:"), process.stderr.read()
        yield line.split()[3]  # http://127.0.0.1:PORT/v1
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_greedy_answers_through_the_server_are_the_local_ones(
    tmp_path, lively_model_dir, served_cli
):
    local = generate(lively_model_dir, PROMPTS, tmp_path / "local.jsonl", max_new_tokens=12)
    assert len({row["response"] for row in local}) == 3
    out = tmp_path / "served.jsonl"
    argv = ["generate", "--backend", "openai", "--base-url", served_cli, "--served-model", "tiny"]
    argv += ["--prompts", str(_prompts_file(tmp_path)), "--out", str(out), "--max-new-tokens", "12"]
    assert main(argv) == 0
    by_id = {row["id"]: row for row in read_jsonl(out)}  # written as they arrived
    served = [by_id[prompt["id"]] for prompt in PROMPTS]
    assert len(by_id) == 3
    for mine, theirs in zip(served, local, strict=True):
        assert mine["response"] == theirs["response"]
        assert mine["num_tokens"] == theirs["num_tokens"]
        assert mine["finish_reason"] == theirs["finish_reason"]
        assert mine["model"] == "tiny"
        config = mine["generation_config"]
        assert config["backend"] == "openai" and config["base_url"] == served_cli
        assert {k: v for k, v in config.items() if k not in ("backend", "base_url")} == theirs[
            "generation_config"
        ]


def test_a_finished_file_resumes_without_asking_the_server(tmp_path):
    """Every row is on disk: the rerun returns them and never connects (nothing listens)."""
    url = f"http://127.0.0.1:{_free_port()}/v1"
    out = tmp_path / "s.jsonl"
    config = {"max_new_tokens": 4, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "n": 1}
    config |= {"seed": 0, "chat_template": True, "backend": "openai", "base_url": url}
    rows = [
        {"id": p["id"], "prompt": p["prompt"], "response": "kept", "model": "m",
         "generation_config": config, "finish_reason": "eos", "num_tokens": 1}
        for p in PROMPTS
    ]  # fmt: skip
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    again = generate(served_model(url, "m", max_retries=0), PROMPTS, out, max_new_tokens=4)
    assert [row["response"] for row in again] == ["kept"] * 3


def test_a_server_that_never_answers_stops_the_run_in_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    argv = ["generate", "--backend", "openai", "--base-url", url, "--served-model", "m"]
    argv += ["--prompts", str(_prompts_file(tmp_path)), "--out", str(tmp_path / "s.jsonl")]
    assert main([*argv, "--max-retries", "0", "--concurrency", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("preftune")]  # not tqdm's
    assert line.startswith("preftune generate: error: prompt 'p1': http://127.0.0.1:")
    assert "1 attempts failed" in line and line.endswith("ask only for the rest")
    assert read_jsonl(tmp_path / "s.jsonl") == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--backend openai needs --base-url and --served-model"),
        (["--base-url", "http://x/v1"], "--backend openai needs --served-model"),
        (["--base-url", "http://x/v1", "--served-model", "m", "--no-chat-template"],
         "plain-text prompts need the local backend"),
    ],
)  # fmt: skip
def test_openai_backend_options_are_checked(tmp_path, capsys, extra, message):
    argv = ["generate", "--backend", "openai", "--prompts", str(_prompts_file(tmp_path))]
    assert main([*argv, "--out", str(tmp_path / "s.jsonl"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_local_backend_still_needs_a_model(tmp_path, capsys):
    argv = ["generate", "--prompts", str(_prompts_file(tmp_path)), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--model is required" in capsys.readouterr().err


@pytest.fixture()
def in_process_server(tiny_model, tiny_tokenizer):
    server = make_server((tiny_model, tiny_tokenizer), port=0, name="tiny", max_new_tokens=3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}/v1"
    server.shutdown()
    server.server_close()


def _post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


HELLO = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"messages": HELLO, "temperature": -1}, 400, "'temperature'"),
        ({"messages": HELLO, "max_tokens": 2.5}, 400, "'max_tokens'"),
        ({"messages": HELLO, "top_p": "high"}, 400, "'top_p'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "'messages[0].role'"),
        ({"messages": []}, 400, "'messages'"),
        ({"messages": HELLO, "n": 2}, 400, "'n'"),
        ({"messages": HELLO, "stream": True}, 400, "'stream'"),
        ({"messages": HELLO, "model": "gpt-4"}, 404, "model 'gpt-4'"),
        (b"{not json", 400, "not JSON"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(in_process_server, body, status, named):
    code, answer = _post(in_process_server + "/chat/completions", body)
    assert code == status
    assert named in answer["error"]["message"]


def test_models_and_a_completion_in_openai_shape(in_process_server):
    with urllib.request.urlopen(in_process_server + "/models", timeout=30) as response:
        assert [m["id"] for m in json.loads(response.read())["data"]] == ["tiny"]
    code, answer = _post(in_process_server + "/chat/completions", {"messages": HELLO, "seed": 1})
    assert code == 200 and answer["model"] == "tiny"
    usage = answer["usage"]
    assert 1 <= usage["completion_tokens"] <= 3  # the server's max_new_tokens when none is asked
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["choices"][0]["message"]["role"] == "assistant"


def test_serve_refuses_a_tokenizer_without_a_chat_template(tiny_model):
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="no chat template.*data.chat_template or data.layout"):
        make_server((tiny_model, tokenizer), port=0)


def test_serve_refuses_a_missing_model(capsys):
    assert main(["serve", "./no-such-model", "--port", "0"]) == 2
    assert "no such folder" in capsys.readouterr().err


def _prompts_file(folder: Path) -> Path:
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return path


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
