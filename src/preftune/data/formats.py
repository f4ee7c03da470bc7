"""Every input format the field uses, each parsed from one row into a `PromptGroup`.

The reader detects the format from the columns (`detect_format`) unless told, then calls
`FORMATS[name](row)`. A parser raises `RowError` naming the field; it leaves `id` and
`source` to the reader. Scores are higher-is-better. Paired data without scores gets 1 and 0,
marked `meta["implicit_scores"]` so that methods needing real scores can refuse it.
"""

from __future__ import annotations

from collections.abc import Callable

from preftune.data import fields
from preftune.data.messages import RowError, as_messages, common_prefix, shown, split_hh_dialogue
from preftune.data.records import PromptGroup, Response, Text

PROMPT_KEYS = ("prompt", "instruction")
COMPLETION_TEXT_KEYS = ("response", "text", "completion")
# UltraFeedback's nested scores, in order of preference; the first one the group has is used.
NESTED_SCORE_KEYS = ("overall_score", "fine-grained_score", "annotations")
MISSING_RATINGS = {"N/A", "n/a", ""}


def _distinct(chosen, rejected) -> None:
    if chosen == rejected:
        raise RowError("rejected", "identical to 'chosen': the pair says nothing")


def _pair(prompt: Text, chosen: Text, rejected: Text, row: dict) -> PromptGroup:
    """A chosen/rejected pair, with `score_chosen`/`score_rejected` when the row has them."""
    _distinct(chosen, rejected)
    meta = {}
    if (
        fields.optional(row, "score_chosen") is None
        and fields.optional(row, "score_rejected") is None
    ):
        scores, meta["implicit_scores"] = (1.0, 0.0), True
    else:
        scores = tuple(
            fields.score(fields.required(row, k), k) for k in ("score_chosen", "score_rejected")
        )
        if scores[0] < scores[1]:
            raise RowError("score_rejected", f"{scores[1]} is higher than score_chosen {scores[0]}")
    return PromptGroup(
        prompt=prompt,
        responses=[Response(chosen, score=scores[0]), Response(rejected, score=scores[1])],
        id="",
        tie=scores[0] == scores[1],
        meta=meta,
    )


def parse_paired(row: dict) -> PromptGroup:
    """`prompt`, `chosen`, `rejected` as strings (TRL's standard preference format)."""
    prompt = fields.prompt(fields.required(row, "prompt"), "prompt")
    chosen, rejected = (fields.text(fields.required(row, k), k) for k in ("chosen", "rejected"))
    return _pair(prompt, chosen, rejected, row)


def parse_paired_conversational(row: dict) -> PromptGroup:
    """`chosen`/`rejected` as message lists, with or without a `prompt`.

    Without a prompt, the prompt is the messages both conversations share. With one, it is
    removed from the front of each conversation that repeats it (UltraFeedback-binarized style).
    """
    chosen, rejected = (fields.messages(fields.required(row, k), k) for k in ("chosen", "rejected"))
    _distinct(chosen, rejected)  # before the shared prefix swallows both
    given = fields.optional(row, "prompt")
    if given is None:
        shared = common_prefix(chosen, rejected)
        if shared == 0:
            raise RowError("prompt", "missing, and 'chosen'/'rejected' share no leading messages")
        prompt = chosen[:shared]
    else:
        prompt = as_messages(fields.prompt(given, "prompt"))
        shared = len(prompt) if chosen[: len(prompt)] == prompt == rejected[: len(prompt)] else 0
    return _pair(
        prompt,
        fields.response(chosen[shared:], "chosen"),
        fields.response(rejected[shared:], "rejected"),
        row,
    )


def parse_hh(row: dict) -> PromptGroup:
    """Anthropic HH: whole dialogues in `chosen`/`rejected`, split at the last assistant turn."""
    prompt, chosen = split_hh_dialogue(fields.required(row, "chosen"), "chosen")
    other_prompt, rejected = split_hh_dialogue(fields.required(row, "rejected"), "rejected")
    if other_prompt != prompt:
        raise RowError("rejected", "the dialogue differs from 'chosen' before the last answer")
    for key, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer:
            raise RowError(key, "empty response after the last '\\n\\nAssistant:'")
    return _pair(prompt, chosen, rejected, row)


