"""``telemetry stream`` (SPEC section 9) through the real command: checked against
``telemetry process`` over the same files (the batch path), against hand-counted
records for windows, lateness and revisions, and against an uninterrupted run
for runs killed with SIGKILL at random moments."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import telemetry
from telemetry.generate import write as write_records
from tests.conftest import run_cli

T0 = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.timezone.utc)
KEY_COLUMNS = ["window_start", "channel", "route", "dst_region"]


def _stamp(path: Path, i: int) -> None:
    """Modification times in file order (1 s apart), as files arriving one by one."""
    ns = 1_700_000_000_000_000_000 + i * 1_000_000_000
    os.utime(path, ns=(ns, ns))


def _generated(root: Path, files: int, records: int, fmt: str = "parquet") -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = root / f"cdr-{i:03d}.{'parquet' if fmt == 'parquet' else 'csv'}"
        write_records(path, records, fmt=fmt, seed=100 + i, start=T0 + dt.timedelta(minutes=40 * i), hours=0.75)
        _stamp(path, i)
        paths.append(path)
    return paths


def _stream(env, watch: Path, out: Path, *extra: str):
    return run_cli("stream", "--watch", str(watch), "--out", str(out), "--region", "GB", "--once", *extra, env=env)


def _rows(out: Path) -> pl.DataFrame:
    df = telemetry.read_metrics(out)
    return df.drop([c for c in ("revision", "released_at") if c in df.columns]).sort(KEY_COLUMNS, nulls_last=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_once_releases_what_process_releases(tmp_path: Path, key_env, fmt) -> None:
    files = _generated(tmp_path / "in", 5, 3000, fmt)
    res = _stream(key_env, tmp_path / "in", tmp_path / "s", "--batch-files", "2")
    assert res.returncode in (0, 1), res.stderr
    batch = run_cli("process", *map(str, files), "--out", str(tmp_path / "p"), "--region", "GB", env=key_env)
    assert batch.returncode in (0, 1), batch.stderr
    assert _rows(tmp_path / "s").equals(_rows(tmp_path / "p"))
    s = json.loads((tmp_path / "s" / "run.json").read_text())
    p = json.loads((tmp_path / "p" / "run.json").read_text())
    for key in ("records_in", "records_ok", "records_quarantined", "records_opted_out", "rows_released",
                "rows_withheld", "records_withheld"):
        assert s[key] == p[key], key
    # 3 micro-batches of 2 files, the last with the final release
    assert s["commits"] == 3 and s["records_pending"] == 0 and s["records_open"] == 0
    assert s["records_ok"] == s["records_in"] - s["records_quarantined"] - s["records_opted_out"]


def test_micro_batches_end_at_a_number_of_files_or_of_bytes(tmp_path: Path, key_env) -> None:
    from telemetry.stream.files import Found, first_files

    mib = 1 << 20
    sizes = [mib // 2, mib // 2, 1, 3 * mib, 5]
    todo = [Found(f"f{i}", f"/in/f{i}", i, size) for i, size in enumerate(sizes)]
    assert first_files(todo, 10, mib) == todo[:2]  # 1 MiB exactly: the third file would pass it
    assert first_files(todo, 10, mib + 1) == todo[:3]
    assert first_files(todo[3:], 10, mib) == todo[3:4]  # a file larger than the budget goes alone
    assert first_files(todo, 2, 100 * mib) == todo[:2]
    assert first_files(todo[4:], 10, mib) == todo[4:]
    # one 1 MiB budget per micro-batch: two files of 0.6 MiB make two commits
    watch = tmp_path / "in"
    watch.mkdir()
    for i in range(2):
        (watch / f"calls-{i}.jsonl").write_text("\n" * (600 << 10))
        _stamp(watch / f"calls-{i}.jsonl", i)
    res = _stream(key_env, watch, tmp_path / "s", "--batch-mb", "1")
    assert res.returncode == 0, res.stderr
    assert _run(tmp_path / "s")["commits"] == 2
    res = _stream(key_env, watch, tmp_path / "t", "--batch-mb", "0")
    assert res.returncode == 2 and "--batch-mb must be at least 1" in res.stderr


def _jsonl(path: Path, rows: list[dict], order: int) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _stamp(path, order)


def _drop(path: Path, rows: list[dict], order: int) -> None:
    """Write a file the way writers must for a running stream: under a hidden name, then rename."""
    hidden = path.with_name(f".{path.name}")
    _jsonl(hidden, rows, order)
    hidden.rename(path)


def _calls(minute: float, pairs: range, status: str = "answered", route: str = "carrier-a") -> list[dict]:
    start = T0 + dt.timedelta(minutes=minute)
    return [{"start_time": start.isoformat(), "source": f"+447700900{a:03d}", "destination": f"+447700901{a:03d}",
             "status": status, "route": route, "channel": "voice", "duration_ms": 60_000 if status == "answered" else 0}
            for a in pairs]


def _run(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_late_records_wait_for_k_then_give_a_new_revision(tmp_path: Path, key_env) -> None:
    """The differencing attack of SPEC 9: with a late trickle, revision 1 minus revision 0
    would be one call's outcome. The rule holds the single late record back (pending)
    until late records of k distinct callers and callees arrive."""
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    args = ["--lateness", "10m", "--retention", "2h"]
    _jsonl(watch / "a.jsonl", _calls(1, range(0, 8)), 0)  # window 10:00-10:15, 8 callers
    _jsonl(watch / "b.jsonl", _calls(40, range(100, 108)), 1)  # watermark 10:30: 10:00 window released
    first = _stream(key_env, watch, out, *args)  # --once would release the 10:30 window too; fine
    assert first.returncode == 0, first.stderr
    rev0 = telemetry.read_metrics(out).filter(pl.col("window_start") == T0)
    assert rev0["revision"].to_list() == [0] and rev0["answered"].to_list() == [8]

    # one late failed call for the released window: what a naive re-release would publish
    _jsonl(watch / "c.jsonl", _calls(2, range(8, 9), status="failed"), 2)
    naive = telemetry.process([str(watch / n) for n in ("a.jsonl", "c.jsonl")], key=bytes(range(1, 33)),
                              region="GB").metrics.filter(pl.col("window_start") == T0)
    leaked = {c: naive[c][0] - rev0[c][0] for c in ("attempts", "answered", "failed")}
    assert leaked == {"attempts": 1, "answered": 0, "failed": 1}  # revision 1 - revision 0 = that call's outcome
    second = _stream(key_env, watch, out, *args)
    assert second.returncode == 0, second.stderr
    latest = telemetry.read_metrics(out).filter(pl.col("window_start") == T0)
    assert latest["revision"].to_list() == [0] and latest["attempts"].to_list() == [8]  # nothing new released
    run = _run(out)
    assert run["records_late"] == 1 and run["records_pending"] == 1

    # four more late callers: five late records with five distinct callers and callees: revision 1
    _jsonl(watch / "d.jsonl", _calls(3, range(9, 13), status="busy"), 3)
    assert _stream(key_env, watch, out, *args).returncode == 0
    latest = telemetry.read_metrics(out).filter(pl.col("window_start") == T0)
    assert latest["revision"].to_list() == [1]
    assert latest.select("attempts", "answered", "failed", "busy").row(0) == (13, 8, 1, 4)
    run = _run(out)
    assert run["records_late"] == 5 and run["records_pending"] == 0
    all_revisions = pl.read_parquet(out / "metrics", hive_partitioning=False).filter(pl.col("window_start") == T0)
    assert sorted(all_revisions["revision"].to_list()) == [0, 1]  # each revision once, never rewritten


def test_late_records_that_leave_the_watermark_where_it_was_are_released_at_their_file(
        tmp_path: Path, key_env) -> None:
    """A file of late records moves the watermark past no window end (nothing passes, nothing
    is evicted), yet its records reach k for a released window: its next revision is released
    at that file, in the same run and micro-batch as revision 0, hand-counted."""
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    _jsonl(watch / "a.jsonl", _calls(1, range(0, 8)), 0)  # window 10:00-10:15, 8 callers
    _jsonl(watch / "b.jsonl", _calls(40, range(100, 108)), 1)  # watermark 10:30: 10:00 window released
    _jsonl(watch / "c.jsonl", _calls(3, range(9, 14), status="busy"), 2)  # 5 late callers; watermark stays
    res = _stream(key_env, watch, out, "--lateness", "10m", "--retention", "2h")
    assert res.returncode == 0, res.stderr
    window = pl.read_parquet(out / "metrics", hive_partitioning=False).filter(pl.col("window_start") == T0)
    assert window.sort("revision").select("revision", "attempts", "answered", "busy").rows() == [(0, 8, 8, 0),
                                                                                                  (1, 13, 8, 5)]
    run = _run(out)
    assert run["commits"] == 1 and run["records_late"] == 5 and run["records_pending"] == 0


def test_records_for_an_evicted_window_are_quarantined_as_too_late(tmp_path: Path, key_env) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    args = ["--lateness", "5m", "--retention", "30m"]
    _jsonl(watch / "a.jsonl", _calls(1, range(0, 6)), 0)
    _jsonl(watch / "b.jsonl", _calls(120, range(0, 6)), 1)  # watermark 11:55: 10:00 window evicted
    _jsonl(watch / "c.jsonl", _calls(2, range(20, 23)) + _calls(100, range(30, 32)), 2)
    res = _stream(key_env, watch, out, *args)
    assert res.returncode == 1  # completed, rows quarantined
    run = _run(out)
    assert run["records_quarantined"] == 3 and run["records_late"] == 2 and run["records_in"] == 17
    rejects = [json.loads(line) for line in (out / "quarantine").glob("*.jsonl").__next__().read_text().splitlines()]
    assert {r["reason"] for r in rejects} == {"too late: its window was already evicted"}
    assert sorted(r["row"] for r in rejects) == [1, 2, 3]
    assert all("7700" not in json.dumps(r) for r in rejects)


def test_files_in_order_temporary_names_ignored_corrupt_file_quarantined(tmp_path: Path, key_env) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    files = _generated(watch, 3, 2000)
    (watch / "cdr-009.parquet.part").write_bytes(files[0].read_bytes())  # still being written
    (watch / ".cdr-010.parquet").write_bytes(files[0].read_bytes())
    (watch / "_cdr-011.parquet").write_bytes(files[0].read_bytes())
    (watch / "cdr-012.parquet").write_bytes(b"PAR1 this is not parquet")  # corrupt
    _stamp(watch / "cdr-012.parquet", 1)
    res = _stream(key_env, watch, out)
    assert res.returncode in (0, 1), res.stderr
    run = _run(out)
    assert run["files"] == 4 and run["files_failed"] == 1
    batch = run_cli("process", *map(str, files), "--out", str(tmp_path / "p"), "--region", "GB", env=key_env)
    assert _rows(out).equals(_rows(tmp_path / "p"))
    rejects = "".join(p.read_text() for p in (out / "quarantine").glob("*.jsonl"))
    assert "cdr-012.parquet" in rejects and "file not read" in rejects
    # a second run over the same directory reads nothing again
    again = _stream(key_env, watch, out)
    assert _run(out)["records_in"] == run["records_in"] and again.returncode in (0, 1)
    assert batch.returncode in (0, 1)


def test_state_is_owner_only_and_never_pickle(tmp_path: Path, key_env) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    _generated(watch, 2, 1500)
    assert _stream(key_env, watch, out).returncode in (0, 1)
    state = out / "_state"
    for path in [state, *state.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path
    npz = next(state.glob("seg-*.npz"))
    with np.load(npz, allow_pickle=False) as data:  # loads without pickle
        assert all(data[name].dtype != object for name in data.files)
    # a state file carrying a pickled object is refused, not executed
    np.savez(npz, header=np.array([object()], dtype=object))
    res = _stream(key_env, watch, out)
    assert res.returncode == 2 and "cannot read state file" in res.stderr and "Traceback" not in res.stderr


def _committed(out: Path) -> int:
    try:
        return json.loads((out / "_state" / "CURRENT").read_text())["commit"]
    except (OSError, ValueError):
        return 0


def _chaos_run(env, watch: Path, out: Path, rng: random.Random | None) -> int | None:
    """Run the stream; with ``rng``, SIGKILL it at a random moment of the micro-batch after
    its first new commit (reading, writing outputs or writing state). Its exit code if it
    finished first, else None."""
    before = _committed(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry", "stream", "--watch", str(watch), "--out", str(out), "--region", "GB",
         "--once", "--batch-files", "1", "--lateness", "20m", "--retention", "3h"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rng is None:
        return proc.wait(timeout=600)
    deadline = time.monotonic() + 600
    while proc.poll() is None and _committed(out) == before and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.06))
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


@pytest.mark.slow
def test_kill_minus_9_at_random_moments_changes_nothing(tmp_path: Path, key_env) -> None:
    """Killed at random moments (with one file per commit, most kills land while outputs
    or state are being written) and restarted until done: the latest revisions and the
    run.json counts equal an uninterrupted run's, and no revision has two contents."""
    watch = tmp_path / "in"
    files = _generated(watch, 12, 1500)
    # out-of-order arrival: a late file for the first hour arrives last
    late = watch / "cdr-late.parquet"
    write_records(late, 400, fmt="parquet", seed=7, start=T0, hours=0.5)
    _stamp(late, 50)
    calm = tmp_path / "calm"
    assert _chaos_run(key_env, watch, calm, None) in (0, 1)
    rng = random.Random(20261207)
    out = tmp_path / "chaos"
    kills = 0
    while True:
        code = _chaos_run(key_env, watch, out, rng)
        if code is not None:
            assert code in (0, 1)
            break
        kills += 1
        assert kills < 60
    assert kills >= 3
    assert _rows(out).equals(_rows(calm))
    a, b = _run(out), _run(calm)
    for key in ("records_in", "records_ok", "records_quarantined", "records_late", "records_pending",
                "records_withheld", "rows_released", "rows_withheld", "files"):
        assert a[key] == b[key], key
    every = pl.read_parquet(out / "metrics", hive_partitioning=False).drop("released_at")
    distinct = every.unique()
    assert distinct.select([*KEY_COLUMNS, "revision"]).is_unique().all()  # one content per revision
    assert len(files) + 1 == a["files"]
    assert a["records_in"] == 12 * 1500 + 400


