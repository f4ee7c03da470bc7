"""Faults of an API judge, each against a real loopback server: an echoed key, a rejected
request, a refused key at concurrency 8, Retry-After, a pair half answered, a trickling
server; and the checks on judge options and sample rows."""

import json
import time
from email.utils import formatdate

import pytest

from preftune.cli import main
from preftune.evaluate.win_rate import win_rate
from preftune.judges.http_chat import (
    RETRY_AFTER_CAP,
    ChatClient,
    TransientFailure,
    retry_after_seconds,
)

from .test_openai_judge import answers_in, known_case, make_judge, prefers_good


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def judge_command(tmp_path, server, out, *options, pairs: int = 10):
    samples, baseline = (rows[:pairs] for rows in known_case())
    values = {
        "--judge": "openai",
        "--judge-model": "m",
        "--samples": write_jsonl(tmp_path / "samples.jsonl", samples),
        "--baseline": write_jsonl(tmp_path / "baseline.jsonl", baseline),
        "--base-url": server.base_url,
        "--out": str(out),
    }
    flags = [part for option in values.items() for part in option]
    return ["judge", *flags, *options]


def mentions(messages, number: int) -> bool:
    return f"answer {number}" in " ".join(answers_in(messages))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def test_an_echoed_api_key_reaches_no_file_and_no_terminal(
    tmp_path, chat_server, monkeypatch, capfd
):
    key = "sk-echo-4f1b2c3d4e5f60718293"
    monkeypatch.setenv("ECHO_JUDGE_KEY", key)
    refuse = {"on": False}

    def echo(messages, attempt):
        if refuse["on"]:
            return ("status", 401, json.dumps({"error": f"invalid api key {key}"}))
        if mentions(messages, 1):
            return ("status", 400, json.dumps({"error": f"bad request (key {key})"}))
        return f"Judged with key {key}. " + prefers_good(messages, attempt)

    server = chat_server(echo)
    out = tmp_path / "judged"
    command = judge_command(tmp_path, server, out, "--api-key-env", "ECHO_JUDGE_KEY")
    assert main(command) == 0  # the 400 is recorded as an error, the rest judged
    refuse["on"] = True
    assert main(command) == 2  # the rerun asks the errored pair again: 401
    captured = capfd.readouterr()
    assert "refused" in captured.err
    assert key not in captured.out and key not in captured.err
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {path.name for path in files} >= {"judgments.jsonl", "results.json"}
    for path in files:
        assert key not in path.read_text(), path.name
    assert "[REDACTED]" in (out / "judgments.jsonl").read_text()


def test_a_rejected_request_is_recorded_and_the_rest_go_on(tmp_path, chat_server):
    def reply(messages, attempt):
        if mentions(messages, 4):
            return ("status", 400, '{"error": "context length exceeded"}')
        return prefers_good(messages, attempt)

    server = chat_server(reply)
    samples, baseline = known_case()
    results = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert (results["n"], results["errors"]) == (9, 1)
    assert results["win_rate"] == pytest.approx((5 + 1) / 9)  # q4 was a win, now left out
    assert any("1 of 10 pairs ended in error" in w for w in results["warnings"])
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    (failed,) = [row for row in rows if row["winner"] == "error"]
    assert (
        failed["id"] == "q4"
        and 'HTTP 400: {"error": "context length exceeded"}' in (failed["raw"]["a_first"][0])
    )
    assert len(server.requests) == 20  # a rejected request is not retried


