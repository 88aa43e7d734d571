"""The public surface: cheap import, a truthful ``__all__``, and what the ``telemetry``
command sets up for itself.

Reference: a fresh interpreter (sys.modules, environment) and the names the package documents."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import telemetry
from telemetry.generate import write
from tests.conftest import THP_ENABLED, huge_pages_on


def test_every_name_in_all_resolves():
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None, name


def test_import_does_not_load_numba_or_compile():
    code = "import sys, telemetry; print('numba' in sys.modules, 'kernels' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        telemetry.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


# A ``telemetry`` command run in a child process; at its exit the child prints, to stderr,
# what ``REPORT`` (an expression) gives then, after whatever the command itself wrote.
_AT_EXIT = """
import atexit, ctypes, os, sys
atexit.register(lambda: print(REPORT, file=sys.stderr))
sys.argv = ["telemetry", *sys.argv[1:]]
from telemetry.cli import entry
entry()
"""
_KEY = {"TELEMETRY_KEY": base64.b64encode(bytes(range(32))).decode()}


def _at_exit(report: str, args: list, drop: str = "", **env: str) -> list[str]:
    """What ``report`` gave at the exit of ``telemetry *args`` (environment variable
    ``drop`` unset, ``env`` added), split into words."""
    return _stderr_at_exit(report, args, drop, **env)[-1].split()


def _stderr_at_exit(report: str, args: list, drop: str = "", **env: str) -> list[str]:
    """The lines the child of :func:`_at_exit` wrote to stderr, the report's last."""
    child = {k: v for k, v in os.environ.items() if k != drop} | _KEY | env
    code = _AT_EXIT.replace("REPORT", report)
    command = [sys.executable, "-c", code, *map(str, args)]
    done = subprocess.run(command, env=child, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr.splitlines()


# the OpenBLAS worker threads of NumPy's BLAS (its wheel's library, among the mappings)
_BLAS = (
    'os.environ.get("OPENBLAS_NUM_THREADS"), ctypes.CDLL(next(line.split()[-1] for line in '
    'open("/proc/self/maps") if "openblas" in line)).scipy_openblas_get_num_threads64_()'
)


def test_cli_starts_no_blas_threads_unless_the_operator_asks(tmp_path):
    args = ["generate", "--out", tmp_path / "cdr.csv", "--records", "100"]
    assert _at_exit(_BLAS, args, drop="OPENBLAS_NUM_THREADS") == ["1", "1"]
    assert _at_exit(_BLAS, args, OPENBLAS_NUM_THREADS="2") == ["2", "2"]


def test_process_command_keeps_arrow_memory_unless_the_operator_says(tmp_path):
    write(tmp_path / "cdr.parquet", 500)
    args = ["process", tmp_path / "cdr.parquet", "--out", tmp_path / "out", "--region", "GB"]
    purge = 'os.environ.get("MIMALLOC_PURGE_DELAY")'
    assert _at_exit(purge, args, drop="MIMALLOC_PURGE_DELAY") == ["-1"]
    assert _at_exit(purge, args, MIMALLOC_PURGE_DELAY="25") == ["25"]


def test_process_command_shares_one_malloc_arena_unless_the_operator_says(tmp_path):
    # glibc's malloc_stats lists its arenas; per-thread arenas would give the worker its own
    write(tmp_path / "cdr.parquet", 2_000)
    args = ["process", tmp_path / "cdr.parquet", "--out", tmp_path / "out", "--region", "GB", "--threads", "2"]
    stats = "ctypes.CDLL(None).malloc_stats()"

    def arenas(**env: str) -> int:
        return sum(line.startswith("Arena ") for line in _stderr_at_exit(stats, args, **env))

    assert arenas(drop="MALLOC_ARENA_MAX") == 1
    assert arenas(MALLOC_ARENA_MAX="4") > 1


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux's /proc")
def test_process_command_runs_without_transparent_huge_pages(tmp_path):
    # the kernel's own word for the process, read at its exit; the test's process keeps them
    write(tmp_path / "cdr.parquet", 500)
    args = ["process", tmp_path / "cdr.parquet", "--out", tmp_path / "out", "--region", "GB"]
    huge_pages_on()
    assert _at_exit(THP_ENABLED, args) == ["0"]
    assert eval(THP_ENABLED) == "1"


def test_process_command_writes_metrics_without_polars(tmp_path):
    # polars is the API's view of the rows (Result.metrics); the files come from Arrow
    write(tmp_path / "cdr.parquet", 2_000)
    args = ["process", tmp_path / "cdr.parquet", "--out", tmp_path / "out", "--region", "GB"]
    assert _at_exit('"polars" in sys.modules', args) == ["False"]
    result = telemetry.process(tmp_path / "cdr.parquet", key=bytes(range(32)), region="GB")
    written = pq.read_table(tmp_path / "out" / "metrics").drop_columns(["date"])
    assert written.equals(result.table.cast(written.schema))
    assert result.metrics.to_arrow().cast(result.table.schema).equals(result.table)