def test_stdin_lines_give_what_process_gives(tmp_path: Path, key_env) -> None:
    rows = _calls(1, range(0, 7)) + _calls(20, range(0, 9), status="busy") + _calls(50, range(3, 12), route="b")
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_cli("stream", "--stdin", "--format", "jsonl", "--out", str(tmp_path / "s"), "--region", "GB",
                  env=key_env, input=(tmp_path / "calls.jsonl").read_text())
    assert res.returncode == 0, res.stderr
    batch = run_cli("process", str(tmp_path / "calls.jsonl"), "--out", str(tmp_path / "p"), "--region", "GB",
                    env=key_env)
    assert batch.returncode == 0
    assert _rows(tmp_path / "s").equals(_rows(tmp_path / "p"))
    assert _run(tmp_path / "s")["records_in"] == len(rows)
    assert not list((tmp_path / "s" / "_state" / "spool").iterdir())  # consumed chunks removed


def _scrape(port: int) -> dict[tuple, float]:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, s.labels.get("route")): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "telemetry_attempts"}


def test_serve_follows_each_commit_and_sigterm_commits_and_exits(tmp_path: Path, key_env) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry", "stream", "--watch", str(watch), "--out", str(out), "--region", "GB",
         "--serve", "0", "--poll", "1s", "--lateness", "0s"],
        env=key_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        # a file is written under a temporary name, then renamed: only then is it read
        tmp = watch / "a.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in _calls(1, range(0, 6)) + _calls(16, range(0, 6))))
        time.sleep(1.5)
        assert _committed(out) == 0
        renamed = time.monotonic()
        tmp.rename(watch / "a.jsonl")
        while _committed(out) < 1:
            assert time.monotonic() - renamed < 60
            time.sleep(0.05)
        assert _scrape(port) == {("telemetry_attempts", "carrier-a"): 6.0}  # 10:00 window released
        _drop(watch / "b.jsonl", _calls(40, range(0, 9), route="carrier-b"), 1)
        while _committed(out) < 2:
            time.sleep(0.05)
        assert _scrape(port) == {("telemetry_attempts", "carrier-a"): 6.0}  # 10:15 window: the latest complete
        _drop(watch / "c.jsonl", _calls(70, range(0, 5), route="carrier-c"), 2)
        while _committed(out) < 3:
            time.sleep(0.05)
        assert _scrape(port) == {("telemetry_attempts", "carrier-b"): 9.0}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    run = _run(out)
    assert run["records_in"] == 26 and run["records_open"] == 5 and run["commits"] == 3


