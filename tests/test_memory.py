"""Bounded memory: peak RSS of ``telemetry.process`` over a CSV does not grow with the file.

The same generated CSV is processed at 1× and 3× its size (the 3× file repeats the
1× data rows, so the work per row is identical), each in a fresh subprocess that
reports its own peak RSS (``ru_maxrss``). Streaming means the peaks agree within
15 %; a reader or stage that held the file would add hundreds of MB at 3×.
Reduced size for CI (~65 MB and ~195 MB); ``TELEMETRY_MEMORY_ROWS`` scales it
(the full multi-gigabyte run belongs to the benchmarks).

Reference: the same run over the 1x file (peak RSS ratio), in fresh subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from telemetry.generate import write
from telemetry.metrics.state import MAX_RUNS

ROWS = int(os.environ.get("TELEMETRY_MEMORY_ROWS", "250000"))
# Metric states keep up to MAX_RUNS batch states before folding them (a sawtooth):
# small batches let the 1x run pass that point too, so both runs are at steady state.
BATCH_ROWS = 2048
THREADS = int(os.environ.get("TELEMETRY_MEMORY_THREADS", "1"))

_CHILD = """
import json, resource, sys
import telemetry
result = telemetry.process([sys.argv[1]], key=bytes(range(32)), region="GB",
                           batch_rows=int(sys.argv[2]), k=5, threads=int(sys.argv[3]))
print(json.dumps({"records_in": result.summary["records_in"],
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _peak(path: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, path, str(BATCH_ROWS), str(THREADS)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_file(tmp_path):
    one = tmp_path / "one.csv"
    three = tmp_path / "three.csv"
    assert write(one, ROWS, fmt="csv", seed=11) == ROWS
    with open(one, "rb") as src, open(three, "wb") as out:
        header = src.readline()
        out.write(header)
        for _ in range(3):
            src.seek(len(header))
            shutil.copyfileobj(src, out, 1 << 20)
    assert os.path.getsize(three) > 2.9 * os.path.getsize(one)

    assert ROWS > 1.5 * MAX_RUNS * BATCH_ROWS
    small = _peak(str(one))
    large = _peak(str(three))
    assert small["records_in"] == ROWS and large["records_in"] == 3 * ROWS
    growth = (large["peak_kib"] - small["peak_kib"]) / small["peak_kib"]
    assert growth < 0.15, (
        f"peak RSS {small['peak_kib'] >> 10} MiB at 1x, {large['peak_kib'] >> 10} MiB at 3x"
    )
