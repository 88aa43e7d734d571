"""The project's one place for Numba options, and the kernels compiled ahead of time.

Every kernel is decorated with :data:`njit` from here. Kernels release the GIL
(``nogil=True``) so that a thread pool over record batches keeps both cores
busy and composes with Dask's worker threads; no kernel uses ``parallel=True``,
whose default threading layer can abort when entered from several threads.

Compiled code is cached on disk so that a short run does not pay the compile
time again. The cache is keyed so a stale entry can never be loaded: its
directory is named after the Python, Numba and llvmlite versions, Numba's own
entries sit in a subdirectory named after a digest of every kernel source and the
CPU (:func:`digest`: Numba itself checks an entry against the kernel's own file
only, not the files whose code it inlines, such as :mod:`kernels.shani`'s code
generators), and inside it Numba keys every entry on the kernel's source file (path,
size, modification time) and the CPU. ``TELEMETRY_CACHE_DIR`` chooses the directory (default
``$XDG_CACHE_HOME/telemetry`` or ``~/.cache/telemetry``); ``TELEMETRY_CACHE_DIR=off``
turns caching off. An unwritable directory also turns it off, with no error.

Ahead of time: ``python -m kernels.build`` (run by ``make``) compiles the
specializations a run uses into one extension module in the same directory,
named after a digest of the kernels' sources, the versions above, NumPy's and
the CPU's. Loading it takes milliseconds, where importing Numba and loading
its cached kernels takes about half a second, so a run whose calls all match
it never imports Numba. A call is sent to the module only when every argument
has exactly the type it was compiled for (:func:`_signature`: dtype, rank,
layout, alignment, writability; or a scalar's kind), since compiled code trusts
the types it is given; any other call, or any kernel when no module matches
the digest, goes to Numba as before. ``TELEMETRY_AOT=off`` ignores the module.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

_OPTIONS = {"nogil": True, "error_model": "numpy"}
_KERNELS = Path(__file__).resolve().parent


def _version(package: str) -> str:
    """An installed package's version, read from its ``.dist-info`` folder's name
    (``importlib.metadata`` takes 25 ms to find it; importing Numba, 150 ms); from
    the package itself where no such folder sits beside it."""
    import importlib
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return "absent"
    site = Path(spec.origin).parent.parent
    for entry in os.listdir(site):
        if entry.startswith(f"{package}-") and entry.endswith(".dist-info"):
            return entry[len(package) + 1 : -len(".dist-info")]
    return importlib.import_module(package).__version__


def _cache_dir() -> tuple[str, str]:
    """The cache directory, or "" and why there is none."""
    setting = os.environ.get("TELEMETRY_CACHE_DIR")
    if setting is not None and setting.strip().lower() in ("off", "0", "no", "false", ""):
        return "", f"TELEMETRY_CACHE_DIR={setting!r} turns the kernel cache off"
    base = setting or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "telemetry"
    )
    tag = f"py{sys.version_info.major}{sys.version_info.minor}-numba{_version('numba')}-llvmlite{_version('llvmlite')}"
    path = os.path.join(base, tag)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        return "", f"the kernel cache directory {path} is not writable ({exc.strerror}); set TELEMETRY_CACHE_DIR"
    return path, ""


#: The cache directory ("" when off or unwritable), and why there is none.
CACHE_DIR, NO_CACHE_REASON = _cache_dir()


# --- Numba, imported on the first call no compiled-ahead code serves ------------------

_numba_lock = threading.RLock()
_numba_ready = False
#: Called with a kernel's name each time Numba compiles one (a disk-cache miss, not a load):
#: how ``telemetry demo`` and ``kernels.build`` show progress on a machine's first run.
on_compile: list = []


def _numba():
    """Numba, configured: the cache directory, and typing that sees a :class:`Kernel`
    named inside another kernel as its dispatcher."""
    global _numba_ready
    import numba

    if not _numba_ready:
        with _numba_lock:
            if not _numba_ready:
                from numba.core import event, types
                from numba.core.typing.typeof import typeof_impl

                class Compiles(event.Listener):
                    def on_start(self, ev) -> None:
                        _compiling(ev.data["dispatcher"])

                    def on_end(self, ev) -> None:
                        pass

                if CACHE_DIR:
                    # Numba checks a cached kernel against its own file only: one named
                    # after every kernel source (an intrinsic's code generator in another
                    # file, say) is compiled again when any of them changes
                    numba.config.CACHE_DIR = os.path.join(CACHE_DIR, f"numba-{digest()}")
                typeof_impl.register(Kernel)(lambda kernel, c: types.Dispatcher(kernel.dispatcher))
                typeof_impl.register(Intrinsic)(lambda intrinsic, c: intrinsic.numba_type)
                event.register("numba:compile", Compiles())
                _numba_ready = True
    return numba


def _compiling(dispatcher) -> None:
    func = dispatcher.py_func
    if func.__module__.startswith(f"{__package__}."):  # a kernel, not one of Numba's own functions
        for call in on_compile:
            call(f"{func.__module__}.{func.__qualname__}")


class Kernel:
    """A kernel: the compiled-ahead function for calls whose argument types it was
    built for, else a Numba dispatcher made on first need."""

    def __init__(self, func, options: dict[str, Any]) -> None:
        functools.update_wrapper(self, func)
        self.py_func = func
        self.name = f"{func.__module__}.{func.__qualname__}"
        self._options = options
        self._dispatcher = None

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            numba = _numba()
            with _numba_lock:
                if self._dispatcher is None:
                    self._dispatcher = numba.njit(cache=bool(CACHE_DIR), **self._options)(self.py_func)
        return self._dispatcher

    def __call__(self, *args):
        ahead = _ahead()
        if ahead:
            function = ahead.get((self.name, _signature(args)))
            if function is not None:
                return function(*args)
        if _recording is not None:
            _record(self, args)
        return self.dispatcher(*args)

    def __getattr__(self, name: str):  # signatures, overloads, inspect_asm …
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher, name)

    def __reduce__(self):  # pickled as a reference to the module attribute
        return (_kernel, (self.py_func.__module__, self.py_func.__qualname__))


def _kernel(module: str, name: str) -> Kernel:
    import importlib

    return getattr(importlib.import_module(module), name)


def njit(func=None, **overrides):
    """The project's ``numba.njit``: a :class:`Kernel`; usable bare or with arguments."""
    options = {**_OPTIONS, **overrides}
    if func is None:
        return lambda f: Kernel(f, options)
    return Kernel(func, options)


