"""The local engine: a thread pool over read batches on this machine.

Kernels release the GIL, so threads keep every core busy without copying
batches between processes. At most ``2 × threads`` batches are in flight,
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
            for read in reads:
                yield job.work(read)
            return
        yield from ordered_map(job.work, reads, threads=self.threads, ahead=2 * self.threads)
