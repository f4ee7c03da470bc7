"""The prompt format a run trains with, when it is not the tokenizer's own chat template.

- `data.chat_template`: a Jinja chat template (the text, or a file holding it), used exactly
  as a tokenizer's own;
- `data.layout`: plain text around each prompt, with one `{prompt}` where the prompt goes
  (e.g. "Question: {prompt}\\nAnswer: "); the answer follows the layout and ends with EOS.

A layout is turned into an equivalent chat template (`layout_template`), so training,
sampling and `preftune serve` render prompts the same way once the run's tokenizer carries it.
Both are checked at config load by rendering a sample conversation (`check_chat_template`).
"""

from __future__ import annotations

import json
from pathlib import Path

from preftune.io import read_text

PLACEHOLDER = "{prompt}"
SAMPLE_CHAT = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Is the sky blue?"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "Why?"},
]


def _looks_like_jinja(value: str) -> bool:
    return "{{" in value or "{%" in value


def read_chat_template(value: str) -> str:
    """The template text: `value` itself when it holds Jinja tags, else the file it names
    (ValueError when it is neither)."""
    if _looks_like_jinja(value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"'{value}' is neither a Jinja template ({{{{ }}}} / {{% %}}) nor a file")
    text = read_text(path, what="chat template file")
    if not _looks_like_jinja(text):
        raise ValueError(f"the file '{value}' holds no Jinja template")
    return text


def layout_template(layout: str) -> str:
    """A chat template that puts each non-assistant turn in `layout` and each assistant turn
    after it, ending with EOS (ValueError unless `layout` holds `{prompt}` exactly once).

    >>> from transformers.utils.chat_template_utils import render_jinja_template
    >>> template = layout_template("Q: {prompt}\\nA: ")
    >>> render_jinja_template([[{"role": "user", "content": "hi"}]], chat_template=template,
    ...                       add_generation_prompt=True)[0][0]
    'Q: hi\\nA: '
    """
    if layout.count(PLACEHOLDER) != 1:
        raise ValueError(f"must hold {PLACEHOLDER} exactly once, where the prompt goes")
    before, after = (json.dumps(part, ensure_ascii=False) for part in layout.split(PLACEHOLDER))
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' -%}{{ message['content'] + eos_token }}"
        f"{{%- else -%}}{{{{ {before} + message['content'] + {after} }}}}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


def check_chat_template(template: str) -> None:
    """Render a sample conversation with `template`; ValueError (one line) when it fails."""
    from transformers.utils.chat_template_utils import render_jinja_template

    try:
        for generation_prompt in (True, False):
            render_jinja_template(
                [SAMPLE_CHAT],
                chat_template=template,
                add_generation_prompt=generation_prompt,
                bos_token="<s>",
                eos_token="</s>",
            )
    except Exception as error:  # any failure of a user's template: Jinja syntax, undefined...
        detail = " ".join(str(error).split())[:200]
        raise ValueError(
            f"does not render a conversation: {type(error).__name__}: {detail}"
        ) from None
