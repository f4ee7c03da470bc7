import json

import pytest

from preftune.evaluate.mtbench import (
    generate_answers,
    grade_answers,
    mtbench_questions,
    reference_answers,
)
from preftune.judges.http_chat import ChatClient
from preftune.judges.openai_judge import OpenAIJudge


def test_package_data_has_80_two_turn_questions_in_8_categories():
    questions = mtbench_questions()
    assert len(questions) == 80 and all(len(q["turns"]) == 2 for q in questions)
    assert len({q["category"] for q in questions}) == 8
    assert len(reference_answers()) >= 30


def _fake_answers():
    return [
        {
            "id": str(q["question_id"]),
            "category": q["category"],
            "questions": q["turns"],
            "answers": [f"first answer {q['question_id']}", f"second answer {q['question_id']}"],
        }
        for q in mtbench_questions()
    ]


def test_grading_per_turn_and_category_with_cache(tmp_path, chat_server):
    references = reference_answers()

    def grader(messages, attempt):
        text = messages[-1]["content"]
        if "first answer 81" in text and "second answer 81" not in text:
            return "I will not rate this."  # unparseable every time: an error, not a score
        if "Reference" in text:
            question_id = next(q for q in references if f"answer {q}" in text)
            assert references[question_id][0] in text  # graded against the reference
        return "Rating: [[4]]" if "second answer" in text else "Rating: [[8]]"

    server = chat_server(grader)
    judge = OpenAIJudge(ChatClient(server.base_url, "m", backoff=0.01), concurrency=8)
    summary = grade_answers(_fake_answers(), judge, tmp_path)
    assert summary["n"] == 159 and summary["errors"] == 1
    assert summary["turn_1"] == 8 and summary["turn_2"] == 4
    assert summary["overall"] == pytest.approx((79 * 8 + 80 * 4) / 159)
    assert summary["categories"]["math"] == 6 and summary["categories"]["writing"] == pytest.approx(
        (9 * 8 + 10 * 4) / 19
    )
    assert json.loads((tmp_path / "mtbench.json").read_text())["n"] == 159
    before = len(server.requests)
    again = grade_answers(_fake_answers(), judge, tmp_path)
    assert again["cache_hits"] == 159
    assert len(server.requests) - before == 3  # only the errored grade, asked 1 + 2 retries


def test_answers_for_both_turns_resume(tmp_path, tiny_model, tiny_tokenizer):
    answers = generate_answers(
        (tiny_model, tiny_tokenizer), tmp_path, limit=2, max_new_tokens=3, batch_size=2
    )
    assert [a["id"] for a in answers] == ["81", "82"]
    assert all(len(a["answers"]) == 2 for a in answers)
    second_turn = [json.loads(line) for line in (tmp_path / "answers_turn2.jsonl").open()]
    first_answer = {a["id"]: a["answers"][0] for a in answers}
    for row in second_turn:
        assert row["prompt"][1] == {"role": "assistant", "content": first_answer[row["id"]]}
    again = generate_answers((tiny_model, tiny_tokenizer), tmp_path, limit=2, max_new_tokens=3)
    assert again == answers
