"""The mergeable aggregation state: :func:`accumulate` one prepared batch, then
:meth:`State.merge` states in any grouping and order.

A state holds, per group (window × channel × ``by`` values), exact int64
counters, log-bucket histograms (PDD, jitter, message latency) and distinct
sets of source and destination pseudonyms. Dimension values are dictionary
codes into per-state value lists (code -1 = null, -2 = the roll-up value
``__other__``); merging unifies the lists. Everything is NumPy arrays and
Python lists, so a state pickles (Dask, stream checkpoints).

This module compiles kernels on first use; ``telemetry.metrics`` imports it lazily.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels import aggregate as agg
from telemetry.arrowstr import filled_values, validity
from telemetry.errors import InputError, SchemaError
from telemetry.metrics.sketches import Distinct, Histogram
from telemetry.metrics.spec import AggSpec
from telemetry.schema import CHANNELS, STATUSES

NULL_CODE = -1
OTHER_CODE = -2
_FIXED_KEYS = 2  # window index, channel code
_DELIVERED = STATUSES.index("delivered")
MAX_RUNS = 64  # unconsolidated runs a state may carry before merging folds them
#: ... and the bytes they may hold beyond the largest run (see State.merge).
PENDING_BYTES = 64 << 20


@dataclass
class Run:
    """One consolidated block of groups; see the module docstring."""

    dims: list[list]  # per ``by`` column: the values its codes index
    keys: np.ndarray  # (G, 2 + len(by)) int64: window index, channel code, dimension codes
    counts: np.ndarray  # (G, kernels.aggregate.N_COUNTERS) int64
    pdd: Histogram  # ms
    jitter: Histogram  # ms
    latency: Histogram  # µs, delivered messages
    sources: Distinct
    destinations: Distinct

    @property
    def n_groups(self) -> int:
        return int(self.keys.shape[0])

    @cached_property
    def nbytes(self) -> int:
        """Memory held by the run's arrays (a run is never changed: asked at every merge of
        every run it is part of, it is counted once)."""
        sketches = (self.pdd, self.jitter, self.latency, self.sources, self.destinations)
        return self.keys.nbytes + self.counts.nbytes + sum(
            a.nbytes for sketch in sketches for a in vars(sketch).values()
        )

    @classmethod
    def empty(cls, n_dims: int) -> "Run":
        return cls(
            [[] for _ in range(n_dims)],
            np.zeros((0, _FIXED_KEYS + n_dims), np.int64),
            np.zeros((0, agg.N_COUNTERS), np.int64),
            Histogram.empty(),
            Histogram.empty(),
            Histogram.empty(),
            Distinct.empty(),
            Distinct.empty(),
        )

    @classmethod
    def union(cls, runs: list["Run"], grouped: "_Grouped | None" = None) -> "Run":
        """All runs' groups in one run: one pass, whatever the number of runs
        (``grouped``: their keys as :func:`_grouped` gives them, if already at hand)."""
        dims, stacked, gid, first = grouped or _grouped(runs)
        n = len(first)
        counts = np.zeros((n, agg.N_COUNTERS), np.int64)
        agg.add_rows(counts, np.ascontiguousarray(np.vstack([r.counts for r in runs])), gid)
        sizes = [r.n_groups for r in runs]
        return Run(
            dims,
            stacked[first],
            counts,
            *side_by_side(
                len(gid),
                lambda: Histogram.union([r.pdd for r in runs], sizes, gid),
                lambda: Histogram.union([r.jitter for r in runs], sizes, gid),
                lambda: Histogram.union([r.latency for r in runs], sizes, gid),
                lambda: Distinct.union([r.sources for r in runs], gid, n),
                lambda: Distinct.union([r.destinations for r in runs], gid, n),
            ),
        )

    @classmethod
    def concat(cls, runs: list["Run"]) -> "Run":
        """Runs none of whose groups another holds (windows apart) as one run, their
        groups one after the other: ``union`` up to group order, without grouping."""
        dims, keys = recoded([(run.dims, run.keys) for run in runs])
        sizes = [r.n_groups for r in runs]
        return Run(
            dims,
            np.vstack(keys),
            np.vstack([r.counts for r in runs]),
            Histogram.concat([r.pdd for r in runs], sizes),
            Histogram.concat([r.jitter for r in runs], sizes),
            Histogram.concat([r.latency for r in runs], sizes),
            Distinct.concat([r.sources for r in runs]),
            Distinct.concat([r.destinations for r in runs]),
        )

    def take(self, groups: np.ndarray) -> "Run":
        """The groups listed (in any order), renumbered in that order."""
        groups = np.asarray(groups, dtype=np.int64)
        return Run(
            self.dims,
            self.keys[groups],
            self.counts[groups],
            *side_by_side(
                self.n_groups,
                lambda: self.pdd.take(groups),
                lambda: self.jitter.take(groups),
                lambda: self.latency.take(groups),
                lambda: self.sources.take(groups),
                lambda: self.destinations.take(groups),
            ),
        )

    def slice(self, a: int, b: int) -> "Run":
        """Groups ``a`` … ``b - 1``, renumbered from 0 (views of this run's arrays where
        they can be)."""
        return Run(self.dims, self.keys[a:b], self.counts[a:b], self.pdd.slice(a, b),
                   self.jitter.slice(a, b), self.latency.slice(a, b), self.sources.slice(a, b),
                   self.destinations.slice(a, b))

    def regroup(self, new_keys: np.ndarray) -> "Run":
        new_keys = np.ascontiguousarray(new_keys, dtype=np.int64)
        gmap, first = agg.group_rows(new_keys)
        n = len(first)
        counts = np.zeros((n, agg.N_COUNTERS), np.int64)
        agg.add_rows(counts, self.counts, gmap)
        return Run(
            self.dims,
            new_keys[first],
            counts,
            *side_by_side(
                self.n_groups,
                lambda: self.pdd.regroup(gmap),
                lambda: self.jitter.regroup(gmap),
                lambda: self.latency.regroup(gmap),
                lambda: self.sources.regroup(gmap, n),
                lambda: self.destinations.regroup(gmap, n),
            ),
        )


#: Groups from which consolidating a state (the end of a run, release) is worth
#: threads: it is five independent sketch passes whose kernels release the GIL.
SIDE_BY_SIDE_MIN = 4096


#: The cores :func:`side_by_side` may spread over in this context (see :func:`cores_free`).
_CORES: ContextVar[int | None] = ContextVar("telemetry_cores_free", default=None)


@contextmanager
def cores_free(cores: int) -> Iterator[None]:
    """Within this block, :func:`side_by_side` on this thread may use ``cores`` cores.
    Outside one it uses the machine's cores on the main thread and one core on any other
    (an engine's worker thread: the cores are busy with the run's other batches). A
    caller that knows the cores are free says so: the Dask engine's release task, which
    runs on a worker thread once every piece of the run is done."""
    token = _CORES.set(max(1, cores))
    try:
        yield
    finally:
        _CORES.reset(token)


def side_by_side(groups: int, *tasks: Callable[[], Any]) -> list[Any]:
    """Results of ``tasks`` in order; on threads when there are ``groups`` enough and
    cores free (:func:`cores_free`). The tasks' own calls run one after another."""
    import os

    cores = _CORES.get()
    if cores is None:
        cores = (os.cpu_count() or 1) if threading.current_thread() is threading.main_thread() else 1
    workers = min(len(tasks), cores)
    if workers < 2 or groups < SIDE_BY_SIDE_MIN:
        return [task() for task in tasks]
    with ThreadPoolExecutor(workers, thread_name_prefix="telemetry-merge") as pool:
        return list(pool.map(_alone, tasks))


