"""Differential privacy for the released metrics (SPEC section 11, docs/privacy.md).

:func:`accumulate` keeps, per prepared batch, each record's contribution (its row, both
pseudonym prefixes, a keyed record hash and its measures, durations clamped) in a
:class:`Block`, and applies the bounding rule to it as the batch's own work (one kernel
pass, :func:`kernels.dpbound.bound`): every set the rule ranks lies inside one window,
so the verdicts are final for every window no other batch holds. A batch leaves its
first and last windows pending (the ones time-ordered batches share with their
neighbours). States merge by concatenating blocks; the windows both sides hold are
judged again from all their records at once when that is cheap (at most the smaller
side's records), else when the state has doubled (which also drops the records step 1
cuts, keeping memory bounded) or at the release (:meth:`Contributions.consolidated`).
Blocks count the records accumulated per row, dropped ones too, so a state splits into
one state per window (:meth:`Contributions.by_window`, the stream's windows) each
counting its own records.
:func:`release` then noises the bounded counts with OpenDP's discrete Laplace mechanism,
selects rows on the noisy count against a threshold calibrated to δ, and builds rows of
the same shape as :func:`telemetry.metrics.threshold.release` from the kept records of
the released rows.

This module compiles kernels on first use; OpenDP is imported only by a release.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from kernels import aggregate as agg
from kernels import dpbound as kb
from telemetry.metrics.frame import Measures, as_frame, rows_of
from telemetry.metrics.intervals import wilson
from telemetry.metrics.spec import AggSpec
from telemetry.metrics.state import (
    _FIXED_KEYS,
    NULL_CODE,
    _floats,
    _ints,
    _vocab_codes,
    batch_keys,
    delivery_latency,
    prefixes,
    side_by_side,
)
from telemetry.schema import CHANNELS, MESSAGE_CHANNELS, STATUSES

if TYPE_CHECKING:
    import polars as pl

#: What one unit of privacy is (run.json, Parquet metadata, docs/privacy.md).
UNIT = "one subscriber (pseudonym), as source and as destination, within one window's release"
#: The prefix that stands for every withheld or null party: one subscriber to the bounds.
WITHHELD = 0
#: Measures clamped before summing (the units of the fixed-point sums: 1e-6).
MOS_RANGE = (1.0, 5.0)
LOSS_RANGE = (0.0, 100.0)
#: Percentile histograms under DP: fixed log buckets (4 per doubling: a bucket's
#: representative is within 9% of its values), so that which buckets exist says nothing.
PER_OCTAVE = 4
PDD_BUCKETS = (1.0, 72)  # ms: below 1 ms, then up to ~220 s
JITTER_BUCKETS = (0.1, 64)  # ms: below 0.1 ms, then up to ~5 s
LATENCY_BUCKETS = (1e5, 80)  # µs: below 0.1 s, then up to ~24 h

#: Each query's share of epsilon (weights, normalized to 1) and its sensitivity in
#: units of the records one subscriber can move (``per_record``: a record's
#: largest contribution; distinct counts move by rows, not records).
QUERIES = {
    "attempts": 3.0,  # records per row; also chooses which rows exist
    "status": 2.0,  # the status counters: one cell per record
    "sip": 1.0,  # SIP classes (200, 3xx, 401/402/407, 480/486/600/603, 408/500/503/504, other)
    "duration_ms": 1.0,  # (answered, not answered) duration sums, clamped
    "short_calls": 0.5,
    "mos_n": 0.25,
    "mos_sum": 0.25,
    "loss_n": 0.25,
    "loss_sum": 0.25,
    "pdd_histogram": 1.0,
    "jitter_histogram": 0.5,
    "latency_histogram": 1.0,
    "distinct_sources": 0.5,
    "distinct_destinations": 0.5,
}
_SIP_CELLS = 6
_VOICE = np.array([ch not in MESSAGE_CHANNELS for ch in CHANNELS])


@dataclass(frozen=True)
class Params:
    """The DP settings of a run (SPEC 11)."""

    epsilon: float
    delta: float = 1e-8
    max_groups: int = 4
    max_records: int = 16
    max_duration_ms: int = 3_600_000

    @classmethod
    def from_options(cls, opts) -> "Params | None":
        from telemetry.config import dp_max_duration_ms

        if opts.dp_epsilon is None:
            return None
        return cls(float(opts.dp_epsilon), float(opts.dp_delta), opts.dp_max_groups, opts.dp_max_records,
                   dp_max_duration_ms(opts))

    @property
    def records_per_subscriber(self) -> int:
        """The records one subscriber can move after bounding: L as source and L as
        destination in each of G rows."""
        return 2 * self.max_groups * self.max_records

    def sensitivity(self, query: str) -> float:
        m = self.records_per_subscriber
        per_record = {
            "duration_ms": self.max_duration_ms,
            "mos_sum": MOS_RANGE[1] * agg.FIXED_POINT,
            "loss_sum": LOSS_RANGE[1] * agg.FIXED_POINT,
        }
        if query.startswith("distinct_"):
            return float(self.max_groups)  # one per row the subscriber is in
        return float(m * per_record.get(query, 1))

    def epsilon_of(self, query: str) -> float:
        return self.epsilon * QUERIES[query] / sum(QUERIES.values())

    def scale(self, query: str) -> float:
        """The discrete Laplace scale of ``query``: sensitivity / its share of epsilon."""
        return self.sensitivity(query) / self.epsilon_of(query)

    @property
    def threshold(self) -> int:
        """Noisy attempts a row needs to exist. A row that only one subscriber's records
        make holds at most 2L of them; it passes with probability at most
        exp(-(τ - 2L)/b) (discrete Laplace tail), and a subscriber makes at most G such
        rows, so τ = 2L + b·ln(G/δ) spends at most δ."""
        b = self.scale("attempts")
        return int(2 * self.max_records + math.ceil(b * math.log(self.max_groups / self.delta)))

    def metadata(self, columns: dict[str, list[str]]) -> dict[str, Any]:
        """The ``dp`` entry of run.json and of the Parquet metadata."""
        import opendp

        version = getattr(opendp, "__version__", None) or _version("opendp")
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "unit": UNIT,
            "bounds": {"max_groups": self.max_groups, "max_records": self.max_records,
                       "max_duration_s": self.max_duration_ms / 1000,
                       "mos_range": list(MOS_RANGE), "packet_loss_range_pct": list(LOSS_RANGE)},
            "records_per_subscriber": self.records_per_subscriber,
            "mechanism": f"discrete Laplace (OpenDP {version} make_laplace on i64), basic composition over queries",
            "selection": {"column": "attempts", "threshold": self.threshold,
                          "rule": "released iff noisy attempts >= threshold; threshold = 2L + scale*ln(G/delta)"},
            "queries": {
                q: {"sensitivity": self.sensitivity(q), "scale": self.scale(q), "epsilon": self.epsilon_of(q),
                    "columns": columns[q]}
                for q in QUERIES
            },
            "epsilon_spent": sum(self.sensitivity(q) / self.scale(q) for q in QUERIES),
        }


#: Output columns computed from each query (for the metadata).
COLUMNS = {
    "attempts": ["attempts", "submitted", "asr", "ner", "delivery_rate", "dlr_rate", "pending"],
    "status": ["answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion",
               "delivered", "undelivered", "expired", "deleted", "pending", "asr", "ner", "acd_s",
               "short_call_ratio", "delivery_rate", "dlr_rate"],
    "sip": ["ser", "seer", "isa"],
    "duration_ms": ["acd_s", "total_duration_s"],
    "short_calls": ["short_call_ratio"],
    "mos_n": ["mos_mean"], "mos_sum": ["mos_mean"],
    "loss_n": ["packet_loss_mean_pct"], "loss_sum": ["packet_loss_mean_pct"],
    "pdd_histogram": ["pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms"],
    "jitter_histogram": ["jitter_p95_ms"],
    "latency_histogram": ["latency_p50_s", "latency_p95_s", "latency_p99_s"],
    "distinct_sources": ["distinct_sources"],
    "distinct_destinations": ["distinct_destinations"],
}  # fmt: skip


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


# --- the per-record state ---------------------------------------------------------------

#: Per-record columns of a :class:`Block`, with their dtypes.
_FIELDS = {
    "src": np.int64, "dst": np.int64, "hash": np.int64,
    "status": np.int8, "sip": np.int16, "duration_ms": np.int64,
    "mos": np.float32, "loss": np.float32, "pdd": np.float32, "jitter": np.float32, "latency": np.float64,
}  # fmt: skip
_MEASURES = ("status", "sip", "duration_ms", "mos", "loss", "pdd", "jitter", "latency")
#: Consolidate when a merged state holds this many records and twice those at its last
#: consolidation (to keep memory bounded: it drops what step 1 cuts across blocks).
PRUNE_MIN = 1 << 23
#: A block drops the records step 1 cuts (they are outside the L smallest of their (row,
#: source) in any larger block too) when at most this share of its records is left: a copy
#: that frees less is not worth it.
PRUNE_SHARE = 0.75
_NO_WINDOWS = np.zeros(0, np.int64)
@dataclass(frozen=True)
class Block:
    """Records with the bounding rule applied to them alone: ``keys`` the rows (window
    index, channel code, keyed hashes of the dimension values), ``gid`` each record's row,
    ``cols`` its parties, record hash and measures; ``keep`` the rule's verdict, ``kept``
    and ``distinct`` (sources, destinations) per row among the kept records, ``counted``
    the records accumulated per row (with those the block dropped). The verdicts
    are final for a window whose records all are in this block, since every set the rule
    ranks lies inside one window; the rows of the ``pending`` windows are not judged yet
    (nothing kept)."""

    keys: np.ndarray
    gid: np.ndarray
    cols: dict[str, np.ndarray]
    keep: np.ndarray
    kept: np.ndarray
    distinct: np.ndarray
    counted: np.ndarray
    pending: np.ndarray

    @classmethod
    def bounded(cls, keys: np.ndarray, gid: np.ndarray, cols: dict[str, np.ndarray], params: "Params", salt: int,
                pending: np.ndarray = _NO_WINDOWS, prune: bool = True, counted: np.ndarray | None = None) -> "Block":
        """The block of these records, judged but for the rows of the ``pending`` windows;
        with ``prune``, without the records step 1 cuts if that frees enough (PRUNE_SHARE).
        ``counted``: the records accumulated per row if some were dropped before (default:
        these records)."""
        keys = np.ascontiguousarray(keys)
        if counted is None:
            counted = np.bincount(gid, minlength=len(keys))
        windows = np.ascontiguousarray(keys[:, 0])
        first, keep, kept, distinct = kb.bound(
            gid, ~np.isin(windows, pending), windows, kb.row_hashes(keys, np.int64(salt)), cols["src"], cols["dst"],
            cols["hash"], params.max_records, params.max_groups, WITHHELD,
        )  # fmt: skip
        if prune and first.sum() <= PRUNE_SHARE * len(first):
            gid, keep = gid[first], keep[first]
            cols = {name: a[first] for name, a in cols.items()}
        return cls(keys, gid, cols, keep, kept, distinct, counted, pending)

    @cached_property
    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """The windows this block has rows of, and its records in each."""
        windows, at = np.unique(self.keys[:, 0], return_inverse=True)
        per_row = np.bincount(self.gid, minlength=len(self.keys))
        return windows, np.bincount(at.reshape(-1), weights=per_row, minlength=len(windows)).astype(np.int64)

    def rows(self, mask: np.ndarray) -> "Block":
        """The rows where ``mask`` holds and their records (the verdicts carried over); the
        records are views when they are one run and the rows the first ones (a time-ordered
        batch's windows but its last)."""
        idx = np.flatnonzero(mask[self.gid])
        if len(idx) and idx[-1] - idx[0] + 1 == len(idx):
            idx = slice(idx[0], idx[-1] + 1)
        gid = self.gid[idx]
        n_rows = int(mask.sum())
        if not mask[:n_rows].all():  # renumber, unless the rows kept are the first ones
            gid = (np.cumsum(mask) - 1)[gid]
        keys = self.keys[mask]
        return Block(keys, gid, {name: a[idx] for name, a in self.cols.items()}, self.keep[idx], self.kept[mask],
                     self.distinct[mask], self.counted[mask], np.intersect1d(self.pending, keys[:, 0]))  # fmt: skip


@dataclass
class Contributions:
    """The DP state: blocks of records (:class:`Block`), each bounded on its own as a
    batch's work; ``names`` maps the dimension hashes back to values. :meth:`consolidated`
    bounds again, together, the records of windows that several blocks hold. Treat a
    state as immutable."""

    spec: AggSpec
    params: Params
    salt: int
    blocks: list[Block]
    names: list[dict]
    _at_consolidation: int = field(default=0, repr=False)

    @classmethod
    def empty(cls, spec: AggSpec, params: Params, salt: int) -> "Contributions":
        return cls(spec, params, salt, [], [{} for _ in spec.by])

    def __len__(self) -> int:
        return sum(int(b.gid.shape[0]) for b in self.blocks)

    def __sizeof__(self) -> int:
        """Bytes held (what Dask weighs a state by when it places and moves tasks)."""
        arrays = [a for b in self.blocks for a in (b.keys, b.gid, b.keep, b.kept, b.distinct, b.counted, b.pending,
                                                   *b.cols.values())]
        return object.__sizeof__(self) + sum(a.nbytes for a in arrays)

    @property
    def records(self) -> int:
        """The records accumulated (those the blocks hold and those they dropped)."""
        return sum(int(b.counted.sum()) for b in self.blocks)

    def merge(self, other: "Contributions") -> "Contributions":
        """Both inputs' blocks. The windows both hold are bounded again together at once
        when they hold at most as many records as the smaller input (time-ordered batches
        share the windows at their edges: each merge costs at most what it brings), else
        when the state has doubled since it was last consolidated (which also keeps memory
        bounded), or at the release."""
        if (other.spec.key(), other.params, other.salt) != (self.spec.key(), self.params, self.salt):
            raise ValueError("only DP states of the same spec, parameters and key merge")
        merged = Contributions(
            self.spec, self.params, self.salt, self.blocks + other.blocks,
            [{**a, **b} for a, b in zip(self.names, other.names)], max(self._at_consolidation, other._at_consolidation),
        )  # fmt: skip
        shared = np.intersect1d(self._windows(), other._windows())
        if len(shared) and merged._records_in(shared) <= min(len(self), len(other)):
            return merged.consolidated(shared)
        size = len(merged)
        if size >= PRUNE_MIN and size >= 2 * merged._at_consolidation:
            merged = merged.consolidated()
            merged._at_consolidation = len(merged)
        return merged

    def _windows(self) -> np.ndarray:
        return np.unique(np.concatenate([b.windows[0] for b in self.blocks] or [_NO_WINDOWS]))

    def _records_in(self, windows: np.ndarray) -> int:
        return sum(int(count[np.isin(held, windows)].sum()) for held, count in (b.windows for b in self.blocks))

    def consolidated(self, windows: np.ndarray | None = None) -> "Contributions":
        """The same records with each of ``windows`` in one block, judged: the blocks' rows
        of those windows bounded again together. By default every window several blocks
        hold or one holds pending: then each window is in one block and judged."""
        if windows is None:
            held, count = np.unique(np.concatenate([b.windows[0] for b in self.blocks] or [_NO_WINDOWS]),
                                    return_counts=True)  # fmt: skip
            windows = np.union1d(held[count > 1], np.concatenate([b.pending for b in self.blocks] or [_NO_WINDOWS]))
        if not len(windows):
            return self
        whole, keys, gids, cols, counted = [], [], [], [], []
        rows = 0
        for b in self.blocks:
            if not np.isin(b.windows[0], windows).any():
                whole.append(b)
                continue
            split = np.isin(b.keys[:, 0], windows)
            if not split.all():
                whole.append(b.rows(~split))
            part = b.rows(split)
            keys.append(part.keys)
            gids.append(part.gid + rows)
            cols.append(part.cols)
            counted.append(part.counted)
            rows += len(part.keys)
        stacked = np.concatenate(keys)
        row_id, first = agg.group_rows(stacked)
        per_row = np.bincount(row_id, np.concatenate(counted), len(first)).astype(np.int64)
        pooled = Block.bounded(stacked[first], row_id[np.concatenate(gids)],
                               {name: np.concatenate([c[name] for c in cols]) for name in _FIELDS},
                               self.params, self.salt, counted=per_row)  # fmt: skip
        return Contributions(self.spec, self.params, self.salt, whole + [pooled], self.names,
                             self._at_consolidation)  # fmt: skip

    def by_window(self) -> dict[int, "Contributions"]:
        """One state per window, each counting its own records (with those its blocks
        dropped): every set the rule ranks lies inside one window, so a window's rows, its
        records and their verdicts (or pending) are taken out of each block as they are.
        The stream keeps each window's state apart (docs/stream.md)."""
        parts: dict[int, list[Block]] = {}
        for b in self.blocks:
            held = b.windows[0]
            for w in held.tolist():
                parts.setdefault(w, []).append(b if len(held) == 1 else b.rows(b.keys[:, 0] == w))
        return {w: Contributions(self.spec, self.params, self.salt, blocks, self.names) for w, blocks in parts.items()}


def subkey_salt(key: bytes) -> int:
    """The 64-bit key of the bounding hashes: HKDF-SHA256(key, info=b"telemetry/v1/dp")."""
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=SHA256(), length=8, salt=None, info=b"telemetry/v1/dp").derive(bytes(key))
    return int.from_bytes(derived, "little", signed=True)


