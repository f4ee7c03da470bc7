"""Arena-Hard-Auto (Li et al. 2024, "From Crowdsourced Data to High-Quality Benchmarks:
Arena-Hard and BenchBuilder Pipeline", arXiv 2406.11939), written from its description.

Each question is judged twice against the baseline's answer (GPT-4-0314 for v0.1): game 1
shows the baseline as assistant A, game 2 shows the evaluated model as A. The judge (the
paper's system prompt: answer the prompt itself, then compare) ends with one of five
verdicts, `A>>B, A>B, A=B, B>A, B>>A`; a strong verdict counts as three battles, the others
as one. The battles are fitted with a Bradley-Terry model, i.e. a logistic regression of
the outcome on the rating difference (ties are outcome 1/2), and the score is the model's
predicted win rate against the baseline, with a 95% percentile bootstrap interval over
battles (100 rounds, as in the paper). Style control (the Chatbot Arena follow-up) adds the
normalized differences in answer length and markdown (headers, list items, bold spans) as
covariates, so the score is the win rate the model would have at equal style.

The fit uses statsmodels' GLM with a binomial family: the same maximum-likelihood logistic
regression the paper fits with scikit-learn, without a penalty, and it takes fractional
outcomes (ties) and battle weights directly. A verdict that does not parse is asked again;
one that never parses is recorded as an error and left out, never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from preftune.errors import DataError
from preftune.evaluate.benchmarks.common import (
    answer_prompts,
    cached_requests,
    read_rows,
    unmatched,
)
from preftune.io import atomic_write_json
from preftune.judges.store import judgment_key

HUB_QUESTIONS = "lmarena-ai/arena-hard-auto-v0.1"
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
STRONG_WEIGHT = 3
BOOTSTRAP_ROUNDS = 100
JUDGE_MAX_TOKENS = 4096  # the paper's judge budget: it writes its own answer before judging

SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
    "Begin your evaluation by generating your own answer to the prompt. You must provide your answers before judging any answers.\n\n"
    "When evaluating the assistants' answers, compare both assistants' answers with your answer. You must identify and correct any mistakes or inaccurate information.\n\n"
    "Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means the answer correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity or more than one interpretation, it is more helpful and appropriate to ask for clarifications or more information from the user than providing an answer based on assumptions. Relevant means all parts of the response closely connect or are appropriate to what is being asked. Concise means the response is clear and not verbose or excessive.\n\n"
    "Then consider the creativity and novelty of the assistant's answers when needed. Finally, identify any missing important information in the assistants' answers that would be beneficial to include when responding to the user prompt.\n\n"
    "After providing your explanation, you must output only one of the following choices as your final verdict with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)
USER_TEMPLATE = (
    "<|User Prompt|>\n{question}\n\n"
    "<|The Start of Assistant A's Answer|>\n{answer_a}\n<|The End of Assistant A's Answer|>\n\n"
    "<|The Start of Assistant B's Answer|>\n{answer_b}\n<|The End of Assistant B's Answer|>"
)


def parse_verdict(text: str) -> str | None:
    """The one verdict in `[[...]]`; None when there is none, or several different ones.

    >>> parse_verdict("...so B is much better. My final verdict is: [[B>>A]]")
    'B>>A'
    >>> parse_verdict("[[A>B]] or maybe [[B>A]]") is None
    True
    """
    found = set(re.findall(r"\[\[([AB<>=]+)\]\]", text))
    if len(found) != 1:
        return None
    verdict = found.pop()
    return verdict if verdict in VERDICTS else None


def battles(verdict: str, model_is_a: bool) -> tuple[float, int]:
    """(the evaluated model's outcome 1 / 0.5 / 0, how many battles it counts as).

    >>> battles("A>>B", model_is_a=False)  # the baseline, shown as A, much better
    (0.0, 3)
    >>> battles("A=B", model_is_a=True)
    (0.5, 1)
    """
    a_outcome = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}[verdict]
    weight = STRONG_WEIGHT if ">>" in verdict else 1
    return (a_outcome if model_is_a else 1.0 - a_outcome), weight


# -- inputs ---------------------------------------------------------------------------------


def _first_turn(row: dict) -> str | None:
    """Arena-Hard rows hold `turns: [{"content": ...}]`; preftune rows a `prompt`."""
    turns = row.get("turns")
    if turns:
        return turns[0]["content"] if isinstance(turns[0], dict) else turns[0]
    return row.get("prompt")


def load_questions(path: str | Path | None = None) -> list[dict]:
    """{"id", "category", "question"} from a local JSONL (Arena-Hard `question_id` and
    `turns`, or preftune `id` and `prompt`) or the Hub (`lmarena-ai/arena-hard-auto-v0.1`)."""
    if path is None:
        import datasets

        try:
            rows = list(datasets.load_dataset(HUB_QUESTIONS, split="train"))
        except (OSError, ValueError, ConnectionError) as error:
            raise DataError(
                f"cannot load {HUB_QUESTIONS} from the Hub ({type(error).__name__}); "
                "give --questions FILE (JSONL with question_id and turns)"
            ) from None
        source = HUB_QUESTIONS
    else:
        rows, source = read_rows(path, what="questions"), str(path)
    questions = []
    for number, row in enumerate(rows, start=1):
        identifier, text = row.get("question_id", row.get("id")), _first_turn(row)
        for field, value in (("question_id", identifier), ("turns", text)):
            if value is None:
                raise DataError(f"row {number} has no value", source=source, field=field)
        questions.append({"id": str(identifier), "category": row.get("category"), "question": text})
    return questions


def load_answers(path: str | Path, *, what: str) -> dict[str, str]:
    """Answers by question id: Arena-Hard model answers (`question_id`,
    `choices[0].turns[0].content`) or preftune samples (`id`, `response`)."""
    answers = {}
    for number, row in enumerate(read_rows(path, what=what), start=1):
        identifier = row.get("question_id", row.get("id"))
        answer = row.get("response")
        if answer is None and row.get("choices"):
            answer = _first_turn(row["choices"][0])
        for field, value in (("question_id", identifier), ("response", answer)):
            if value is None:
                raise DataError(f"row {number} has no value", source=str(path), field=field)
        answers.setdefault(str(identifier), answer)
    return answers


def answer_questions(model_or_path, questions: list[dict], path: Path, **options) -> dict[str, str]:
    """Answer every question with `model_or_path` (resumable: `path`); answers by question id."""
    prompts = [{"id": q["id"], "prompt": q["question"]} for q in questions]
    samples = answer_prompts(model_or_path, prompts, Path(path), **options)
    return {identifier: row["response"] for identifier, row in samples.items()}


def _require_answers(questions: list[dict], answers: dict[str, str], what: str) -> None:
    missing = [q["id"] for q in questions if q["id"] not in answers]
    if missing:
        raise unmatched(missing, f"questions have no {what} answer")


# -- style ----------------------------------------------------------------------------------

STYLE_FEATURES = ("length", "headers", "list_items", "bold")
_CODE_BLOCK = re.compile(r"```.*?```", re.S)
_MARKDOWN = {
    "headers": re.compile(r"^#{1,6} ", re.M),
    "list_items": re.compile(r"^\s*(?:[-*+]|\d+\.) ", re.M),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}


def style_counts(answer: str) -> list[float]:
    """Words, then markdown headers, list items and bold spans outside code blocks.

    >>> style_counts("# Title\\n- **one**\\n- two")
    [6.0, 1.0, 2.0, 1.0]
    """
    prose = _CODE_BLOCK.sub("", answer)
    return [float(len(answer.split()))] + [float(len(p.findall(prose))) for p in _MARKDOWN.values()]


def style_differences(model_answer: str, baseline_answer: str) -> list[float]:
    """(model - baseline) / (model + baseline) for each style feature; 0 when both are 0."""
    model, baseline = style_counts(model_answer), style_counts(baseline_answer)
    return [(m - b) / (m + b) if m + b else 0.0 for m, b in zip(model, baseline, strict=True)]


# -- Bradley-Terry --------------------------------------------------------------------------


def bradley_terry_win_rate(
    outcomes: np.ndarray, weights: np.ndarray, style: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """The evaluated model's predicted win rate against the baseline, and the style
    coefficients (empty without style).

    One rating is free (the model's, the baseline's is fixed at 0), so the design is a
    column of ones, plus the standardized style differences under style control:
    logit P(model wins) = θ + γ·style, and the score is σ(θ), the win rate at equal style.
    Without style the MLE is σ(θ) = the weighted mean outcome; when every battle has the
    same outcome the MLE is that outcome (θ = ±∞).

    >>> score, _ = bradley_terry_win_rate(np.array([1.0, 0.0, 0.5]), np.array([3, 1, 1]))
    >>> round(score, 6)  # (3 + 0 + 0.5) / 5
    0.7
    """
    import statsmodels.api as sm

    columns = [np.ones(len(outcomes))]
    if style is not None:
        spread = style.std(axis=0)
        usable = spread > 0
        columns += list(((style[:, usable] - style[:, usable].mean(axis=0)) / spread[usable]).T)
    mean = float(np.average(outcomes, weights=weights))
    if mean in (0.0, 1.0):
        return mean, np.zeros(len(columns) - 1)
    fit = sm.GLM(
        outcomes, np.column_stack(columns), family=sm.families.Binomial(), freq_weights=weights
    ).fit()
    theta = fit.params[0]
    coefficients = np.zeros(style.shape[1]) if style is not None else np.zeros(0)
    if style is not None:
        coefficients[usable] = fit.params[1:]
    return float(1.0 / (1.0 + np.exp(-theta))), coefficients


def bootstrap_interval(
    outcomes: np.ndarray,
    weights: np.ndarray,
    style: np.ndarray | None,
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of the score over battles resampled with replacement (each
    strong verdict's three battles are resampled one by one, as in the paper)."""
    expanded = np.repeat(np.arange(len(outcomes)), weights)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(rounds):
        rows = expanded[rng.integers(0, len(expanded), len(expanded))]
        ones = np.ones(len(rows), dtype=int)
        score, _ = bradley_terry_win_rate(
            outcomes[rows], ones, None if style is None else style[rows]
        )
        scores.append(score)
    low, high = np.quantile(scores, [0.025, 0.975])
    return float(low), float(high)


# -- the run --------------------------------------------------------------------------------


def _games(questions, answers, baseline) -> list[dict]:
    """Two games per question: the baseline as A first (as in the paper), then the model."""
    games = []
    for q in questions:
        for game, model_is_a in ((1, False), (2, True)):
            a, b = (answers[q["id"]], baseline[q["id"]])[:: 1 if model_is_a else -1]
            games.append(
                {
                    "id": q["id"],
                    "game": game,
                    "model_is_a": model_is_a,
                    "question": q["question"],
                    "answer_a": a,
                    "answer_b": b,
                }
            )
    return games


def check_answer_ids(questions: list[dict], answers: dict[str, str], source: str) -> None:
    """Answers to questions outside the set are a DataError naming their ids."""
    wanted = {q["id"] for q in questions}
    stray = sorted(set(answers) - wanted)
    if stray:
        raise unmatched(stray, f"answers in {source} match no question of the set")


def arena_hard(
    questions: list[dict],
    answers: dict[str, str],
    baseline: dict[str, str],
    judge,
    out_dir,
    *,
    style_control: bool = False,
    bootstrap_rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict:
    """Judge every question in both orders with `judge` (an `OpenAIJudge`: its client,
    retries and concurrency); writes DIR/judgments.jsonl (cache) and DIR/results.json."""
    _require_answers(questions, answers, "evaluated")
    _require_answers(questions, baseline, "baseline")
    out_dir = Path(out_dir)
    games = _games(questions, answers, baseline)
    rows, cache_hits = _judge_games(games, judge, out_dir / "judgments.jsonl")
    decided = [(g, r) for g, r in zip(games, rows, strict=True) if r["verdict"] is not None]
    if not decided:
        raise DataError(f"the judge gave no usable verdict in any of {len(games)} games")
    outcomes, weights = zip(
        *(battles(r["verdict"], g["model_is_a"]) for g, r in decided), strict=True
    )
    outcomes, weights = np.array(outcomes), np.array(weights)
    style = None
    if style_control:
        style = np.array(
            [style_differences(answers[g["id"]], baseline[g["id"]]) for g, _ in decided]
        )
    results = {
        "benchmark": "arena_hard",
        "judge": judge.identity,
        **_score_figures(outcomes, weights, style, bootstrap_rounds, seed),
        "verdicts": {
            f"game_{game}": dict(Counter(r["verdict"] for g, r in decided if g["game"] == game))
            for game in (1, 2)
        },
        "n_questions": len(questions),
        "n_games": len(games),
        "battles": int(weights.sum()),
        "errors": len(games) - len(decided),
        "reasked": sum(len(r["raw"]) - 1 for r in rows),
        "cache_hits": cache_hits,
        "judgments": [{k: r[k] for k in ("id", "game", "verdict", "raw")} for r in rows],
    }
    atomic_write_json(out_dir / "results.json", results)
    return results


def _judge_games(games: list[dict], judge, path: Path) -> tuple[list[dict], int]:
    """Each game's verdict and raw replies (cached in `path`), and how many came from it."""
    identity = f"arena-hard-v0.1:{judge.identity}"
    keys = [judgment_key(identity, g["question"], g["answer_a"], g["answer_b"]) for g in games]

    def work(index: int) -> dict:
        game = games[index]
        user = USER_TEMPLATE.format(**game)
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        verdict, raws = judge.ask(messages, parse_verdict)  # re-asks what does not parse
        return {"id": game["id"], "game": game["game"], "verdict": verdict, "raw": raws}

    return cached_requests(
        path,
        keys,
        work,
        usable=lambda row: row.get("verdict") is not None,
        concurrency=getattr(judge, "concurrency", 1),
        desc="arena-hard",
    )


def _score_figures(outcomes, weights, style, bootstrap_rounds: int, seed: int) -> dict:
    """The Bradley-Terry score against the baseline, its bootstrap interval and, under style
    control (`style` given), the style coefficients."""
    score, coefficients = bradley_terry_win_rate(outcomes, weights, style)
    ci_low, ci_high = bootstrap_interval(
        outcomes, weights, style, rounds=bootstrap_rounds, seed=seed
    )
    return {
        "score": score,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_level": 0.95,
        "bootstrap_rounds": bootstrap_rounds,
        "style_control": style is not None,
        "style_coefficients": dict(zip(STYLE_FEATURES, coefficients.tolist(), strict=True))
        if style is not None
        else None,
    }