def _alone(task: Callable[[], Any]) -> Any:
    """A task of :func:`side_by_side` on its thread, whose own calls do not spread again
    (where threads inherit their creator's context, as they may from Python 3.14)."""
    with cores_free(1):
        return task()


class State:
    """Per-group partial aggregates of one :class:`AggSpec`.

    A state is a list of runs (batch states not yet consolidated): merging
    appends runs, and consolidation — when more than MAX_RUNS pile up, when the
    runs besides the largest hold more than the largest and PENDING_BYTES and
    share enough groups that folding saves a quarter of their rows, or when an
    array is read (finalize; release reads runs in place) — is one counting-sort pass over
    all of them. Runs that share few groups (batches in time order meet only in
    the windows at their edges) stay apart: folding them would copy every group
    to hold nearly as much; they are looked at again when their number doubles.
    Folding n batch states one by one therefore costs amortized linear time (the
    consolidated run at least doubles between passes while it is the larger
    part), not a copy of the state per merge, and memory stays within about
    twice the consolidated state plus PENDING_BYTES however long the input.
    Treat a state as immutable.
    """

    def __init__(self, spec: AggSpec, runs: list[Run], checked: int = 0) -> None:
        self.spec = spec
        self._runs = [r for r in runs if r.n_groups]
        self._checked = checked  # runs found not worth folding when last looked at (0: never)

    @classmethod
    def empty(cls, spec: AggSpec) -> "State":
        return cls(spec, [])

    def merge(self, other: "State") -> "State":
        """The state of both inputs together; associative and commutative up to
        group numbering, which :func:`finalize` does not expose."""
        if not isinstance(other, State):
            raise TypeError(f"other must be a State, got {type(other).__name__}")
        if other.spec.key() != self.spec.key():
            raise ValueError("other was accumulated with a different AggSpec (window, by or short_call_s); "
                             "only states of the same spec merge")
        runs = self._runs + other._runs
        sizes = [r.nbytes for r in runs]
        checked = self._checked
        if len(runs) > MAX_RUNS:
            runs, checked = [Run.union(runs)], 0
        elif len(runs) > 1 and sum(sizes) - max(sizes) > max(max(sizes), PENDING_BYTES) and len(runs) >= 2 * checked:
            # fold only when it saves a quarter of the rows; else look again at twice the runs
            grouped = _grouped(runs)
            if len(grouped.first) <= 0.75 * len(grouped.stacked):
                runs, checked = [Run.union(runs, grouped)], 0
            else:
                checked = len(runs)
        return State(self.spec, runs, checked)

    def _core(self) -> Run:
        if len(self._runs) != 1:
            if not self._runs:
                return Run.empty(len(self.spec.by))
            runs = [Run.union(self._runs)]
            self._runs = runs
        return self._runs[0]

    def __sizeof__(self) -> int:
        """Bytes held (what Dask weighs a state by when it places and moves tasks)."""
        return object.__sizeof__(self) + sum(run.nbytes for run in self._runs)

    def __getstate__(self) -> dict:
        # runs as they are: folding them first (0.55 s for 16 batch states of 4 M records)
        # would copy nearly every group, since batches in time order share few windows
        return {"spec": self.spec, "runs": self._runs}

    def __setstate__(self, data: dict) -> None:
        self.spec = data["spec"]
        self._runs = data["runs"]
        self._checked = 0

    dims = property(lambda self: self._core().dims)
    keys = property(lambda self: self._core().keys)
    counts = property(lambda self: self._core().counts)
    pdd = property(lambda self: self._core().pdd)
    jitter = property(lambda self: self._core().jitter)
    latency = property(lambda self: self._core().latency)
    sources = property(lambda self: self._core().sources)
    destinations = property(lambda self: self._core().destinations)

    @property
    def n_groups(self) -> int:
        return self._core().n_groups

    @property
    def records(self) -> int:
        return sum(int(r.counts[:, agg.RECORDS].sum()) for r in self._runs)

    def apart(self) -> list[tuple["State", np.ndarray]]:
        """Each run as a state of its own, with the mask of its groups that no other run
        holds: what can be read in place without consolidating the runs (batches in time
        order share only the windows at their edges)."""
        if len(self._runs) < 2:
            return [(self, np.ones(self.n_groups, np.bool_))]
        _, _, gid, first = _grouped(self._runs)
        alone = (np.bincount(gid, minlength=len(first)) == 1)[gid]
        bounds = np.cumsum([0] + [run.n_groups for run in self._runs])
        return [(State(self.spec, [run]), alone[a:b]) for run, a, b in zip(self._runs, bounds, bounds[1:])]

    def take(self, groups: np.ndarray) -> "State":
        """The groups listed, renumbered in that order."""
        return State(self.spec, [self._core().take(groups)])

    def by_window(self) -> dict[int, "State"]:
        """One state per window, each with its groups in their order here (what
        ``take`` of each window's groups gives): one stable sort of the groups by
        window, then a slice per window, rather than a pass over every group per window."""
        run = self._core()
        window = run.keys[:, 0]
        if not len(window):
            return {}
        if window.min() == window.max():
            return {int(window[0]): self}
        if (np.diff(window) < 0).any():
            run = run.take(np.argsort(window, kind="stable"))
            window = run.keys[:, 0]
        starts = np.flatnonzero(np.diff(window)) + 1
        bounds = [0, *starts.tolist(), len(window)]
        return {int(window[a]): State(self.spec, [run.slice(a, b)])
                for a, b in zip(bounds, bounds[1:])}

    def regroup(self, new_keys: np.ndarray) -> "State":
        """Merge groups that share a row of ``new_keys`` (one row per current group)."""
        return State(self.spec, [self._core().regroup(new_keys)])


