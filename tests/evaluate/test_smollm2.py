"""End-to-end checks on the offline demo model (slow: loads SmolLM2-135M)."""

import pytest

from preftune.evaluate import kl_from_reference, win_rate
from preftune.generate import generate
from preftune.generate.prompt_sources import read_prompts
from preftune.judges.local_llm import LocalLLMJudge

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from preftune.models.loading import load_model, load_tokenizer

    return load_model("smollm2-135m-instruct").eval(), load_tokenizer("smollm2-135m-instruct")


def test_sampled_log_probs_are_the_models_own(tmp_path, smollm2):
    model, tokenizer = smollm2
    prompts = read_prompts("task:sentiment:heldout", limit=4)
    samples = generate(
        smollm2, prompts, tmp_path / "s.jsonl", max_new_tokens=16, temperature=1.0, batch_size=4
    )
    assert all(row["response"] for row in samples)
    # the generator's log-probs (from its raw logits) equal a separate scoring pass
    assert kl_from_reference(model, model, tokenizer, samples)["kl"] == pytest.approx(0, abs=1e-3)


def test_local_judge_gives_verdicts(tmp_path, smollm2):
    samples = [{"id": "1", "prompt": "What is the capital of France?", "response": "Paris."}]
    baseline = [{"id": "1", "prompt": "What is the capital of France?", "response": "Bananas."}]
    results = win_rate(samples, baseline, LocalLLMJudge(smollm2), tmp_path)
    assert results["n"] == 1 and results["errors"] == 0
    assert results["position_bias"] is not None
