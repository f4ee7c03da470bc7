"""Benchmark answers from a served model: MT-Bench's two turns asked over HTTP are the local
backend's greedy answers (turn 2 sees the served turn-1 answer)."""

from __future__ import annotations

import threading

from preftune.evaluate.mtbench import generate_answers
from preftune.generate.server import make_server
from preftune.judges.http_chat import served_model


def test_mtbench_answers_from_a_served_model_are_the_local_ones(
    tmp_path, tiny_model, tiny_tokenizer
):
    server = make_server((tiny_model, tiny_tokenizer), port=0, name="tiny")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        served = generate_answers(
            served_model(f"http://{host}:{port}/v1", "tiny", concurrency=2),
            tmp_path / "served",
            limit=3,
            max_new_tokens=4,
        )
    finally:
        server.shutdown()
        server.server_close()
    local = generate_answers(
        (tiny_model, tiny_tokenizer), tmp_path / "local", limit=3, max_new_tokens=4
    )
    assert [a["answers"] for a in served] == [a["answers"] for a in local]
    assert [a["id"] for a in served] == ["81", "82", "83"]
    assert {a["model"] for a in served} == {"tiny"}
