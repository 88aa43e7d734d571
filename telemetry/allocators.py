"""Settings of a process for a long run, made before it allocates: its allocators and
its pages. The commands make them for themselves (and so for a local Dask cluster they
start); the Dask engine's warm-up plugin makes :func:`no_huge_pages` in each worker.
Measurements are in docs/design.md."""

from __future__ import annotations


def tune_allocators() -> None:
    """Allocator settings for a long run, made before it allocates; an operator's own
    values are left as they are. Measurements are in docs/design.md.

    * Arrow's allocator (mimalloc) keeps the pages a batch frees for the next one
      (``MIMALLOC_PURGE_DELAY=-1``): every batch allocates and frees the same few hundred
      MB of Arrow buffers, which it would otherwise hand back to the OS for the next
      batch to fault in again, zeroed.
    * glibc's malloc (NumPy's arrays) serves all threads from one arena
      (``M_ARENA_MAX`` 1, as ``MALLOC_ARENA_MAX=1``): a block one thread frees is
      reused by the next that needs it, where per-thread arenas each kept their own
      fragments and the peak crept up the longer the run.
    * no transparent huge pages (:func:`no_huge_pages`).
    """
    import ctypes
    import os

    no_huge_pages()

    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")  # read when mimalloc first purges
    if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in os.environ.get("GLIBC_TUNABLES", ""):
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc; the C library's own elsewhere
        if mallopt is not None:
            mallopt(_M_ARENA_MAX, 1)  # before a thread allocates: arenas are made on demand


_M_ARENA_MAX = -8  # glibc's malloc.h


def no_huge_pages() -> None:
    """Transparent huge pages off for this process and those it starts (Linux's
    ``PR_SET_THP_DISABLE``, inherited across fork and exec). NumPy and Arrow's
    allocator ask for huge pages for their large blocks; each is then faulted in whole,
    2 MiB zeroed at once, and where the kernel compacts memory to find one (``defrag``
    ``madvise``, the usual setting) the fault waits for it. A run gains nothing back: its
    arrays are streamed through, not searched at random. 4 M-record runs, turns of
    either first, 4 s apart: system time 0.56-1.11 -> 0.35-0.48 s, wall 1.95-2.36 ->
    1.89-2.03 s, peak RSS 496-533 -> 474-497 MiB (docs/design.md)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        prctl = getattr(ctypes.CDLL(None), "prctl", None)
        if prctl is not None:
            prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)  # fails only on kernels before 3.15: nothing to do then


_PR_SET_THP_DISABLE = 41  # linux/prctl.h
