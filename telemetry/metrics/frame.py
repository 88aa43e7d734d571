"""State → metric rows (SPEC section 4): ratios, means, percentiles, distincts.

Every value is a deterministic function of the state's exact integers and
histogram buckets, so the frame is identical bit for bit however the input was
split or merged. Rows are built and sorted as Arrow tables (what the sinks
write); :func:`as_frame` gives the polars view the API returns, so a run that
only writes files never imports polars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels import aggregate as agg
from telemetry.arrowstr import fixed_width
from telemetry.metrics.intervals import bounds, wilson
from telemetry.metrics.spec import AggSpec
from telemetry.metrics.state import OTHER_CODE, State
from telemetry.schema import CHANNELS, MESSAGE_CHANNELS, STATUSES

if TYPE_CHECKING:
    import polars as pl

OTHER = "__other__"

VOICE_COLUMNS = (
    "attempts", "answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion",
    "asr", "asr_lo", "asr_hi", "ner", "ner_lo", "ner_hi", "ser", "ser_lo", "ser_hi",
    "seer", "seer_lo", "seer_hi", "isa", "isa_lo", "isa_hi", "acd_s", "total_duration_s",
    "short_call_ratio", "short_call_ratio_lo", "short_call_ratio_hi",
    "pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms", "mos_mean", "jitter_p95_ms", "packet_loss_mean_pct",
)
MESSAGE_COLUMNS = (
    "submitted", "delivered", "undelivered", "expired", "deleted", "pending",
    "delivery_rate", "delivery_rate_lo", "delivery_rate_hi", "dlr_rate", "dlr_rate_lo", "dlr_rate_hi",
    "latency_p50_s", "latency_p95_s", "latency_p99_s",
)  # ``rejected`` is shared with voice and sits among the voice columns
DISTINCT_COLUMNS = ("distinct_sources", "distinct_destinations")
_COUNT_NAMES = {
    "attempts", "answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion",
    "submitted", "delivered", "undelivered", "expired", "deleted", "pending",
} | set(DISTINCT_COLUMNS)
_MESSAGE_FINAL = ("delivered", "undelivered", "expired", "rejected", "deleted")
_TS = pa.timestamp("us", tz="UTC")


def metric_columns(by: tuple[str, ...]) -> list[str]:
    """Output column names in order."""
    return ["window_start", "window_end", "channel", *by, *VOICE_COLUMNS, *MESSAGE_COLUMNS, *DISTINCT_COLUMNS]


def schema(by: tuple[str, ...]) -> pa.Schema:
    """Output types: dimensions are strings (see docs/metrics.md), counts int64, the rest float64."""
    fields = [pa.field("window_start", _TS), pa.field("window_end", _TS), pa.field("channel", pa.string())]
    fields += [pa.field(name, pa.string()) for name in by]
    for name in (*VOICE_COLUMNS, *MESSAGE_COLUMNS, *DISTINCT_COLUMNS):
        fields.append(pa.field(name, pa.int64() if name in _COUNT_NAMES else pa.float64()))
    return pa.schema(fields)


def as_frame(table: pa.Table) -> pl.DataFrame:
    """Metric rows as a polars frame (zero-copy: the Arrow types map one to one)."""
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def dimension_text(value) -> str:
    """How a dimension value is written in the output (bool → true/false, int → decimal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def finalize(state: State, spec: AggSpec | None = None) -> pl.DataFrame:
    """One row per group, sorted by window_start, channel and the ``by`` columns
    (as emitted: strings in byte order, nulls last)."""
    if spec is not None and spec.key() != state.spec.key():
        raise ValueError("spec differs from the spec the state was accumulated with")
    return as_frame(sort_rows(metric_rows(state), state.spec.by))


def sort_rows(table: pa.Table, by: tuple[str, ...]) -> pa.Table:
    """Metric rows in :func:`finalize` order (a stable sort: ties keep their order)."""
    return table.take(_order(table, by))


def _order(table: pa.Table, by: tuple[str, ...]) -> pa.Array:
    """The indices of ``table``'s rows in :func:`finalize` order."""
    keys = [(name, "ascending", "at_end") for name in ("window_start", "channel", *by)]
    return pc.sort_indices(table, sort_keys=keys)


class Measures(NamedTuple):
    """What a group's row is computed from: counters in the layout of
    :mod:`kernels.aggregate`, percentiles (groups × (p50, p95, p99), NaN: none),
    distinct counts, and the interval of each ratio from its numerator and
    denominator (``interval(ratio_name, num, den) → (lo, hi)``)."""

    counts: np.ndarray
    pdd: np.ndarray
    jitter: np.ndarray
    latency: np.ndarray
    sources: np.ndarray
    destinations: np.ndarray
    interval: Callable[[str, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

    def take(self, rows: np.ndarray) -> "Measures":
        """The measures of the groups ``rows`` only."""
        return Measures(*(values[rows] for values in self[:-1]), self.interval)

    @staticmethod
    def stacked(parts: list["Measures"]) -> "Measures":
        """The measures of several sets of groups one after the other (the first's interval)."""
        return Measures(*(np.concatenate(values) for values in zip(*(m[:-1] for m in parts))), parts[0].interval)


def distinct_counts(state: State) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sources and destinations per group. A group in HyperLogLog form costs an
    estimate over its 16384 registers: a caller that needs the counts twice (the release
    rule, then the rows) computes them once and passes them on."""
    return state.sources.counts(), state.destinations.counts()


def measures(state: State, distinct: tuple[np.ndarray, np.ndarray] | None = None) -> Measures:
    """What the rows of the state's groups are computed from; ``distinct``: the state's
    :func:`distinct_counts`, when at hand."""
    g = state.n_groups
    sources, destinations = distinct if distinct is not None else distinct_counts(state)
    return Measures(
        state.counts,
        state.pdd.quantiles(g)[0],
        state.jitter.quantiles(g)[0],
        state.latency.quantiles(g)[0],
        sources,
        destinations,
        lambda _name, num, den: wilson(num, den),
    )


def metric_rows(state: State, keep: np.ndarray | None = None,
                distinct: tuple[np.ndarray, np.ndarray] | None = None) -> pa.Table:
    """The metric row of each group (only those where ``keep`` is True), in group order;
    ``distinct``: the state's :func:`distinct_counts`, when at hand."""
    return rows_of(state.spec, state.keys, state.dims, measures(state, distinct), keep)


def rows_of(spec: AggSpec, keys: np.ndarray, dims: list[list], m: Measures, keep: np.ndarray | None = None,
            ordered: bool = False) -> pa.Table:
    """The metric rows of groups given by their key rows (window index, channel code,
    codes into ``dims``) and :class:`Measures`; only those where ``keep`` is True; in
    :func:`finalize` order when ``ordered`` (what :func:`sort_rows` gives: the order is
    found from the key columns alone, and the others are built in it rather than taken,
    about 7 ms for 30,000 rows)."""
    if keep is not None:
        kept = np.flatnonzero(keep)
        keys, m = keys[kept], m.take(kept)
    by = spec.by
    g = len(keys)
    columns: dict[str, pa.Array] = {}
    start = keys[:, 0] * spec.window_us
    columns["window_start"] = pa.array(start, _TS)
    columns["window_end"] = pa.array(start + spec.window_us, _TS)
    columns["channel"] = pa.array(np.asarray(CHANNELS, dtype=object)[keys[:, 1]] if g else [], pa.string())
    for j, name in enumerate(by):
        table = np.asarray([dimension_text(v) for v in dims[j]] + [OTHER, None], dtype=object)
        codes = keys[:, 2 + j]
        codes = np.where(codes == OTHER_CODE, len(table) - 2, np.where(codes < 0, len(table) - 1, codes))
        columns[name] = pa.array(table[codes] if g else [], pa.string())
    if ordered:
        order = _order(pa.table(columns), by)
        columns = {name: column.take(order) for name, column in columns.items()}
        order = order.to_numpy()
        keys, m = keys[order], m.take(order)
    c = m.counts

    message = np.isin(keys[:, 1], [CHANNELS.index(ch) for ch in MESSAGE_CHANNELS])
    voice = ~message
    records = c[:, agg.RECORDS]

    def status(name: str) -> np.ndarray:
        return c[:, agg.STATUS0 + STATUSES.index(name)]

    def count(values: np.ndarray, rows: np.ndarray) -> pa.Array:
        return fixed_width(pa.int64(), values.astype(np.int64), rows)

    def ratio(name: str, num: np.ndarray, den: np.ndarray, rows: np.ndarray) -> None:
        """The ratio column ``name`` and its Wilson bounds, null where ``den`` is 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.minimum(num.astype(np.float64) / den.astype(np.float64), 1.0)  # noisy parts (DP)
        valid = rows & (den > 0)
        lo, hi = m.interval(name, num, den)
        columns[name] = fixed_width(pa.float64(), value, valid)
        for bound, values in zip(bounds(name), (lo, hi)):
            columns[bound] = fixed_width(pa.float64(), values, valid)

    def floats(value: np.ndarray, rows: np.ndarray) -> pa.Array:
        return fixed_width(pa.float64(), value, rows & ~np.isnan(value))

    answered = status("answered")
    columns["attempts"] = count(records, voice)
    for name in ("answered", "busy", "no_answer"):
        columns[name] = count(status(name), voice)
    columns["rejected"] = count(status("rejected"), np.ones(g, bool))
    for name in ("cancelled", "failed", "congestion"):
        columns[name] = count(status(name), voice)
    ratio("asr", answered, records, voice)
    ratio("ner", answered + status("busy") + status("no_answer") + status("rejected"), records, voice)
    sip_n = c[:, agg.SIP_N]
    ratio("ser", c[:, agg.SIP_200], sip_n - c[:, agg.SIP_3XX] - c[:, agg.SIP_AUTH], voice)
    ratio("seer", c[:, agg.SEER_NUM], sip_n - c[:, agg.SIP_3XX], voice)
    ratio("isa", c[:, agg.ISA_NUM], sip_n, voice)
    with np.errstate(divide="ignore", invalid="ignore"):
        acd = c[:, agg.DUR_ANSWERED_MS].astype(np.float64) / answered / 1000.0
    columns["acd_s"] = floats(np.where(answered > 0, acd, np.nan), voice)
    columns["total_duration_s"] = floats(c[:, agg.DUR_TOTAL_MS].astype(np.float64) / 1000.0, voice)
    ratio("short_call_ratio", c[:, agg.SHORT], answered, voice)
    for q, name in enumerate(("pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms")):
        columns[name] = floats(m.pdd[:, q], voice)
    columns["mos_mean"] = _fixed_mean(c[:, agg.MOS_SUM], c[:, agg.MOS_N], voice)
    columns["jitter_p95_ms"] = floats(m.jitter[:, 1], voice)
    columns["packet_loss_mean_pct"] = _fixed_mean(c[:, agg.LOSS_SUM], c[:, agg.LOSS_N], voice)

    final = sum(status(name) for name in _MESSAGE_FINAL) if g else np.zeros(0, np.int64)
    columns["submitted"] = count(records, message)
    for name in ("delivered", "undelivered", "expired", "deleted"):
        columns[name] = count(status(name), message)
    columns["pending"] = count(np.maximum(records - final, 0), message)  # noisy parts (DP) may cross
    ratio("delivery_rate", status("delivered"), records, message)
    ratio("dlr_rate", final, records, message)
    for q, name in enumerate(("latency_p50_s", "latency_p95_s", "latency_p99_s")):
        columns[name] = floats(m.latency[:, q] / 1e6, message)

    everyone = np.ones(g, bool)
    columns["distinct_sources"] = count(m.sources, everyone)
    columns["distinct_destinations"] = count(m.destinations, everyone)

    return pa.table({name: columns[name] for name in metric_columns(by)}, schema=schema(by))


def _fixed_mean(total: np.ndarray, n: np.ndarray, rows: np.ndarray) -> pa.Array:
    """Mean of values summed in 1e-6 fixed point: exact sum, one rounding at the end."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = total.astype(np.float64) / agg.FIXED_POINT / n
    return fixed_width(pa.float64(), value, rows & (n != 0))
