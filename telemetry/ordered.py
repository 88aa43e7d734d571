"""``ordered_map``: a function over a stream on worker threads, results in input order.

Used where one side produces (a reader parsing, the pipeline reading) while the
other converts or computes (Arrow and the kernels release the GIL), with a bounded
number of items in flight so memory does not grow with the input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def ordered_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    threads: int = 1,
    ahead: int = 3,
    name: str = "telemetry",
) -> Iterator[Any]:
    """``fn(item)`` for each item, computed on ``threads`` threads (named ``name_N``)
    while the next items are produced; at most ``ahead`` in flight. Results come in
    input order; an error of ``fn`` or of ``items`` is raised here, in order, and
    closing the iterator early cancels what has not started."""
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        pending: deque[Future[Any]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
