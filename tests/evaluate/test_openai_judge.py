import json
import re

import pytest

from preftune.evaluate.win_rate import win_rate
from preftune.judges import JudgeError, build_judge
from preftune.judges.http_chat import ChatClient
from preftune.judges.openai_judge import OpenAIJudge


def answers_in(messages) -> tuple[str, str]:
    """The two answers shown to an MT-Bench pair-v2 judge, in slot order (A, B)."""
    text = messages[-1]["content"]
    a = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End of Assistant A", text, re.S)
    b = re.search(r"Assistant B's Answer\]\n(.*?)\n\[The End of Assistant B", text, re.S)
    return a.group(1), b.group(1)


def prefers_good(messages, attempt):
    """A fair judge: the answer containing "good" wins; both or neither is a tie."""
    first, second = answers_in(messages)
    first_good, second_good = "good" in first, "good" in second
    if first_good == second_good:
        return "Both are alike. [[C]]"
    return "Explanation... [[A]]" if first_good else "Explanation... [[B]]"


def known_case():
    """10 prompts: 6 wins, 2 losses, 2 ties for the samples -> win rate (6 + 1) / 10."""
    kinds = ["win"] * 6 + ["loss"] * 2 + ["tie"] * 2
    answer = {"win": ("good", "bad"), "loss": ("bad", "good"), "tie": ("good", "good")}
    samples, baseline = [], []
    for i, kind in enumerate(kinds):
        mine, theirs = answer[kind]
        samples.append({"id": f"q{i}", "prompt": f"question {i}", "response": f"{mine} answer {i}"})
        baseline.append({"id": f"q{i}", "prompt": f"question {i}", "response": f"{theirs} reply"})
    return samples, baseline


def make_judge(server, **client_options):
    options = {"timeout": 2.0, "max_retries": 3, "backoff": 0.01, **client_options}
    return OpenAIJudge(ChatClient(server.base_url, "judge-model", **options), concurrency=4)


def test_exact_win_rate_on_a_known_case(tmp_path, chat_server):
    server = chat_server(prefers_good)
    samples, baseline = known_case()
    results = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert (results["wins"], results["losses"], results["ties"]) == (6, 2, 2)
    assert results["win_rate"] == pytest.approx(0.7)
    assert results["n"] == 10 and results["errors"] == 0
    assert len(server.requests) == 20  # both orders, once each
    assert results["position_bias"] == {
        "order_agreement": 1.0,
        "first_position_share": 0.5,
        "decisions": 10,
    }
    # 10 prompts < 20: the interval is flagged; a fair judge raises no position-bias warning
    assert [w.split(":")[0] for w in results["warnings"]] == ["only 10 prompts decided"]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["win_rate"] == pytest.approx(0.7)


