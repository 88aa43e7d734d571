"""A one-line progress display on stderr, only when stderr is a terminal."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO, interval: float = 0.5) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.interval = interval
        self._start = self._last = time.perf_counter()
        self._shown = False

    def __call__(self, totals: dict) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        n = totals["records_in"]
        rate = n / max(now - self._start, 1e-9)
        self.stream.write(
            f"\r{n:,} records  {rate:,.0f}/s  {totals['records_quarantined']:,} quarantined   "
        )
        self.stream.flush()
        self._shown = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