def merge(states: Iterable[State]) -> State:
    """Merge any number of states (the same result as folding ``State.merge``)."""
    items = list(states)
    if not items:
        raise ValueError("states must hold at least one State")
    out = items[0]
    for item in items[1:]:
        out = out.merge(item)
    return out


def concat(states: list[State]) -> State:
    """States none of whose groups another holds (windows apart) as one consolidated
    state, each consolidated first: what :func:`merge` gives, for a fraction of its work."""
    return State(states[0].spec, [Run.concat([state._core() for state in states])])


def accumulate(batch: pa.RecordBatch | pa.Table, spec: AggSpec) -> State:
    """The state of one prepared batch (canonical columns with 16-byte pseudonyms
    in ``source``/``destination`` plus ``dst_*`` columns; any may be missing)."""
    if not isinstance(spec, AggSpec):
        raise TypeError(f"spec must be an AggSpec, got {type(spec).__name__}")
    if isinstance(batch, pa.Table):
        return merge([State.empty(spec)] + [accumulate(b, spec) for b in batch.to_batches()])
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(f"batch must be a pyarrow RecordBatch or Table, got {type(batch).__name__}")
    n = batch.num_rows
    if n == 0:
        return State.empty(spec)
    col, start, gid, keys, dims = batch_keys(batch, spec)
    n_groups = len(keys)
    status = _vocab_codes(col("status"), STATUSES, n)
    counts = agg.accumulate_counts(
        gid,
        n_groups,
        status,
        _ints(col("sip_code"), n, -1),
        _ints(col("duration_ms"), n, 0),
        spec.short_call_ms,
        _floats(col("mos"), n),
        _floats(col("packet_loss_pct"), n),
    )
    latency = delivery_latency(col("end_time"), start, status)
    return State(spec, [Run(
        dims,
        keys,
        counts,
        Histogram.build(gid, _floats(col("pdd_ms"), n), n_groups),
        Histogram.build(gid, _floats(col("jitter_ms"), n), n_groups),
        Histogram.build(gid, latency, n_groups),
        _distinct(col("source"), gid, n_groups, "source"),
        _distinct(col("destination"), gid, n_groups, "destination"),
    )])


