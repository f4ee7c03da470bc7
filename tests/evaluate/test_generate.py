import json
import re

import pytest
import torch

from preftune.errors import ConfigError, DataError
from preftune.generate import generate, render_prompt

PROMPTS = [
    {"id": "p1", "prompt": "write a short review of a film about robots"},
    {"id": "p2", "prompt": "summarize the post: my cat knocks cups"},
    {"id": "p3", "prompt": [{"role": "user", "content": "how do I bake bread?"}]},
]


def _count_generated_rows(monkeypatch):
    """Wrap sample_batch to count how many sequences it is asked to continue."""
    from preftune.generate import sampling

    calls = []
    original = sampling.sample_batch

    def counting(model, prompt_ids, *args):
        calls.append(len(prompt_ids))
        return original(model, prompt_ids, *args)

    monkeypatch.setattr(sampling, "sample_batch", counting)
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


def test_resume_skips_rows_already_written(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    out = tmp_path / "samples.jsonl"
    pair = (tiny_model, tiny_tokenizer)
    generate(pair, PROMPTS[:2], out, max_new_tokens=4, temperature=1.0, n=2)
    first_lines = out.read_text().splitlines()
    calls = _count_generated_rows(monkeypatch)
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


def test_resume_refuses_changed_prompt_text(tmp_path, tiny_model, tiny_tokenizer):
    """Issue 17.9: a changed prompt used to be answered by the old sample."""
    out = tmp_path / "samples.jsonl"
    pair = (tiny_model, tiny_tokenizer)
    generate(pair, PROMPTS, out, max_new_tokens=3)
    edited = [PROMPTS[0], {"id": "p2", "prompt": "summarize the post: my dog eats socks"}]
    with pytest.raises(ConfigError, match=r"another text of prompt 'p2'; pass --overwrite"):
        generate(pair, edited, out, max_new_tokens=3)
    rows = generate(pair, edited, out, max_new_tokens=3, overwrite=True)
    assert [r["prompt"] for r in rows] == [p["prompt"] for p in edited]
    assert len(out.read_text().splitlines()) == 2


def test_resume_refuses_another_model(tmp_path, tiny_model, tiny_tokenizer):
    """Issue 17.9: samples of model A used to be resumed with model B's answers."""
    out = tmp_path / "samples.jsonl"
    pair = (tiny_model, tiny_tokenizer)
    generate(pair, PROMPTS[:1], out, max_new_tokens=3, model_name="base")
    with pytest.raises(ConfigError, match=r"from model 'base', not 'dpo'; pass --overwrite"):
        generate(pair, PROMPTS, out, max_new_tokens=3, model_name="dpo")


def test_resume_refuses_rewritten_weights_in_the_same_folder(tmp_path, tiny_model_dir):
    import os
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "samples.jsonl"
    generate(str(model), PROMPTS[:1], out, max_new_tokens=2)
    assert generate(f"{tmp_path}/./model", PROMPTS[:1], out, max_new_tokens=2)[0]["id"] == "p1"
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(1, 1))  # retrained: the weights file is another one
    with pytest.raises(ConfigError, match=r"its weights or dtype changed"):
        generate(str(model), PROMPTS, out, max_new_tokens=2)


def test_a_samples_row_without_its_id_names_file_line_and_field(
    tmp_path, tiny_model, tiny_tokenizer
):
    out = tmp_path / "samples.jsonl"
    generate((tiny_model, tiny_tokenizer), PROMPTS[:2], out, max_new_tokens=2)
    lines = out.read_text().splitlines()
    row = json.loads(lines[1])
    del row["id"]
    out.write_text(lines[0] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"samples.jsonl:2, field 'id': missing"):
        generate((tiny_model, tiny_tokenizer), PROMPTS, out, max_new_tokens=2)


def test_a_prompts_row_without_a_prompt_is_named(tmp_path):
    from preftune.generate.prompt_sources import read_prompts

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": "a", "prompt": "hi"}\n\n{"id": "b", "prompt": null}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:3, field 'prompt': empty \(null\)"):
        read_prompts(str(path))


@pytest.mark.parametrize("name", ["./typo", "../typo", "~/typo", "/no/such/model", "a/b/c"])
def test_a_model_path_that_does_not_exist_is_refused_before_any_hub_call(name, monkeypatch):
    """Issue 17.14: `--model ./typo` used to retry the Hub for 50 s, then print 46 lines."""
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", no_hub)
    from preftune.models.loading import load_model

    with pytest.raises(ConfigError, match=rf"model '{re.escape(name)}': no such folder"):
        load_model(name)


def test_a_folder_partly_there_and_an_uncached_id_offline(tmp_path, monkeypatch):
    from preftune.models.loading import check_model_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ConfigError, match=r"model 'runs/dpo': no such folder"):
        check_model_source("runs/dpo")
    with pytest.raises(ConfigError, match=r"'runs': the folder has no config.json"):
        check_model_source("runs")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"not in the Hugging Face cache and HF_HUB_OFFLINE"):
        check_model_source("someone/not-downloaded")


def test_generate_cli_typo_exits_2_with_one_line(tmp_path, capsys):
    from preftune.cli import main

    code = main(["generate", "--model", "./typo", "--prompts", "task:sentiment", "--out", str(tmp_path / "s.jsonl")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == "preftune generate: error: model './typo': no such folder\n"


def test_generate_cli_overwrite_starts_the_file_over(tmp_path, tiny_model_dir, capsys):
    from preftune.cli import main

    prompts = tmp_path / "prompts.jsonl"
    out = tmp_path / "s.jsonl"
    args = ["generate", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(out), "--max-new-tokens", "2"]  # fmt: skip
    prompts.write_text('{"id": "a", "prompt": "one"}\n')
    assert main(args) == 0
    prompts.write_text('{"id": "a", "prompt": "two"}\n')
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert [json.loads(line)["prompt"] for line in out.read_text().splitlines()] == ["two"]
