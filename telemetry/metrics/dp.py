"""Differential privacy for the released metrics (SPEC section 11, docs/privacy.md).

:func:`accumulate` keeps, per prepared batch, each record's contribution (its
group, both pseudonym prefixes, a keyed record hash and its measures, durations
clamped) in a :class:`Contributions` state. States merge by concatenation; a merge
that doubles the state (and each batch's own state) is pruned to the records that
can still be kept — those among the ``L`` smallest record hashes of their (row,
source) — which is exact whatever the split (a record outside the L smallest of a
part is outside them in the whole). :func:`release` then bounds the
contributions (:func:`bound`), noises them with OpenDP's discrete Laplace
mechanism, selects rows on the noisy count against a threshold calibrated to δ,
and builds rows of the same shape as :func:`telemetry.metrics.threshold.release`.

This module compiles kernels on first use; OpenDP is imported only by a release.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from kernels import aggregate as agg
from kernels import dpbound as kb
from telemetry.metrics.frame import Measures, as_frame, rows_of, sort_rows
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

#: Per-record columns of a :class:`Contributions`, with their dtypes.
_FIELDS = {
    "src": np.int64, "dst": np.int64, "hash": np.int64,
    "status": np.int8, "sip": np.int16, "duration_ms": np.int64,
    "mos": np.float32, "loss": np.float32, "pdd": np.float32, "jitter": np.float32, "latency": np.float64,
}  # fmt: skip
#: Prune when a merged state holds this many records and twice those at its last pruning
#: (each batch's state is pruned on its own already: merging prunes only what crosses
#: batches, which costs a sort of the whole state, so only to keep memory bounded).
PRUNE_MIN = 1 << 23


@dataclass
class Contributions:
    """The DP state: every record's group key (window index, channel code, keyed hashes of
    the dimension values), both parties and measures, in blocks (``parts``: (keys, columns)
    pairs, joined when read); ``names`` maps the dimension hashes back to values.
    ``records`` counts the records accumulated, ``pruned`` those already known to be over
    the bounds. Treat a state as immutable."""

    spec: AggSpec
    params: Params
    salt: int
    parts: list[tuple[np.ndarray, dict[str, np.ndarray]]]
    names: list[dict]
    records: int = 0
    pruned: int = 0
    _at_prune: int = field(default=0, repr=False)

    @classmethod
    def empty(cls, spec: AggSpec, params: Params, salt: int) -> "Contributions":
        return cls(spec, params, salt, [], [{} for _ in spec.by])

    def __len__(self) -> int:
        return sum(int(keys.shape[0]) for keys, _ in self.parts)

    def _joined(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if len(self.parts) != 1:
            keys = np.concatenate([k for k, _ in self.parts]) if self.parts else \
                np.zeros((0, _FIXED_KEYS + len(self.spec.by)), np.int64)
            cols = {name: np.concatenate([c[name] for _, c in self.parts]) if self.parts else np.zeros(0, dtype)
                    for name, dtype in _FIELDS.items()}  # fmt: skip
            self.parts = [(keys, cols)]
        return self.parts[0]

    keys = property(lambda self: self._joined()[0])
    cols = property(lambda self: self._joined()[1])

    def merge(self, other: "Contributions") -> "Contributions":
        """Both inputs' records; pruned when the state has doubled since it last was."""
        if (other.spec.key(), other.params, other.salt) != (self.spec.key(), self.params, self.salt):
            raise ValueError("only DP states of the same spec, parameters and key merge")
        merged = Contributions(
            self.spec, self.params, self.salt, self.parts + other.parts,
            [{**a, **b} for a, b in zip(self.names, other.names)], self.records + other.records,
            self.pruned + other.pruned, max(self._at_prune, other._at_prune),
        )  # fmt: skip
        size = len(merged)
        if size >= PRUNE_MIN and size >= 2 * merged._at_prune:
            merged = merged.prune()
        return merged

    def take(self, rows: np.ndarray) -> "Contributions":
        """The records where the mask (or index array) ``rows`` holds, in that order;
        the others counted as pruned."""
        keys, cols = self._joined()
        keys = keys[rows]
        out = Contributions(self.spec, self.params, self.salt, [(keys, {name: a[rows] for name, a in cols.items()})],
                            self.names, self.records, self.pruned + len(self) - len(keys), len(keys))  # fmt: skip
        return out

    def in_window_order(self) -> "Contributions":
        """The same records ordered by window (each window's records together); the state
        itself when they already are (time-ordered input: no copy)."""
        windows = self.keys[:, 0]
        if len(windows) < 2 or bool((windows[1:] >= windows[:-1]).all()):
            return self
        return self.take(np.argsort(windows, kind="stable"))

    def by_window(self) -> dict[int, "Contributions"]:
        """One state per window, each counting its own records: only of a state never
        pruned, since pruning counts the records it leaves out without their windows
        (the stream splits each batch's state so, then prunes every part)."""
        if self.pruned:
            raise ValueError("only a DP state that was never pruned splits into windows")
        c = self.in_window_order()
        keys, cols = c._joined()
        windows = keys[:, 0]
        if not len(windows):
            return {}
        cuts = (np.flatnonzero(windows[1:] != windows[:-1]) + 1).tolist()
        return {
            int(windows[a]): Contributions(self.spec, self.params, self.salt,
                                           [(keys[a:b], {name: v[a:b] for name, v in cols.items()})], self.names, b - a)
            for a, b in zip([0, *cuts], [*cuts, len(windows)])
        }  # fmt: skip

    def prune(self) -> "Contributions":
        """Only the records among the L smallest hashes of their (row, source): the others
        are outside them in any merge too, and steps 2 and 3 of :func:`bound` read only
        the records step 1 keeps."""
        c = self.in_window_order()
        return c.take(_Bounding(c, choose=False).for_source)


