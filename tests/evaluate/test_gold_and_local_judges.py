import pytest

from preftune.errors import ConfigError
from preftune.evaluate.win_rate import win_rate
from preftune.judges import GoldJudge, build_judge, combine_orders, get_gold, register_gold


def test_combine_orders():
    assert combine_orders("A", "B").winner == "a"  # a first, then b first: a both times
    assert combine_orders("B", "A").winner == "b"
    assert combine_orders("A", "A").winner == "tie"  # the judge always picks slot A
    assert combine_orders("tie", "tie").winner == "tie"
    assert combine_orders("A", "error").winner == "error"
    assert combine_orders("A", "B").verdicts == ["a", "a"]


def test_vader_gold_is_found_by_name_and_decides_by_score(tmp_path):
    judge = build_judge("gold", gold="vader-sentiment")
    samples = [{"id": "1", "prompt": "review", "response": "A wonderful, delightful film."}]
    baseline = [{"id": "1", "prompt": "review", "response": "A dull and awful film."}]
    results = win_rate(samples, baseline, judge, tmp_path)
    assert results["wins"] == 1 and results["win_rate"] == 1.0
    assert results["mean_score_samples"] > 0 > results["mean_score_baseline"]
    assert results["position_bias"] is None


def test_registered_gold_function_and_ties(tmp_path):
    register_gold("length-test", lambda prompt, response: len(response))
    assert get_gold("length-test")("p", "abc") == 3
    judge = GoldJudge("length-test")
    assert judge.compare("p", "abcd", "wxyz").winner == "tie"
    assert judge.compare("p", "abcd", "xyz").winner == "a"
    with pytest.raises(ConfigError, match="length-test"):
        get_gold("no-such-gold")


def test_errors_name_what_is_missing():
    with pytest.raises(ConfigError, match="--gold"):
        build_judge("gold")
    with pytest.raises(ConfigError, match="--base-url"):
        build_judge("openai", model="m")
    with pytest.raises(ConfigError, match="not one of"):
        build_judge("coin-flip")
    with pytest.raises(
        ConfigError, match=r"--concurrency \(concurrency\) must be a whole number >= 1, got nan"
    ):
        build_judge("gold", gold="vader-sentiment", concurrency=float("nan"))
    with pytest.raises(ConfigError, match=r"--backoff \(backoff\) must be a number >= 0"):
        build_judge("gold", gold="vader-sentiment", backoff=-0.5)
    assert build_judge("gold", gold="vader-sentiment", max_retries=0, backoff=0).identity


def test_hf_llm_judge_reads_letter_probabilities(tiny_model, tiny_tokenizer):
    from preftune.judges.local_llm import LocalLLMJudge

    judge = LocalLLMJudge((tiny_model, tiny_tokenizer))
    p_first = judge.probability_first_slot("q", "x", "y")
    p_swapped = judge.probability_first_slot("q", "y", "x")
    assert 0.0 < p_first < 1.0 and 0.0 < p_swapped < 1.0
    judgment = judge.compare("q", "x", "y")
    expected = combine_orders("A" if p_first > 0.5 else "B", "A" if p_swapped > 0.5 else "B").winner
    assert judgment.winner == expected


def test_hf_llm_judge_follows_a_strong_letter_preference(tiny_model, tiny_tokenizer):
    """Bias the model's output towards "A": it always picks slot A, so both orders disagree."""
    import torch

    from preftune.judges.local_llm import LocalLLMJudge

    judge = LocalLLMJudge((tiny_model, tiny_tokenizer))
    head = torch.nn.Linear(tiny_model.config.hidden_size, len(tiny_tokenizer), bias=True)
    with torch.no_grad():
        head.weight.copy_(tiny_model.lm_head.weight)
        head.bias.zero_()
        head.bias[judge.letter_ids[0]] = 50.0
    tiny_model.lm_head = head
    judgment = judge.compare("q", "x", "y")
    assert judgment.winner == "tie" and judgment.verdicts == ["a", "b"]


def test_reward_model_judge(tmp_path):
    from preftune.testing import save_tiny_reward_model

    save_tiny_reward_model(tmp_path / "rm")
    judge = build_judge("reward-model", model=str(tmp_path / "rm"))
    good, bad = judge.score("q", "the movie was great"), judge.score("q", "a terrible film")
    assert good != bad
    assert judge.compare("q", "the movie was great", "a terrible film").winner == (
        "a" if good > bad else "b"
    )