def test_failures_timeouts_and_garbage_are_retried_and_nothing_is_lost(tmp_path, chat_server):
    def flaky(messages, attempt):
        """The first try of each a-first question fails in turn: 500, timeout, garbage body,
        reply without a verdict. (In the b-first order slot A holds the unnumbered baseline.)"""
        first, _ = answers_in(messages)
        number = int(first.split()[-1]) if first.split()[-1].isdigit() else -1
        misbehaviour = [("status", 500), ("sleep", 1.0), ("garbage", b"<html>oops"), "no verdict"]
        if attempt == 0 and number >= 0:
            return misbehaviour[number % len(misbehaviour)]
        return prefers_good(messages, attempt)

    server = chat_server(flaky)
    samples, baseline = known_case()
    judge = make_judge(server, timeout=0.3)
    results = win_rate(samples, baseline, judge, tmp_path)
    assert (results["wins"], results["losses"], results["ties"], results["errors"]) == (6, 2, 2, 0)
    assert results["win_rate"] == pytest.approx(0.7)
    assert len(server.requests) == 30  # 20 asks + one failed first try for each of 10 orders
    lines = (tmp_path / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 10
    raw_with_retry = [json.loads(line)["raw"]["a_first"] for line in lines]
    # q3 and q7 first answered without a verdict: asked again, both replies kept
    assert sum(len(raws) == 2 for raws in raw_with_retry) == 2


def test_rerun_pays_nothing_twice(tmp_path, chat_server):
    server = chat_server(prefers_good)
    samples, baseline = known_case()
    first = win_rate(samples, baseline, make_judge(server), tmp_path)
    requests_after_first = len(server.requests)
    second = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert len(server.requests) == requests_after_first
    assert second["cache_hits"] == 10 and first["cache_hits"] == 0
    assert second["win_rate"] == first["win_rate"]


def test_unparseable_verdict_is_an_error_not_a_vote_and_is_retried_on_rerun(tmp_path, chat_server):
    stubborn = {"on": True}

    def judge_reply(messages, attempt):
        if stubborn["on"] and "answer 0" in " ".join(answers_in(messages)):
            return "I refuse to pick."
        return prefers_good(messages, attempt)

    server = chat_server(judge_reply)
    samples, baseline = known_case()
    results = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert results["errors"] == 1 and results["n"] == 9
    assert results["win_rate"] == pytest.approx((5 + 1) / 9)
    stubborn["on"] = False
    before = len(server.requests)
    results = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert results["errors"] == 0 and results["win_rate"] == pytest.approx(0.7)
    assert len(server.requests) - before == 2  # only the errored pair, both orders


def test_position_biased_judge_gives_ties(tmp_path, chat_server):
    server = chat_server(lambda messages, attempt: "[[A]]")
    samples, baseline = known_case()
    results = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert results["ties"] == 10 and results["win_rate"] == pytest.approx(0.5)
    assert results["position_bias"] == {
        "order_agreement": 0.0,
        "first_position_share": 1.0,
        "decisions": 10,
    }
    assert any(w.startswith("position bias") for w in results["warnings"])


def test_refused_request_stops_the_run_and_keeps_finished_decisions(tmp_path, chat_server):
    locked = {"on": True}

    def reply(messages, attempt):
        if locked["on"] and "answer 7" in " ".join(answers_in(messages)):
            return ("status", 401)
        return prefers_good(messages, attempt)

    server = chat_server(reply)
    samples, baseline = known_case()
    judge = make_judge(server)
    judge.concurrency = 1  # a deterministic order: q0..q6 finish before q7 fails
    with pytest.raises(JudgeError, match="401"):
        win_rate(samples, baseline, judge, tmp_path)
    assert len((tmp_path / "judgments.jsonl").read_text().splitlines()) == 7
    locked["on"] = False
    before = len(server.requests)
    results = win_rate(samples, baseline, make_judge(server), tmp_path)
    assert results["cache_hits"] == 7 and results["win_rate"] == pytest.approx(0.7)
    assert len(server.requests) - before == 6


def test_single_answer_rating(chat_server):
    ratings = iter(["no rating here", "Rating: [[7]]"])
    server = chat_server(lambda messages, attempt: next(ratings))
    judge = make_judge(server)
    assert judge.score("What is 2+2?", "4") == 7.0
    assert len(server.requests) == 2
    assert "[[rating]]" in server.requests[0]["messages"][-1]["content"]


def test_api_key_comes_from_the_named_environment_variable(monkeypatch, chat_server):
    server = chat_server(lambda messages, attempt: "[[C]]")
    monkeypatch.setenv("MY_JUDGE_KEY", "sekret")
    client = ChatClient(server.base_url, "m", api_key_env="MY_JUDGE_KEY")
    assert client.api_key == "sekret"
    judge = build_judge("openai", model="m", base_url=server.base_url, prompt="dpo-hh")
    assert judge.compare("q", "x", "y").winner == "error"  # "[[C]]" is not the HH format


QUESTION = [{"role": "user", "content": "Which number?"}]


def number(text: str) -> int | None:
    found = re.search(r"\d+", text)
    return int(found.group()) if found else None


def test_ask_sends_the_messages_and_asks_again_until_the_reply_parses(chat_server):
    replies = iter(["no number", "still none", "it is 42"])
    server = chat_server(lambda messages, attempt: next(replies))
    found, raws = make_judge(server).ask(QUESTION, number)  # parse_retries 2: 3 replies at most
    assert found == 42 and raws == ["no number", "still none", "it is 42"]
    assert server.requests[0]["messages"] == QUESTION


def test_ask_gives_none_after_the_parse_retries_or_a_rejected_request(chat_server):
    stubborn = chat_server(lambda messages, attempt: "no number")
    assert make_judge(stubborn).ask(QUESTION, number) == (None, ["no number"] * 3)
    rejecting = chat_server(lambda messages, attempt: ("status", 400))
    found, raws = make_judge(rejecting).ask(QUESTION, number)
    assert found is None and len(raws) == 1 and raws[0].startswith("<request failed")
    assert len(rejecting.requests) == 1  # a rejected request is not asked again