def test_a_refused_key_at_concurrency_8_keeps_every_answer_in_flight(tmp_path, chat_server, capfd):
    """q3's first order is refused after 1 s while the first orders of 7 other pairs are in
    flight (answered at 1.5 s): their answers are saved, their second orders never sent,
    q8 and q9 never started. The fixed rerun asks only the 13 orders not answered."""
    locked = {"on": True}

    def reply(messages, attempt):
        if not locked["on"]:
            return prefers_good(messages, attempt)
        if mentions(messages, 3):
            time.sleep(1.0)
            return ("status", 401, '{"error": "invalid api key"}')
        return ("late", 1.5, prefers_good(messages, attempt))

    server = chat_server(reply)
    out = tmp_path / "judged"
    command = judge_command(tmp_path, server, out, "--concurrency", "8")
    assert main(command) == 2
    (line,) = error_lines(capfd.readouterr().err)
    assert "refused" in line and "HTTP 401" in line and "rerun the same command" in line
    assert len(server.requests) == 8
    rows = [json.loads(row) for row in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and all(row["verdicts"][1] == "error" for row in rows)
    assert all(row["verdicts"][0] in ("a", "b", "tie") for row in rows)

    locked["on"] = False
    before = len(server.requests)
    assert main(command) == 0
    assert len(server.requests) - before == 13  # 7 second orders + 3 whole pairs
    results = json.loads((out / "results.json").read_text())
    assert (results["wins"], results["losses"], results["ties"]) == (6, 2, 2)


def test_a_pair_half_answered_is_completed_without_paying_twice(tmp_path, chat_server):
    broken = {"on": True}

    def reply(messages, attempt):
        first, _ = answers_in(messages)
        if broken["on"] and first == "good reply":  # q0's b-first order (baseline shown first)
            return ("status", 500)
        return prefers_good(messages, attempt)

    server = chat_server(reply)
    samples, baseline = known_case()
    samples, baseline = samples[6:7], baseline[6:7]  # one loss: "bad answer 6" vs "good reply"
    results = win_rate(samples, baseline, make_judge(server, max_retries=0), tmp_path)
    assert results["errors"] == 1 and len(server.requests) == 2
    broken["on"] = False
    results = win_rate(samples, baseline, make_judge(server, max_retries=0), tmp_path)
    assert results["losses"] == 1 and results["errors"] == 0
    assert len(server.requests) == 3  # only the failed order was asked again
    answered_first = json.loads((tmp_path / "judgments.jsonl").read_text().splitlines()[-1])
    assert answered_first["verdicts"] == ["b", "b"]


def test_a_connection_cut_mid_reply_is_retried(chat_server):
    server = chat_server(lambda messages, attempt: ("cut", "[[A]]") if attempt == 0 else "[[B]]")
    client = ChatClient(server.base_url, "m", max_retries=1, backoff=0.01, timeout=5)
    assert client.complete([{"role": "user", "content": "hi"}]) == "[[B]]"
    assert len(server.requests) == 2


@pytest.mark.parametrize("header", ["seconds", "date"])
def test_retry_after_is_honoured(chat_server, header):
    def value():
        return "1" if header == "seconds" else formatdate(time.time() + 2, usegmt=True)

    def reply(messages, attempt):
        if attempt == 0:
            return ("status", 429, '{"error": "slow down"}', {"Retry-After": value()})
        return "fine"

    server = chat_server(reply)
    client = ChatClient(server.base_url, "m", max_retries=2, backoff=0.01, timeout=5)
    assert client.complete([{"role": "user", "content": "hi"}]) == "fine"
    assert len(server.times) == 2 and server.times[1] - server.times[0] >= 0.9


def test_retry_after_values():
    from datetime import datetime, timezone

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:42 GMT", now=now) == 42.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0  # past
    assert retry_after_seconds("86400") == RETRY_AFTER_CAP
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize(
    "trickle", [("trickle", 0.1, "[[A]] " + "x" * 200), ("trickle-status", 0.1)]
)
def test_timeout_bounds_a_server_that_trickles_its_reply(tmp_path, chat_server, trickle):
    """The reply (or its status line) comes one byte per 0.1 s, 20 s in all; --timeout 1
    ends each request after 1 s: 2 s for a pair's two orders."""
    server = chat_server(lambda messages, attempt: trickle)
    client = ChatClient(server.base_url, "m", timeout=1, max_retries=0)
    started = time.monotonic()
    with pytest.raises(TransientFailure, match="no complete reply within 1 s"):
        client.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 1.3

    out = tmp_path / "judged"
    started = time.monotonic()
    command = judge_command(tmp_path, server, out, "--timeout", "1", "--max-retries", "0", pairs=1)
    assert main(command) == 0
    assert time.monotonic() - started < 3.0
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == 1 and results["n"] == 0
    row = json.loads((out / "judgments.jsonl").read_text())
    assert "no complete reply within 1 s" in row["raw"]["a_first"][0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-retries", "-1"), ("--timeout", "0"), ("--timeout", "nan"), ("--concurrency", "-3")],
)
def test_bad_judge_options_exit_2_naming_the_option(tmp_path, chat_server, capsys, option, value):
    server = chat_server(prefers_good)
    assert main(judge_command(tmp_path, server, tmp_path / "out", option, value)) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert option in line and value in line
    assert server.requests == []


def test_a_concurrency_that_is_not_a_number_names_the_option(tmp_path, chat_server, capsys):
    server = chat_server(prefers_good)
    with pytest.raises(SystemExit) as exit_:
        main(judge_command(tmp_path, server, tmp_path / "out", "--concurrency", "nan"))
    assert exit_.value.code == 2 and "--concurrency" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("which", "row", "field"),
    [
        ("samples", {"id": "q1", "prompt": "p"}, "response"),
        ("samples", {"prompt": "p", "response": "r"}, "id"),
        ("baseline", {"id": "q1", "prompt": "p"}, "response"),
        ("samples", {"id": "q1", "prompt": "p", "response": 7}, "response"),
    ],
)
def test_sample_rows_without_a_field_name_file_line_and_field(tmp_path, capsys, which, row, field):
    good = {"id": "q0", "prompt": "p", "response": "fine"}
    for name in ("samples", "baseline"):
        write_jsonl(tmp_path / f"{name}.jsonl", [good, {**good, "id": "q1"}])
    bad = json.dumps(good) + "\n\n" + json.dumps(row) + "\n"  # the bad row on line 3
    (tmp_path / f"{which}.jsonl").write_text(bad)
    command = ["judge", "--samples", str(tmp_path / "samples.jsonl"), "--baseline"]
    command += [str(tmp_path / "baseline.jsonl"), "--judge", "gold", "--gold", "vader-sentiment"]
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert f"{which}.jsonl:3, field '{field}'" in line
