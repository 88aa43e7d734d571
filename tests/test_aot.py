"""Kernels compiled ahead of time (kernels/build.py, kernels/_jit.py): a run served by
them gives what Numba gives, never imports Numba, and a call of other types, or a
module built from other sources, never reaches them.

Reference: the same run and kernels under Numba (TELEMETRY_AOT=off), and numba.typeof for
argument keys."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kernels import _jit
from kernels import aggregate as agg
from tests.conftest import TEST_KEY, require


@pytest.fixture(scope="module")
def ahead() -> dict:
    """The compiled-ahead functions, built first if ``make`` has not (as it does)."""
    require(_jit.ahead_path(), _jit.NO_CACHE_REASON)
    if not os.path.exists(f"{_jit.ahead_path()}.json"):
        subprocess.run([sys.executable, "-m", "kernels.build"], check=True)
    table = _jit._load(_jit.ahead_path())
    assert table, "kernels.build left no loadable module"
    return table


#: Run first in a subprocess: a Numba without ``numba.pycc`` (deprecated upstream, to be removed)
NO_PYCC = "import sys; sys.modules['numba.pycc'] = None; "


def _run(path, out, aot: str, prelude: str = "") -> str:
    # the key goes through the environment: a failed run's message shows the command
    code = (
        f"{prelude}import base64, os, sys, telemetry; "
        f"telemetry.process([{str(path)!r}], key=base64.b64decode(os.environ['TELEMETRY_KEY']), "
        f"out={str(out)!r}, region='GB', k=1); "
        "print('numba' in sys.modules)"
    )
    env = {**os.environ, "TELEMETRY_AOT": aot, "TELEMETRY_KEY": base64.b64encode(TEST_KEY).decode()}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize(("shape", "records"), [("retail", 20_000), ("transit", 70_000)])
def test_a_run_served_ahead_gives_what_numba_gives_without_importing_it(ahead, tmp_path, shape, records) -> None:
    # transit: its writer gives up the destinations' dictionary page, so the reader samples
    # them and the seen table goes without them (kernels the retail run never calls)
    from telemetry.generate import write

    path = tmp_path / "cdrs.parquet"
    write(path, records, seed=5, batch_rows=5000, shape=shape)
    assert _run(path, tmp_path / "ahead", "on") == "False"
    assert _run(path, tmp_path / "numba", "off") == "True"
    read = [pl.read_parquet(tmp_path / side / "metrics" / "**" / "*.parquet") for side in ("ahead", "numba")]
    assert len(read[0]) and read[0].sort(pl.all()).equals(read[1].sort(pl.all()))


def test_a_numba_without_pycc_builds_nothing_and_runs_give_the_same_metrics(ahead, tmp_path) -> None:
    from telemetry.generate import write

    cache = tmp_path / "cache"
    build = NO_PYCC + "import runpy; runpy.run_module('kernels.build', run_name='__main__')"
    env = {**os.environ, "TELEMETRY_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", build], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "this Numba has no numba.pycc: nothing compiled ahead" in done.stderr and done.stderr.count("\n") == 1
    assert not list(cache.rglob("kernels-*"))  # before the workload: no minutes spent for nothing
    path = tmp_path / "cdrs.parquet"
    write(path, 20_000, seed=6, batch_rows=5000)
    assert _run(path, tmp_path / "numba", "off", NO_PYCC) == "True"  # compiled by Numba
    assert _run(path, tmp_path / "ahead", "on", NO_PYCC) == "False"  # a module built before: no pycc needed
    assert _run(path, tmp_path / "plain", "off") == "True"
    read = {side: pl.read_parquet(tmp_path / side / "metrics" / "**" / "*.parquet").sort(pl.all()) for side in ("numba", "ahead", "plain")}
    assert len(read["plain"]) and read["numba"].equals(read["plain"]) and read["ahead"].equals(read["plain"])


def test_calls_of_other_types_go_to_numba(ahead, monkeypatch) -> None:
    monkeypatch.setattr(_jit, "_ahead_table", ahead)
    name = agg.with_nulls.name
    values = np.arange(10, dtype=np.int32)
    valid = np.arange(10) % 3 != 0
    served = {signature for kernel, signature in ahead if kernel == name}
    out = np.empty(10, np.int64)
    assert _jit._signature((values, valid, -1, out)) in served  # the pipeline's own call
    cases = [
        (values.astype(np.int8), valid, -1, np.empty(10, np.int64)),  # a dtype never compiled ahead
        (np.arange(20, dtype=np.int32)[::2], valid, -1, np.empty(10, np.int64)),  # strided: layout A
        (values, valid, -1, np.empty(10, np.int32)),  # the output's dtype
    ]
    for args in cases:
        assert _jit._signature(args) not in served
        agg.with_nulls(*args)
        np.testing.assert_array_equal(args[3], np.where(valid, np.asarray(args[0]), -1))
    read_only = out.copy()
    read_only.flags.writeable = False
    assert _jit._signature((values, valid, -1, read_only)) not in served


def test_arguments_get_the_same_key_exactly_when_numba_types_them_alike() -> None:
    # the key must be a function of Numba's type: two arguments sharing a key and typed
    # differently by Numba would send one of them to code compiled for the other
    import numba

    base = np.arange(12, dtype=np.int64)
    read_only = base.copy()
    read_only.flags.writeable = False
    arguments = [
        1, -(2**63), np.int64(1), np.int32(1), np.uint64(1), True, np.bool_(False), 1.5, np.float64(2), np.float32(1),
        base, base[::2], base.reshape(3, 4), base.reshape(3, 4).T, base.astype(np.int32), read_only,
        np.zeros(0, np.uint8), (base, base), (base, base.astype(np.int32)), np.zeros(3, np.float32)[1:],
    ]  # fmt: skip
    keyed = [(a, _jit._argument(a)) for a in arguments]
    assert all(key is not None for _, key in keyed)
    for a, key_a in keyed:
        for b, key_b in keyed:
            assert (key_a == key_b) == (numba.typeof(a) == numba.typeof(b)), (key_a, key_b)
    assert [_jit._argument(v) for v in (2**63, "x", [1], None)] == [None] * 4  # never compiled ahead


def test_a_module_built_from_other_sources_is_never_loaded(ahead, tmp_path, monkeypatch) -> None:
    for source in _jit._KERNELS.glob("*.py"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    real = _jit.ahead_path()
    monkeypatch.setattr(_jit, "_KERNELS", tmp_path)
    before = _jit.ahead_path()
    assert before == real  # named after the sources' content, not where they lie
    with open(tmp_path / "sketch.py", "a") as handle:
        handle.write("\n# edited\n")
    assert _jit.ahead_path() != before and not os.path.exists(f"{_jit.ahead_path()}.json")
    assert _jit._load(_jit.ahead_path()) == {}
    manifest = json.loads(Path(f"{before}.json").read_text())
    broken = tmp_path / "broken"
    (tmp_path / "broken.json").write_text(json.dumps({**manifest, "library": str(tmp_path / "absent.so")}))
    assert _jit._load(str(broken)) == {}


def test_versions_in_the_cache_key_are_the_installed_ones() -> None:
    # read from .dist-info folder names without importing Numba; checked against the modules
    import llvmlite
    import numba

    assert (_jit._version("numba"), _jit._version("llvmlite")) == (numba.__version__, llvmlite.__version__)
    assert _jit._version("no_such_package_here") == "absent"


def test_an_up_to_date_build_says_nothing(ahead) -> None:
    done = subprocess.run([sys.executable, "-m", "kernels.build"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_rewritten_on_a_terminal_and_thinned_in_a_log(monkeypatch) -> None:
    from kernels import build

    clock = iter([0.0, 0.0, 5.0, 16.0, 17.0, 18.0])
    monkeypatch.setattr(build.time, "monotonic", lambda: next(clock))
    log = _Stream(tty=False)
    progress = build.Progress("kernels.build", every=15, stream=log)
    for text in ("step 1 of 3", "step 2 of 3", "step 3 of 3"):  # at 0, 5 and 16 s: the second is left out
        progress.show(text)
    progress.show("link", force=True)  # at 17 s, forced
    progress.done("built")
    assert log.getvalue().splitlines() == ["kernels.build: step 1 of 3", "kernels.build: step 3 of 3",
                                           "kernels.build: link", "kernels.build: built"]  # fmt: skip
    monkeypatch.setattr(build.time, "monotonic", lambda: 0.0)
    terminal = _Stream(tty=True)
    progress = build.Progress("x", stream=terminal)
    progress.show("a longer line")
    progress.show("short")
    progress.done("end")
    assert terminal.getvalue() == "\rx: a longer line\rx: short        \rx: end  \n"


def test_numba_compiles_again_when_a_file_whose_code_a_kernel_inlines_changes(tmp_path) -> None:
    # Numba checks a cached kernel against its own file only; kernels.sha256's SHA-NI
    # kernel inlines code generated in kernels/shani.py, so an edit there alone must
    # not load the old machine code (it did: the 128-bit rewrite of shani's padding
    # ran the old code until the cache was cleared)
    package = tmp_path / "src" / "kernels"
    package.mkdir(parents=True)
    for source in _jit._KERNELS.glob("*.py"):
        (package / source.name).write_bytes(source.read_bytes())
    (package / "zz_constant.py").write_text("VALUE = 1\n")
    (package / "zz_kernel.py").write_text(
        "from kernels._jit import njit\nfrom kernels.zz_constant import VALUE\n\n\n@njit\ndef value():\n    return VALUE\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "TELEMETRY_CACHE_DIR": str(tmp_path / "cache"),
           "TELEMETRY_AOT": "off"}  # fmt: skip
    probe = "from kernels import zz_kernel; print(zz_kernel.value())"

    def value() -> str:
        done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    assert value() == "1"
    assert value() == "1"  # from the cache
    (package / "zz_constant.py").write_text("VALUE = 2\n")  # the kernel's own file untouched
    assert value() == "2"
