"""``telemetry stream`` under differential privacy (SPEC sections 9 and 11): checked against
``telemetry process --dp-epsilon`` over the same files (the batch release is the reference:
without noise the two must agree row for row, with noise in rows and accounting), for the
release-once rule, and against its own stored noise after SIGKILL and restart."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telemetry
from tests.conftest import TEST_KEY, require, run_cli
from tests.test_dp import EPS, T0, calls, crowd, number, write

ARGS = ["--by", "route", "--lateness", "10m", "--retention", "30m"]
KEY_COLUMNS = ["window_start", "route"]
ACCOUNTING = ("records_in", "records_ok", "records_quarantined", "records_withheld", "rows_released",
              "rows_withheld", "records_dp_truncated")  # fmt: skip


def _stamp(path: Path, i: int) -> None:
    ns = 1_700_000_000_000_000_000 + i * 1_000_000_000
    os.utime(path, ns=(ns, ns))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Four files in arrival order. 10:00: a crowd of 600 callers (4,800 calls) and heavy
    callers (40, each 30 calls on each of 6 routes, over the L and G bounds, spread over
    10:00-10:40); 10:35: a crowd of 400 callers; then late calls for 10:00 (after the
    watermark passed its end, before its retention ends: aggregated into it); 11:10: 200
    callers with 20 calls each (over L). With lateness 10m and retention 30m the last file
    evicts (and releases) 10:00 and 10:15; --once releases the others. At epsilon 8
    (threshold 1,298 noisy attempts, noise scale 64) the crowds' rows are released and the
    heavy callers' rows (about 200 records each) withheld, whatever the noise."""
    rng = random.Random(7)
    heavy = []
    for i in range(40):
        src = number("+1555", 900_000 + i)
        for r in range(6):
            dsts = [number("+3361", rng.randrange(600)) for _ in range(30)]
            heavy += calls(f"r{r}", [src] * 30, dsts, 1, minute=rng.randrange(40))
    early = [r for r in heavy if r["start_time"] < T0.replace(minute=15)]
    parts = [
        crowd("big", 600, 8, 0) + early,
        [r for r in heavy if r not in early] + crowd("mid", 400, 8, 10_000, minute=35),
        crowd("big", 100, 2, 600, minute=5),
        crowd("tail", 200, 20, 20_000, minute=70),
    ]
    root = tmp_path_factory.mktemp("dpstream")
    paths = []
    for i, rows in enumerate(parts):
        path = write(root / f"f{i}.parquet", sorted(rows, key=lambda r: r["start_time"]))
        _stamp(path, i)
        paths.append(path)
    return paths


def _watch(tmp_path: Path, files: list[Path]) -> Path:
    watch = tmp_path / "in"
    watch.mkdir(parents=True)
    for i, path in enumerate(files):
        shutil.copy(path, watch / path.name)
        _stamp(watch / path.name, i)
    return watch


def _rows(out: Path) -> pl.DataFrame:
    df = telemetry.read_metrics(out)
    return df.drop([c for c in ("revision", "released_at") if c in df.columns]).sort(KEY_COLUMNS)


def _every(out: Path) -> pl.DataFrame:
    """Every row of every part file (all revisions), without the release time."""
    return pl.read_parquet(out / "metrics", hive_partitioning=False).drop("released_at").sort(KEY_COLUMNS)


