"""The local engine: a thread pool over read batches on this machine.

Kernels release the GIL, so threads keep every core busy without copying
batches between processes. At most ``2 × threads`` batches or pieces are in
flight (a piece: a few batches, decoded by the thread that aggregates them),
which bounds memory however large the input is.
"""

from __future__ import annotations

from collections.abc import Iterator

from telemetry.engine import Job, Partial
from telemetry.ordered import ordered_map


class LocalEngine:
    name = "local"

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)

    def run(self, job: Job, reads: Iterator) -> Iterator[Partial]:
        job.prepare_only()  # build tables once, before the threads race to
        if self.threads == 1:
            for item in reads:
                yield from job.work_item(item)
            return
        for partials in ordered_map(job.work_item, reads, threads=self.threads, ahead=2 * self.threads):
            yield from partials

    def close(self) -> None:
        pass  # the thread pool of each run ends with it