def test_reader_notes_reach_the_stream_summary(tmp_path: Path, key_env) -> None:
    """A Kamailio export read with the default start (the INVITE) says that durations include
    ringing, in run.json, as process says it."""
    watch = tmp_path / "in"
    watch.mkdir()
    fixture = Path(__file__).parent / "fixtures" / "voip" / "kamailio_psql.csv"
    (watch / "acc.csv").write_bytes(fixture.read_bytes())
    res = _stream(key_env, watch, tmp_path / "s", "--format", "kamailio")
    assert res.returncode in (0, 1), res.stderr
    batch = run_cli("process", str(watch / "acc.csv"), "--format", "kamailio", "--out", str(tmp_path / "p"),
                    "--region", "GB", env=key_env)
    notes = _run(tmp_path / "s")["notes"]
    assert notes and notes == _run(tmp_path / "p")["notes"] and "ringing" in notes[0]
    assert batch.returncode in (0, 1)


def test_gathering_small_files_changes_no_decision(tmp_path: Path, key_env) -> None:
    """Small files are read in gathered batches; the releases (every revision, not only the
    latest) and the counts equal those of a run whose batches are so small that every file
    is a batch of its own, on files that interleave on-time and late records."""
    watch = tmp_path / "in"
    watch.mkdir()
    rng = random.Random(7)
    for i in range(40):
        minute = 10 * i + rng.uniform(0, 5)
        rows = _calls(minute, range(i % 6, i % 6 + 6), status=rng.choice(["answered", "busy"]))
        if i % 9 == 8:  # a late trickle for an earlier window
            rows += _calls(minute - 45, range(50 + i, 56 + i), status="failed")
        _jsonl(watch / f"f{i:02d}.jsonl", rows, i)
    (tmp_path / "tiny.toml").write_text("batch_rows = 4\n")
    args = ["--lateness", "10m", "--retention", "2h"]
    gathered = _stream(key_env, watch, tmp_path / "gathered", *args)
    apart = _stream(key_env, watch, tmp_path / "apart", *args, "--config", str(tmp_path / "tiny.toml"))
    assert gathered.returncode == apart.returncode == 0, gathered.stderr + apart.stderr

    def every(out: Path) -> pl.DataFrame:
        df = pl.read_parquet(out / "metrics", hive_partitioning=False).drop("released_at")
        return df.sort([*KEY_COLUMNS, "revision"], nulls_last=True)

    assert every(tmp_path / "gathered").equals(every(tmp_path / "apart"))
    assert every(tmp_path / "gathered")["revision"].max() >= 1  # late records did give revisions
    a, b = _run(tmp_path / "gathered"), _run(tmp_path / "apart")
    for key in ("records_in", "records_late", "records_pending", "records_withheld", "rows_released"):
        assert a[key] == b[key], key


