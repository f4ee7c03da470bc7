"""AlpacaEval through the alpaca-eval package against the loopback chat server: the
annotators' real requests (logprobs of one token; a forced function call), the package's
win rate and standard error, LC where defined, caching, retries and bad input."""

import json
import math
import re

import pytest
from scipy import stats

pytest.importorskip(
    "alpaca_eval.annotators",
    reason="alpaca-eval is not importable: pip install 'preftune[alpacaeval]'",
)

from preftune.errors import ConfigError, DataError  # noqa: E402
from preftune.evaluate.benchmarks.alpaca_eval import (  # noqa: E402
    alpaca_eval,
    evaluation_set,
    outputs_from_samples,
)
from preftune.judges.base import JudgeError  # noqa: E402
from preftune.judges.http_chat import ChatClient  # noqa: E402

KINDS = ["win"] * 6 + ["loss"] * 2 + ["tie"] * 2
ANSWERS = {"win": ("good", "bad"), "loss": ("bad", "good"), "tie": ("good", "good")}


def write_set(folder, kinds=KINDS, *, with_index=False):
    """A reference file and preftune samples: answers holding "good" beat "bad" ones."""
    reference, samples = [], []
    for i, kind in enumerate(kinds):
        mine, theirs = ANSWERS[kind]
        row = {"instruction": f"task {i}", "output": f"{theirs} reference {i}", "generator": "ref"}
        reference.append({**row, "index": i} if with_index else row)
        samples.append({"id": f"q{i}", "prompt": f"task {i}", "response": f"{mine} answer {i}"})
    (folder / "reference.json").write_text(json.dumps(reference))
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return folder / "reference.json", folder / "samples.jsonl"


def shown_outputs(messages):
    """The outputs shown as model "m" and model "M" in an AlpacaEval prompt."""
    text = messages[-1]["content"]
    found = re.findall(
        r'"(?:model_identifier|model)": "(m|M)",\s*"output": """(.*?)"""', text, re.S
    )
    return dict(found)["m"], dict(found)["M"]


def completion(message=None, logprobs=None):
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "judge",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": None, **(message or {})},
                "logprobs": logprobs,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }


def p_first_better(messages):
    first, second = shown_outputs(messages)
    return {(True, False): 0.9, (False, True): 0.1}.get(("good" in first, "good" in second), 0.5)


def logprob_judge(messages, attempt):
    """weighted_alpaca_eval_gpt4_turbo: one token, its top logprobs over "m" / "M"."""
    p = p_first_better(messages)
    top = [{"token": "m", "logprob": math.log(p)}, {"token": "M", "logprob": math.log(1 - p)}]
    token = top[0] if p >= 0.5 else top[1]
    content = [{**token, "bytes": None, "top_logprobs": [{**t, "bytes": None} for t in top]}]
    return ("reply", completion({"content": token["token"]}, {"content": content}))


def function_judge(messages, attempt):
    """alpaca_eval_gpt4_turbo_fn: a make_partial_leaderboard tool call ranking m and M."""
    best = "m" if p_first_better(messages) > 0.5 else "M"
    ranking = [{"model": best, "rank": 1}, {"model": "mM".replace(best, ""), "rank": 2}]
    call = {
        "id": "call",
        "type": "function",
        "function": {
            "name": "make_partial_leaderboard",
            "arguments": json.dumps({"ordered_models": ranking}),
        },
    }
    return ("reply", completion({"tool_calls": [call]}))


def run(folder, server, **options):
    reference, samples = folder / "reference.json", folder / "samples.jsonl"
    evaluation = evaluation_set(reference)
    client_options = {k: options.pop(k) for k in ("timeout", "max_retries") if k in options}
    client = ChatClient(server.base_url, "judge", **{"timeout": 2.0, **client_options})
    outputs = outputs_from_samples(samples, evaluation)
    return alpaca_eval(outputs, evaluation, folder / "out", client, **options)


def test_weighted_annotator_uses_one_token_logprobs_and_the_packages_win_rate(
    tmp_path, chat_server
):
    write_set(tmp_path)
    server = chat_server(logprob_judge)
    results = run(tmp_path, server)
    preferences = [0.9] * 6 + [0.1] * 2 + [0.5] * 2  # P(evaluated output better) per row
    assert results["win_rate"] == pytest.approx(sum(preferences) / 10)
    assert results["standard_error"] == pytest.approx(stats.sem(preferences))
    assert results["n"] == 10 and results["errors"] == 0
    assert results["annotator"] == "weighted_alpaca_eval_gpt4_turbo"
    request = server.requests[0]
    assert request["model"] == "judge" and request["max_tokens"] == 1
    assert request["logprobs"] is True and request["top_logprobs"] == 5
    assert len(server.requests) == 10
    # a custom set: no LC, and the reason says so
    assert results["lc_win_rate"] is None and "custom set" in results["lc_unavailable"]
    annotations = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert len(annotations) == 10 and all(a["preference"] is not None for a in annotations)
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results


def test_function_calling_annotator_and_a_rerun_that_pays_nothing(tmp_path, chat_server):
    write_set(tmp_path, ["win"] * 7 + ["loss"] * 3)
    server = chat_server(function_judge)
    first = run(tmp_path, server, annotator="alpaca_eval_gpt4_turbo_fn")
    assert first["win_rate"] == pytest.approx(0.7) and first["n_wins"] == 7
    request = server.requests[0]
    assert request["tool_choice"]["function"]["name"] == "make_partial_leaderboard"
    assert request["tools"][0]["function"]["name"] == "make_partial_leaderboard"
    before = len(server.requests)
    second = run(tmp_path, server, annotator="alpaca_eval_gpt4_turbo_fn")
    assert len(server.requests) == before and second["cache_hits"] == 10
    assert second["win_rate"] == first["win_rate"]


