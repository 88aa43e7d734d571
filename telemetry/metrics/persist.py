"""A :class:`State` on disk: NumPy arrays in an ``.npz`` file, never pickle.

The stream's window state (docs/stream.md) and anything else that keeps partial
aggregates between processes store them here. A file that someone else could
write must not run code when it is loaded, so the format holds only plain
arrays (read with ``allow_pickle=False``) and one JSON header: the format
version, the spec the state was accumulated with and the dimension values
(strings, integers or booleans, which JSON keeps apart). Files are written
owner-only to a temporary name and renamed, and ``fsync``-ed before the rename
so that a commit that names them survives a power cut.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from telemetry.errors import InputError
from telemetry.metrics.sketches import Distinct, Histogram
from telemetry.metrics.spec import AggSpec
from telemetry.metrics.state import Run, State

FORMAT = "telemetry-state"
VERSION = 1
_HISTOGRAMS = ("pdd", "jitter", "latency")
_DISTINCTS = ("sources", "destinations")


def state_arrays(state: State) -> dict[str, np.ndarray]:
    """The arrays of ``state`` (consolidated) with a JSON ``header`` array."""
    run = state._core()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "spec": {"window_us": state.spec.window_us, "by": list(state.spec.by),
                 "short_call_s": state.spec.short_call_s},
        "dims": [list(values) for values in run.dims],
    }
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8), "keys": run.keys,
              "counts": run.counts}
    for name in _HISTOGRAMS:
        hist = getattr(run, name)
        arrays[f"{name}.keys"], arrays[f"{name}.counts"] = hist.keys, hist.counts
    for name in _DISTINCTS:
        d = getattr(run, name)
        for part in ("off", "vals", "hll_groups", "hll_regs"):
            arrays[f"{name}.{part}"] = getattr(d, part)
    return arrays


def state_from_arrays(arrays, spec: AggSpec, where: str) -> State:
    """The state held by ``arrays`` (as :func:`state_arrays` gave them); ``spec`` must match."""
    try:
        header = json.loads(bytes(arrays["header"]).decode())
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise InputError(f"{where} is not a telemetry state of format version {VERSION}")
        saved = header["spec"]
        if (saved["window_us"], tuple(saved["by"]), saved["short_call_s"]) != spec.key():
            raise InputError(f"{where} was written with another window, by or short_call_s; "
                             "use the options of the run that wrote it, or a new state directory")
        run = Run(
            [list(values) for values in header["dims"]],
            arrays["keys"], arrays["counts"],
            *(Histogram(arrays[f"{n}.keys"], arrays[f"{n}.counts"]) for n in _HISTOGRAMS),
            *(Distinct(*(arrays[f"{n}.{p}"] for p in ("off", "vals", "hll_groups", "hll_regs")))
              for n in _DISTINCTS),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{where} is damaged: not a telemetry state") from None
    if run.keys.ndim != 2 or run.keys.shape[1] != 2 + len(spec.by) or len(run.counts) != run.n_groups:
        raise InputError(f"{where} is damaged: its arrays do not fit together")
    return State(spec, [run])


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read state file {path.name}: {exc.__class__.__name__}") from None
