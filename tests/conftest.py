"""Shared fixtures: a fixed test key, running the real CLI in a subprocess, and
:func:`require` for prerequisites outside Python (promtool, chromium, the kernel cache)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

def require(condition: object, reason: str) -> None:
    """Skip the calling test when a prerequisite is missing; under ``CI=true`` fail
    instead, so a CI run never reports a test that did not run as passed. ``reason``
    names what is missing and how to get it."""
    if condition:
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


#: A fixed key so golden values reproduce; never a production key.
TEST_KEY = bytes(range(1, 33))
REPO = Path(__file__).resolve().parents[1]


def reader_schemas() -> list:
    """Every schema a reader may hand the pipeline: ``CANONICAL`` (text formats) and
    ``READ`` with any set of identifier columns read as text (Parquet)."""
    from itertools import combinations

    from telemetry.schema import CANONICAL, IDENTIFIER_COLUMNS, read_schema

    return [CANONICAL] + [read_schema(text) for n in range(len(IDENTIFIER_COLUMNS) + 1)
                          for text in combinations(IDENTIFIER_COLUMNS, n)]  # fmt: skip


@pytest.fixture
def test_key() -> bytes:
    return TEST_KEY


@pytest.fixture
def key_env(monkeypatch) -> dict[str, str]:
    """Environment for subprocesses with TELEMETRY_KEY set to the test key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_KEY"] = base64.b64encode(TEST_KEY).decode()
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None, cwd=None):
    """Run ``python -m telemetry ARGS`` and return the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        cwd=cwd,
        timeout=600,
    )


def promtool(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run Prometheus' ``promtool ARGS`` (text), required as :func:`require` says."""
    require(shutil.which("promtool"), "promtool is not on PATH: run `make debian-tools` (make test does)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, input=input)


@pytest.fixture(scope="session")
def dask_client():
    """A real Dask cluster for the session: two worker processes of one thread each."""
    import importlib.util

    require(importlib.util.find_spec("distributed"),
            "dask.distributed is not installed: pip install 'telemetry[dask]' (make test does)")
    import distributed

    from telemetry.engine.dask import local_cluster

    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        yield client


def convert_small_files_alone(monkeypatch) -> None:
    """From now on in this test, small Parquet files are read one by one as any file is
    (``read``, one ``to_canonical`` each) instead of decoded at a look and converted
    together (``readers.read_files``): the reference of the gathered conversion."""
    import dataclasses

    from telemetry import readers
    from telemetry.readers.canonical import parquet_plan

    def one_by_one(path, batch_rows, options):
        plan = parquet_plan(path, batch_rows, options)
        return None if isinstance(plan, readers.Small) else plan

    parquet = readers.get_format("parquet")
    monkeypatch.setitem(readers._REGISTRY, "parquet", dataclasses.replace(parquet, plan=one_by_one))


def assert_first_rejects_described(rows, rejects, n: int, reason: str | None = None) -> None:
    """A file of 2n records, every second one (2, 4, …) refused for one reason, read in
    many blocks: only the file's first FULL_REJECTS of them are described, with fields;
    the others come as runs, in more than one block; every record is accounted for
    (``rows`` the good ones: 1, 3, …). ``reason``: the reason expected, if given."""
    from telemetry.quarantine import FULL_REJECTS
    from telemetry.readers import Reject, rejected

    bad = list(range(2, 2 * n + 1, 2))
    described = [r for r in rejects if isinstance(r, Reject)]
    assert [r.row for r in described] == bad[:FULL_REJECTS]
    reasons = {r.reason for r in rejects}
    assert len(reasons) == 1 and (reason is None or reasons == {reason})
    assert all(r.fields for r in described)
    runs = [r for r in rejects if not isinstance(r, Reject)]
    assert len(runs) > 1 and sorted(int(x) for r in runs for x in r.rows) == bad[FULL_REJECTS:]
    assert rejected(rejects) == n and [int(r) for r in rows] == list(range(1, 2 * n + 1, 2))


#: The kernel's word for a process's transparent huge pages, as Python reads it ("1": on).
THP_ENABLED = 'open("/proc/self/status").read().split("THP_enabled:")[1].split()[0]'


def huge_pages_on() -> None:
    """Transparent huge pages back on in this process, as a user's process starts
    (``PR_SET_THP_DISABLE`` 0): an earlier test's in-process command turns them off in
    pytest's own process, which a test of who turns them off must not inherit."""
    import ctypes

    ctypes.CDLL(None).prctl(41, 0, 0, 0, 0)
    assert eval(THP_ENABLED) == "1"