def subkey_salt(key: bytes) -> int:
    """The 64-bit key of the bounding hashes: HKDF-SHA256(key, info=b"telemetry/v1/dp")."""
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=SHA256(), length=8, salt=None, info=b"telemetry/v1/dp").derive(bytes(key))
    return int.from_bytes(derived, "little", signed=True)


def accumulate(batch: pa.RecordBatch, spec: AggSpec, params: Params, salt: int, prune: bool = True) -> Contributions:
    """The contributions of one prepared batch (see :func:`telemetry.metrics.accumulate`);
    ``prune=False`` keeps every record (what the pruning is checked against)."""
    out = Contributions.empty(spec, params, salt)
    n = batch.num_rows
    if n == 0:
        return out
    col, start, gid, group_keys, dims = batch_keys(batch, spec)
    names = []
    group_keys = group_keys.copy()
    for j, values in enumerate(dims):
        hashes = np.array([_value_hash(v, salt) for v in values] + [NULL_CODE, NULL_CODE], np.int64)
        codes = group_keys[:, _FIXED_KEYS + j]
        group_keys[:, _FIXED_KEYS + j] = hashes[codes]  # codes -1 (null) → the last entry: NULL_CODE
        names.append(dict(zip(hashes[:-2].tolist(), values)))
    keys = np.ascontiguousarray(group_keys[gid])
    status = _vocab_codes(col("status"), STATUSES, n)
    cols = {
        "src": _party(col("source"), "source", n),
        "dst": _party(col("destination"), "destination", n),
        "status": status.astype(np.int8),
        "sip": _ints(col("sip_code"), n, -1).astype(np.int16),
        "duration_ms": np.clip(_ints(col("duration_ms"), n, 0), 0, params.max_duration_ms),
        "mos": np.clip(_floats(col("mos"), n), *MOS_RANGE).astype(np.float32),
        "loss": np.clip(_floats(col("packet_loss_pct"), n), *LOSS_RANGE).astype(np.float32),
        "pdd": _floats(col("pdd_ms"), n).astype(np.float32),
        "jitter": _floats(col("jitter_ms"), n).astype(np.float32),
        "latency": delivery_latency(col("end_time"), start, status),
    }
    content = np.column_stack([
        keys, start, cols["src"], cols["dst"], status, cols["sip"], cols["duration_ms"],
        *(cols[name].astype(np.float64).view(np.int64) for name in ("mos", "loss", "pdd", "jitter", "latency")),
    ]).astype(np.int64)  # fmt: skip
    cols["hash"] = kb.row_hashes(np.ascontiguousarray(content), np.int64(salt))
    state = Contributions(spec, params, salt, [(keys, cols)], names, n, 0, 0)
    return state.prune() if prune else state


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


# --- bounding --------------------------------------------------------------------------


#: Bounding works on slices of the window-ordered records of about this many records
#: (whole windows: every set the rule ranks lies inside one window), side by side.
PIECE = 1 << 16


