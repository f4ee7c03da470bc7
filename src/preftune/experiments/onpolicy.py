"""A study's prompts and data: held-out prompts, and on-policy scored lists for task studies.

On-policy data (the DPO paper's sentiment experiment, section 6.1): sample k responses per
training prompt from the starting model, score each with the task's gold reward and keep them
as one scored list per prompt. The pair, binary and list views all come from these lists, so
every method learns from the same information.
"""

from __future__ import annotations

import json
from pathlib import Path

from preftune.experiments.config import StudyConfig
from preftune.experiments.layout import StudyLayout
from preftune.tasks import get_task


def _text(response) -> str:
    """A response's text; for chat messages, the assistant turns joined."""
    if isinstance(response, str):
        return response
    return "\n".join(m["content"] for m in response if m.get("role") == "assistant")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    staging.replace(path)


def write_heldout(config: StudyConfig, path: Path) -> list[dict]:
    """The held-out prompts as {"id", "prompt"}, with the data set's preferred response
    under "response" when the source has responses (the "reference" baseline). Without a
    `limit`, as many as the evaluation judges (a seeded sample of a larger split)."""
    source = config.data.heldout
    limit = source.limit or config.evaluation.num_prompts  # no more than are judged
    if source.task is not None:
        rows = get_task(source.task).prompts("heldout", limit)
    else:
        from preftune.data import read_records

        groups = read_records(
            source.path, source.format, split=source.split, limit=limit, seed=config.seed
        ).groups
        rows = []
        for group in groups:
            row = {"id": group.id, "prompt": group.prompt}
            scored = [r for r in group.responses if r.score is not None or r.label]
            if scored:
                best = max(scored, key=lambda r: r.score if r.score is not None else 1.0)
                row["response"] = _text(best.text)
            rows.append(row)
    _write_jsonl(path, rows)
    return rows


def write_scored_lists(config: StudyConfig, start_model, layout: StudyLayout) -> dict:
    """Sample, score and write data/train.jsonl ({"id", "prompt", "responses", "scores"}).

    Empty and duplicate responses are dropped, and a prompt left with fewer than two responses
    is dropped (there is nothing to prefer); the counts are returned and logged in the study.
    """
    from preftune.generate import generate

    settings = config.data.on_policy
    task = get_task(config.data.train.task)
    prompts = task.prompts("train", config.data.train.limit)
    samples = generate(
        start_model,
        prompts,
        layout.train_data.with_name("samples.jsonl"),
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        n=settings.samples_per_prompt,
        batch_size=settings.batch_size,
        seed=config.seed,
    )
    by_prompt: dict[str, list[str]] = {}
    for row in samples:
        texts = by_prompt.setdefault(row["id"], [])
        if row["response"].strip() and row["response"] not in texts:
            texts.append(row["response"])
    rows, dropped = [], 0
    for prompt in prompts:
        texts = by_prompt.get(prompt["id"], [])
        if len(texts) < 2:
            dropped += 1
            continue
        scores = [task.gold(prompt["prompt"], text) for text in texts]
        rows.append(
            {"id": prompt["id"], "prompt": prompt["prompt"], "responses": texts, "scores": scores}
        )
    _write_jsonl(layout.train_data, rows)
    counts = {"prompts": len(prompts), "groups": len(rows), "dropped_prompts": dropped}
    (layout.train_data.with_name("train_counts.json")).write_text(json.dumps(counts, indent=2))
    return counts