class BatchKeys(NamedTuple):
    """A batch's columns (``col(name)``: None if absent or all-null type), start times in
    µs, each row's group and each group's key row (window index, channel code, dimension
    codes into ``dims``)."""

    col: Callable[[str], pa.Array | None]
    start: np.ndarray
    gid: np.ndarray
    keys: np.ndarray
    dims: list[list]


def batch_keys(batch: pa.RecordBatch, spec: AggSpec) -> BatchKeys:
    """The groups of a non-empty prepared batch (see :func:`accumulate`)."""
    n = batch.num_rows
    names = set(batch.schema.names)

    def col(name: str) -> pa.Array | None:
        if name not in names:
            return None
        arr = batch.column(name)
        return None if pa.types.is_null(arr.type) else arr

    start = _start_us(col("start_time"), n)
    codes = np.empty((_FIXED_KEYS - 1 + len(spec.by), n), np.int64)  # key columns after the window
    channel = _vocab_codes(col("channel"), CHANNELS, n)
    unknown = (channel < 0) & _valid(col("channel"), n)
    if unknown.any():
        raise InputError(f"channel holds values outside {', '.join(CHANNELS)}; map them in the reader")
    np.maximum(channel, 0, out=codes[0])  # SPEC 2: a missing channel (-1) means voice (0)
    dims = []
    for j, name in enumerate(spec.by):
        codes[_FIXED_KEYS - 1 + j], values = _encode_dim(col(name), n)
        dims.append(values)
    gid, keys = agg.batch_groups(start, np.int64(spec.window_us), codes)
    return BatchKeys(col, start, gid, keys, dims)


