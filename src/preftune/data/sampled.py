"""Scored lists from sampled responses: the data a study's on-policy step and iterative rounds
train on (the DPO paper's sentiment experiment, section 6.1: k samples per prompt, scored).

A prompt's samples become one list of its distinct, non-empty responses in sample order; a
prompt left with fewer than two is dropped, since there is nothing to prefer. Scoring is the
caller's (a task's gold reward, a reward source); `scored_row` is one row of the "scored"
format the data path reads, from which the pair, binary and list views are built.
"""

from __future__ import annotations


def distinct_responses(prompts: list[dict], samples: list[dict]):
    """([(prompt row, [distinct non-empty texts])], prompts dropped for fewer than two), in
    the order of `prompts`; `samples` are `preftune.generate` rows ({"id", "response"}).

    >>> prompts = [{"id": "a", "prompt": "?"}, {"id": "b", "prompt": "!"}]
    >>> samples = [{"id": "a", "response": "x"}, {"id": "a", "response": "x"},
    ...            {"id": "a", "response": "y"}, {"id": "b", "response": " "}]
    >>> distinct_responses(prompts, samples)
    ([({'id': 'a', 'prompt': '?'}, ['x', 'y'])], 1)
    """
    by_prompt: dict[str, list[str]] = {}
    for row in samples:
        texts = by_prompt.setdefault(str(row["id"]), [])
        if row["response"].strip() and row["response"] not in texts:
            texts.append(row["response"])
    kept = [(p, by_prompt.get(str(p["id"]), [])) for p in prompts]
    lists = [(prompt, texts) for prompt, texts in kept if len(texts) >= 2]
    return lists, len(prompts) - len(lists)


def scored_row(prompt: dict, texts: list[str], scores: list[float]) -> dict:
    """One row of the "scored" format: {"id", "prompt", "responses", "scores"}."""
    return {"id": prompt["id"], "prompt": prompt["prompt"], "responses": texts, "scores": scores}
