"""The public surface: cheap import, a truthful ``__all__``."""

from __future__ import annotations

import subprocess
import sys

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


_PURGE_AT_EXIT = """
import atexit, os, sys
atexit.register(lambda: print(os.environ.get("MIMALLOC_PURGE_DELAY"), file=sys.stderr))
sys.argv = ["telemetry", "process", sys.argv[1], "--out", sys.argv[2], "--region", "GB"]
from telemetry.cli import entry
entry()
"""


def test_process_command_keeps_arrow_memory_unless_the_operator_says(tmp_path):
    import base64
    import os

    from telemetry.generate import write

    write(tmp_path / "cdr.parquet", 500)
    base = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    base["TELEMETRY_KEY"] = base64.b64encode(bytes(range(32))).decode()
    for own, seen in ((None, "-1"), ("25", "25")):
        env = base if own is None else {**base, "MIMALLOC_PURGE_DELAY": own}
        done = subprocess.run([sys.executable, "-c", _PURGE_AT_EXIT, str(tmp_path / "cdr.parquet"),
                               str(tmp_path / "out")], env=env, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stderr.split()[-1] == seen


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