def delivery_latency(end: pa.Array | None, start: np.ndarray, status: np.ndarray) -> np.ndarray:
    """end − start in µs (float) of delivered messages with an end time; NaN for the rest."""
    n = len(start)
    if end is None:
        return np.full(n, np.nan)
    end_us = _ints(end.cast(pa.timestamp("us", tz="UTC")), n, 0)
    return agg.latency_us(start, end_us, status, _DELIVERED, _valid(end, n))


# --- Arrow → NumPy -------------------------------------------------------------


def _valid(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.zeros(n, dtype=bool)
    return validity(arr)


def _start_us(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        raise SchemaError("the prepared batch has no start_time column")
    if arr.null_count:
        raise InputError("start_time has nulls; readers must quarantine such records")
    if not pa.types.is_timestamp(arr.type):
        raise SchemaError(f"start_time must be a timestamp, got {arr.type}")
    return _ints(arr.cast(pa.timestamp("us", tz="UTC")), n, 0)


def _ints(arr: pa.Array | None, n: int, null: int) -> np.ndarray:
    if arr is None:
        return np.full(n, null, np.int64)
    return filled_values(arr, np.int64, null)


def _floats(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, np.nan)
    return filled_values(arr, np.float64, np.nan)


def _vocab_codes(arr: pa.Array | None, vocab: tuple[str, ...], n: int) -> np.ndarray:
    """Position of each value in ``vocab`` (dictionary or plain strings); -1 for null or unknown."""
    if arr is None:
        return np.full(n, -1, np.int64)
    value_set = pa.array(vocab, pa.string())
    if pa.types.is_dictionary(arr.type):
        dictionary = arr.dictionary.cast(pa.string())
        lut = np.append(_ints(pc.index_in(dictionary, value_set=value_set), len(dictionary), -1), -1)
        return lut[_ints(arr.indices, n, -1)]  # index -1 (null) hits the appended -1
    return _ints(pc.index_in(arr.cast(pa.string()), value_set=value_set), n, -1)


def _encode_dim(arr: pa.Array | None, n: int) -> tuple[np.ndarray, list]:
    if arr is None:
        return np.full(n, NULL_CODE, np.int64), []
    encoded = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    raw = encoded.dictionary.to_pylist()
    values: list = []
    seen: dict = {}
    lut = np.empty(len(raw) + 1, np.int64)
    for i, value in enumerate(raw):  # dictionaries are small; this is per distinct value, not per row
        if value is None:
            lut[i] = NULL_CODE
        else:
            lut[i] = seen.setdefault(value, len(values))
            if lut[i] == len(values):
                values.append(value)
    lut[-1] = NULL_CODE
    return lut[_ints(encoded.indices, n, -1)], values


def _distinct(arr: pa.Array | None, gid: np.ndarray, n_groups: int, name: str) -> Distinct:
    if arr is None:
        return Distinct.empty(n_groups)
    prefix, valid = prefixes(arr, name)
    if valid is not None:
        gid, prefix = gid[valid], prefix[valid]
    return Distinct.build(gid, prefix, n_groups)


def prefixes(arr: pa.Array, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The first 8 bytes of each 16-byte pseudonym as uint64 (an HMAC output's bytes are
    uniform: exact sets, HLL and DP bounding use them directly), and the validity mask
    (None: no nulls; a null's prefix is undefined)."""
    if not (pa.types.is_fixed_size_binary(arr.type) and arr.type.byte_width == 16):
        raise SchemaError(f"{name} must hold 16-byte pseudonyms (fixed_size_binary(16)), got {arr.type}")
    n = len(arr)
    # every other little-endian word of the pseudonyms' bytes, copied as words: 0.04 ms per
    # 131,072 rows, where copying 8 of each 16 bytes byte by byte took 0.6 ms
    words = np.frombuffer(arr.buffers()[1], dtype="<u8", count=2 * (arr.offset + n))
    prefix = words[2 * arr.offset :: 2].copy()
    return prefix, (_valid(arr, n) if arr.null_count else None)


class _Grouped(NamedTuple):
    """Runs' keys together: value lists covering every run's dimensions, all keys
    recoded into them and stacked in run order, each stacked row's group and each
    group's first row."""

    dims: list[list]
    stacked: np.ndarray
    gid: np.ndarray
    first: np.ndarray


def _grouped(runs: list[Run]) -> _Grouped:
    dims, keys = recoded([(run.dims, run.keys) for run in runs])
    stacked = np.ascontiguousarray(np.vstack(keys))
    gid, first = agg.group_rows(stacked)
    return _Grouped(dims, stacked, gid, first)


def recoded(parts: list[tuple[list[list], np.ndarray]]) -> tuple[list[list], list[np.ndarray]]:
    """Value lists covering the dimensions of every part (its value lists and key rows),
    and each part's keys recoded into them. Each dimension's values are looked up in one
    index kept across the parts (built afresh for each part, it cost a release of 18
    parts 7-8 ms), and a part whose values begin the list as they are keeps its codes."""
    first_dims, first = parts[0]
    dims = [list(values) for values in first_dims]
    index = [{value: i for i, value in enumerate(values)} for values in dims]
    keys = [first]
    for part_dims, part_keys in parts[1:]:
        recoded_keys = None
        for j, values in enumerate(part_dims):
            merged, seen = dims[j], index[j]
            if values == merged[: len(values)]:
                continue  # the same codes
            lut = np.empty(len(values) + 2, np.int64)
            for i, value in enumerate(values):
                code = seen.get(value)
                if code is None:
                    code = seen[value] = len(merged)
                    merged.append(value)
                lut[i] = code
            lut[-2], lut[-1] = OTHER_CODE, NULL_CODE  # negative codes index from the end: -2 → OTHER, -1 → NULL
            if recoded_keys is None:
                recoded_keys = part_keys.copy()
            recoded_keys[:, _FIXED_KEYS + j] = lut[part_keys[:, _FIXED_KEYS + j]]
        keys.append(part_keys if recoded_keys is None else recoded_keys)
    return dims, keys
