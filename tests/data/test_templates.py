"""`data.chat_template` and `data.layout`: checked at load, used for training and kept with
the run's tokenizer so that sampling renders prompts the same way."""

from __future__ import annotations

import re

import pytest

from preftune.config import build_train_config
from preftune.errors import ConfigError
from preftune.generate import render_prompt
from preftune.losses import METHODS
from preftune.models.loading import load_tokenizer
from preftune.testing import CHAT_TEMPLATE, write_preference_files
from preftune.train.dataset import read_view, tokenize_view

BRACKETS = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def _config(tmp_path, tiny_model_dir, **data):
    paired = write_preference_files(tmp_path, num_prompts=3)["paired"]
    values = {"model": str(tiny_model_dir), "method": "dpo", "data": {"path": str(paired), **data}}
    return build_train_config({**values, "max_length": 128, "max_prompt_length": 64})


def test_a_layout_frames_each_prompt_and_its_answer(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, layout="Q: {prompt}\nA: ")
    view, counts = read_view(config, METHODS["dpo"])
    tokenizer = load_tokenizer(str(tiny_model_dir))
    groups = tokenize_view(view, tokenizer, config, counts)
    prompt = "write a short review of a film"
    assert view[0].prompt == prompt
    expected_prompt = tokenizer(f"Q: {prompt}\nA: ", add_special_tokens=False)["input_ids"]
    assert groups[0].prompt_ids == expected_prompt
    chosen = tokenizer.decode(groups[0].response_ids[0])
    assert chosen == "the movie was great and the actors were wonderful<|im_end|>"
    # Sampling from the trained run renders the prompt exactly as training did.
    assert render_prompt(tokenizer, prompt) == expected_prompt


def test_a_chat_template_file_replaces_the_tokenizers(tmp_path, tiny_model_dir):
    path = tmp_path / "brackets.jinja"
    path.write_text(BRACKETS)
    config = _config(tmp_path, tiny_model_dir, chat_template=str(path))
    assert config.data.chat_template == BRACKETS  # read at load; the run's config.yaml keeps it
    view, counts = read_view(config, METHODS["dpo"])
    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    groups = tokenize_view(view, tokenizer, config, counts)
    text = tokenizer.decode(groups[0].prompt_ids)
    assert text == "[user] write a short review of a film\n[assistant] "
    assert tokenizer.chat_template == BRACKETS


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"layout": "Q: {question}\nA:"}, "data.layout: must hold {prompt} exactly once"),
        ({"layout": "{prompt} {prompt}"}, "data.layout: must hold {prompt} exactly once"),
        ({"chat_template": "{% for m in messages %}{{ m['content'] }}"},
         "data.chat_template: does not render a conversation: TemplateSyntaxError"),
        ({"chat_template": "{{ raise_exception('no system role') }}"},
         "data.chat_template: does not render a conversation: TemplateError: no system role"),
        ({"chat_template": "no-such-template.jinja"},
         "data.chat_template: 'no-such-template.jinja' is neither a Jinja template"),
        ({"chat_template": BRACKETS, "layout": "{prompt}"},
         "data: chat_template and layout: choose one"),
    ],
)  # fmt: skip
def test_a_template_that_cannot_work_is_refused_naming_the_key(
    tmp_path, tiny_model_dir, data, named
):
    with pytest.raises(ConfigError, match="^invalid config: " + re.escape(named)):
        _config(tmp_path, tiny_model_dir, **data)
