"""The Dask engine on this machine: 1 against 2 worker processes, Dask against local
threads (its overhead), a fresh cluster's first run, and each worker's peak memory.

Runs go through :func:`telemetry.process` in this process, on clusters started before
timing (a cluster's start is timed on its own); the sides of each ratio run in turns,
so both see the same load from whatever else shares the machine.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

import telemetry
from benchmarks.conftest import BENCH_KEY, PROCESS_ROWS

distributed = pytest.importorskip("distributed")

ROUNDS = 3
CSV_FILES = 16
CSV_ROWS = 100_000


def _cluster(workers: int):
    from telemetry.engine.dask import local_cluster

    cluster = local_cluster(workers)  # the cluster `--engine dask --workers N` starts
    return cluster, distributed.Client(cluster)


def _pin(core: int) -> None:
    """Every thread of this worker process on one core (threads made later inherit it)."""
    import os

    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core})


def _one_core_each(client) -> None:
    for core, address in enumerate(sorted(client.nthreads())):
        client.run(_pin, core, workers=[address])


def _timed(inputs, out: Path, **engine) -> float:
    start = time.perf_counter()
    telemetry.process(inputs, key=BENCH_KEY, out=out, region="GB", **engine)
    return time.perf_counter() - start


def _cpu_s() -> float:
    """CPU seconds of this process so far (user + system)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_cpu(inputs, out: Path, client) -> tuple[float, float]:
    """Wall seconds of a Dask run and the CPU seconds its workers spent meanwhile."""
    before = sum(client.run(_cpu_s).values())
    seconds = _timed(inputs, out, engine="dask", client=client)
    return seconds, sum(client.run(_cpu_s).values()) - before


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def csv_files(bench_dir: Path) -> list[Path]:
    from telemetry.generate import write

    folder = bench_dir / "many-csv"
    folder.mkdir(exist_ok=True)
    paths = [folder / f"cdr-{i:02d}.csv" for i in range(CSV_FILES)]
    for i, path in enumerate(paths):
        write(path, CSV_ROWS, seed=50 + i, hours=1)
    return paths


@contextlib.contextmanager
def _clusters(*workers: int, pinned: bool = False):
    """Clients of clusters of ``workers`` processes each, alive only while the runs that
    compare them go on: an idle cluster costs CPU (its scheduler's and workers' event
    loops: 0.02-0.07 CPU seconds a second), which a side using both cores pays and a
    side of one worker does not. ``pinned``: each worker process held to one core of its
    own (sched_setaffinity): unpinned, one worker's reader threads (CSV conversion,
    Arrow's pool) already use both."""
    made = [_cluster(n) for n in workers]
    try:
        if pinned:
            for _, client in made:
                _one_core_each(client)
        yield [client for _, client in made]
    finally:
        for cluster, client in made:
            client.close()
            cluster.close()


@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "one-core-each"])
def test_dask_one_vs_two_workers(figure, parquet_4m, csv_files, bench_dir, pinned, warm_cli) -> None:
    with _clusters(1, 2, pinned=pinned) as (one, two):
        _one_vs_two(figure, parquet_4m, csv_files, bench_dir, one, two, pinned)


def _one_vs_two(figure, parquet_4m, csv_files, bench_dir, one, two, pinned: bool) -> None:
    how = ", one core per worker" if pinned else ""
    for name, inputs, rows in (("Parquet file", [parquet_4m], PROCESS_ROWS),
                               (f"{CSV_FILES} CSV files", csv_files, CSV_FILES * CSV_ROWS)):
        times: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        for client in (one, two):  # a first run each: workers warmed, Arrow's pools grown
            _timed(inputs, bench_dir / "dask-out", engine="dask", client=client)
        for _ in range(ROUNDS):
            for n, client in ((1, one), (2, two)):
                seconds, spent = _timed_cpu(inputs, bench_dir / "dask-out", client)
                times[n].append(seconds)
                cpu[n].append(spent)
        t1, t2 = min(times[1]), min(times[2])
        if name.startswith("Parquet") and not pinned:  # the control: what this machine gives threads right now
            local = {1: [], 2: []}
            for _ in range(ROUNDS):
                for n in (1, 2):
                    local[n].append(_timed(inputs, bench_dir / "local-out", engine="local", threads=n))
            l1, l2 = min(local[1]), min(local[2])
            figure(f"control: local engine, {rows / 1e6:g} M records in one Parquet file",
                   f"2 threads: {l2:.2f} s", f"1 thread: {l1:.2f} s", round(l1 / l2, 2), "reported", None,
                   "what two cores give right now; the Dask ratio above is bounded by it")
        figure((f"Dask engine, {rows / 1e6:g} M records in one {name}" if name.startswith("Parquet")
                else f"Dask engine, {rows / 1e6:g} M records in {name}") + how,
               f"2 worker processes: {t2:.2f} s (workers' CPU {min(cpu[2]):.2f} s)",
               f"1 worker process: {t1:.2f} s (CPU {min(cpu[1]):.2f} s)", round(t1 / t2, 2),
               "≥ 1.7x", t1 / t2 >= 1.7, f"best of {ROUNDS} each, in turns; 2 cores shared with other jobs")
    if not pinned:
        peaks = two.run(_peak_rss_mib)
        worst = max(peaks.values())
        figure("Dask engine, peak RSS per worker process (the runs above)",
               f"{worst:.0f} MiB (workers: {', '.join(f'{v:.0f}' for v in peaks.values())})", "—", None,
               "≤ 1,536 MiB per worker", worst <= 1536, "bounded by batch_rows, not by the input")


def test_dask_overhead_vs_local_threads(figure, parquet_4m, bench_dir, warm_cli) -> None:
    with _clusters(2) as (two,):
        dask_s, local_s = [], []
        _timed([parquet_4m], bench_dir / "dask-out", engine="dask", client=two)
        for _ in range(ROUNDS):
            local_s.append(_timed([parquet_4m], bench_dir / "local-out", engine="local", threads=2))
            dask_s.append(_timed([parquet_4m], bench_dir / "dask-out", engine="dask", client=two))
    d, loc = min(dask_s), min(local_s)
    figure(f"Dask engine overhead, {PROCESS_ROWS / 1e6:g} M Parquet records",
           f"Dask, 2 worker processes: {d:.2f} s", f"local engine, 2 threads: {loc:.2f} s", round(loc / d, 2),
           "reported", None, f"best of {ROUNDS} each, in turns; ratio < 1: Dask slower")


def test_fresh_cluster_first_run(figure, parquet_4m, bench_dir, warm_cli) -> None:
    from telemetry.engine.dask import DaskEngine

    start = time.perf_counter()
    with _clusters(2) as (client,):
        started = time.perf_counter() - start
        start = time.perf_counter()
        DaskEngine(client=client).client  # registers the warm-up plugin, as a run's first step does
        warmed = time.perf_counter() - start
        first = _timed([parquet_4m], bench_dir / "dask-out", engine="dask", client=client)
        second = _timed([parquet_4m], bench_dir / "dask-out", engine="dask", client=client)
    figure(f"Dask engine, fresh 2-worker cluster, first run of {PROCESS_ROWS / 1e6:g} M Parquet records",
           f"warm-up {warmed:.1f} s + first run {first:.2f} s (cluster start {started:.1f} s before)",
           f"second run: {second:.2f} s", round(second / (warmed + first), 2), "no tens of seconds of compiling",
           warmed + first - second < 10,
           "kernels from the shared cache directory, loaded once per worker by the warm-up plugin")
