"""Judge many pairs: cached decisions first, the rest with up to `judge.concurrency` in flight.

Each finished decision is written as it arrives. When one fails (the judge stopped: a refused
key, a model that broke), no new one starts, the ones already in flight are awaited and
written too (their answers are paid for), and then the error is raised; a decision the judge
got part-way through (`JudgeError.partial`) is written as well. Ctrl-C writes what finished
and cancels the rest.
"""

from __future__ import annotations

from preftune.generate.concurrency import run_tasks
from preftune.judges.base import Judgment
from preftune.judges.store import JudgmentStore, judgment_key


def judge_pairs(judge, pairs: list[dict], store: JudgmentStore) -> tuple[list[Judgment], int]:
    """Decide each pair ({"prompt", "a", "b"} plus context fields such as "id" and "sample").

    Returns the judgments in the order of `pairs` and how many came from the cache. A pair
    whose last decision ended in "error" with one order answered is handed to the judge as
    `earlier`, so that only the failed order is asked again.
    """
    judgments: list[Judgment | None] = [None] * len(pairs)
    keys = [judgment_key(judge.identity, p["prompt"], p["a"], p["b"]) for p in pairs]
    todo, earlier = [], {}
    for index, key in enumerate(keys):
        judgments[index] = store.lookup(key)
        if judgments[index] is None:
            todo.append(index)
            previous = store.earlier(key)
            if previous is not None and any(v != "error" for v in previous.verdicts):
                earlier[index] = previous
    cache_hits = len(pairs) - len(todo)

    def finish(index: int, judgment: Judgment) -> None:
        judgments[index] = judgment
        context = {k: v for k, v in pairs[index].items() if k not in ("a", "b")}
        context["response_a"], context["response_b"] = pairs[index]["a"], pairs[index]["b"]
        store.record(keys[index], judge.identity, judgment, **context)

    def decide(index: int) -> Judgment:
        pair = pairs[index]
        if index in earlier:
            return judge.compare(pair["prompt"], pair["a"], pair["b"], earlier=earlier[index])
        return judge.compare(pair["prompt"], pair["a"], pair["b"])

    run_tasks(todo, decide, finish, getattr(judge, "concurrency", 1), desc="judge")
    return judgments, cache_hits
