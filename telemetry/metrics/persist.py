"""A :class:`State` (or a DP state, :class:`telemetry.metrics.dp.Contributions`) on
disk: NumPy arrays in an ``.npz`` file, never pickle; and tables as Arrow IPC
streams (:func:`write_ipc`, the Dask engine's staged rejects).

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa

from telemetry.errors import InputError
from telemetry.metrics.sketches import Distinct, Histogram
from telemetry.metrics.spec import AggSpec
from telemetry.metrics.state import Run, State

if TYPE_CHECKING:
    from telemetry.metrics.dp import Contributions, Params

FORMAT = "telemetry-state"
DP_FORMAT = "telemetry-dp-state"
VERSION = 1
_HISTOGRAMS = ("pdd", "jitter", "latency")
_DISTINCTS = ("sources", "destinations")


def state_arrays(state: State) -> dict[str, np.ndarray]:
    """The arrays of ``state`` (consolidated) with a JSON ``header`` array."""
    run = state._core()
    header = {"format": FORMAT, "version": VERSION, "spec": _spec(state.spec),
              "dims": [list(values) for values in run.dims]}
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
        header = _header(arrays, FORMAT, spec, where)
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


def contributions_arrays(c: Contributions) -> dict[str, np.ndarray]:
    """The arrays of a DP state (consolidated: each window in one block, so the blocks'
    rows are distinct and their records join) with a JSON ``header`` array: the
    parameters it was bounded with and its dimension values by hash. The verdicts are
    not stored: the rule gives them again from the records."""
    from dataclasses import asdict

    from telemetry.metrics.dp import _FIELDS

    blocks = c.consolidated().blocks
    offsets = np.cumsum([0] + [len(b.keys) for b in blocks])
    header = {"format": DP_FORMAT, "version": VERSION, "spec": _spec(c.spec), "params": asdict(c.params),
              "names": [[[h, v] for h, v in lookup.items()] for lookup in c.names]}  # fmt: skip
    width = 2 + len(c.spec.by)
    return {"header": np.frombuffer(json.dumps(header).encode(), np.uint8),
            "keys": np.concatenate([b.keys for b in blocks] or [np.zeros((0, width), np.int64)]),
            "counted": np.concatenate([b.counted for b in blocks] or [np.zeros(0, np.int64)]),
            "gid": np.concatenate([b.gid.astype(np.int64) + at for b, at in zip(blocks, offsets)]
                                  or [np.zeros(0, np.int64)]),
            **{f"col.{name}": np.concatenate([b.cols[name] for b in blocks] or [np.zeros(0, dtype)])
               for name, dtype in _FIELDS.items()}}  # fmt: skip


def contributions_from_arrays(arrays, spec: AggSpec, params: Params, salt: int, where: str) -> Contributions:
    """The DP state held by ``arrays`` (as :func:`contributions_arrays` gave them), its
    records bounded again (one block); ``spec`` and ``params`` must match, ``salt`` is the
    run's bounding key."""
    from dataclasses import asdict

    from telemetry.metrics.dp import _FIELDS, Block, Contributions

    try:
        header = _header(arrays, DP_FORMAT, spec, where)
        if header["params"] != asdict(params):
            raise InputError(f"{where} was written with other --dp-* settings; use the options of the run "
                             "that wrote it, or a new state directory")
        keys, gid, counted = arrays["keys"], arrays["gid"], arrays["counted"]
        cols = {name: arrays[f"col.{name}"] for name in _FIELDS}
        names = [{int(h): v for h, v in pairs} for pairs in header["names"]]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{where} is damaged: not a telemetry DP state") from None
    n, rows = len(gid), len(keys)
    if (keys.ndim != 2 or keys.shape[1] != 2 + len(spec.by) or keys.dtype != np.int64 or len(names) != len(spec.by)
            or gid.shape != (n,) or gid.dtype != np.int64 or counted.shape != (rows,) or counted.dtype != np.int64
            or any(v.shape != (n,) or v.dtype != dtype for v, dtype in zip(cols.values(), _FIELDS.values()))
            or (n and (gid.min() < 0 or gid.max() >= rows))
            or (counted < np.bincount(gid, minlength=rows)).any()):  # fmt: skip
        raise InputError(f"{where} is damaged: its arrays do not fit together")
    if not rows:
        return Contributions.empty(spec, params, salt)
    block = Block.bounded(keys, gid, cols, params, salt, counted=counted)
    return Contributions(spec, params, salt, [block], names)


def _spec(spec: AggSpec) -> dict:
    return {"window_us": spec.window_us, "by": list(spec.by), "short_call_s": spec.short_call_s}


def _header(arrays, fmt: str, spec: AggSpec, where: str) -> dict:
    """The JSON header of ``arrays``, checked: its format and version, and ``spec``."""
    header = json.loads(bytes(arrays["header"]).decode())
    if header.get("format") != fmt or header.get("version") != VERSION:
        raise InputError(f"{where} is not a {fmt} file of format version {VERSION}")
    saved = header["spec"]
    if (saved["window_us"], tuple(saved["by"]), saved["short_call_s"]) != spec.key():
        raise InputError(f"{where} was written with another window, by or short_call_s; "
                         "use the options of the run that wrote it, or a new state directory")
    return header


def _write_private(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    """``fill`` the file ``path``: owner-only, under a temporary name, synced, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        fill(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _write_private(path, lambda handle: np.savez(handle, **arrays))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read state file {path.name}: {exc.__class__.__name__}") from None


def ipc_bytes(table: pa.Table) -> np.ndarray:
    """A table as Arrow IPC stream bytes (exact values, no pickle)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return np.frombuffer(sink.getvalue(), np.uint8)


def ipc_table(data: np.ndarray | bytes) -> pa.Table:
    """The table of :func:`ipc_bytes`."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def write_ipc(path: Path, table: pa.Table, fmt: str, version: int) -> None:
    """``table`` as an Arrow IPC stream file, its schema tagged with ``fmt`` and ``version``."""
    data = ipc_bytes(table.replace_schema_metadata({"format": fmt, "version": str(version)}))
    _write_private(path, lambda handle: handle.write(data))


def read_ipc(path: Path, fmt: str, version: int) -> pa.Table:
    """The table of a :func:`write_ipc` file, checked to be ``fmt`` of ``version``."""
    try:
        table = ipc_table(path.read_bytes())
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"cannot read {path.name}: {exc.__class__.__name__}") from None
    meta = table.schema.metadata or {}
    if meta.get(b"format") != fmt.encode() or meta.get(b"version") != str(version).encode():
        raise InputError(f"{path.name} is not a {fmt} file of format version {version}")
    return table
