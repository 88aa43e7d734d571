"""The project's one place for Numba options.

Every kernel is decorated with :data:`njit` from here. Kernels release the GIL
(``nogil=True``) so that a thread pool over record batches keeps both cores
busy and composes with Dask's worker threads; no kernel uses ``parallel=True``,
whose default threading layer can abort when entered from several threads.

Compiled code is cached on disk so that a short run does not pay the compile
time again. The cache is keyed so a stale entry can never be loaded: its
directory is named after the Python, Numba and llvmlite versions, and inside it
Numba keys every entry on the kernel's source file (path, size, modification
time) and the CPU. ``TELEMETRY_CACHE_DIR`` chooses the directory (default
``$XDG_CACHE_HOME/telemetry`` or ``~/.cache/telemetry``); ``TELEMETRY_CACHE_DIR=off``
turns caching off. An unwritable directory also turns it off, with no error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import llvmlite
import numba


def _cache_dir() -> str:
    setting = os.environ.get("TELEMETRY_CACHE_DIR")
    if setting is not None and setting.strip().lower() in ("off", "0", "no", "false", ""):
        return ""
    base = setting or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "telemetry"
    )
    tag = f"py{sys.version_info.major}{sys.version_info.minor}-numba{numba.__version__}-llvmlite{llvmlite.__version__}"
    path = os.path.join(base, tag)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError:
        return ""
    return path


CACHE_DIR = _cache_dir()
if CACHE_DIR:
    numba.config.CACHE_DIR = CACHE_DIR

_OPTIONS = {"nogil": True, "cache": bool(CACHE_DIR), "error_model": "numpy"}


def njit(func=None, **overrides):
    """``numba.njit`` with the project's options; usable bare or with arguments."""
    options = {**_OPTIONS, **overrides}
    if func is None:
        return numba.njit(**options)
    return numba.njit(**options)(func)
