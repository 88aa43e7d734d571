"""Run a check from several threads at once (kernels must be re-entrant)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def failures_in_threads(check: Callable[[int], bool], threads: int = 2, rounds: int = 10) -> list[int]:
    """Start ``threads`` threads together; each calls ``check(t)`` ``rounds`` times.
    Returns the thread numbers whose check returned False (empty when all agree)."""
    barrier = threading.Barrier(threads)
    failures: list[int] = []

    def work(t: int) -> None:
        barrier.wait()
        for _ in range(rounds):
            if not check(t):
                failures.append(t)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return failures
