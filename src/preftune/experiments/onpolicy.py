"""A study's prompts and data: test and dev prompts, on-policy scored lists for task studies,
and held-out preference pairs for the preference accuracy of implicit rewards.

On-policy data (the DPO paper's sentiment experiment, section 6.1): sample k responses per
training prompt from the starting model, score each with the task's gold reward and keep them
as one scored list per prompt. The pair, binary and list views all come from these lists, so
every method learns from the same information.
"""

from __future__ import annotations

import json
from pathlib import Path

from preftune.data.sampled import distinct_responses, scored_row
from preftune.errors import ConfigError
from preftune.experiments.config import DataSource, OnPolicy, StudyConfig
from preftune.experiments.layout import StudyLayout
from preftune.io import atomic_write_json, read_jsonl, write_jsonl
from preftune.tasks import get_task


def _text(response) -> str:
    """A response's text; for chat messages, the assistant turns joined."""
    if isinstance(response, str):
        return response
    return "\n".join(m["content"] for m in response if m.get("role") == "assistant")


def write_heldout(config: StudyConfig, path: Path) -> list[dict]:
    """The test prompts as {"id", "prompt"}, with the data set's preferred response under
    "response" (the "reference" baseline) and its least preferred under "rejected" when the
    source has responses. Without a `limit`, as many as the evaluation judges."""
    source = config.data.heldout
    rows = read_prompts(config, source, "heldout", source.limit or config.evaluation.num_prompts)
    write_jsonl(path, rows)
    return rows


def write_dev(config: StudyConfig, path: Path, test_rows: list[dict]) -> list[dict]:
    """The dev prompts (sweeps, preference pairs); ConfigError when one is a test prompt (the
    same text: ids are positional in a data file, so they say nothing across sources)."""
    source = config.dev_source
    rows = read_prompts(config, source, "dev", source.limit)
    test_prompts = {json.dumps(row["prompt"], sort_keys=True) for row in test_rows}
    shared = [r["id"] for r in rows if json.dumps(r["prompt"], sort_keys=True) in test_prompts]
    if shared:
        raise ConfigError(
            f"data.dev: {len(shared)} dev prompts are also test prompts (first: {shared[0]}); "
            "the dev split must be disjoint from data.heldout"
        )
    write_jsonl(path, rows)
    return rows


def read_prompts(config: StudyConfig, source: DataSource, split: str, limit: int | None):
    """Prompt rows of a task split (`source.split`, default `split`) or of a data source."""
    if source.task is not None:
        return get_task(source.task).prompts(source.split or split, limit)
    from preftune.data import read_records

    groups = read_records(
        source.path, source.format, split=source.split, limit=limit, seed=config.seed
    ).groups
    rows = []
    for group in groups:
        row = {"id": group.id, "prompt": group.prompt}
        scored = [r for r in group.responses if r.score is not None or r.label is not None]
        ordered = sorted(scored, key=_preference, reverse=True)
        if ordered and (ordered[0].score is not None or ordered[0].label):
            row["response"] = _text(ordered[0].text)
            if len(ordered) > 1 and _preference(ordered[0]) > _preference(ordered[-1]):
                row["rejected"] = _text(ordered[-1].text)
        rows.append(row)
    return rows


def _preference(response) -> float:
    if response.score is not None:
        return response.score
    return 1.0 if response.label else 0.0


def write_preference_pairs(
    config: StudyConfig, load_start_model, layout: StudyLayout
) -> list[dict]:
    """Held-out pairs {"id", "prompt", "chosen", "rejected"} to test implicit rewards on: the
    test data's own pairs when it has them, else (task studies with
    `evaluation.preference_prompts`) two samples of the starting model per dev prompt, ordered
    by the gold reward (equal scores dropped; `load_start_model()` gives the model only then).
    Returns [] when neither applies."""
    rows = [
        {"id": r["id"], "prompt": r["prompt"], "chosen": r["response"], "rejected": r["rejected"]}
        for r in read_jsonl(layout.heldout)
        if "rejected" in r
    ]
    source = "test data"
    count = config.evaluation.preference_prompts
    if not rows and count and config.gold_task is not None and layout.dev.is_file():
        rows, source = (
            _sampled_pairs(config, load_start_model(), layout, count),
            "start samples on dev",
        )
    for row in rows:
        row["source"] = source
    write_jsonl(layout.preference_pairs, rows)
    return rows


def _sample(
    config: StudyConfig,
    settings: OnPolicy,
    model,
    prompts,
    out: Path,
    *,
    n: int,
    max_new_tokens: int,
    batch_size: int,
) -> list[dict]:
    """`n` samples per prompt at the on-policy temperature, top-k and top-p, with the study's
    seed."""
    from preftune.generate import generate

    return generate(
        model,
        [{"id": p["id"], "prompt": p["prompt"]} for p in prompts],
        out,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        n=n,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=config.seed,
    )


def _sampled_pairs(config: StudyConfig, start_model, layout: StudyLayout, count: int):
    gold = get_task(config.gold_task).gold
    prompts = read_jsonl(layout.dev)[:count]
    samples = _sample(
        config,
        config.data.on_policy or OnPolicy(),
        start_model,
        prompts,
        layout.preference_pairs.with_name("preference_samples.jsonl"),
        n=2,
        max_new_tokens=config.evaluation.max_new_tokens,
        batch_size=config.evaluation.batch_size,
    )
    by_id: dict[str, list[dict]] = {}
    for row in samples:
        by_id.setdefault(row["id"], []).append(row)
    pairs = []
    for prompt in prompts:
        scored = [
            (gold(prompt["prompt"], r["response"]), r["response"])
            for r in by_id.get(prompt["id"], [])
        ]
        if len(scored) == 2 and scored[0][0] != scored[1][0]:
            (_, chosen), (_, rejected) = sorted(scored, reverse=True)
            pairs.append(
                {
                    "id": prompt["id"],
                    "prompt": prompt["prompt"],
                    "chosen": chosen,
                    "rejected": rejected,
                }
            )
    return pairs


def write_scored_lists(config: StudyConfig, start_model, layout: StudyLayout) -> dict:
    """Sample, score and write data/train.jsonl ({"id", "prompt", "responses", "scores"}).

    Empty and duplicate responses are dropped, and a prompt left with fewer than two responses
    is dropped (there is nothing to prefer); the counts are returned and logged in the study.
    """
    settings = config.data.on_policy
    task = get_task(config.data.train.task)
    prompts = task.prompts("train", config.data.train.limit)
    samples = _sample(
        config,
        settings,
        start_model,
        prompts,
        layout.train_data.with_name("samples.jsonl"),
        n=settings.samples_per_prompt,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
    )
    lists, dropped = distinct_responses(prompts, samples)
    rows = [
        scored_row(prompt, texts, [task.gold(prompt["prompt"], text) for text in texts])
        for prompt, texts in lists
    ]
    write_jsonl(layout.train_data, rows)
    counts = {"prompts": len(prompts), "groups": len(rows), "dropped_prompts": dropped}
    atomic_write_json(layout.train_data.with_name("train_counts.json"), counts)
    return counts
