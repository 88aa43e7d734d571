"""The project's one place for Numba options.

Every kernel is decorated with :data:`njit` from here. Kernels release the GIL
(``nogil=True``) so that a thread pool over record batches keeps both cores
busy and composes with Dask's worker threads; no kernel uses ``parallel=True``,
whose default threading layer can abort when entered from several threads.

On-disk caching of compiled code is opt-in: set ``TELEMETRY_CACHE_DIR`` to a
writable directory. Numba keys its cache on the source file's path and
modification time and on the CPU, so an edited or moved kernel recompiles
instead of loading stale code.
"""

from __future__ import annotations

import os

import numba

CACHE_DIR = os.environ.get("TELEMETRY_CACHE_DIR", "")

if CACHE_DIR:
    os.makedirs(CACHE_DIR, exist_ok=True)
    numba.config.CACHE_DIR = CACHE_DIR

_OPTIONS = {"nogil": True, "cache": bool(CACHE_DIR), "error_model": "numpy"}


def njit(func=None, **overrides):
    """``numba.njit`` with the project's options; usable bare or with arguments."""
    options = {**_OPTIONS, **overrides}
    if func is None:
        return numba.njit(**options)
    return numba.njit(**options)(func)
