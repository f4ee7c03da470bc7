"""Truncation that leaves a group's responses identical (no gradient) is counted, warned about,
and refused when it hits every group."""

import json

import pytest

from preftune.data import tokenize
from preftune.data.records import PromptGroup, Response
from preftune.errors import ConfigError
from preftune.train import train

SHARED = "the movie was great and the plot was great " * 4  # well past 12 tokens


def _pair(prompt: str, chosen: str, rejected: str) -> PromptGroup:
    return PromptGroup(prompt, [Response(chosen), Response(rejected)], id=prompt)


def test_responses_cut_to_the_same_prefix_are_counted_with_a_warning(tiny_tokenizer):
    groups = [
        _pair("a", SHARED + "yes", SHARED + "no"),  # differ only after the cut
        _pair("b", "robots", "film"),  # differ at once
        _pair("c", "same", "same"),  # identical before any cut: not truncation's doing
    ]
    with pytest.warns(UserWarning, match=r"1 of 3 groups .* max_length=12 .* raise max_length"):
        tokenized, stats = tokenize(
            groups, tiny_tokenizer, max_prompt_length=4, max_length=12, chat_template=False
        )
    assert stats.identical_after_truncation == 1
    first = tokenized[0].response_ids
    assert first[0] == first[1]
    _, untouched = tokenize(groups, tiny_tokenizer, max_prompt_length=4, max_length=512)
    assert untouched.identical_after_truncation == 0


def test_a_run_whose_every_pair_truncates_to_identical_is_refused(make_config, tmp_path):
    data = tmp_path / "same-prefix.jsonl"
    rows = [
        {"prompt": f"p{i}", "chosen": SHARED + "yes", "rejected": SHARED + "no"} for i in range(4)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = make_config("dpo", data, max_steps=1, max_prompt_length=4, max_length=12)
    refusal = r"max_length: truncation to 12 tokens .* identical"
    with (
        pytest.warns(UserWarning, match="4 of 4 groups"),
        pytest.raises(ConfigError, match=refusal),
    ):
        train(config)
    assert not (config.run_dir / "metrics.jsonl").exists()
