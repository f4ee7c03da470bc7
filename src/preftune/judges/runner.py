"""Judge many pairs: cached decisions first, the rest with up to `judge.concurrency` in flight.

Each finished decision is written before the next is awaited, so an interruption loses only
the ones still in flight (pending ones are cancelled).
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm.auto import tqdm

from preftune.judges.base import Judgment
from preftune.judges.store import JudgmentStore, judgment_key


def judge_pairs(judge, pairs: list[dict], store: JudgmentStore) -> tuple[list[Judgment], int]:
    """Decide each pair ({"prompt", "a", "b"} plus context fields such as "id" and "sample").

    Returns the judgments in the order of `pairs` and how many came from the cache.
    """
    judgments: list[Judgment | None] = [None] * len(pairs)
    keys = [judgment_key(judge.identity, p["prompt"], p["a"], p["b"]) for p in pairs]
    todo = []
    for index, key in enumerate(keys):
        judgments[index] = store.lookup(key)
        if judgments[index] is None:
            todo.append(index)
    cache_hits = len(pairs) - len(todo)

    def finish(index: int, judgment: Judgment) -> None:
        judgments[index] = judgment
        context = {k: v for k, v in pairs[index].items() if k not in ("a", "b")}
        context["response_a"], context["response_b"] = pairs[index]["a"], pairs[index]["b"]
        store.record(keys[index], judge.identity, judgment, **context)

    def decide(index: int) -> Judgment:
        pair = pairs[index]
        return judge.compare(pair["prompt"], pair["a"], pair["b"])

    run_tasks(todo, decide, finish, getattr(judge, "concurrency", 1), desc="judge")
    return judgments, cache_hits


def run_tasks(todo: list[int], work, finish, concurrency: int, *, desc: str) -> None:
    """Call `work(i)` for each i in `todo` with up to `concurrency` in flight, and
    `finish(i, result)` in the calling thread as each one completes."""
    with tqdm(total=len(todo), desc=desc, unit="item") as bar:
        if max(1, int(concurrency)) == 1:
            for index in todo:
                finish(index, work(index))
                bar.update()
        else:
            _run_concurrently(todo, work, finish, int(concurrency), bar)


def _run_concurrently(todo, decide, finish, workers, bar) -> None:
    executor = ThreadPoolExecutor(max_workers=workers)
    in_flight = {executor.submit(decide, index): index for index in todo}
    try:
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            failures = []
            for future in done:
                index = in_flight.pop(future)
                if future.exception() is not None:
                    failures.append(future.exception())
                    continue
                finish(index, future.result())
                bar.update()
            if failures:  # the decisions that did finish are already on disk
                raise failures[0]
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
