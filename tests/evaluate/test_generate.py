import json

import pytest
import torch

from preftune.errors import ConfigError
from preftune.generate import generate, render_prompt

PROMPTS = [
    {"id": "p1", "prompt": "write a short review of a film about robots"},
    {"id": "p2", "prompt": "summarize the post: my cat knocks cups"},
    {"id": "p3", "prompt": [{"role": "user", "content": "how do I bake bread?"}]},
]


def _count_generated_rows(model):
    """Wrap model.generate to count how many sequences it is asked to continue."""
    calls = []
    original = model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    model.generate = counting
    return calls


def test_greedy_is_deterministic_and_independent_of_batching(tmp_path, tiny_model, tiny_tokenizer):
    pair = (tiny_model, tiny_tokenizer)
    one = generate(pair, PROMPTS, tmp_path / "a.jsonl", max_new_tokens=6, batch_size=1)
    three = generate(
        pair, PROMPTS, tmp_path / "b.jsonl", max_new_tokens=6, batch_size=3, model_name="base"
    )
    assert [r["response_token_ids"] for r in one] == [r["response_token_ids"] for r in three]
    assert [r["id"] for r in one] == ["p1", "p2", "p3"]
    assert {r["model"] for r in three} == {"base"}
    for row in one:
        assert row["finish_reason"] == "length" and row["num_tokens"] == 6
        assert set(row) >= {"id", "prompt", "response", "model", "generation_config"}


def test_logp_equals_a_separate_forward_pass(tmp_path, tiny_model, tiny_tokenizer):
    rows = generate(
        (tiny_model, tiny_tokenizer),
        PROMPTS,
        tmp_path / "s.jsonl",
        max_new_tokens=5,
        temperature=1.0,
        batch_size=3,
    )
    for prompt, row in zip(PROMPTS, rows, strict=True):
        prompt_ids = render_prompt(tiny_tokenizer, prompt["prompt"])
        ids = torch.tensor([prompt_ids + row["response_token_ids"]])
        with torch.no_grad():
            log_probs = torch.log_softmax(tiny_model(input_ids=ids).logits[0], dim=-1)
        expected = sum(
            float(log_probs[len(prompt_ids) + t - 1, token])
            for t, token in enumerate(row["response_token_ids"])
        )
        assert row["logp"] == pytest.approx(expected, abs=1e-4)


def test_resume_skips_rows_already_written(tmp_path, tiny_model, tiny_tokenizer):
    out = tmp_path / "samples.jsonl"
    pair = (tiny_model, tiny_tokenizer)
    generate(pair, PROMPTS[:2], out, max_new_tokens=4, temperature=1.0, n=2)
    first_lines = out.read_text().splitlines()
    calls = _count_generated_rows(tiny_model)
    rows = generate(pair, PROMPTS, out, max_new_tokens=4, temperature=1.0, n=2, batch_size=8)
    assert calls == [2]  # only p3's two samples were generated
    lines = out.read_text().splitlines()
    assert lines[:4] == first_lines and len(lines) == 6
    assert [(r["id"], r["sample"]) for r in rows] == [
        (p, s) for p in ("p1", "p2", "p3") for s in (0, 1)
    ]


def test_resume_refuses_a_file_made_with_other_settings(tmp_path, tiny_model, tiny_tokenizer):
    out = tmp_path / "samples.jsonl"
    generate((tiny_model, tiny_tokenizer), PROMPTS[:1], out, max_new_tokens=4)
    with pytest.raises(ConfigError, match="generation"):
        generate((tiny_model, tiny_tokenizer), PROMPTS, out, max_new_tokens=8)


def test_torn_last_line_is_regenerated(tmp_path, tiny_model, tiny_tokenizer):
    out = tmp_path / "samples.jsonl"
    generate((tiny_model, tiny_tokenizer), PROMPTS, out, max_new_tokens=3)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # killed mid-write
    rows = generate((tiny_model, tiny_tokenizer), PROMPTS, out, max_new_tokens=3)
    ids_on_disk = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids_on_disk) == ["p1", "p2", "p3"]
    assert len(rows) == 3


def test_eos_stops_a_response_and_is_counted(tmp_path, tiny_model, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    head = torch.nn.Linear(tiny_model.config.hidden_size, len(tiny_tokenizer), bias=True)
    with torch.no_grad():
        head.weight.copy_(tiny_model.lm_head.weight)
        head.bias.zero_()
        head.bias[eos] = 100.0  # EOS always wins
    tiny_model.lm_head = head
    rows = generate((tiny_model, tiny_tokenizer), PROMPTS, tmp_path / "s.jsonl", max_new_tokens=5)
    for row in rows:
        assert row["finish_reason"] == "eos"
        assert row["response_token_ids"] == [eos] and row["num_tokens"] == 1
        assert row["response"] == ""


def test_greedy_with_several_samples_is_refused(tmp_path, tiny_model, tiny_tokenizer):
    with pytest.raises(ConfigError, match="temperature"):
        generate((tiny_model, tiny_tokenizer), PROMPTS, tmp_path / "s.jsonl", n=2)


def test_run_folder_resolves_to_its_final_model(tmp_path, tiny_model_dir):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "final")
    rows = generate(str(run), PROMPTS[:1], tmp_path / "s.jsonl", max_new_tokens=2)
    assert rows[0]["model"] == str(run) and rows[0]["num_tokens"] == 2