def test_interrupted_judging_keeps_finished_decisions(tmp_path):
    calls = {"n": 0}

    def gold(prompt, response):
        calls["n"] += 1
        if calls["n"] == 7:  # Ctrl-C during the 4th decision (2 scores per decision)
            raise KeyboardInterrupt
        return float(len(response))

    samples = [{"id": str(i), "prompt": "p", "response": "long answer"} for i in range(6)]
    baseline = [{"id": str(i), "prompt": "p", "response": f"short {i}"} for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        win_rate(samples, baseline, GoldJudge(gold, name="length"), tmp_path)
    assert len((tmp_path / "judgments.jsonl").read_text().splitlines()) == 3
    results = win_rate(samples, baseline, GoldJudge(gold, name="length"), tmp_path)
    assert results["cache_hits"] == 3 and results["wins"] == 6


def test_prompt_sources(tmp_path):
    import json

    from preftune.generate.prompt_sources import read_prompts

    task = read_prompts("task:sentiment:heldout", limit=3)
    assert len(task) == 3 and all(p["id"].startswith("sentiment-") for p in task)
    plain = tmp_path / "prompts.json"
    plain.write_text(json.dumps([{"prompt": "a"}, {"id": "k", "prompt": "b"}]))
    assert read_prompts(str(plain)) == [{"id": "0", "prompt": "a"}, {"id": "k", "prompt": "b"}]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "x", "rejected": "y"}) + "\n")
    from_data = read_prompts(str(pairs))
    assert len(from_data) == 1 and from_data[0]["prompt"] == "q"


def test_hf_llm_average_decision_cancels_a_slot_preference(tiny_model, tiny_tokenizer):
    from preftune.judges.local_llm import LocalLLMJudge

    judge = LocalLLMJudge((tiny_model, tiny_tokenizer), decision="average")
    slot_a = {("x", "y"): 0.8, ("y", "x"): 0.7}  # prefers slot A, and x a little more than y
    judge.probability_first_slot = lambda question, first, second: slot_a[(first, second)]
    judgment = judge.compare("q", "x", "y")
    assert judgment.winner == "a" and judgment.verdicts == ["a", "b"]  # both-orders: a tie
    assert judge.compare("q", "y", "x").winner == "b"
    judge.tie_margin = 0.1  # P(x better) = 0.55 is within the margin
    assert judge.compare("q", "x", "y").winner == "tie"


def judged(*verdict_pairs):
    """Two-order judgments with the given [a-first, b-first] verdicts (in a/b terms)."""
    from preftune.judges import Judgment

    return [Judgment("tie", verdicts=list(pair)) for pair in verdict_pairs]


def test_position_bias_warning_thresholds():
    """Hand-counted: in the a-first order "a" is the response shown first, in the b-first
    order "b" is. The warning needs >= 10 pairs and a first-shown share above 0.7 (or below
    0.3) or the two orders agreeing in fewer than half the pairs."""
    from preftune.evaluate.win_rate import position_bias, position_bias_warning

    always_first = position_bias(judged(*[("a", "b")] * 10))
    assert always_first == {"order_agreement": 0.0, "first_position_share": 1.0, "decisions": 10}
    assert "picked the response shown first in 100%" in position_bias_warning(always_first)
    assert position_bias_warning(position_bias(judged(*[("a", "b")] * 9))) is None  # too few
    at_limit = position_bias(judged(*[("a", "a")] * 6, *[("a", "b")] * 4))  # 14 of 20 first
    assert at_limit["first_position_share"] == 0.7 and at_limit["order_agreement"] == 0.6
    assert position_bias_warning(at_limit) is None
    over = position_bias(judged(*[("a", "a")] * 5, *[("a", "b")] * 5))  # 15 of 20 first
    assert over["first_position_share"] == 0.75 and position_bias_warning(over) is not None
    # no slot preferred overall (10 of 20 first), but the orders agree in only 4 of 10 pairs
    flips = position_bias(
        judged(*[("a", "b")] * 3, *[("b", "a")] * 3, ("a", "a"), ("a", "a"), ("b", "b"), ("b", "b"))
    )
    assert flips["first_position_share"] == 0.5 and flips["order_agreement"] == 0.4
    assert "agree in 40% of 10 pairs" in position_bias_warning(flips)


def test_small_sample_warning_below_20_prompts():
    from preftune.evaluate.stats import small_sample_warning

    assert small_sample_warning(20, 0.4, 0.6) is None
    assert small_sample_warning(19, 0.4, 0.6).startswith("only 19 prompts decided")
    assert (
        small_sample_warning(0, None, None)
        == "no prompt was decided: there is no win rate to report"
    )


def test_hf_llm_judge_that_always_prefers_the_first_answer_is_flagged(
    tmp_path, tiny_model, tiny_tokenizer
):
    """With decision "average", a judge that puts P(slot A) at 0.9 or 0.8 whatever it reads
    gives the samples every pair (p_a = (0.9 + 1 - 0.8) / 2 = 0.55) and a win rate of 1.0:
    the results carry the position-bias warning."""
    from preftune.judges.local_llm import LocalLLMJudge

    judge = LocalLLMJudge((tiny_model, tiny_tokenizer), decision="average")
    judge.probability_first_slot = lambda q, first, second: 0.9 if first == "mine" else 0.8
    samples = [{"id": str(i), "prompt": f"q{i}", "response": "mine"} for i in range(12)]
    baseline = [{"id": str(i), "prompt": f"q{i}", "response": "theirs"} for i in range(12)]
    results = win_rate(samples, baseline, judge, tmp_path)
    assert results["win_rate"] == 1.0
    assert results["position_bias"]["first_position_share"] == 1.0
    assert any(w.startswith("position bias") for w in results["warnings"])
    on_disk = (tmp_path / "results.json").read_text()
    assert "position bias" in on_disk
