"""MT-Bench pairwise (Zheng et al. 2023): the evaluated model's answers against a baseline
model's answers on the 80 two-turn questions, with FastChat's pair prompts.

Turn 1 uses `pair-v2`, turn 2 `pair-v2-multi-turn` (the judge sees the whole two-turn
conversation of both assistants); math, reasoning and coding questions use the
`pair-math-v1` variants with the GPT-4 reference answer, as FastChat does. Each (question,
turn) is judged in both orders; as in FastChat, two orders that disagree make a tie. The
report gives win / tie / loss per category, per turn and overall, and the win rate with
ties counted half. Decisions are cached in judgments.jsonl (a rerun pays nothing twice).
"""

from __future__ import annotations

from pathlib import Path

from preftune.errors import DataError
from preftune.evaluate.benchmarks.common import cached_requests, read_rows, unmatched
from preftune.evaluate.mtbench import NEEDS_REFERENCE, mtbench_questions, reference_answers
from preftune.io import atomic_write_json
from preftune.judges.base import combine_orders
from preftune.judges.prompts import mtbench_judge_prompts, parse_bracket_verdict
from preftune.judges.store import judgment_key


def load_answers(path: str | Path, *, what: str) -> dict[str, list[str]]:
    """Both turns' answers by question id: FastChat model answers (`question_id`,
    `choices[0].turns`) or preftune MT-Bench answers (`id`, `answers`)."""
    answers = {}
    for number, row in enumerate(read_rows(path, what=what), start=1):
        identifier = row.get("question_id", row.get("id"))
        turns = row.get("answers")
        if turns is None and row.get("choices"):
            turns = row["choices"][0].get("turns")
        if identifier is None:
            raise DataError(f"row {number} has no value", source=str(path), field="question_id")
        if not isinstance(turns, list) or len(turns) != 2:
            raise DataError(
                f"row {number} needs the answers to both turns", source=str(path), field="turns"
            )
        answers[str(identifier)] = turns
    return answers


def judge_requests(row: dict, model: list[str], baseline: list[str], references) -> list[dict]:
    """The two pairwise requests (turn 1, turn 2) for one question, evaluated model as A:
    {"turn", "prompt_name", "fields"} with `answer_a*` the model's, `answer_b*` the baseline's."""
    (q1, q2), with_reference = row["turns"], row["category"] in NEEDS_REFERENCE
    identifier = str(row["question_id"])
    if with_reference and identifier not in references:
        raise DataError(f"MT-Bench question {identifier} has no reference answer")
    reference = references.get(identifier, ["", ""])
    base = "pair-math-v1" if with_reference else "pair-v2"
    first = {"question": q1, "answer_a": model[0], "answer_b": baseline[0]}
    second = {
        "question_1": q1,
        "question_2": q2,
        "answer_a_1": model[0],
        "answer_a_2": model[1],
        "answer_b_1": baseline[0],
        "answer_b_2": baseline[1],
    }
    if with_reference:
        first["ref_answer_1"] = reference[0]
        second.update(ref_answer_1=reference[0], ref_answer_2=reference[1])
    return [
        {"turn": 1, "prompt_name": base, "fields": first},
        {"turn": 2, "prompt_name": f"{base}-multi-turn", "fields": second},
    ]


def swap(fields: dict) -> dict:
    """The same request with assistants A and B exchanged.

    >>> swap({"question": "q", "answer_a": "mine", "answer_b": "theirs"})
    {'question': 'q', 'answer_b': 'mine', 'answer_a': 'theirs'}
    """
    swapped = {}
    for key, value in fields.items():
        if key.startswith("answer_a"):
            key = "answer_b" + key[len("answer_a") :]
        elif key.startswith("answer_b"):
            key = "answer_a" + key[len("answer_b") :]
        swapped[key] = value
    return swapped


def _messages(prompt_name: str, fields: dict) -> list[dict]:
    prompt = mtbench_judge_prompts()[prompt_name]
    return [
        {"role": "system", "content": prompt["system_prompt"]},
        {"role": "user", "content": prompt["prompt_template"].format(**fields)},
    ]


