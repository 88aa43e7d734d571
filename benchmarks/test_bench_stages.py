"""Threads, Asterisk CSV and streaming memory, each against its baseline in the same run.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_stages.py`` (add
``--memory`` for the minutes-long 10 M / 40 M peak-RSS run, as ``make bench``
does).

* threads: the kernel stages (normalize, pseudonymize, derive, accumulate:
  ``Job.work``) over 1 M records already read into batches, on a thread pool of
  one and of two threads.
* Asterisk CSV: ``telemetry process --format asterisk`` as a whole process
  against a process that only reads the same file with ``pyarrow.csv.read_csv``
  (multi-threaded, all columns as strings would be slower; types inferred).
* memory: ``telemetry process`` over 10 M and 40 M records (the same 2 M-record
  Parquet file behind 5 and 20 links), peak RSS of each process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import best_of, run_cli, run_python

THREAD_ROWS = 1_000_000
CSV_ROWS = 300_000  # generated; the Asterisk writer keeps the voice records

READ_CSV = r"""
import sys
import pyarrow.csv as pcsv
table = pcsv.read_csv(sys.argv[1], read_options=pcsv.ReadOptions(autogenerate_column_names=True))
print(table.num_rows)
"""


@pytest.fixture(scope="session")
def read_batches(parquet_4m: Path) -> list:
    from telemetry.readers import open_inputs

    batches = []
    for read in open_inputs([str(parquet_4m)], "parquet", batch_rows=131_072):
        batches.append(read)
        if sum(b.batch.num_rows for b in batches) >= THREAD_ROWS:
            break
    return batches


def _job():
    from telemetry.config import make_options
    from telemetry.engine import Job
    from telemetry.keys import as_keyring

    from conftest import BENCH_KEY

    job = Job(as_keyring(BENCH_KEY), make_options(region="GB"))
    job.prepare_only()
    return job


def _kernel_stages(job, batches: list, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(job.work, batches))
    seconds = time.perf_counter() - start
    assert sum(p.records_in for p in parts) == sum(b.batch.num_rows for b in batches)
    return seconds


def test_threads_kernel_stages(benchmark, figure, read_batches) -> None:
    job = _job()
    job.work(read_batches[0])  # compile (or load) every kernel first
    rows = sum(b.batch.num_rows for b in read_batches)
    one = best_of(lambda: _kernel_stages(job, read_batches, 1), 3)
    benchmark.pedantic(lambda: _kernel_stages(job, read_batches, 2), rounds=3, iterations=1)
    two = benchmark.stats.stats.min
    ratio = one / two
    benchmark.extra_info.update(one_thread_s=round(one, 3), two_threads_s=round(two, 3), speedup=round(ratio, 2))
    figure(
        f"threads: kernel stages (Job.work), {rows / 1e6:.2f} M records",
        f"2 threads: {two:.2f} s ({rows / two / 1e6:.2f} M records/s)",
        f"1 thread: {one:.2f} s",
        ratio,
        "≥ 1.7x",
        ratio >= 1.7,
        f"{os.cpu_count()} cores, shared with other work while measured",
    )


@pytest.fixture(scope="session")
def asterisk_csv(bench_dir: Path) -> Path:
    from telemetry.generate import write

    path = bench_dir / "Master.csv"
    write(path, CSV_ROWS, fmt="asterisk")
    return path


def test_asterisk_csv_vs_pyarrow(benchmark, figure, asterisk_csv, bench_dir, cli_env, warm_cli) -> None:
    pyarrow_s = best_of(lambda: run_python(READ_CSV, str(asterisk_csv))[0], 3)
    args = ["process", str(asterisk_csv), "--format", "asterisk", "--out", str(bench_dir / "ast-out"),
            "--region", "GB"]  # fmt: skip
    run_cli(args, cli_env)  # compile the Asterisk reader's kernels, if any, before timing
    benchmark.pedantic(lambda: run_cli(args, cli_env), rounds=3, iterations=1)
    ours = benchmark.stats.stats.min
    ratio = pyarrow_s / ours
    size = asterisk_csv.stat().st_size / 2**20
    with open(asterisk_csv, "rb") as handle:
        records = sum(1 for _ in handle)
    benchmark.extra_info.update(seconds=round(ours, 2), pyarrow_seconds=round(pyarrow_s, 2), ratio=round(ratio, 2))
    figure(
        f"Asterisk CSV end to end, {records:,} records ({size:.0f} MiB), whole process",
        f"{ours:.2f} s ({records / ours / 1e3:,.0f} k records/s)",
        f"pyarrow.csv.read_csv alone, whole process: {pyarrow_s:.2f} s",
        ratio,
        "≥ 0.7x of its speed",
        ratio >= 0.7,
    )


def _peak_rss_mib(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one ``telemetry`` process, measured in a
    fresh parent so that RUSAGE_CHILDREN holds that process alone."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "telemetry", *args],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    kib, seconds = done.stdout.split()
    return int(kib) / 1024, float(seconds)


@pytest.mark.memory
def test_memory_10m_vs_40m(figure, bench_dir, cli_env, warm_cli) -> None:
    from telemetry.generate import write

    base = bench_dir / "mem-2m.parquet"
    write(base, 2_000_000)
    links = []
    for k in range(20):
        link = bench_dir / f"mem-{k:02d}.parquet"
        if not link.exists():
            os.symlink(base, link)
        links.append(str(link))
    out = str(bench_dir / "mem-out")
    rss10, s10 = _peak_rss_mib(["process", *links[:5], "--out", out, "--region", "GB"], cli_env)
    rss40, s40 = _peak_rss_mib(["process", *links, "--out", out, "--region", "GB"], cli_env)
    growth = rss40 / rss10 - 1
    figure(
        "memory: peak RSS, 40 M vs 10 M records (streaming)",
        f"40 M: {rss40:,.0f} MiB ({s40:.0f} s)",
        f"10 M: {rss10:,.0f} MiB ({s10:.0f} s)",
        rss40 / rss10,
        "within 15% (≤ 1.15x)",
        growth <= 0.15,
        "one 2 M-record generated Parquet file read through 5 and 20 links",
    )
