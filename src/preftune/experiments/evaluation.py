"""Evaluate one row of a study: greedy answers, their statistics, and each judged evaluation.

Statistics (stats.json): mean gold reward, KL from the starting model, length, repetition,
distinct-2 and the share of answers ending at EOS. KL is the mean over a model's own greedy
held-out answers of log π(y|x) − log π_start(y|x) (the quantity on the x axis of the DPO
paper's figure 2, here on greedy rather than sampled answers, so it is an estimate).
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

import torch

from preftune.errors import ConfigError
from preftune.experiments.config import Evaluation, StudyConfig
from preftune.experiments.layout import SFT, START, StudyLayout, write_json_atomic
from preftune.generate.jsonl import read_jsonl


def sample_answers(model, prompts: list[dict], out: Path, config: StudyConfig) -> list[dict]:
    """Greedy answers (temperature 0, as in the seed study) to the held-out prompts."""
    from preftune.generate import generate

    return generate(
        model,
        prompts,
        out,
        max_new_tokens=config.evaluation.max_new_tokens,
        temperature=0.0,
        batch_size=config.evaluation.batch_size,
        seed=config.seed,
    )


def start_logps(start_model, rows: list[dict], batch_size: int = 16) -> list[float]:
    """Summed log-prob of each row's answer tokens under the starting model."""
    from preftune.data.batch import TokenizedGroup, collate
    from preftune.generate import render_prompt
    from preftune.models.engine import sequence_logps

    model, tokenizer = start_model
    groups = [
        TokenizedGroup(
            id=row["id"],
            prompt_ids=render_prompt(tokenizer, row["prompt"]),
            response_ids=[row["response_token_ids"]],
            scores=[None],
            labels=[None],
        )
        for row in rows
    ]
    logps = []
    with torch.no_grad():
        for begin in range(0, len(groups), batch_size):
            batch = collate(groups[begin : begin + batch_size])
            out = sequence_logps(model, batch, pad_token_id=tokenizer.pad_token_id or 0)
            logps += out.logps[:, 0].tolist()
    return logps


def write_stats(
    config: StudyConfig, samples: Path, start_model, out: Path, *, is_start: bool
) -> dict:
    from preftune.evaluate.text_stats import text_stats

    rows = read_jsonl(samples)
    text = text_stats(rows)
    stats = {
        "n": len(rows),
        "length": text["mean_length"],
        "repetition": text["repeated_trigram_share"],
        "distinct_2": text["distinct_2"],
        "eos_share": text.get("eos_share"),
        "gold_reward": None,
        "kl": 0.0 if is_start else None,
    }
    if config.gold_task is not None:
        from preftune.tasks import get_task

        gold = get_task(config.gold_task).gold
        stats["gold_reward"] = fmean(gold(row["prompt"], row["response"]) for row in rows)
    if not is_start:
        reference = start_logps(start_model, rows)
        stats["kl"] = fmean(row["logp"] - ref for row, ref in zip(rows, reference, strict=True))
    write_json_atomic(out, stats)
    return stats


def build_study_judge(config: StudyConfig, spec: Evaluation):
    """The judge an evaluation names; a gold judge defaults to the study task's gold reward."""
    from preftune.judges import build_judge

    options = spec.judge.options
    if spec.judge.type == "gold" and "gold" not in options:
        from preftune.tasks import get_task

        options["gold"] = get_task(config.gold_task).gold_name
    return build_judge(spec.judge.type, **options)


def baseline_rows(spec: Evaluation, layout: StudyLayout) -> list[dict] | Path:
    if spec.baseline in (START, SFT):
        return layout.samples(START)
    if spec.baseline == "reference":
        rows = [row for row in read_jsonl(layout.heldout) if "response" in row]
        if not rows:
            raise ConfigError(
                f"evaluation '{spec.name}': baseline 'reference' needs held-out data with "
                "preferred responses; the held-out prompts have none"
            )
        return rows
    path = Path(spec.baseline)
    if not path.is_file():
        raise ConfigError(f"evaluation '{spec.name}': baseline file '{path}' does not exist")
    return path


def judge_row(
    config: StudyConfig, spec: Evaluation, samples: Path, layout: StudyLayout, label: str
) -> dict:
    """Run one evaluation of one row; writes <eval>/<label>/<evaluation>/results.json."""
    if spec.kind == "mt-bench":
        raise ConfigError(
            f"evaluation '{spec.name}': MT-Bench grading inside a study is not built yet; "
            "grade the runs' final/ models with `preftune judge` meanwhile"
        )
    from preftune.evaluate.win_rate import win_rate

    return win_rate(
        samples,
        baseline_rows(spec, layout),
        build_study_judge(config, spec),
        layout.judged(label, spec.name),
        seed=config.seed,
    )
