"""End-to-end runs over every engine (a real two-process Dask cluster included), checked
byte for byte against the local engine on one thread (a plain loop over the batches) and
against the rows planted in the inputs (counts, the quarantined file and row numbers)."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telemetry
from telemetry.generate import generate, write
from tests.conftest import TEST_KEY, THP_ENABLED, huge_pages_on, run_cli

BATCH_ROWS = 1000
OPTIONS = dict(region="GB", emit_records=True, window="1h", batch_rows=BATCH_ROWS)


def _plant(path: Path, row: int, line: str) -> None:
    """Put ``line`` as data row ``row`` (1-based) of a CSV file with a header."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(row, line)
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[str], int, set[tuple[str, int]]]:
    """Parquet in row groups (pieces), canonical CSV large and small (gathered), an
    Asterisk Master.csv and JSON lines, with bad rows planted: the paths, the number
    of records in them, and the (file, row) of each bad one."""
    d = tmp_path_factory.mktemp("engines")
    table = pa.Table.from_batches(list(generate(6000, seed=3)))
    pq.write_table(table, d / "a.parquet", row_group_size=700)
    records = 6000
    bad = set()
    records += write(d / "b.csv", 2600, seed=4) + 1
    _plant(d / "b.csv", 1200, "not-a-time,+15550100,+447700900123,voice\n")
    bad.add((str(d / "b.csv"), 1200))
    for i in range(6):  # 150 … 400 rows: some under a quarter of BATCH_ROWS, gathered
        records += write(d / f"s{i}.csv", 150 + 50 * i, seed=10 + i)
    _plant(d / "s2.csv", 7, "2026-11-02T00:00:00Z,+15550100,+447700900123,voice,,,,,,,,,,,,,,,,,,,,,bogus-extra\n")
    _plant(d / "s4.csv", 1, "2026-11-02 99:00:00,+15550101,+447700900124\n")
    records += 2
    bad |= {(str(d / "s2.csv"), 7), (str(d / "s4.csv"), 1)}
    master = d / "Master.csv"
    records += write(master, 3000, fmt="asterisk", seed=5)  # the calls of 3,000 records
    lines = master.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1499] = lines[1499].replace('"2026-11-02 ', '"2026-02-30 ', 1)  # no such day: data row 1500
    master.write_text("".join(lines), encoding="utf-8")
    bad.add((str(master), 1500))
    records += write(d / "c.jsonl", 1500, seed=6)
    paths = sorted(str(p) for p in d.iterdir())
    return paths, records, bad


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """The outputs of a plain loop: the local engine on one thread."""
    out = tmp_path_factory.mktemp("ref")
    telemetry.process(inputs[0], key=TEST_KEY, out=out, engine="local", threads=1, **OPTIONS)
    return out


def _files(out: Path) -> dict[str, bytes]:
    """The metric, record and quarantine files (run.json and the output list aside)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for name in ("metrics", "records", "quarantine")
        for p in sorted((out / name).rglob("*"))
        if p.is_file()
    }


def _counts(out: Path) -> dict:
    summary = json.loads((out / "run.json").read_text())
    names = ("records_in", "records_ok", "records_quarantined", "records_opted_out", "records_late",
             "rows_released", "rows_withheld", "records_withheld", "rows_rolled_up")
    return {name: summary[name] for name in names}


def _same_outputs(out: Path, reference: Path) -> None:
    got, want = _files(out), _files(reference)
    assert sorted(got) == sorted(want)  # the same metric, record and quarantine files
    assert [name for name in want if got[name] != want[name]] == []  # byte for byte
    assert _counts(out) == _counts(reference)


def test_reference_accounts_for_the_planted_rows(inputs, reference):
    """The baseline itself: every record counted once, the bad rows where they were planted."""
    _, records, bad = inputs
    counts = _counts(reference)
    assert counts["records_in"] == records
    assert counts["records_ok"] + counts["records_quarantined"] + counts["records_opted_out"] == records
    lines = (reference / "quarantine" / "rejects.jsonl").read_text().splitlines()
    assert {(r["file"], r["row"]) for r in map(json.loads, lines)} == bad
    assert sum(pq.read_table(p).num_rows for p in (reference / "records").rglob("*.parquet")) == counts["records_ok"]


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_same_outputs_as_a_plain_loop(engine, inputs, reference, tmp_path, dask_client):
    extra = dict(threads=2) if engine == "local" else dict(client=dask_client)
    result = telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, engine=engine, **extra, **OPTIONS)
    assert result.summary["engine"] == engine
    _same_outputs(tmp_path, reference)
    assert not list(tmp_path.rglob(".telemetry-dask-*"))  # staging committed and removed


def test_progress_as_counts_come_each_counted_once(inputs, reference, tmp_path, dask_client):
    """Counts reach the client with the merge tree (every 8 tasks' while the run goes on,
    for a progress display, and the rest with the merged state): each task's counted
    once, the totals growing to the run's own."""
    seen: list[dict] = []
    telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, engine="dask", client=dask_client,
                      progress=seen.append, **OPTIONS)
    _same_outputs(tmp_path, reference)
    ins = [totals["records_in"] for totals in seen]
    assert ins == sorted(ins) and len(set(ins)) > 2  # grows, in several steps
    final = {name: seen[-1][name] for name in ("records_in", "records_ok", "records_quarantined")}
    assert final == {name: _counts(reference)[name] for name in final}