def test_a_flood_of_too_late_records_is_counted_and_summarized(tmp_path: Path, key_env) -> None:
    """Past the first 1,000 of a reason, too-late records are counted in a summary line, as
    the batch path summarizes floods: every record accounted for, no row lost or doubled."""
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    _jsonl(watch / "a.jsonl", _calls(1, range(0, 6)), 0)
    _jsonl(watch / "b.jsonl", _calls(300, range(0, 6)), 1)  # the 10:00 window evicted
    _jsonl(watch / "c.jsonl", _calls(2, range(0, 1200)), 2)
    res = _stream(key_env, watch, out, "--lateness", "5m", "--retention", "30m")
    assert res.returncode == 1, res.stderr
    run = _run(out)
    assert run["records_in"] == 1212 and run["records_quarantined"] == 1200
    lines = [json.loads(line) for p in (out / "quarantine").glob("*.jsonl") for line in p.read_text().splitlines()]
    full = [r for r in lines if "fields" in r]
    summary = [r for r in lines if "summarized" in r]
    assert len(full) == 1000 and sorted(r["row"] for r in full) == list(range(1, 1001))
    assert [(s["summarized"], s["first_row"], s["last_row"]) for s in summary] == [(200, 1001, 1200)]


def test_small_files_converted_together_give_what_they_give_one_by_one(tmp_path: Path, monkeypatch) -> None:
    """The stream reads small Parquet files as process does (decoded at a look, converted
    several at once): its metrics, record output, quarantine rows (a bad file in the
    middle) and counts equal those of a stream converting each file on its own."""
    from telemetry.config import make_options
    from telemetry.keys import as_keyring
    from telemetry.stream.driver import Stream, StreamOptions
    from tests.conftest import TEST_KEY, convert_small_files_alone
    from tests.test_pipeline import _small_parquet_files

    watch = tmp_path / "in"
    watch.mkdir()
    paths, bad = _small_parquet_files(watch)
    for i, path in enumerate(paths):
        _stamp(Path(path), i)

    def run(out: Path) -> dict:
        opts = make_options(None, region="GB", batch_rows=1024, emit_records=True, threads=2)
        sopts = StreamOptions(watch=watch, out=out, state=out / "_state", lateness_us=600_000_000,
                              retention_us=7 * 86_400_000_000, once=True, batch_files=10)
        Stream(sopts, as_keyring(TEST_KEY), opts).run()
        return {k: v for k, v in _run(out).items() if k != "seconds"}

    together = run(tmp_path / "together")

    convert_small_files_alone(monkeypatch)
    alone = run(tmp_path / "alone")
    assert together == alone and together["records_quarantined"] == len(bad) and together["commits"] == 3
    rejects = [json.loads(line) for path in sorted((tmp_path / "together" / "quarantine").iterdir())
               for line in path.read_text().splitlines()]
    assert {(r["file"], r["row"]) for r in rejects} == bad

    def table(out: Path, sub: str) -> pl.DataFrame:
        df = pl.read_parquet(out / sub, hive_partitioning=False)
        return df.drop([c for c in ("released_at",) if c in df.columns])

    for sub in ("metrics", "records"):
        assert table(tmp_path / "together", sub).equals(table(tmp_path / "alone", sub)), sub
    written = {path.name: path.read_bytes() for path in (tmp_path / "together" / "quarantine").iterdir()}
    assert written == {path.name: path.read_bytes() for path in (tmp_path / "alone" / "quarantine").iterdir()}