class _Bounding:
    """The bounding rule of :func:`bound` over a state's records in window order: groups
    (``gid``, ``first``), each record's (group, source) set and whether it is among its L
    smallest record hashes (``for_source``); with ``choose``, also the (group, destination)
    sets and whether the record is kept (``keep``)."""

    def __init__(self, c: Contributions, choose: bool = True) -> None:
        keys, cols = c.keys, c.cols
        windows = keys[:, 0]
        cuts = np.flatnonzero(windows[1:] != windows[:-1]) + 1
        bounds, start = [0], 0
        for cut in cuts.tolist():  # pieces of whole windows, about PIECE records each
            if cut - start >= PIECE:
                bounds.append(cut)
                start = cut
        bounds.append(len(windows))
        args = (c.params.max_records, c.params.max_groups if choose else 0, np.int64(c.salt))
        pieces = side_by_side(
            len(windows) // 16,
            *[partial(_bound_piece, keys[a:b], cols["src"][a:b], cols["dst"][a:b], cols["hash"][a:b], *args)
              for a, b in zip(bounds, bounds[1:]) if b > a],
        )  # fmt: skip
        starts = np.cumsum([0] + [b - a for a, b in zip(bounds, bounds[1:]) if b > a])

        def joined(name: str, offset: str | None = None) -> np.ndarray:
            if not pieces:
                return np.zeros(0, np.int64 if offset or name != "keep" else np.bool_)
            parts, base = [], 0
            for piece, row0 in zip(pieces, starts):
                value = piece[name]
                if offset == "rows":
                    value = value + row0
                elif offset is not None:
                    value = value + base
                    base += len(piece[offset])
                parts.append(value)
            return np.concatenate(parts)

        self.gid = joined("gid", "first")
        self.first = joined("first", "rows")
        self.n_groups = len(self.first)
        self.src_set = joined("src_set", "src_first")
        self.src_first = joined("src_first", "rows")
        self.for_source = joined("for_source")
        if choose:
            self.dst_set = joined("dst_set", "dst_first")
            self.dst_first = joined("dst_first", "rows")
            self.keep = joined("keep")


def _bound_piece(keys, src, dst, hashes, L: int, G: int, salt) -> dict[str, np.ndarray]:
    """:class:`_Bounding` on whole windows (G = 0: the source part only, what pruning needs)."""
    keys = np.ascontiguousarray(keys)
    gid, first = agg.group_rows(keys)
    src_set, src_first = agg.group_rows(np.column_stack([gid, src]))
    every = np.ones(len(gid), np.bool_)
    out = dict(gid=gid, first=first, src_set=src_set, src_first=src_first,
               for_source=kb.smallest(src_set, len(src_first), hashes, L, every))  # fmt: skip
    if not G:
        return out
    dst_set, dst_first = agg.group_rows(np.column_stack([gid, dst]))
    bounded = kb.smallest(dst_set, len(dst_first), hashes, L, out["for_source"])
    # the rows each subscriber has bounded records in, whichever the role, ranked per (window, subscriber)
    idx = np.flatnonzero(bounded)
    pairs = np.ascontiguousarray(np.concatenate([
        np.column_stack([gid[idx], src[idx]]), np.column_stack([gid[idx], dst[idx]]),
    ]))  # fmt: skip
    pair_id, pair_first = agg.group_rows(pairs)
    unique = pairs[pair_first]
    row_hash = kb.row_hashes(np.ascontiguousarray(keys[first]), salt)
    who, who_first = agg.group_rows(np.column_stack([keys[first, 0][unique[:, 0]], unique[:, 1]]))
    rank_hash = kb.pair_hashes(row_hash[unique[:, 0]], np.ascontiguousarray(unique[:, 1]))
    chosen = kb.smallest(who, len(who_first), rank_hash, G, np.ones(len(who), np.bool_))[pair_id]
    keep = bounded.copy()
    keep[idx] = chosen[: len(idx)] & chosen[len(idx):]
    out.update(dst_set=dst_set, dst_first=dst_first, keep=keep)
    return out


def bound(c: Contributions) -> tuple[Contributions, np.ndarray, _Bounding]:
    """Which records the DP aggregates keep, in three steps that each read only the
    record's own parties' records and the run's key, never a count of other subscribers:
    (1) the L records of smallest record hash of each (row, source); (2) of those, the L of
    smallest hash of each (row, destination); (3) of those, the records whose row is among
    the G rows of smallest keyed hash of (subscriber, row), among the rows the subscriber
    has records of step 2 in (either role) in the window, for its source and for its
    destination. The hashes are of the records' content, so the result is the same
    whatever the split. Returns the state in window order, the mask of kept records in
    that order, and the sets."""
    c = c.in_window_order()
    b = _Bounding(c)
    return c, b.keep, b