def test_same_dp_release_as_a_plain_loop(inputs, tmp_path, dask_client):
    """Differential privacy (SPEC 11): the same noisy rows whichever engine merged the contributions."""
    dp = dict(OPTIONS, dp_epsilon=1.0)
    telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path / "local", engine="local", threads=1, **dp)
    telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path / "dask", engine="dask", client=dask_client, **dp)
    assert json.loads((tmp_path / "dask" / "run.json").read_text())["dp"]  # a DP release indeed
    _same_outputs(tmp_path / "dask", tmp_path / "local")


def _count_pools(low: bool) -> int:
    """On a worker: from now on (``low``) side_by_side goes on threads from one group up and
    counts the pools it starts; the pools counted so far, and back to as it was (not ``low``)."""
    import telemetry.metrics.state as state

    if low:
        class Counted(state.ThreadPoolExecutor):
            started = 0

            def __init__(self, *args, **kwargs):
                Counted.started += 1
                super().__init__(*args, **kwargs)

        state._saved = (state.SIDE_BY_SIDE_MIN, state.ThreadPoolExecutor)
        state.SIDE_BY_SIDE_MIN, state.ThreadPoolExecutor = 1, Counted
        return 0
    started = state.ThreadPoolExecutor.started
    state.SIDE_BY_SIDE_MIN, state.ThreadPoolExecutor = state._saved
    return started


def _confine(cores: set[int]) -> set[int]:
    """On a worker: every thread of its process on ``cores`` (``taskset``); the cores it had."""
    had = os.sched_getaffinity(0)
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cores)
    return had


@pytest.mark.parametrize("confined", [False, True], ids=["all-cores", "one-core"])
def test_release_on_the_workers_own_cores_same_outputs(confined, inputs, reference, tmp_path, dask_client):
    """The release task spreads the release's parts over the worker's own cores (its CPU
    affinity), the run's pieces all done by then: on thread pools with every core given,
    none with the worker held to one; the outputs are the plain loop's byte for
    byte either way. Merges, which run beside the pieces, stay on their task's thread."""
    import telemetry.engine.dask as engine

    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("one core: the release has none to spread over")
    had = dask_client.run(_confine, {min(cores)} if confined else cores)
    dask_client.run(_count_pools, True)
    try:
        own = dask_client.run(engine._own_cores)
        telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, engine="dask", client=dask_client, **OPTIONS)
    finally:
        started = dask_client.run(_count_pools, False)
        for worker, affinity in had.items():
            dask_client.run(_confine, affinity, workers=[worker])
    _same_outputs(tmp_path, reference)
    assert set(own.values()) == {1 if confined else len(cores)}
    assert (sum(started.values()) > 0) is not confined