def _run(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def _exact(values, scale):
    """No noise: what a release computes before noising (the rows it would decide on exact counts)."""
    return np.asarray(values, dtype=np.int64).copy()


def _stream_here(watch: Path, out: Path, once: bool, **options):
    """A stream in this process (the driver the command runs), one file per micro-batch."""
    from telemetry.config import make_options
    from telemetry.keys import as_keyring
    from telemetry.stream.driver import Stream, StreamOptions, parse_duration

    sopts = StreamOptions(watch=watch, out=out, state=out / "_state", lateness_us=parse_duration("l", "10m"),
                          retention_us=parse_duration("r", "30m"), once=once, batch_files=1)  # fmt: skip
    return Stream(sopts, as_keyring(TEST_KEY), make_options(by="route", dp_epsilon=EPS, **options))


def test_without_noise_the_stream_releases_what_process_releases(files, tmp_path, monkeypatch) -> None:
    """With the noise taken out, the rows (selection included) and the accounting of a stream
    fed one file per micro-batch in small batches, restarted twice, equal process's: the
    contribution bounding does not depend on the split into files, batches, micro-batches
    or runs, and a window evicted by the watermark holds its late records."""
    from telemetry.metrics import dp
    from telemetry.stream.files import listing

    monkeypatch.setattr(dp, "laplace", _exact)
    watch, out = _watch(tmp_path, files), tmp_path / "s"
    for _ in range(2):  # two runs of one micro-batch each, each ended without a final release
        stream = _stream_here(watch, out, once=False, batch_rows=997)
        stream.micro_batch([f for f in listing(watch) if f.name not in stream.consumed][:1])
        stream.engine.close()
    state = out / "_state"  # open windows' contributions: owner-only NumPy arrays, no pickle
    for path in [state, *state.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path
    for segment in state.glob("seg-*.npz"):
        with np.load(segment, allow_pickle=False) as data:
            assert any("/dp/" in name for name in data.files)
            assert all(data[name].dtype != object for name in data.files)
    assert _stream_here(watch, out, once=True, batch_rows=997).run() == 0
    batch = telemetry.process(files, key=TEST_KEY, out=tmp_path / "p", by="route", dp_epsilon=EPS)
    assert _rows(out).equals(_rows(tmp_path / "p"))
    assert sorted(_rows(out)["route"].to_list()) == ["big", "mid", "tail"]
    s = _run(out)
    for key in ACCOUNTING:
        assert s[key] == batch.summary[key], key
    assert s["records_dp_truncated"] > 4000 and s["records_late"] == 200
    assert s["dp"] == batch.summary["dp"] and s["k"] is None
    assert _every(out)["revision"].to_list() == [0, 0, 0]  # each row released once


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_once_gives_process_rows_and_accounting_with_noise(files, tmp_path, key_env, engine) -> None:
    """The real command (settings from telemetry.toml), real noise, on either engine: the
    same rows exist, the same records are bounded away, withheld and released, the DP
    metadata is process's, in run.json and in every Parquet file; the values carry noise of
    their own (drawn by this run, not process's)."""
    if engine == "dask":
        import importlib.util

        require(importlib.util.find_spec("distributed"),
                "dask.distributed is not installed: pip install 'telemetry[dask]' (make test does)")
    watch = _watch(tmp_path, files)
    (tmp_path / "telemetry.toml").write_text(f'dp_epsilon = {EPS}\ndp_max_records = 16\n')
    res = run_cli("stream", "--watch", str(watch), "--out", str(tmp_path / "s"), "--once", "--batch-files", "1",
                  "--config", str(tmp_path / "telemetry.toml"), "--engine", engine, "--workers", "2", *ARGS,
                  env=key_env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "differential privacy at epsilon 8 per window" in res.stdout
    batch = run_cli("process", *map(str, files), "--out", str(tmp_path / "p"), "--by", "route", "--dp-epsilon",
                    str(EPS), env=key_env)  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    s, p = _rows(tmp_path / "s"), _rows(tmp_path / "p")
    assert s.columns == p.columns and s.schema == p.schema
    assert s.select(KEY_COLUMNS).equals(p.select(KEY_COLUMNS))
    assert s["attempts"].to_list() != p["attempts"].to_list()
    run_s, run_p = _run(tmp_path / "s"), _run(tmp_path / "p")
    for key in ACCOUNTING:
        assert run_s[key] == run_p[key], key
    assert run_s["dp"] == run_p["dp"]
    parts = sorted((tmp_path / "s" / "metrics").rglob("*.parquet"))
    assert len(parts) == 1  # the windows the last file evicted and those --once released, together
    for part in parts:
        assert json.loads(pq.read_schema(part).metadata[b"dp"]) == run_p["dp"]


def test_a_window_is_released_once_and_later_records_are_too_late(files, tmp_path, key_env) -> None:
    """After --once every window is final: a second run quarantines the records that arrive
    for them (evicted windows and windows released before their retention ended alike,
    through the flood summary past 1,000), releases nothing for them again, and takes a
    new window's records."""
    watch, out = _watch(tmp_path, files), tmp_path / "s"
    first = run_cli("stream", "--watch", str(watch), "--out", str(out), "--once", "--dp-epsilon", str(EPS), *ARGS,
                    env=key_env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in (out / "metrics").rglob("*.parquet")}
    late = (crowd("big", 5, 1, 50_000, minute=3)  # 10:00, evicted by the watermark (11:00)
            + crowd("mid", 1100, 1, 60_000, minute=36)  # 10:30, released by --once before its retention ended
            + crowd("next", 300, 8, 70_000, minute=120))  # 12:00: a new window  # fmt: skip
    path = write(watch / "f9.parquet", late)
    _stamp(path, 9)
    second = run_cli("stream", "--watch", str(watch), "--out", str(out), "--once", "--dp-epsilon", str(EPS), *ARGS,
                     env=key_env)  # fmt: skip
    assert second.returncode == 1, second.stderr  # completed, records quarantined
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing rewritten
    every = _every(out)
    assert every["revision"].unique().to_list() == [0]
    assert every.select(KEY_COLUMNS).is_unique().all()  # no window released twice
    assert sorted(every["route"].to_list()) == ["big", "mid", "next", "tail"]
    run = _run(out)
    assert run["records_quarantined"] == 1105 and run["records_in"] == 19_400 + 3505
    lines = [json.loads(line) for p in (out / "quarantine").rglob("*.jsonl") for line in p.read_text().splitlines()]
    full = [r for r in lines if "fields" in r]
    summary = [r for r in lines if "summarized" in r]
    reasons = {}
    for r in full:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    assert reasons == {"too late: its window was already evicted": 5,
                       "too late: its window was already released under differential privacy": 1000}
    assert [(s["reason"], s["summarized"]) for s in summary] == [
        ("too late: its window was already released under differential privacy", 100)]
    assert all("1555" not in json.dumps(r) and "3361" not in json.dumps(r) for r in lines)


def _committed(out: Path) -> int:
    try:
        return json.loads((out / "_state" / "CURRENT").read_text())["commit"]
    except (OSError, ValueError):
        return 0


def _stored_noise(out: Path) -> dict[int, pa.Table]:
    """The noisy rows the committed state holds, not yet published (window → rows)."""
    state = out / "_state"
    head = json.loads((state / "CURRENT").read_text())
    meta = json.loads((state / head["meta"]).read_text())
    stored = {}
    for index, segment in meta["segments"]:
        with np.load(state / segment, allow_pickle=False) as data:
            if f"w{index}/noisy" in data.files:
                stored[index] = pa.ipc.open_stream(pa.py_buffer(data[f"w{index}/noisy"].tobytes())).read_all()
    return stored


def _stream_cmd(watch: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "telemetry", "stream", "--watch", str(watch), "--out", str(out), "--once",
            "--batch-files", "1", "--dp-epsilon", str(EPS), *ARGS]  # fmt: skip


def _kill_after_a_commit(env, watch: Path, out: Path) -> bool:
    """Run the command and SIGKILL it as soon as it has made a commit; whether it was
    killed (rather than ending first)."""
    before = _committed(out)
    proc = subprocess.Popen(_stream_cmd(watch, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and _committed(out) == before and time.monotonic() < deadline:
        time.sleep(0.0005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL)
    return proc.returncode != 0


def _row_set(df: pl.DataFrame) -> set[str]:
    """Rows as exact text (floats by repr: equal text, equal bits), NaN and null included."""
    return {repr(row) for row in df.rows()}


def test_sigkill_after_the_noise_is_stored_republishes_it(files, tmp_path, key_env) -> None:
    """Killed just after every commit, so some kills land after a commit that stores a
    release's noise and before (or while) the next one publishes it: the restarted command
    publishes the stored rows byte for byte, every row ever seen in OUT (uncommitted files
    an observer copied before a restart included) is in the final output unchanged, no row
    is released twice, and the accounting is an uninterrupted run's."""
    watch = _watch(tmp_path, files)
    calm = tmp_path / "calm"
    assert subprocess.run(_stream_cmd(watch, calm), env=key_env, capture_output=True).returncode == 0
    hits = 0
    for attempt in range(20):
        out = tmp_path / f"killed{attempt}"
        stored: set[str] = set()  # noisy rows found stored and unpublished after a kill
        seen: set[str] = set()  # rows an observer saw in OUT after a kill
        while _kill_after_a_commit(key_env, watch, out):
            noise = _stored_noise(out)
            if noise:
                hits += 1
                stored |= _row_set(pl.from_arrow(pa.concat_tables(noise.values())))
            if (out / "metrics").exists():
                seen |= _row_set(_every(out))
        final = _every(out)
        assert final.select(KEY_COLUMNS).is_unique().all()  # each window's rows released once
        assert stored <= _row_set(final) and seen <= _row_set(final)
        for key in (*ACCOUNTING, "records_late", "files"):
            assert _run(out)[key] == _run(calm)[key], key
        assert _rows(out).select(KEY_COLUMNS).equals(_rows(calm).select(KEY_COLUMNS))
        if hits >= 2:
            break
    print(f"{hits} kills after stored noise in {attempt + 1} runs to the end")
    assert hits >= 2
    state = out / "_state"
    for path in [state, *state.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


def test_noise_cannot_be_seeded_by_the_run(files, tmp_path, monkeypatch) -> None:
    """Two streams over the same files with the same key, NumPy's and Python's generators
    seeded alike: different noise; and no NumPy generator is drawn from."""
    outs = []
    for i in range(2):
        np.random.seed(1)
        random.seed(1)
        watch = _watch(tmp_path / f"run{i}", files)
        assert _stream_here(watch, tmp_path / f"s{i}", once=True).run() == 0
        outs.append(_rows(tmp_path / f"s{i}"))
    assert outs[0].select(KEY_COLUMNS).equals(outs[1].select(KEY_COLUMNS))
    assert outs[0]["attempts"].to_list() != outs[1]["attempts"].to_list()

    def refuse(*_a, **_k):
        raise AssertionError("numpy.random used")

    for name in ("default_rng", "laplace", "random", "randint", "normal", "geometric", "seed"):
        monkeypatch.setattr(np.random, name, refuse)
    watch = _watch(tmp_path / "run2", files)
    assert _stream_here(watch, tmp_path / "s2", once=True).run() == 0
    assert _run(tmp_path / "s2")["rows_released"] == 3


def test_the_state_is_resumed_only_with_the_same_dp_settings(files, tmp_path, key_env) -> None:
    watch, out = _watch(tmp_path, files[:1]), tmp_path / "s"
    assert run_cli("stream", "--watch", str(watch), "--out", str(out), "--dp-epsilon", "8", "--once", *ARGS,
                   env=key_env).returncode == 0  # fmt: skip
    for options in (["--dp-epsilon", "4"], ["--dp-epsilon", "8", "--dp-max-groups", "2"], []):
        res = run_cli("stream", "--watch", str(watch), "--out", str(out), "--once", *options, *ARGS, env=key_env)
        assert res.returncode == 2 and "differential privacy" in res.stderr, options
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
