"""A served model's `extra_body`: the server's own request fields, sent with every request and
recorded in the rows' generation_config."""

from __future__ import annotations

import pytest

from preftune.cli import main
from preftune.errors import ConfigError
from preftune.generate import generate
from preftune.io import read_jsonl
from preftune.judges.http_chat import served_model


def test_extra_fields_go_with_every_request_and_into_the_rows(tmp_path, chat_server):
    server = chat_server(lambda messages, attempt: "hi")
    served = served_model(server.base_url, "m", extra_body={"repeat_penalty": 1.0, "min_p": 0})
    prompts = [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two"}]
    rows = generate(served, prompts, tmp_path / "s.jsonl", max_new_tokens=5, temperature=0.0)
    assert [(r["repeat_penalty"], r["min_p"], r["max_tokens"]) for r in server.requests] == [
        (1.0, 0, 5)
    ] * 2
    assert {str(r["generation_config"]["extra_body"]) for r in rows} == {
        "{'repeat_penalty': 1.0, 'min_p': 0}"
    }
    plain = served_model(server.base_url, "m")
    with pytest.raises(ConfigError, match="other generation settings"):
        generate(plain, prompts, tmp_path / "s.jsonl", max_new_tokens=5)


def test_extra_fields_may_not_override_the_generation_settings():
    with pytest.raises(ConfigError, match="extra_body.max_tokens: set by the generation settings"):
        served_model("http://127.0.0.1:9/v1", "m", extra_body={"max_tokens": 3})


def _generate_argv(tmp_path, *extra):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n')
    return ["generate", "--prompts", str(prompts), "--out", str(tmp_path / "s.jsonl"), *extra]


def test_the_cli_sends_extra_body_with_every_request(tmp_path, chat_server):
    server = chat_server(lambda messages, attempt: "hi")
    served = ["--backend", "openai", "--base-url", server.base_url, "--served-model", "m"]
    extra = ["--extra-body", '{"repeat_penalty": 1.0, "grammar": {"root": "x"}}']
    assert main(_generate_argv(tmp_path, *served, *extra, "--max-new-tokens", "5")) == 0
    sent = [(r["repeat_penalty"], r["grammar"], r["max_tokens"]) for r in server.requests]
    assert sent == [(1.0, {"root": "x"}, 5)] * 2
    rows = read_jsonl(tmp_path / "s.jsonl")
    assert [row["generation_config"]["extra_body"] for row in rows] == [
        {"repeat_penalty": 1.0, "grammar": {"root": "x"}}
    ] * 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--extra-body", "[1, 2]"], "--extra-body: expected a JSON object ({...}), got a list"),
        (["--extra-body", '"x"'], "--extra-body: expected a JSON object ({...}), got a str"),
        (["--extra-body", "{repeat_penalty: 1}"], "--extra-body: not valid JSON (Expecting"),
        (["--extra-body", '{"top_p": 0.5}'],
         "--extra-body.top_p: set by the generation settings, not by --extra-body"),
    ],
)  # fmt: skip
def test_extra_body_that_is_not_a_json_object_exits_2_naming_it(tmp_path, capsys, extra, message):
    served = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--served-model", "m"]
    assert main(_generate_argv(tmp_path, *served, *extra)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"preftune generate: error: {message}")
    assert not (tmp_path / "s.jsonl").exists()


def test_extra_body_is_refused_with_the_local_backend(tmp_path, capsys, tiny_model_dir):
    local = ["--model", str(tiny_model_dir), "--extra-body", '{"repeat_penalty": 1.0}']
    assert main(_generate_argv(tmp_path, *local)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "preftune generate: error: --extra-body: a server's request fields; it needs "
        "--backend openai"
    )