def test_cli_with_a_scheduler_address(inputs, reference, tmp_path, dask_client, key_env):
    address = dask_client.scheduler.address
    args = ["process", *inputs[0], "--out", str(tmp_path), "--region", "GB", "--window", "1h",
            "--emit-records", "--engine", "dask", "--scheduler", address]
    config = tmp_path / "telemetry.toml"
    config.write_text(f"batch_rows = {BATCH_ROWS}\n")
    done = run_cli(*args, "--config", str(config), env=key_env)
    assert done.returncode == 1, done.stderr  # 1: rows were quarantined
    config.unlink()
    _same_outputs(tmp_path, reference)


def test_scheduler_from_the_environment(inputs, reference, tmp_path, dask_client, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_client.scheduler.address)
    result = telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, engine="dask", **OPTIONS)
    assert result.summary["threads"] == sum(dask_client.nthreads().values())  # that cluster's workers
    _same_outputs(tmp_path, reference)


def test_without_dask_a_one_line_error(tmp_path, key_env, inputs):
    code = ("import sys; sys.modules['distributed'] = None; from telemetry.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", code, "process", inputs[0][0], "--out", str(tmp_path), "--engine", "dask"],
        capture_output=True, text=True, env=key_env, timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'telemetry[dask]'" in lines[0], done.stderr


