"""telemetry.ordered.ordered_map: the engine's and the readers' in-order thread pool.

Reference: the built-in map over the same items (results, order, where an error surfaces)."""

from __future__ import annotations

import threading
import time

import pytest

from telemetry.errors import InputError
from telemetry.ordered import ordered_map


def slow_square(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # later items often finish first
    if x == 7:
        raise InputError("bad item 7")
    return x * x


@pytest.mark.parametrize("threads", [1, 2])
def test_results_in_input_order_and_an_error_where_it_occurs(threads):
    got = []
    with pytest.raises(InputError, match="bad item 7"):
        for value in ordered_map(slow_square, range(10), threads=threads, ahead=4):
            got.append(value)
    assert got == [x * x for x in range(7)]


def test_an_error_of_the_producer_comes_after_what_it_produced():
    def source():
        yield 1
        yield 2
        raise InputError("source broke")

    out = ordered_map(slow_square, source(), ahead=1)
    assert [next(out), next(out)] == [1, 4]
    with pytest.raises(InputError, match="source broke"):
        next(out)


def test_closing_early_stops_the_threads_and_bounds_the_work():
    started = []

    def record(x: int) -> int:
        started.append(x)
        return x

    out = ordered_map(record, range(1000), threads=2, ahead=3, name="test-ordered")
    assert next(out) == 0
    out.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("test-ordered")]
    assert len(started) <= 4  # what was in flight, not the whole input