class Intrinsic:
    """A ``numba.extending.intrinsic`` made on first need, so that a module defining
    one imports Numba only when a kernel calling it is compiled."""

    def __init__(self, func) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self._type = None

    @property
    def numba_type(self):
        """The intrinsic's Numba type, as a kernel naming it types it."""
        if self._type is None:
            _numba()
            with _numba_lock:
                if self._type is None:
                    from numba.core.registry import cpu_target
                    from numba.extending import intrinsic as make

                    made = make(self._func)
                    typing = cpu_target.typing_context
                    typing.refresh()  # the intrinsic's typing template, registered just now
                    self._type = typing.resolve_value_type(made)
        return self._type


def intrinsic(func) -> Intrinsic:
    """The project's ``numba.extending.intrinsic`` (LLVM IR emitted into a kernel)."""
    return Intrinsic(func)


# --- argument signatures ------------------------------------------------------------


def _signature(args: tuple) -> tuple | None:
    """What Numba would type ``args`` as, as a hashable key; None for anything the
    compiled-ahead code is never given (it then cannot match)."""
    out = []
    for arg in args:
        key = _argument(arg)
        if key is None:
            return None
        out.append(key)
    return tuple(out)


def _argument(arg: Any):
    if isinstance(arg, np.ndarray):
        flags = arg.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return ("array", arg.dtype.str, arg.ndim, layout, flags.aligned, flags.writeable)
    if isinstance(arg, (bool, np.bool_)):
        return ("scalar", "?")
    if isinstance(arg, int):
        return ("scalar", "<i8") if -(2**63) <= arg < 2**63 else None
    if isinstance(arg, float):
        return ("scalar", "<f8")
    if isinstance(arg, np.generic):
        return ("scalar", arg.dtype.str)
    if isinstance(arg, tuple):
        inner = _signature(arg)
        return None if inner is None else ("tuple", inner)
    return None


def _as_key(value: Any):
    """A signature read back from JSON (lists) as the tuples :func:`_signature` makes."""
    return tuple(_as_key(v) for v in value) if isinstance(value, list) else value


# --- the compiled-ahead module ------------------------------------------------------


def digest() -> str:
    """What the compiled-ahead module must have been built from to be loaded."""
    h = hashlib.sha256()
    for part in (sys.version, _version("numba"), _version("llvmlite"), np.__version__, platform.machine(), _cpu()):
        h.update(part.encode() + b"\0")
    for source in sorted(_KERNELS.glob("*.py")):
        h.update(source.name.encode() + b"\0" + source.read_bytes())
    return h.hexdigest()[:24]


def _cpu() -> str:
    """The CPU's model and feature flags (the module is compiled for this CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            lines = [line for line in handle if line.startswith(("model name", "flags"))][:2]
    except OSError:
        return "unknown"
    return "".join(lines)


def ahead_path() -> str:
    """Where the compiled-ahead module for these sources lives ("" without a cache):
    ``<path>.json`` names the library and what it exports."""
    return os.path.join(CACHE_DIR, f"kernels-{digest()}") if CACHE_DIR else ""


_ahead_table: dict | None = None
_ahead_lock = threading.Lock()
#: While kernels.build runs its workload: (kernel name, signature) → (kernel, Numba types).
_recording: dict | None = None


def _ahead() -> dict:
    """(kernel name, signature) → compiled-ahead function; empty when there is none."""
    global _ahead_table
    if _ahead_table is None:
        with _ahead_lock:
            if _ahead_table is None:
                off = os.environ.get("TELEMETRY_AOT", "").strip().lower() in ("off", "0", "no", "false")
                _ahead_table = {} if off or _recording is not None else _load(ahead_path())
    return _ahead_table


def _record(kernel: Kernel, args: tuple) -> None:
    key = (kernel.name, _signature(args))
    if key[1] is not None and key not in _recording:
        numba = _numba()
        _recording[key] = (kernel, tuple(numba.typeof(arg) for arg in args))


def _load(path: str) -> dict:
    import importlib.machinery
    import importlib.util

    if not path:
        return {}
    try:
        with open(f"{path}.json", encoding="utf-8") as handle:
            exports = json.load(handle)
        loader = importlib.machinery.ExtensionFileLoader(exports["module"], exports["library"])
        spec = importlib.util.spec_from_file_location(exports["module"], exports["library"], loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return {(name, _as_key(signature)): getattr(module, symbol) for name, signature, symbol in exports["exports"]}
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError):
        return {}  # absent, partial or damaged: Numba compiles as it would without it
