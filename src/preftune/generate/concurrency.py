"""Work items with up to N in flight, each result handed back in the calling thread as it
finishes: judges and served-model sampling both pay per request and must keep every answer.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm.auto import tqdm


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