def parse_tldr(row: dict) -> PromptGroup:
    """OpenAI TL;DR comparisons: `info` (post, title, subreddit), two `summaries`, `choice`.

    The prompt follows Stiennon et al. (2020): "SUBREDDIT: r/..\\n\\nTITLE: ..\\n\\nPOST: ..\\n\\nTL;DR:".
    """
    info = fields.required(row, "info")
    if not isinstance(info, dict):
        raise RowError("info", f"expected an object with 'post', got {shown(info)}")
    body_key = "post" if fields.optional(info, "post") is not None else "article"
    body = fields.text(fields.required(info, body_key, "info"), f"info.{body_key}")
    parts = [
        f"SUBREDDIT: r/{info['subreddit']}" if info.get("subreddit") else "",
        f"TITLE: {info['title']}" if info.get("title") else "",
        f"{body_key.upper()}: {body.strip()}",
        "TL;DR:",
    ]
    summaries = fields.required(row, "summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise RowError("summaries", f"expected a list of 2 summaries, got {shown(summaries)}")
    texts = []
    for i, summary in enumerate(summaries):
        value = summary.get("text") if isinstance(summary, dict) else None
        texts.append(" " + fields.text(value, f"summaries[{i}].text").strip())
    choice = fields.required(row, "choice")
    if choice not in (0, 1) or isinstance(choice, bool):
        raise RowError("choice", f"expected 0 or 1, got {shown(choice)}")
    group = _pair("\n\n".join(p for p in parts if p), texts[choice], texts[1 - choice], row)
    confidence = (row.get("extra") or {}).get("confidence")
    if confidence is not None:
        group.meta["confidence"] = confidence
    return group


def parse_binary(row: dict) -> PromptGroup:
    """KTO-style binary feedback: `prompt`, `completion`, boolean `label`."""
    prompt = fields.prompt(fields.required(row, "prompt"), "prompt")
    completion = fields.response(fields.required(row, "completion"), "completion")
    label = fields.label(fields.required(row, "label"), "label")
    return PromptGroup(prompt=prompt, responses=[Response(completion, label=label)], id="")


def _nested_score(completion: dict, key: str, field: str) -> float:
    """One UltraFeedback completion's score: a number, or the mean of its annotation ratings."""
    value = fields.required(completion, key, field)
    if key != "annotations":
        return fields.score(value, f"{field}.{key}")
    if not isinstance(value, dict):
        raise RowError(f"{field}.annotations", f"expected an object of ratings, got {shown(value)}")
    ratings = [
        fields.score(aspect["Rating"], f"{field}.annotations.{name}.Rating")
        for name, aspect in value.items()
        if isinstance(aspect, dict) and aspect.get("Rating") not in MISSING_RATINGS
    ]
    if not ratings:
        raise RowError(f"{field}.annotations", "no numeric 'Rating' in any aspect")
    return sum(ratings) / len(ratings)


def _nested_responses(completions: list) -> list[Response]:
    """UltraFeedback's `completions`: [{response, overall_score | fine-grained_score | annotations}]."""
    first = completions[0]
    key = next((k for k in NESTED_SCORE_KEYS if fields.optional(first, k) is not None), None)
    if key is None:
        raise RowError("completions[0]", f"no score: expected one of {list(NESTED_SCORE_KEYS)}")
    responses = []
    for i, completion in enumerate(completions):
        field = f"completions[{i}]"
        if not isinstance(completion, dict):
            raise RowError(field, f"expected an object, got {shown(completion)}")
        text_key = fields.first_present(completion, COMPLETION_TEXT_KEYS, field)
        text = fields.response(completion[text_key], f"{field}.{text_key}")
        responses.append(Response(text, score=_nested_score(completion, key, field)))
    return responses


def _flat_responses(row: dict, key: str) -> list[Response]:
    """Parallel lists: `responses` (or `completions`) with `scores`, and optional `labels`."""
    texts, scores = row[key], fields.required(row, "scores")
    labels = fields.optional(row, "labels")
    for name, values in (("scores", scores), ("labels", labels)):
        if values is not None and (not isinstance(values, list) or len(values) != len(texts)):
            raise RowError(name, f"expected a list of {len(texts)} values, one per {key} entry")
    return [
        Response(
            fields.response(texts[i], f"{key}[{i}]"),
            score=fields.score(scores[i], f"scores[{i}]"),
            label=None if labels is None else fields.label(labels[i], f"labels[{i}]"),
        )
        for i in range(len(texts))
    ]


def parse_scored(row: dict) -> PromptGroup:
    """Scored lists: UltraFeedback's nested `completions`, or flat `responses` + `scores`."""
    prompt_key = fields.first_present(row, PROMPT_KEYS)
    prompt = fields.prompt(row[prompt_key], prompt_key)
    key = fields.first_present(row, ("completions", "responses"))
    listed = row[key]
    if not isinstance(listed, list) or not listed:
        raise RowError(key, f"expected a non-empty list, got {shown(listed)}")
    nested = isinstance(listed[0], dict)  # UltraFeedback: one object per completion
    responses = _nested_responses(listed) if nested else _flat_responses(row, key)
    return PromptGroup(prompt=prompt, responses=responses, id="")


FORMATS: dict[str, Callable[[dict], PromptGroup]] = {
    "paired": parse_paired,
    "paired-conversational": parse_paired_conversational,
    "hh": parse_hh,
    "tldr": parse_tldr,
    "binary": parse_binary,
    "scored": parse_scored,
}


def detect_format(columns: set[str], first_row: dict | None) -> str | None:
    """The format the columns (and the first row's values) point to, or None."""
    if {"info", "summaries", "choice"} <= columns:
        return "tldr"
    if {"completion", "label"} <= columns:
        return "binary"
    if "completions" in columns or {"responses", "scores"} <= columns:
        return "scored"
    if {"chosen", "rejected"} <= columns:
        chosen = (first_row or {}).get("chosen")
        if isinstance(chosen, list):
            return "paired-conversational"
        if "prompt" not in columns and isinstance(chosen, str) and "Assistant:" in chosen:
            return "hh"
        return "paired"
    return None
