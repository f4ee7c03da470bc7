"""Judge many pairs: cached decisions first, the rest with up to `judge.concurrency` in flight.

Each finished decision is written as it arrives. When one fails (the judge stopped: a refused
key, a model that broke), no new one starts, the ones already in flight are awaited and
written too (their answers are paid for), and then the error is raised; a decision the judge
got part-way through (`JudgeError.partial`) is written as well. Ctrl-C writes what finished
and cancels the rest.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm.auto import tqdm

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


def run_tasks(todo: list[int], work, finish, concurrency: int, *, desc: str) -> None:
    """Call `work(i)` for each i in `todo` with up to `concurrency` in flight, and
    `finish(i, result)` in the calling thread as each one completes.

    When `work` raises, nothing new starts; what is in flight is awaited and finished, the
    error's `partial` result (if any) is finished too, then the first error is raised.
    """
    with tqdm(total=len(todo), desc=desc, unit="item") as bar:

        def settle(index: int, outcome) -> Exception | None:
            try:
                result = outcome()
            except Exception as error:
                if getattr(error, "partial", None) is not None:
                    finish(index, error.partial)
                return error
            finish(index, result)
            bar.update()
            return None

        workers = max(1, int(concurrency))
        if workers == 1:
            for index in todo:
                error = settle(index, lambda index=index: work(index))
                if error is not None:
                    raise error
        else:
            _run_concurrently(todo, work, settle, workers)


def _run_concurrently(todo, work, settle, workers) -> None:
    executor = ThreadPoolExecutor(max_workers=workers)
    in_flight = {executor.submit(work, index): index for index in todo}
    first_error = None
    try:
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                index = in_flight.pop(future)
                if future.cancelled():
                    continue
                error = settle(index, future.result)
                if error is not None and first_error is None:
                    first_error = error
                    for pending in in_flight:  # not started yet: never sent
                        pending.cancel()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    if first_error is not None:
        raise first_error