def test_server_errors_and_timeouts_are_retried(tmp_path, chat_server):
    write_set(tmp_path)

    def flaky(messages, attempt):
        first, _ = shown_outputs(messages)
        if attempt == 0 and first.endswith(("0", "1")):
            return ("status", 500) if first.endswith("0") else ("sleep", 1.5)
        return logprob_judge(messages, attempt)

    server = chat_server(flaky)
    results = run(tmp_path, server, timeout=0.5, max_retries=2)
    assert results["errors"] == 0 and results["win_rate"] == pytest.approx(0.66)
    assert len(server.requests) == 10 + 2


def test_unparseable_answer_is_recorded_and_asked_again_on_rerun(tmp_path, chat_server):
    write_set(tmp_path)
    stubborn = {"on": True}

    def judge(messages, attempt):
        if stubborn["on"] and "answer 3" in " ".join(shown_outputs(messages)):
            return ("reply", completion({"content": "I cannot decide."}, {"content": []}))
        return logprob_judge(messages, attempt)

    server = chat_server(judge)
    results = run(tmp_path, server)
    assert results["errors"] == 1 and results["n"] == 9
    assert results["win_rate"] == pytest.approx((5 * 0.9 + 2 * 0.1 + 2 * 0.5) / 9)
    annotations = json.loads((tmp_path / "out" / "annotations.json").read_text())
    unparsed = [a for a in annotations if a["preference"] is None]
    assert [a["id"] for a in unparsed] == ["q3"]
    stubborn["on"] = False
    before = len(server.requests)
    results = run(tmp_path, server)
    assert len(server.requests) - before == 1 and results["errors"] == 0


def test_a_refused_request_stops_the_run_and_keeps_finished_chunks(tmp_path, chat_server):
    write_set(tmp_path)
    locked = {"on": True}

    def judge(messages, attempt):
        if locked["on"] and "answer 7" in " ".join(shown_outputs(messages)):
            return ("status", 401)
        return logprob_judge(messages, attempt)

    server = chat_server(judge)
    with pytest.raises(JudgeError, match="401"):
        run(tmp_path, server, chunk_size=4)
    kept = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert sum(a.get("preference") is not None for a in kept) == 4
    locked["on"] = False
    results = run(tmp_path, server, chunk_size=4)
    assert results["cache_hits"] == 4 and results["win_rate"] == pytest.approx(0.66)


def test_length_controlled_win_rate_is_the_packages_when_instruction_difficulty_is_cached(
    tmp_path, chat_server, monkeypatch
):
    """LC reads df_gamed.csv through the Hugging Face cache: a cached copy makes it work
    offline. The value must be the package's own GLM on the same annotations."""
    import pandas as pd
    from alpaca_eval.metrics import get_length_controlled_winrate

    kinds = (["win"] * 6 + ["loss"] * 3 + ["tie"]) * 3
    write_set(tmp_path, kinds, with_index=True)
    hub_cache = tmp_path / "hub"
    snapshot = hub_cache / "datasets--tatsu-lab--alpaca_eval" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (hub_cache / "datasets--tatsu-lab--alpaca_eval" / "refs").mkdir()
    (hub_cache / "datasets--tatsu-lab--alpaca_eval" / "refs" / "main").write_text("0" * 40)
    gamed = pd.DataFrame(
        {
            "index": list(range(30)) * 2,
            "instruction_difficulty": [((i % 7) - 3) / 3 for i in range(30)] * 2,
            "preference": [0.2, 0.8] * 30,
            "std_delta_len": [(-1) ** i * 0.5 for i in range(60)],
            "not_gamed_baseline": [False] * 60,
            "model": ["concise"] * 30 + ["verbose"] * 30,
        }
    )
    gamed.to_csv(snapshot / "df_gamed.csv", index=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    server = chat_server(logprob_judge)
    results = run(tmp_path, server)
    assert results["lc_unavailable"] is None
    annotations = json.loads((tmp_path / "out" / "annotations.json").read_text())
    expected = get_length_controlled_winrate(pd.DataFrame(annotations), save_weights_dir=None)
    assert results["lc_win_rate"] == pytest.approx(expected["length_controlled_winrate"] / 100)
    assert 0 < results["lc_win_rate"] < 1


def test_bad_input_names_the_file_field_and_ids(tmp_path, chat_server):
    reference, samples = write_set(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "x", "generator": "g"}]))
    with pytest.raises(DataError, match=r"bad.json.*field 'output'"):
        evaluation_set(tmp_path / "bad.json")
    stray = tmp_path / "stray.jsonl"
    stray.write_text(
        samples.read_text() + json.dumps({"id": "extra9", "prompt": "?", "response": "r"}) + "\n"
    )
    with pytest.raises(DataError, match="extra9"):
        outputs_from_samples(stray, evaluation_set(reference))
    server = chat_server(logprob_judge)
    with pytest.raises(ConfigError, match="weighted_alpaca_eval_gpt4_turbo"):
        run(tmp_path, server, annotator="no_such_annotator")
    assert server.requests == []