def accumulate(batch: pa.RecordBatch, spec: AggSpec, params: Params, salt: int, prune: bool = True) -> Contributions:
    """The contributions of one prepared batch (see :func:`telemetry.metrics.accumulate`),
    bounded as one block but for its first and last windows; ``prune=False`` judges
    every window and keeps every record (the batch taken as the whole input: what the
    rule is checked against)."""
    n = batch.num_rows
    if n == 0:
        return Contributions.empty(spec, params, salt)
    col, start, gid, group_keys, dims = batch_keys(batch, spec)
    names = []
    group_keys = group_keys.copy()
    for j, values in enumerate(dims):
        hashes = np.array([_value_hash(v, salt) for v in values] + [NULL_CODE, NULL_CODE], np.int64)
        codes = group_keys[:, _FIXED_KEYS + j]
        group_keys[:, _FIXED_KEYS + j] = hashes[codes]  # codes -1 (null) → the last entry: NULL_CODE
        names.append(dict(zip(hashes[:-2].tolist(), values)))
    status = _vocab_codes(col("status"), STATUSES, n)
    cols = {
        "src": _party(col("source"), "source", n),
        "dst": _party(col("destination"), "destination", n),
        "status": status.astype(np.int8),
        "sip": _ints(col("sip_code"), n, -1).astype(np.int16),
        "duration_ms": _clipped(_ints(col("duration_ms"), n, 0), 0, params.max_duration_ms),
        "mos": _clipped(_floats(col("mos"), n), *MOS_RANGE).astype(np.float32),
        "loss": _clipped(_floats(col("packet_loss_pct"), n), *LOSS_RANGE).astype(np.float32),
        "pdd": _floats(col("pdd_ms"), n).astype(np.float32),
        "jitter": _floats(col("jitter_ms"), n).astype(np.float32),
        "latency": delivery_latency(col("end_time"), start, status),
    }
    cols["hash"] = kb.record_hashes(
        group_keys, gid, start, *(cols[name] for name in ("src", "dst", "status", "sip", "duration_ms", "mos", "loss",
                                                          "pdd", "jitter", "latency")), np.int64(salt),
    )  # fmt: skip
    # a batch's first and last windows are the ones it likely shares with the batches
    # before and after it (time-ordered input): left for the merges to judge
    windows = group_keys[:, 0]
    edges = np.unique([windows.min(), windows.max()]) if prune else _NO_WINDOWS
    block = Block.bounded(group_keys, gid, cols, params, salt, edges, prune)
    return Contributions(spec, params, salt, [block], names, len(block.gid))