def test_no_key_material_in_task_names_reprs_or_logs(inputs, tmp_path, dask_client):
    """Key bytes (raw, hex, base64) and the subscribers' numbers never reach what the
    scheduler names, shows or logs, on a batch run and on shipped batches (stream)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Recorder(SchedulerPlugin):
        name = "telemetry-test-recorder"

        def __init__(self) -> None:
            self.seen: list[str] = []

        async def start(self, scheduler) -> None:
            self.scheduler = scheduler

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            ts = self.scheduler.tasks.get(key)
            self.seen.append(f"{key!r} {ts!r} {getattr(ts, 'run_spec', None)!r}")

    dask_client.register_plugin(Recorder(), name=Recorder.name)
    try:
        telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, client=dask_client, engine="dask", **OPTIONS)
        from telemetry.config import make_options
        from telemetry.engine import Job, get_engine
        from telemetry.keys import Keyring
        from telemetry.readers import plan_inputs

        job = Job(Keyring.from_key(TEST_KEY), make_options(**OPTIONS))
        reads = plan_inputs([p for p in inputs[0] if p.endswith(".csv")], batch_rows=BATCH_ROWS)
        assert sum(p.records_in for p in get_engine("dask", 1, client=dask_client).run(job, reads)) > 0
        seen = dask_client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[Recorder.name].seen)
    finally:
        dask_client.unregister_scheduler_plugin(Recorder.name)
    assert any("telemetry-" in line for line in seen)  # the recorder did see the run's tasks
    logs = [msg for lines in dask_client.get_worker_logs().values() for _, msg in lines]
    logs += [msg for _, msg in dask_client.get_scheduler_logs()]
    text = "\n".join(seen + logs)
    secrets = [TEST_KEY.hex(), TEST_KEY.hex().upper(), base64.b64encode(TEST_KEY).decode(),
               base64.urlsafe_b64encode(TEST_KEY).decode().rstrip("="), TEST_KEY.decode("latin-1"), repr(TEST_KEY)]
    numbers = {n for col in ("source", "destination")
               for n in pq.read_table([p for p in inputs[0] if p.endswith(".parquet")][0], columns=[col])
               .column(col).to_pylist() if n}
    numbers |= {"+15550100", "+447700900123", "15550100", "447700900123"}
    assert [s for s in secrets if s in text] == []
    assert [n for n in numbers if n in text or n.replace(" ", "") in text] == []


def test_a_worker_killed_mid_run_costs_a_retry_only(inputs, reference, tmp_path, dask_client):
    """SIGKILL to a worker process while it works: same outputs, nothing counted twice."""
    before = dask_client.run(os.getpid)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, engine="dask", client=dask_client, **OPTIONS)
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and runner.is_alive() and time.monotonic() < deadline:
        busy = {w: keys for w, keys in dask_client.processing().items()
                if any(str(k).startswith("telemetry-") and "-file-" in str(k) for k in keys)}
        if busy and list(tmp_path.rglob(".telemetry-dask-*")):
            victim = next(iter(busy))
            os.kill(before[victim], signal.SIGKILL)
        time.sleep(0.005)
    assert victim is not None and runner.is_alive()  # killed while the run was working
    runner.join(timeout=300)
    dask_client.wait_for_workers(2, timeout=120)
    assert errors == []
    assert dask_client.run(os.getpid) != before  # the nanny started a new worker process
    _same_outputs(tmp_path, reference)


def test_stream_micro_batches_on_dask(tmp_path, dask_client, key_env):
    """``telemetry stream --engine dask``: the same metric rows and counts as on local threads."""
    import datetime as dt

    watch = tmp_path / "in"
    watch.mkdir()
    start = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.timezone.utc)
    for i in range(4):
        path = watch / f"cdr-{i:03d}.{('csv', 'parquet')[i % 2]}"
        write(path, 2000, seed=100 + i, start=start + dt.timedelta(minutes=40 * i), hours=0.75)
        ns = 1_700_000_000_000_000_000 + i * 1_000_000_000  # arrival order
        os.utime(path, ns=(ns, ns))
    outs = {}
    for engine in ("local", "dask"):
        out = outs[engine] = tmp_path / engine
        extra = ["--scheduler", dask_client.scheduler.address] if engine == "dask" else []
        done = run_cli("stream", "--watch", str(watch), "--out", str(out), "--region", "GB", "--once",
                       "--batch-files", "2", "--engine", engine, *extra, env=key_env)
        assert done.returncode in (0, 1), done.stderr
    rows = {engine: telemetry.read_metrics(out).drop(["released_at"]) for engine, out in outs.items()}
    assert rows["dask"].sort(rows["dask"].columns).equals(rows["local"].sort(rows["local"].columns))
    counts = {e: json.loads((out / "run.json").read_text()) for e, out in outs.items()}
    for name in ("records_in", "records_ok", "records_quarantined", "rows_released", "commits"):
        assert counts["dask"][name] == counts["local"][name], name
    assert counts["dask"]["records_in"] == 8000 and counts["dask"]["engine"] == "dask"


def test_a_flood_of_rejects_summarized_as_on_one_machine(tmp_path, dask_client):
    """Past FULL_REJECTS rejects of one reason in one file the quarantine summarizes the rest:
    a file split into pieces on several workers must give the same lines as one writer."""
    import pyarrow.compute as pc

    from telemetry.quarantine import FULL_REJECTS

    table = pa.Table.from_batches(list(generate(6000, seed=9)))
    bad = pc.equal(pc.bit_wise_and(pa.array(range(6000)), 3), 0)  # every 4th row: 1,500 > FULL_REJECTS
    pdd = pc.if_else(bad, pa.scalar(-5, table.schema.field("pdd_ms").type), table.column("pdd_ms"))
    table = table.set_column(table.schema.get_field_index("pdd_ms"), "pdd_ms", pdd)
    pq.write_table(table, tmp_path / "flood.parquet", row_group_size=700)
    paths = [str(tmp_path / "flood.parquet")]
    telemetry.process(paths, key=TEST_KEY, out=tmp_path / "local", engine="local", threads=1, **OPTIONS)
    telemetry.process(paths, key=TEST_KEY, out=tmp_path / "dask", engine="dask", client=dask_client, **OPTIONS)
    lines = (tmp_path / "local" / "quarantine" / "rejects.jsonl").read_text().splitlines()
    assert len(lines) == FULL_REJECTS + 1 and json.loads(lines[-1])["summarized"] == 1500 - FULL_REJECTS
    _same_outputs(tmp_path / "dask", tmp_path / "local")


def test_small_files_of_rejects_gathered_as_on_one_machine(tmp_path, dask_client):
    """The gathering of small files hands on what it holds once REJECTS_HELD rejects are
    held (a file of bad rows streams through): the client decides it on the tails' reject
    counts, so its batches, and the record files, are the local engine's."""
    from telemetry.readers import REJECTS_HELD

    paths = []
    for i in range(3):  # each: 20 records and 0.55 x REJECTS_HELD empty rows, one small batch
        path = tmp_path / f"bad{i}.csv"
        write(path, 20, seed=70 + i)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(",,,,,,\n" * (REJECTS_HELD * 55 // 100))
        paths.append(str(path))
    options = {**OPTIONS, "batch_rows": 4 * 60}
    telemetry.process(paths, key=TEST_KEY, out=tmp_path / "local", engine="local", threads=1, **options)
    telemetry.process(paths, key=TEST_KEY, out=tmp_path / "dask", engine="dask", client=dask_client, **options)
    records = sorted(p.name for p in (tmp_path / "local" / "records").rglob("*.parquet"))
    assert len(records) == 2  # two files' rejects pass REJECTS_HELD: the third goes on alone
    _same_outputs(tmp_path / "dask", tmp_path / "local")


def test_rejects_staged_as_owner_only_arrow_ipc_never_pickle(tmp_path, monkeypatch):
    """A task's rejects wait for the commit in an owner-only Arrow IPC file tagged with its
    format and version (pickle made to fail meanwhile: a pickle staged or loaded breaks the
    test), and the commit writes from it the quarantine file one writer writes from the
    rejects themselves: full rejects, fields in their order, runs summarized."""
    import pickle

    import numpy as np

    from telemetry.engine import Partial
    from telemetry.engine.dask import REJECTS_FORMAT, REJECTS_VERSION, _commit, _Outputs
    from telemetry.quarantine import FULL_REJECTS, QuarantineWriter
    from telemetry.readers import Reject, RejectRun

    def refused(*args, **kwargs):
        raise AssertionError("pickle used for staged rejects")

    for name in ("dumps", "dump", "loads", "load", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, refused)
    fields = {"start_time": "2026-11-02T99:00:00", "source": "+** **** ******", "destination": None,
              "route": "é"}
    reason = "start_time is not a time"
    rejects = [Reject("/in/a.csv", row, reason, dict(fields)) for row in range(1, FULL_REJECTS + 1)]
    rejects += [RejectRun("/in/a.csv", reason, np.arange(2000, 2500, dtype=np.int64)),
                Reject("/in/b.csv", 7, "wrong number of fields", {})]
    stage, out, ref = tmp_path / "stage", tmp_path / "out", tmp_path / "ref"
    outputs = _Outputs(str(stage), "f000000")
    outputs.add(Partial(None, None, rejects, len(rejects), 0, 0, {}))
    outputs.done()

    staged = list((stage / "quarantine").iterdir())
    assert [p.name for p in staged] == ["f000000.rejects"]
    assert staged[0].stat().st_mode & 0o777 == 0o600
    data = staged[0].read_bytes()
    assert not data.startswith(b"\x80")  # no pickle protocol 2+ header
    table = pa.ipc.open_stream(data).read_all()
    assert table.schema.metadata == {b"format": REJECTS_FORMAT.encode(),
                                     b"version": str(REJECTS_VERSION).encode()}
    assert table.num_rows == len(rejects)

    _commit(str(stage), str(out), [("f000000", 1)])
    with QuarantineWriter(ref) as writer:
        writer.write(rejects)
    written = (out / "quarantine" / "rejects.jsonl").read_bytes()
    assert written == (ref / "quarantine" / "rejects.jsonl").read_bytes()
    assert not stage.exists()


def test_a_cluster_without_workers_yet_runs_once_one_joins(inputs, reference, tmp_path):
    """A cluster that scales up from zero (no worker when the run starts): the run waits
    for one and gives the same outputs (states are merged where a worker is, not on a
    worker named at the start)."""
    import distributed

    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        threading.Timer(1.0, cluster.scale, args=(1,)).start()
        telemetry.process(inputs[0], key=TEST_KEY, out=tmp_path, engine="dask", client=client, **OPTIONS)
    _same_outputs(tmp_path, reference)


def _arenas() -> int:
    """On a worker, after a task of NumPy work on its task thread: glibc's malloc arenas
    (``malloc_stats`` lists them on stderr, caught here in a file)."""
    import ctypes
    import tempfile

    import numpy as np

    np.ones(1 << 20).sum()
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            ctypes.CDLL(None).malloc_stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        return sum(line.startswith(b"Arena ") for line in caught)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc_stats")
def test_local_cluster_workers_share_one_malloc_arena(dask_client):
    """MALLOC_ARENA_MAX=1 reaches glibc in the workers (set before they start, not after):
    the task thread allocates from the one arena the event loop's thread uses."""
    assert set(dask_client.gather([dask_client.submit(_arenas, pure=False, workers=[worker])
                                   for worker in dask_client.nthreads()])) == {1}


def _memory_check_seconds(dask_worker) -> float:
    return dask_worker.memory_manager.memory_monitor_interval


def _profiling(dask_worker) -> bool:
    import dask

    return bool(dask.config.get("distributed.worker.profile.enabled"))


def test_local_cluster_settings_hold_for_a_restarted_worker(dask_client):
    """Workers and their nannies check a worker's memory every second, not Dask's 100 ms
    (an idle cluster's checks took a few percent of a small machine's cores), and workers
    do not profile; a worker the nanny starts again after its process died runs so too
    (Dask's settings around the cluster's start reached only the first processes)."""
    killed = next(iter(dask_client.run(os.getpid).values()))
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        pids = set(dask_client.run(os.getpid, on_error="ignore").values())
        if len(pids) == 2 and killed not in pids:
            break
        assert time.monotonic() < deadline, "the killed worker was not started again"
        time.sleep(0.2)
    assert set(dask_client.run(_memory_check_seconds).values()) == {1.0}
    assert set(dask_client.run(_profiling).values()) == {False}
    nannies = dask_client.cluster.workers.values()
    assert {nanny.memory_manager.memory_monitor_interval for nanny in nannies} == {1.0}


def _thp_enabled() -> str:
    return eval(THP_ENABLED)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux's /proc")
def test_workers_run_without_transparent_huge_pages(dask_client, tmp_path):
    """The warm-up plugin, which a run registers, turns them off in each worker, as the
    command does in its own process (and so in a cluster it starts)."""
    write(tmp_path / "cdr.parquet", 200)
    telemetry.process([tmp_path / "cdr.parquet"], key=TEST_KEY, engine="dask", client=dask_client, region="GB")
    assert set(dask_client.run(_thp_enabled).values()) == {"0"}


def test_warm_up_registered_once_per_client(dask_client, monkeypatch):
    """A client's scheduler keeps the warm-up plugin (and gives it to workers that join
    later): engines made on the same client, one a run, register it once, not once each."""
    from telemetry.engine.dask import DaskEngine, Warmup

    registered = []
    real = dask_client.register_plugin

    def register(plugin, name=None, **kwargs):
        registered.append(name)
        return real(plugin, name=name, **kwargs)

    monkeypatch.setattr(dask_client, "register_plugin", register)
    for _ in range(3):
        assert DaskEngine(client=dask_client).client is dask_client
    assert registered in ([], [Warmup.name])  # once at most: the session's runs may have done it


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux's /proc")
def test_a_cluster_of_threads_leaves_the_callers_huge_pages_alone(tmp_path):
    """Workers in the caller's own process (a cluster of threads): the warm-up plugin
    leaves the process's transparent huge pages as its user set them, as the Python API
    does."""
    import distributed

    write(tmp_path / "cdr.parquet", 200)
    huge_pages_on()
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        telemetry.process([tmp_path / "cdr.parquet"], key=TEST_KEY, engine="dask", client=client, region="GB")
    assert _thp_enabled() == "1"


def test_results_fetched_straight_from_a_local_clusters_workers(dask_client):
    """A LocalCluster's client fetches results from the workers (a released table is MBs:
    relayed by the scheduler it is serialized twice); a client connected by address does so
    only when its own direct_to_workers, Dask's setting, says so."""
    import distributed

    from telemetry.engine.dask import _direct

    assert _direct(dask_client)
    address = dask_client.scheduler.address
    with distributed.Client(address) as by_address:
        assert not _direct(by_address)
    with distributed.Client(address, direct_to_workers=True) as told:
        assert _direct(told)
    with distributed.Client(dask_client.cluster, direct_to_workers=False) as refused:
        assert not _direct(refused)
