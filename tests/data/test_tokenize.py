"""Tokenization on the tiny tokenizer (a ChatML template like SmolLM2's) and as plain text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preftune.data import collate, make_view, read_records, tokenize
from preftune.data.records import PromptGroup, Response
from preftune.errors import ConfigError, MethodDataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
FORMAT_FIXTURES = [
    "paired.jsonl",
    "paired.csv",
    "paired_conversational.jsonl",
    "implicit_prompt.jsonl",
    "hh.jsonl",
    "tldr.jsonl",
    "binary.jsonl",
    "ultrafeedback.jsonl",
    "scored.jsonl",
    "ties.jsonl",
]


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chat(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def assert_round_trip(tokenizer, name):
    """prompt ids + response ids are the rendered conversation; the mask splits it at the answer."""
    groups = read_records(FIXTURES / name).groups
    tokenized, stats = tokenize(groups, tokenizer, max_prompt_length=10_000, max_length=20_000)
    assert stats.groups == len(groups) and stats.prefix_fixed == stats.template_fixed == 0
    eos = tokenizer.eos_token_id
    for group, tok in zip(groups, tokenized, strict=True):
        prompt = (
            group.prompt
            if isinstance(group.prompt, list)
            else [{"role": "user", "content": group.prompt}]
        )
        rendered_prompt = chat(tokenizer, prompt, add_generation_prompt=True)
        assert tok.prompt_text == rendered_prompt
        assert tok.prompt_ids == ids(tokenizer, rendered_prompt)
        for response, response_ids in zip(group.responses, tok.response_ids, strict=True):
            answer = (
                response.text
                if isinstance(response.text, list)
                else [{"role": "assistant", "content": response.text.strip()}]
            )
            whole = chat(tokenizer, prompt + answer)
            assert whole.endswith("<|im_end|>\n")
            sequence = tok.prompt_ids + response_ids
            mask = [False] * len(tok.prompt_ids) + [True] * len(response_ids)
            assert sequence == ids(tokenizer, whole[: -len("\n")])  # up to and with EOS
            scored = [t for t, m in zip(sequence, mask, strict=True) if m]
            assert tokenizer.decode(scored) == whole[len(rendered_prompt) : -len("\n")]
            assert scored[-1] == eos and eos not in scored[:-1]
        assert tok.scores == [r.score for r in group.responses]
        assert tok.labels == [r.label for r in group.responses]
        assert (tok.margin, tok.tie, tok.id) == (group.margin, group.tie, group.id)
    return tokenized


@pytest.mark.parametrize("name", FORMAT_FIXTURES)
def test_every_format_round_trips_through_a_chatml_template_token_by_token(tiny_tokenizer, name):
    assert_round_trip(tiny_tokenizer, name)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from preftune.models.loading import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMAT_FIXTURES)
def test_every_format_round_trips_through_smollm2s_template_token_by_token(smollm2_tokenizer, name):
    tokenized = assert_round_trip(smollm2_tokenizer, name)
    for tok, group in zip(tokenized, read_records(FIXTURES / name).groups, strict=True):
        own_system = isinstance(group.prompt, list) and group.prompt[0]["role"] == "system"
        default = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM"
        assert tok.prompt_text.startswith("<|im_start|>system\n" if own_system else default)
        assert tok.prompt_text.endswith("<|im_start|>assistant\n")


def test_plain_text_is_concatenated_with_eos_appended(tiny_tokenizer):
    groups = read_records(FIXTURES / "paired.jsonl").groups
    (tok,), _ = tokenize(groups[:1], tiny_tokenizer, chat_template=False)
    prompt, chosen = groups[0].prompt, groups[0].responses[0].text
    assert tok.prompt_text == prompt
    assert tok.prompt_ids == ids(tiny_tokenizer, prompt)
    assert tok.response_ids[0] == ids(tiny_tokenizer, chosen) + [tiny_tokenizer.eos_token_id]


def test_conversations_without_a_template_are_written_in_the_hh_style(tiny_tokenizer):
    group = read_records(FIXTURES / "hh.jsonl").groups[1]
    (tok,), _ = tokenize([group], tiny_tokenizer, chat_template=False)
    assert tok.prompt_text == "\n\nHuman: How do I bake bread?\n\nAssistant:"
    response = tiny_tokenizer.decode(tok.response_ids[0])
    assert response == " Mix flour, water, salt and yeast, let it rise, then bake it.<|im_end|>"


def test_a_template_given_by_name_is_used_instead_of_the_tokenizers(tiny_tokenizer):
    template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    group = PromptGroup("Hi?", [Response("Hello.")], id="0")
    (tok,), _ = tokenize([group], tiny_tokenizer, chat_template=template)
    assert tok.prompt_text == "user: Hi?<|im_end|>assistant: "
    assert tiny_tokenizer.decode(tok.response_ids[0]) == "Hello.<|im_end|>"


def test_prompt_is_cut_from_the_left_then_the_response_from_the_right(tiny_tokenizer):
    group = PromptGroup("the movie was great." * 5, [Response(" a terrible film" * 5)], id="0")
    (full,), _ = tokenize(
        [group], tiny_tokenizer, chat_template=False, max_prompt_length=1000, max_length=2000
    )
    (cut,), stats = tokenize(
        [group], tiny_tokenizer, chat_template=False, max_prompt_length=6, max_length=10
    )
    assert cut.prompt_ids == full.prompt_ids[-6:]
    assert cut.response_ids[0] == full.response_ids[0][:4]
    assert (stats.prompts_truncated, stats.responses_truncated) == (1, 1)
    assert stats.prompt_tokens_max == len(full.prompt_ids)  # lengths are before truncation


def test_a_token_merged_across_the_boundary_is_fixed_and_counted(tiny_tokenizer):
    # the prompt's trailing space and the answer's "a" merge into one token when joined
    prompt, answer = "the movie was great ", "a film"
    together = ids(tiny_tokenizer, prompt + answer)
    assert together[: len(ids(tiny_tokenizer, prompt))] != ids(tiny_tokenizer, prompt)
    group = PromptGroup(prompt, [Response(answer)], id="0")
    with pytest.warns(UserWarning, match="1 responses tokenized apart"):
        (tok,), stats = tokenize([group], tiny_tokenizer, chat_template=False)
    assert stats.prefix_fixed == 1
    assert tok.prompt_ids == ids(tiny_tokenizer, prompt)
    assert tok.response_ids[0] == ids(tiny_tokenizer, answer) + [tiny_tokenizer.eos_token_id]


def test_a_template_that_breaks_the_prompt_prefix_is_fixed_and_counted(tiny_tokenizer):
    # the generation prompt ("Answer:") is not what the template writes before an answer
    template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Answer:' }}{% endif %}"
    )
    group = PromptGroup("Hi?", [Response("Hello.")], id="0")
    with pytest.warns(UserWarning, match="1 rendered without the template"):
        (tok,), stats = tokenize([group], tiny_tokenizer, chat_template=template)
    assert stats.template_fixed == 1
    assert tiny_tokenizer.decode(tok.response_ids[0]) == "Hello.<|im_end|>"


def test_lengths_must_leave_room_for_a_response(tiny_tokenizer):
    group = PromptGroup("p", [Response("r")], id="0")
    with pytest.raises(ConfigError, match="max_prompt_length < max_length"):
        tokenize([group], tiny_tokenizer, max_prompt_length=512, max_length=512)


def test_tokenized_views_collate_into_a_batch(tiny_tokenizer):
    view = make_view(read_records(FIXTURES / "scored.jsonl").groups, "list")
    tokenized, _ = tokenize(view, tiny_tokenizer)
    batch = collate(tokenized)
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.scores[0].tolist() == [0.9, 0.9, 0.4, -0.2]
    assert tokenized[1].prompt_text.endswith("<|im_start|>assistant\n")


WORDS = ["the", "movie", "was", "great", "film", "bad", "plot", " ", "\n", "robots", "Human:", "!"]
text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=40).map(" ".join)


@pytest.mark.filterwarnings("ignore:.*tokenized apart from their prompt")
@settings(max_examples=60, deadline=None)
@given(
    prompt=text,
    responses=st.lists(text, min_size=1, max_size=3),
    max_prompt_length=st.integers(1, 40),
    extra=st.integers(1, 60),
    plain=st.booleans(),
)
def test_truncation_never_exceeds_max_length_nor_loses_a_response_token_to_the_prompt(
    tiny_tokenizer, prompt, responses, max_prompt_length, extra, plain
):
    group = PromptGroup(prompt, [Response(r) for r in responses], id="0")
    options = {"chat_template": False if plain else None}
    (full,), _ = tokenize(
        [group], tiny_tokenizer, max_prompt_length=10**6, max_length=10**7, **options
    )
    max_length = max_prompt_length + extra
    (cut,), stats = tokenize(
        [group],
        tiny_tokenizer,
        max_prompt_length=max_prompt_length,
        max_length=max_length,
        **options,
    )
    assert len(cut.prompt_ids) <= max_prompt_length
    assert cut.prompt_ids == full.prompt_ids[len(full.prompt_ids) - len(cut.prompt_ids) :]
    for kept, whole in zip(cut.response_ids, full.response_ids, strict=True):
        assert len(kept) >= 1 and len(cut.prompt_ids) + len(kept) <= max_length
        # the response keeps its first tokens: nothing of it was counted as prompt
        assert kept == whole[: len(kept)]
        assert whole[-1] == tiny_tokenizer.eos_token_id
    truncated = sum(
        len(k) < len(w) for k, w in zip(cut.response_ids, full.response_ids, strict=True)
    )
    assert stats.responses_truncated == truncated


VIEW_SIZES = {"pair": 2, "binary": 1, "chosen": 1}


@pytest.mark.parametrize("view", ["pair", "binary", "list", "chosen"])
@pytest.mark.parametrize("name", FORMAT_FIXTURES)
def test_every_format_through_every_view_it_can_give_into_a_batch(tiny_tokenizer, name, view):
    groups = read_records(FIXTURES / name).groups
    if name == "binary.jsonl" and view in ("pair", "list"):
        with pytest.raises(MethodDataError, match=f"view '{view}' needs"):
            make_view(groups, view)
        return
    shaped = make_view(groups, view)
    tokenized, stats = tokenize(shaped, tiny_tokenizer)
    batch = collate(tokenized)
    sizes = [VIEW_SIZES.get(view, len(g.responses)) for g in shaped]
    assert batch.mask.sum(dim=1).tolist() == sizes
    assert stats.responses == sum(sizes)
    assert batch.ids == [g.id for g in shaped]
    assert [group.tie for group in tokenized] == [g.tie for g in shaped]
    if view == "pair":
        assert (batch.scores[:, 0] >= batch.scores[:, 1]).all()
    if view == "binary":
        assert batch.labels is not None
