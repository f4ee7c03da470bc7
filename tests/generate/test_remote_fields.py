"""A served model's `extra_body`: the server's own request fields, sent with every request and
recorded in the rows' generation_config."""

from __future__ import annotations

import pytest

from preftune.errors import ConfigError
from preftune.generate import generate
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