# --- noise and release -----------------------------------------------------------------


def laplace(values: np.ndarray, scale: float) -> np.ndarray:
    """``values`` (integers) plus discrete Laplace noise of ``scale`` from OpenDP, whose
    sampler draws from the operating system's secure randomness (never seedable)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return values.copy()
    import opendp.prelude as dp

    dp.enable_features("contrib")
    mechanism = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"), scale=scale)
    flat = values.reshape(-1)
    # OpenDP's exact sampler takes tens of µs a value and releases the GIL: chunks side by side
    chunks = np.array_split(flat, max(1, min(8, flat.size // NOISE_CHUNK)))
    noisy = side_by_side(flat.size, *[partial(_sample, mechanism, chunk) for chunk in chunks])
    return np.concatenate(noisy).reshape(values.shape)


#: Values per chunk of noise drawn on its own thread.
NOISE_CHUNK = 4096


def _sample(mechanism, values: np.ndarray) -> np.ndarray:
    return np.asarray(mechanism(values.tolist()), dtype=np.int64)


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
    """Bound, noise, select and build the rows (docs/privacy.md)."""
    p = c.params
    spec = c.spec
    c, keep, b = bound(c)
    truncated = c.pruned + int((~keep).sum())
    gid = np.where(keep, b.gid, -1)
    kept_per_group = kb.set_sizes(b.gid, b.n_groups, keep)
    candidates = np.flatnonzero(kept_per_group > 0)
    attempts = laplace(kept_per_group[candidates], p.scale("attempts"))
    passed = attempts >= p.threshold
    groups = candidates[passed]
    records_withheld = int(kept_per_group[candidates[~passed]].sum())
    # released groups renumbered 0…n-1; every other record out of the measures
    renum = np.full(b.n_groups, -1, np.int64)
    renum[groups] = np.arange(len(groups), dtype=np.int64)
    rgid = np.where(gid >= 0, renum[np.maximum(gid, 0)], -1)
    n = len(groups)
    keys = c.keys[b.first[groups]]
    voice = _VOICE[keys[:, 1]] if n else np.zeros(0, bool)
    cols = c.cols
    sel = rgid >= 0
    exact = agg.accumulate_counts(
        rgid[sel], n, cols["status"][sel].astype(np.int64), cols["sip"][sel].astype(np.int64),
        cols["duration_ms"][sel], spec.short_call_ms, cols["mos"][sel].astype(np.float64),
        cols["loss"][sel].astype(np.float64),
    )  # fmt: skip
    counts, scales = _noisy_counts(exact, attempts[passed], voice, p)
    hist = {}
    for name, column, (lo, size) in (("pdd", "pdd", PDD_BUCKETS), ("jitter", "jitter", JITTER_BUCKETS),
                                     ("latency", "latency", LATENCY_BUCKETS)):
        rows = ~voice if name == "latency" else voice
        bucket = kb.buckets(cols[column][sel].astype(np.float64), lo, PER_OCTAVE, size)
        exact_hist = kb.bucket_counts(rgid[sel], n, bucket, size)
        noisy = np.zeros_like(exact_hist)
        noisy[rows] = np.maximum(laplace(exact_hist[rows], p.scale(f"{name}_histogram")), 0)
        hist[name] = _quantiles(noisy, lo, size)
    sources = _distinct(b.src_set, b.src_first, cols["src"], keep, renum, b.gid, n)
    destinations = _distinct(b.dst_set, b.dst_first, cols["dst"], keep, renum, b.gid, n)
    sources = np.maximum(laplace(sources, p.scale("distinct_sources")), 0)
    destinations = np.maximum(laplace(destinations, p.scale("distinct_destinations")), 0)
    measures = Measures(counts, hist["pdd"], hist["jitter"], hist["latency"], sources, destinations,
                        _interval(scales))  # fmt: skip
    dims, keys = _named(keys, c.names)
    table = sort_rows(rows_of(spec, keys, dims, measures), spec.by)
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


def _distinct(sets, set_first, party, keep, renum, gid, n) -> np.ndarray:
    """Distinct parties (WITHHELD not counted) among the kept records of each released row."""
    has = kb.set_sizes(sets, len(set_first), keep) > 0
    row = renum[gid[set_first]]
    real = has & (row >= 0) & (party[set_first] != WITHHELD)
    return np.bincount(row[real], minlength=n).astype(np.int64)


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
