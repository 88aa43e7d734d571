"""The public surface: cheap import, a truthful ``__all__``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import telemetry


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


# At the command's exit: the OpenBLAS worker threads NumPy's BLAS runs (its wheel's
# library, found among the process's mappings), and the variable as the command saw it.
_BLAS_AT_EXIT = """
import atexit, ctypes, os, sys
def report():
    path = next(line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line)
    threads = ctypes.CDLL(path).scipy_openblas_get_num_threads64_()
    print(os.environ.get("OPENBLAS_NUM_THREADS"), threads, file=sys.stderr)
atexit.register(report)
sys.argv = ["telemetry", "generate", "--out", sys.argv[1], "--records", "100"]
from telemetry.cli import entry
entry()
"""


def test_cli_starts_no_blas_threads_unless_the_operator_asks(tmp_path):
    import os

    for setting, expected in ((None, "1 1"), ("2", "2 2")):
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        if setting is not None:
            env["OPENBLAS_NUM_THREADS"] = setting
        done = subprocess.run([sys.executable, "-c", _BLAS_AT_EXIT, str(tmp_path / "cdr.csv")],
                              env=env, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stderr.split()[-2:] == expected.split()


# RSS after freeing a 16 MiB array: glibc hands such a block back to the OS unless the
# command's allocator settings keep it for the next batch.
_FREED = """
import os, sys
import numpy as np
if sys.argv[1] == "keep":
    from telemetry.cli.process import keep_freed_memory
    keep_freed_memory()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
block = np.ones(16 << 17)  # 16 MiB of float64
held = rss()
del block
print(held - rss(), os.environ.get("MIMALLOC_PURGE_DELAY"))
"""


def test_batch_commands_keep_freed_memory_for_the_next_batch():
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the settings are glibc's")
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MIMALLOC_PURGE_DELAY")}

    def returned_mib(mode: str, **env: str) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-c", _FREED, mode], env={**base, **env},
                              capture_output=True, text=True, check=True)  # fmt: skip
        freed, purge = done.stdout.split()
        return int(freed), purge

    assert returned_mib("default")[0] >= 15  # glibc unmapped the block
    assert returned_mib("keep") == (0, "-1")  # kept, and Arrow's mimalloc told not to purge
    # an operator's own allocator settings win
    assert returned_mib("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")[0] >= 15
    assert returned_mib("keep", MIMALLOC_PURGE_DELAY="10")[1] == "10"


_MODULES_AT_EXIT = """
import atexit, sys
atexit.register(lambda: print("polars" in sys.modules, "numba" in sys.modules, file=sys.stderr))
sys.argv = ["telemetry", "process", sys.argv[1], "--out", sys.argv[2], "--region", "GB"]
from telemetry.cli import entry
entry()
"""


def test_process_command_writes_metrics_without_polars(tmp_path):
    # polars is the API's view of the rows (Result.metrics); the files come from Arrow
    import base64
    import os

    import pyarrow.parquet as pq

    from telemetry.generate import write

    write(tmp_path / "cdr.parquet", 2_000)
    env = dict(os.environ, TELEMETRY_KEY=base64.b64encode(bytes(range(32))).decode())
    done = subprocess.run([sys.executable, "-c", _MODULES_AT_EXIT, str(tmp_path / "cdr.parquet"),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.split()[-2] == "False"
    result = telemetry.process(tmp_path / "cdr.parquet", key=bytes(range(32)), region="GB")
    written = pq.read_table(tmp_path / "out" / "metrics").drop_columns(["date"])
    assert written.equals(result.table.cast(written.schema))
    assert result.metrics.to_arrow().cast(result.table.schema).equals(result.table)