def _clipped(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` (a new array) clamped to [lo, hi] in place; NaN stays NaN."""
    return np.clip(values, lo, hi, out=values)


def _value_hash(value, salt: int) -> int:
    """A dimension value's keyed 63-bit hash (non-negative: negative codes are null)."""
    text = f"{type(value).__name__}:{value}".encode()
    digest = hashlib.blake2b(text, digest_size=8, key=salt.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(digest, "little") >> 1


def _party(arr: pa.Array | None, name: str, n: int) -> np.ndarray:
    """Pseudonym prefixes as int64; a null (withheld) party is the one subscriber WITHHELD."""
    if arr is None:
        return np.full(n, WITHHELD, np.int64)
    prefix, valid = prefixes(arr, name)
    out = prefix.view(np.int64)
    if valid is not None:
        out = np.where(valid, out, WITHHELD)
    return np.ascontiguousarray(out)


# --- noise and release -----------------------------------------------------------------


def laplace(values: np.ndarray, scale: float) -> np.ndarray:
    """``values`` (integers) plus discrete Laplace noise of ``scale`` from OpenDP, whose
    sampler draws from the operating system's secure randomness (never seedable)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return values.copy()
    atom_domain, vector_domain, make_laplace, l1_distance = _opendp()
    mechanism = make_laplace(vector_domain(atom_domain(T="i64")), l1_distance(T="i64"), scale=scale)
    flat = values.reshape(-1)
    # OpenDP's exact sampler takes tens of µs a value and releases the GIL: chunks side by side
    chunks = np.array_split(flat, max(1, min(8, flat.size // NOISE_CHUNK)))
    noisy = side_by_side(flat.size, *[partial(_sample, mechanism, chunk) for chunk in chunks])
    return np.concatenate(noisy).reshape(values.shape)


#: Values per chunk of noise drawn on its own thread.
NOISE_CHUNK = 4096


@cache
def _opendp():
    """OpenDP's constructors of the noise, with its ``contrib`` features on. The modules
    themselves, not opendp.prelude: that also imports its NumPy, Polars and scikit-learn
    extras, about 0.2 s of CPU a run."""
    from opendp.domains import atom_domain, vector_domain
    from opendp.measurements import make_laplace
    from opendp.metrics import l1_distance
    from opendp.mod import enable_features

    enable_features("contrib")
    return atom_domain, vector_domain, make_laplace, l1_distance


def preload() -> None:
    """Import OpenDP on a thread of its own (about 50 ms of CPU, most of it holding the GIL),
    so that a run's release, its serial end, does not wait for it: called when a DP job
    starts, while the batches are being read."""
    threading.Thread(target=_opendp, name="telemetry-opendp", daemon=True).start()


def _sample(mechanism, values: np.ndarray) -> np.ndarray:
    """The noisy ``values``; given as an int64 array, which OpenDP hands over as one buffer
    (a list is checked and converted value by value in Python, holding the GIL)."""
    return np.asarray(mechanism(np.ascontiguousarray(values, dtype=np.int64)), dtype=np.int64)


def noise_bound(scale: float, level: float) -> float:
    """t with P(|X| >= t) <= level for discrete Laplace X of ``scale`` (2·e^(-t/b) bounds the tail)."""
    return scale * math.log(2.0 / level)


def tagged(table: pa.Table, meta: dict[str, Any]) -> pa.Table:
    """``table`` with the ``dp`` entry of a release in its (Parquet) metadata."""
    import json

    return table.replace_schema_metadata({"dp": json.dumps(meta, sort_keys=True)})


@dataclass
class DpReleased:
    """What a DP release publishes (the fields of :class:`~telemetry.metrics.threshold.Released`
    a run summary reads) and what it left out."""

    table: pa.Table
    rows_released: int
    rows_withheld: int
    records_withheld: int
    records_dp_truncated: int
    dp: dict[str, Any]
    rows_rolled_up: int = 0

    @cached_property
    def metrics(self) -> pl.DataFrame:
        return as_frame(self.table)


def release(c: Contributions) -> DpReleased:
    """Bound (each window in one block), noise, select and build the rows (docs/privacy.md)."""
    p = c.params
    spec = c.spec
    blocks = c.consolidated().blocks  # every window in one block
    width = _FIXED_KEYS + len(spec.by)
    all_keys = np.concatenate([b.keys for b in blocks]) if blocks else np.zeros((0, width), np.int64)
    kept_per_group = np.concatenate([b.kept for b in blocks]) if blocks else np.zeros(0, np.int64)
    distinct = np.concatenate([b.distinct for b in blocks]) if blocks else np.zeros((0, 2), np.int64)
    truncated = c.records - int(kept_per_group.sum())
    candidates = np.flatnonzero(kept_per_group > 0)
    attempts = laplace(kept_per_group[candidates], p.scale("attempts"))
    passed = attempts >= p.threshold
    groups = candidates[passed]
    records_withheld = int(kept_per_group[candidates[~passed]].sum())
    # released groups renumbered 0…n-1; only their kept records enter the measures
    renum = np.full(len(all_keys), -1, np.int64)
    renum[groups] = np.arange(len(groups), dtype=np.int64)
    n = len(groups)
    keys = all_keys[groups]
    voice = _VOICE[keys[:, 1]] if n else np.zeros(0, bool)
    rgid, cols = _released_records(blocks, renum)
    exact = agg.accumulate_counts(
        rgid, n, cols["status"].astype(np.int64), cols["sip"].astype(np.int64), cols["duration_ms"],
        spec.short_call_ms, cols["mos"].astype(np.float64), cols["loss"].astype(np.float64),
    )  # fmt: skip
    counts, scales = _noisy_counts(exact, attempts[passed], voice, p)
    hist = {}
    for name, column, (lo, size) in (("pdd", "pdd", PDD_BUCKETS), ("jitter", "jitter", JITTER_BUCKETS),
                                     ("latency", "latency", LATENCY_BUCKETS)):
        rows = ~voice if name == "latency" else voice
        bucket = kb.buckets(cols[column].astype(np.float64), lo, PER_OCTAVE, size)
        exact_hist = kb.bucket_counts(rgid, n, bucket, size)
        noisy = np.zeros_like(exact_hist)
        noisy[rows] = np.maximum(laplace(exact_hist[rows], p.scale(f"{name}_histogram")), 0)
        hist[name] = _quantiles(noisy, lo, size)
    sources = np.maximum(laplace(distinct[groups, 0], p.scale("distinct_sources")), 0)
    destinations = np.maximum(laplace(distinct[groups, 1], p.scale("distinct_destinations")), 0)
    measures = Measures(counts, hist["pdd"], hist["jitter"], hist["latency"], sources, destinations,
                        _interval(scales))  # fmt: skip
    dims, keys = _named(keys, c.names)
    table = rows_of(spec, keys, dims, measures, ordered=True)
    meta = p.metadata(COLUMNS)
    return DpReleased(table, n, len(candidates) - n, records_withheld, truncated, meta)


def _noisy_counts(exact: np.ndarray, attempts: np.ndarray, voice: np.ndarray, p: Params):
    """The counters of the released rows rebuilt from noisy queries (every count ≥ 0),
    and the noise scale of each counter (for the intervals)."""
    noisy = np.zeros_like(exact)
    scales = np.zeros(agg.N_COUNTERS)
    noisy[:, agg.RECORDS] = attempts
    scales[agg.RECORDS] = p.scale("attempts")
    status = slice(agg.STATUS0, agg.STATUS0 + agg.N_STATUS_COUNTED)
    noisy[:, status] = np.maximum(laplace(exact[:, status], p.scale("status")), 0)
    scales[status] = p.scale("status")
    v = voice
    # SIP classes: disjoint cells, one per record with a code
    c200 = exact[v, agg.SIP_200]
    cells = np.column_stack([
        c200, exact[v, agg.SIP_3XX], exact[v, agg.SIP_AUTH], exact[v, agg.SEER_NUM] - c200,
        exact[v, agg.ISA_NUM],
    ])  # fmt: skip
    cells = np.column_stack([cells, exact[v, agg.SIP_N] - cells.sum(axis=1)])
    assert cells.shape[1] == _SIP_CELLS and (cells >= 0).all()
    cells = np.maximum(laplace(cells, p.scale("sip")), 0)
    noisy[v, agg.SIP_N] = cells.sum(axis=1)
    noisy[v, agg.SIP_200] = cells[:, 0]
    noisy[v, agg.SIP_3XX] = cells[:, 1]
    noisy[v, agg.SIP_AUTH] = cells[:, 2]
    noisy[v, agg.SEER_NUM] = cells[:, 0] + cells[:, 3]
    noisy[v, agg.ISA_NUM] = cells[:, 4]
    scales[[agg.SIP_N, agg.SIP_200, agg.SIP_3XX, agg.SIP_AUTH, agg.SEER_NUM, agg.ISA_NUM]] = p.scale("sip")
    answered = exact[v, agg.DUR_ANSWERED_MS]
    durations = np.maximum(laplace(np.column_stack([answered, exact[v, agg.DUR_TOTAL_MS] - answered]),
                                   p.scale("duration_ms")), 0)  # fmt: skip
    noisy[v, agg.DUR_ANSWERED_MS] = durations[:, 0]
    noisy[v, agg.DUR_TOTAL_MS] = durations.sum(axis=1)
    for column, query in ((agg.SHORT, "short_calls"), (agg.MOS_N, "mos_n"), (agg.MOS_SUM, "mos_sum"),
                          (agg.LOSS_N, "loss_n"), (agg.LOSS_SUM, "loss_sum")):
        noisy[v, column] = np.maximum(laplace(exact[v, column], p.scale(query)), 0)
        scales[column] = p.scale(query)
    # means stay inside the clamping ranges: a noisy sum over a noisy count can leave them
    for total, n, (lo, hi) in ((agg.MOS_SUM, agg.MOS_N, MOS_RANGE), (agg.LOSS_SUM, agg.LOSS_N, LOSS_RANGE)):
        noisy[:, total] = np.clip(noisy[:, total], noisy[:, n] * int(lo * agg.FIXED_POINT),
                                  noisy[:, n] * int(hi * agg.FIXED_POINT))  # fmt: skip
    return noisy, scales


#: Each ratio's numerator and denominator, as counter columns (a sum of several is
#: several noisy cells, each with its own noise; SIP denominators as frame.py builds them).
_S = agg.STATUS0
_PARTS = {
    "asr": ([_S + STATUSES.index("answered")], [agg.RECORDS]),
    "ner": ([_S + STATUSES.index(s) for s in ("answered", "busy", "no_answer", "rejected")], [agg.RECORDS]),
    "ser": ([agg.SIP_200], [agg.SIP_N] * 4),
    "seer": ([agg.SIP_200, agg.SIP_200], [agg.SIP_N] * 5),
    "isa": ([agg.ISA_NUM], [agg.SIP_N] * _SIP_CELLS),
    "short_call_ratio": ([agg.SHORT], [_S + STATUSES.index("answered")]),
    "delivery_rate": ([_S + STATUSES.index("delivered")], [agg.RECORDS]),
    "dlr_rate": ([_S + STATUSES.index(s) for s in ("delivered", "undelivered", "expired", "rejected", "deleted")],
                 [agg.RECORDS]),
}  # fmt: skip
LEVEL = 0.05


def _interval(scales: np.ndarray):
    """Wilson intervals widened for the noise: each of the K noisy cells of the ratio's
    numerator and denominator is moved by its noise bound at level 5%/K (so all are within
    their bounds with probability ≥ 95%), the numerator down and the denominator up for the
    lower bound, the other way for the upper bound."""

    def interval(name: str, num: np.ndarray, den: np.ndarray):
        num_cols, den_cols = _PARTS[name]
        level = LEVEL / (len(num_cols) + len(den_cols))
        q_num = sum(noise_bound(scales[col], level) for col in num_cols)
        q_den = sum(noise_bound(scales[col], level) for col in den_cols)
        num = num.astype(np.float64)
        den = den.astype(np.float64)
        lo, _ = wilson(np.maximum(num - q_num, 0.0), den + q_den)
        num_hi = num + q_num
        den_lo = np.maximum(den - q_den, num_hi)
        _, hi = wilson(num_hi, den_lo)
        return lo, np.where(den > 0, hi, np.nan)

    return interval


def _quantiles(noisy: np.ndarray, lo: float, size: int) -> np.ndarray:
    """Nearest-rank p50/p95/p99 of noisy (clipped) bucket counts: a bucket's geometric
    middle (bucket 0: lo/2); NaN where the noisy total is 0."""
    middles = np.concatenate([[lo / 2], lo * 2.0 ** ((np.arange(1, size) - 0.5) / PER_OCTAVE)])
    total = noisy.sum(axis=1)
    cum = np.cumsum(noisy, axis=1)
    out = np.full((len(noisy), 3), np.nan)
    for q, percent in enumerate((50, 95, 99)):
        rank = np.ceil(total * percent / 100).astype(np.int64)
        idx = (cum < np.maximum(rank, 1)[:, None]).sum(axis=1)
        out[:, q] = np.where(total > 0, middles[np.minimum(idx, size - 1)], np.nan)
    return out


def _released_records(blocks: list[Block], renum: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The kept records of the released rows (``renum``: each row of the blocks in turn,
    its number among the released rows or -1): their row numbers and measures."""
    rgid, parts, offset = [], [], 0
    for b in blocks:
        released = renum[offset : offset + len(b.keys)]
        offset += len(b.keys)
        if not (released >= 0).any():  # most blocks, when few rows pass
            continue
        kept = np.flatnonzero(b.keep)
        row = released[b.gid[kept]]
        sel = kept[row >= 0]
        rgid.append(row[row >= 0])
        parts.append({name: b.cols[name][sel] for name in _MEASURES})
    if not parts:
        return np.zeros(0, np.int64), {name: np.zeros(0, _FIELDS[name]) for name in _MEASURES}
    return np.concatenate(rgid), {name: np.concatenate([c[name] for c in parts]) for name in _MEASURES}


def _named(keys: np.ndarray, names: list[dict]) -> tuple[list[list], np.ndarray]:
    """Key rows with dimension hashes replaced by codes into value lists."""
    keys = keys.copy()
    dims = []
    for j, lookup in enumerate(names):
        column = keys[:, _FIXED_KEYS + j]
        hashes = np.unique(column[column >= 0])
        dims.append([lookup[h] for h in hashes.tolist()])
        codes = np.searchsorted(hashes, column)
        keys[:, _FIXED_KEYS + j] = np.where(column >= 0, codes, NULL_CODE)
    return dims, keys
