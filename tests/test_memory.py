"""Bounded memory: peak RSS of ``telemetry.process`` over a CSV does not grow with the file,
nor with the number of bad rows in it (checked against the same run at 1x size).

The same generated CSV is processed at 1× and 3× its size (the 3× file repeats the
1× data rows, so the work per row is identical), each in a fresh subprocess that
reports its own peak RSS (``ru_maxrss``). Streaming means the peaks agree within
15 %; a reader or stage that held the file would add hundreds of MB at 3×.
Reduced size for CI (~65 MB and ~195 MB); ``TELEMETRY_MEMORY_ROWS`` scales it
(the full multi-gigabyte run belongs to the benchmarks).

Reference: the same run over the 1x file (peak RSS ratio), in fresh subprocesses."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest

from telemetry.generate import write
from telemetry.metrics.state import MAX_RUNS
from tests.conftest import TEST_KEY

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


# -- bad input (issue 16): rejects stream to disk and floods cost almost nothing ------------------

# What one rejected row cost before rejects were streamed and floods summarized: ~650 bytes
# (2 M empty CSV rows took 1.45 GB). A reject past the first FULL_REJECTS of its reason now
# costs its row number; what a larger file adds beyond that is the reader's read-ahead.
_OLD_BYTES_PER_REJECT = 650
_FLOOD_ROWS = int(os.environ.get("TELEMETRY_MEMORY_FLOOD_ROWS", "600000"))
_PAGE_RECORDS = int(os.environ.get("TELEMETRY_MEMORY_PAGE_RECORDS", "100000"))

_CLI_PEAK = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "telemetry", *sys.argv[1:]], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _cli_peak(tmp_path, path, *args: str) -> tuple[int, dict, int]:
    """(peak KiB of ``telemetry process PATH`` run in its own child, run.json, rejects file bytes)."""
    out = tmp_path / f"out-{os.path.basename(path)}"
    done = subprocess.run(
        [sys.executable, "-c", _CLI_PEAK, "process", str(path), "--out", str(out), "--threads", "1", *args],
        capture_output=True, text=True, timeout=900, check=True,
        env={**os.environ, "TELEMETRY_KEY": base64.b64encode(TEST_KEY).decode()},
    )  # fmt: skip
    code, peak = done.stdout.split()
    assert code == "1"  # completed, rows quarantined
    run = json.loads((out / "run.json").read_text())
    rejects = out / "quarantine" / "rejects.jsonl"
    return int(peak), run, rejects.stat().st_size


def _empty_rows(path, n: int) -> None:
    with open(path, "w") as handle:
        handle.write("start_time,source,destination,route,status,tenant,duration_ms\n")
        handle.write(",,,,,,\n" * n)


def _empty_page(path, n: int) -> None:
    with open(path, "w") as handle:  # one Twilio Calls page of n records, all of them {}
        handle.write('{"calls": [' + ", ".join(["{}"] * n) + '], "next_page_uri": null}')


@pytest.mark.slow
def test_a_flood_of_bad_rows_costs_a_few_bytes_a_row(tmp_path):
    """The 1x and 3x files of empty CSV rows (every row rejected for the same reason), and of
    an API page of empty objects: what the 2x more rejects add to the peak is far below what
    they cost when held, and the quarantine file does not grow."""
    from telemetry.quarantine import FULL_REJECTS

    cases = [(_empty_rows, _FLOOD_ROWS, "flood.csv", ()), (_empty_page, _PAGE_RECORDS, "page.json",
             ("--format", "twilio-calls"))]  # fmt: skip
    for make, n, name, args in cases:
        small, large = tmp_path / f"1x-{name}", tmp_path / f"3x-{name}"
        make(small, n)
        make(large, 3 * n)
        peak1, run1, size1 = _cli_peak(tmp_path, small, *args)
        peak3, run3, size3 = _cli_peak(tmp_path, large, *args)
        assert run1["records_quarantined"] == n and run3["records_quarantined"] == 3 * n
        per_reject = (peak3 - peak1) * 1024 / (2 * n)
        assert per_reject < _OLD_BYTES_PER_REJECT / 5, (
            f"{name}: peak RSS {peak1 >> 10} MiB at 1x, {peak3 >> 10} MiB at 3x: {per_reject:.0f} bytes a reject"
        )
        assert size3 - size1 < 64, f"{name}: rejects file {size1} bytes at 1x, {size3} at 3x"
        last = json.loads((tmp_path / f"out-3x-{name}" / "quarantine" / "rejects.jsonl").read_text().splitlines()[-1])
        assert last["summarized"] == 3 * n - FULL_REJECTS