def _parse(text: str) -> str | None:
    """[[A]] / [[B]] / [[C]] as "A" / "B" / "tie"; None (ask again) for anything else."""
    verdict = parse_bracket_verdict(text)
    return None if verdict == "error" else verdict


def _tally(rows: list[dict]) -> dict:
    counts = {
        outcome: sum(r["winner"] == side for r in rows)
        for outcome, side in (("win", "a"), ("tie", "tie"), ("loss", "b"))
    }
    decided = counts["win"] + counts["tie"] + counts["loss"]
    counts["win_rate"] = (counts["win"] + counts["tie"] / 2) / decided if decided else None
    counts["errors"] = sum(r["winner"] == "error" for r in rows)
    return counts


def mtbench_pairwise(
    answers: dict[str, list[str]],
    baseline: dict[str, list[str]],
    judge,
    out_dir,
    *,
    limit: int | None = None,
    reference_model: str = "gpt-4",
) -> dict:
    """Judge the model (A) against the baseline on both turns of each question, both orders;
    writes DIR/judgments.jsonl and DIR/mtbench_pairwise.json (win/tie/loss per category, and
    `judgments`: each (question, turn)'s winner in this run, "a" the model)."""
    questions = mtbench_questions(limit)
    requests = _all_requests(questions, answers, baseline, reference_model)
    rows, cache_hits = _decide(requests, judge, Path(out_dir) / "judgments.jsonl")
    categories = sorted({r["category"] for r in rows})
    summary = {
        "benchmark": "mtbench_pairwise",
        "judge": judge.identity,
        "overall": _tally(rows),
        "turns": {str(turn): _tally([r for r in rows if r["turn"] == turn]) for turn in (1, 2)},
        "categories": {c: _tally([r for r in rows if r["category"] == c]) for c in categories},
        "n_questions": len(questions),
        "cache_hits": cache_hits,
        "judgments": [{k: r[k] for k in ("id", "turn", "winner")} for r in rows],
    }
    atomic_write_json(Path(out_dir) / "mtbench_pairwise.json", summary)
    return summary


def _all_requests(questions, answers, baseline, reference_model: str) -> list[dict]:
    """Both turns' judge requests for every question; a question without an answer on either
    side is an error naming it."""
    for what, given in (("evaluated", answers), ("baseline", baseline)):
        missing = [str(q["question_id"]) for q in questions if str(q["question_id"]) not in given]
        if missing:
            raise unmatched(missing, f"MT-Bench questions have no {what} answers")
    references = reference_answers(reference_model)
    return [
        {"id": str(q["question_id"]), "category": q["category"], **request}
        for q in questions
        for request in judge_requests(
            q, answers[str(q["question_id"])], baseline[str(q["question_id"])], references
        )
    ]


def _decide(requests: list[dict], judge, path: Path) -> tuple[list[dict], int]:
    """Each request judged in both orders and combined (cached in `path`), and how many
    decisions came from the cache."""
    identity = f"mtbench-pairwise:{judge.identity}"
    keys = [judgment_key(identity, r["prompt_name"], r["fields"], "") for r in requests]

    def verdict(prompt_name: str, fields: dict) -> tuple[str, list[str]]:
        found, raws = judge.ask(_messages(prompt_name, fields), _parse)  # re-asks unparsed
        return found or "error", raws

    def work(index: int) -> dict:
        request = requests[index]
        first, raw_first = verdict(request["prompt_name"], request["fields"])
        swapped, raw_swapped = verdict(request["prompt_name"], swap(request["fields"]))
        judgment = combine_orders(first, swapped)
        return {
            "id": request["id"],
            "category": request["category"],
            "turn": request["turn"],
            "prompt_name": request["prompt_name"],
            "winner": judgment.winner,
            "verdicts": judgment.verdicts,
            "raw": {"model_first": raw_first, "baseline_first": raw_swapped},
        }

    return cached_requests(
        path,
        keys,
        work,
        usable=lambda row: row.get("winner") != "error",
        concurrency=getattr(judge, "concurrency", 1),
        desc="mt-bench pairwise",
    )
