"""generate() hands sample_batch whole prompts' samples, shortest prompts first."""

import pytest

from preftune.generate import generate, render_prompt, sampling

PROMPTS = [
    {"id": "long", "prompt": "write a short review of a science fiction film about robots"},
    {"id": "short", "prompt": "a film"},
    {"id": "mid", "prompt": "summarize the post: my cat"},
]


@pytest.mark.parametrize(
    ("n", "batch_size", "expected"),
    [
        (3, 4, [["short"] * 3, ["mid"] * 3, ["long"] * 3]),  # 3 + 3 rows overflow a batch
        (3, 6, [["short"] * 3 + ["mid"] * 3, ["long"] * 3]),
        (5, 4, [["short"] * 4, ["short"], ["mid"] * 4, ["mid"], ["long"] * 4, ["long"]]),
    ],
)
def test_a_prompts_samples_go_in_one_batch(
    tmp_path, tiny_model, tiny_tokenizer, monkeypatch, n, batch_size, expected
):
    by_ids = {tuple(render_prompt(tiny_tokenizer, p["prompt"])): p["id"] for p in PROMPTS}
    seen = []
    original = sampling.sample_batch

    def recording(model, prompt_ids, *args):
        seen.append([by_ids[tuple(p)] for p in prompt_ids])
        return original(model, prompt_ids, *args)

    monkeypatch.setattr(sampling, "sample_batch", recording)
    pair = (tiny_model, tiny_tokenizer)
    options = {"max_new_tokens": 2, "temperature": 1.0, "n": n, "batch_size": batch_size}
    rows = generate(pair, PROMPTS, tmp_path / "s.jsonl", **options)
    assert seen == expected
    assert [(r["id"], r["sample"]) for r in rows] == [
        (p["id"], s) for p in PROMPTS for s in range(n)
    ]
