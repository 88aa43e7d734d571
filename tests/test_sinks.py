"""Hive-partitioned Parquet output: each file holds exactly its UTC date's rows, in order."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.sinks.parquet import write_partitioned

DAY_US = 86_400_000_000
BASE_US = 1_793_577_600_000_000  # 2026-11-02T00:00:00Z


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-DAY_US, 4 * DAY_US - 1), min_size=1, max_size=300), st.booleans())
def test_each_file_holds_its_dates_rows_in_order(offsets, in_order) -> None:
    if in_order:
        offsets = sorted(offsets)  # the metrics' case: sorted by window
    times = [BASE_US + o for o in offsets]
    table = pa.table({"window_start": pa.array(times, pa.timestamp("us", tz="UTC")),
                      "row": pa.array(range(len(times)), pa.int64())})
    expected: dict[str, list[int]] = {}  # the slow twin: Python's own calendar, row by row
    for row, us in enumerate(times):
        day = (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)).date()
        expected.setdefault(f"date={day.isoformat()}", []).append(row)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        written = write_partitioned(table, root, "window_start", "part-0")
        got = {path.parent.name: pq.read_table(path).column("row").to_pylist() for path in written}
        assert sorted(p.name for p in root.iterdir()) == sorted(expected)
    assert got == expected
