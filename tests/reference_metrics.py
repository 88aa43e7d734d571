"""Slow, obviously correct twin of telemetry.metrics: a Python loop over records
(dicts) computing every metric straight from SPEC sections 4 and 5.

Records are dicts with canonical column names (missing key = null); times are
int microseconds since the epoch; ``source``/``destination`` are 16-byte
pseudonyms or None (withheld). Dimension values are written as the product
writes them: strings, bool → "true"/"false", int → decimal.
"""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction

import polars as pl
import pyarrow as pa

from telemetry.schema import DICT, TS

VOICE = ("voice", "voicemail", "conference")
MESSAGE = ("sms", "mms")
OTHER = "__other__"
#: Distinct counts are exact up to this many per group, HyperLogLog estimates above
#: (docs/metrics.md), whose standard error is 1.04 / sqrt(2^14 registers) = 0.81 %:
#: an estimate must lie within three standard errors of the exact count.
EXACT_DISTINCT = 2048
HLL_ERROR = 3 * 1.04 / math.sqrt(2**14)
DISTINCT = {"distinct_sources", "distinct_destinations"}


def dim_text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def group_key(rec: dict, window_us: int, by: tuple[str, ...]) -> tuple:
    start = rec["start_time"]
    window_start = (start // window_us) * window_us  # floor, also before 1970
    channel = rec.get("channel") or "voice"
    return (window_start, channel, *(dim_text(rec.get(name)) for name in by))


def nearest_rank(values: list, percent: int):
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(Fraction(percent, 100) * len(ordered))
    return ordered[max(rank, 1) - 1]


Z95 = 1.959964  # SPEC section 4


def wilson_roots(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval as the two roots p of (x/n - p)^2 = z^2 p (1 - p) / n,
    i.e. (n + z^2) p^2 - (2x + z^2) p + x^2 / n = 0, solved with the quadratic formula."""
    a, b, c = n + z * z, -(2 * x + z * z), x * x / n
    disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return max(0.0, (-b - disc) / (2 * a)), min(1.0, (-b + disc) / (2 * a))


def _ratio(row: dict, name: str, num, den) -> None:
    """``row[name]`` = num / den with its Wilson bounds; all three None when den is 0."""
    if den == 0:
        row[name] = row[f"{name}_lo"] = row[f"{name}_hi"] = None
    else:
        row[name] = num / den
        row[f"{name}_lo"], row[f"{name}_hi"] = wilson_roots(num, den)


def metrics_of(records: list[dict], channel: str, short_call_s: float = 6.0) -> dict:
    """Every metric column for one group's records."""
    row: dict = {}
    n = len(records)
    status = [r.get("status") for r in records]
    count = {s: status.count(s) for s in set(status)}
    sources = {r["source"] for r in records if r.get("source") is not None}
    destinations = {r["destination"] for r in records if r.get("destination") is not None}
    voice_cols = ["attempts", "answered", "busy", "no_answer", "cancelled", "failed", "congestion", "asr", "ner",
                  "ser", "seer", "isa", "acd_s", "total_duration_s", "short_call_ratio", "pdd_p50_ms",
                  "pdd_p95_ms", "pdd_p99_ms", "mos_mean", "jitter_p95_ms", "packet_loss_mean_pct"]
    message_cols = ["submitted", "delivered", "undelivered", "expired", "deleted", "pending", "delivery_rate",
                    "dlr_rate", "latency_p50_s", "latency_p95_s", "latency_p99_s"]
    row.update(dict.fromkeys(voice_cols + message_cols))
    row.update(dict.fromkeys(f"{r}_{b}" for r in RATIOS for b in ("lo", "hi")))
    row["rejected"] = count.get("rejected", 0)
    if channel in VOICE:
        answered = count.get("answered", 0)
        row["attempts"] = n
        for s in ("answered", "busy", "no_answer", "cancelled", "failed", "congestion"):
            row[s] = count.get(s, 0)
        _ratio(row, "asr", answered, n)
        _ratio(row, "ner", answered + count.get("busy", 0) + count.get("no_answer", 0) + count.get("rejected", 0), n)
        sip = [r["sip_code"] for r in records if r.get("sip_code") is not None]
        redirect = sum(1 for c in sip if 300 <= c <= 399)
        auth = sum(1 for c in sip if c in (401, 402, 407))
        _ratio(row, "ser", sum(1 for c in sip if c == 200), len(sip) - redirect - auth)
        _ratio(row, "seer", sum(1 for c in sip if c in (200, 480, 486, 600, 603)), len(sip) - redirect)
        _ratio(row, "isa", sum(1 for c in sip if c in (408, 500, 503, 504)), len(sip))
        durations = [r.get("duration_ms") or 0 for r in records]  # null duration counts as 0 ms
        answered_durations = [d for d, s in zip(durations, status) if s == "answered"]
        row["acd_s"] = None if answered == 0 else sum(answered_durations) / answered / 1000.0
        row["total_duration_s"] = sum(durations) / 1000.0
        _ratio(row, "short_call_ratio", sum(1 for d in answered_durations if d < short_call_s * 1000), answered)
        pdd = [r["pdd_ms"] for r in records if r.get("pdd_ms") is not None]
        row["pdd_p50_ms"], row["pdd_p95_ms"], row["pdd_p99_ms"] = (nearest_rank(pdd, p) for p in (50, 95, 99))
        mos = [r["mos"] for r in records if r.get("mos") is not None]
        row["mos_mean"] = sum(mos) / len(mos) if mos else None
        jitter = [r["jitter_ms"] for r in records if r.get("jitter_ms") is not None]
        row["jitter_p95_ms"] = nearest_rank(jitter, 95)
        loss = [r["packet_loss_pct"] for r in records if r.get("packet_loss_pct") is not None]
        row["packet_loss_mean_pct"] = sum(loss) / len(loss) if loss else None
    else:
        final = sum(count.get(s, 0) for s in ("delivered", "undelivered", "expired", "rejected", "deleted"))
        row["submitted"] = n
        for s in ("delivered", "undelivered", "expired", "deleted"):
            row[s] = count.get(s, 0)
        row["pending"] = n - final
        _ratio(row, "delivery_rate", count.get("delivered", 0), n)
        _ratio(row, "dlr_rate", final, n)
        latency = [(r["end_time"] - r["start_time"]) / 1e6 for r in records
                   if r.get("status") == "delivered" and r.get("end_time") is not None]
        row["latency_p50_s"], row["latency_p95_s"], row["latency_p99_s"] = (
            nearest_rank(latency, p) for p in (50, 95, 99))
    row["distinct_sources"] = len(sources)
    row["distinct_destinations"] = len(destinations)
    return row


def group(records: list[dict], window_us: int, by: tuple[str, ...]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        groups[group_key(rec, window_us, by)].append(rec)
    return groups


def reference_metrics(records: list[dict], window_us: int, by: tuple[str, ...], short_call_s: float = 6.0) -> dict:
    """{(window_start_us, channel, *dims): metric row} for every group."""
    return {key: metrics_of(recs, key[1], short_call_s) for key, recs in group(records, window_us, by).items()}


def reference_release(records: list[dict], window_us: int, by: tuple[str, ...], k: int, short_call_s: float = 6.0):
    """(released rows keyed like reference_metrics, rows_withheld, records_withheld, rows_rolled_up)."""
    groups = group(records, window_us, by)
    released: dict = {}
    pools: dict[tuple, list[tuple]] = defaultdict(list)
    for key, recs in groups.items():
        row = metrics_of(recs, key[1], short_call_s)
        if row["distinct_sources"] >= k and row["distinct_destinations"] >= k:
            released[key] = row
        elif by:
            pools[key[:-1] + (OTHER,)].append(key)
        else:
            pools[("withheld", key)].append(key)
    rows_withheld = records_withheld = rolled = 0
    for rkey, members in pools.items():
        recs = [r for key in members for r in groups[key]]
        row = metrics_of(recs, rkey[1], short_call_s) if by else None
        if row is not None and row["distinct_sources"] >= k and row["distinct_destinations"] >= k:
            released[rkey] = row
            rolled += len(members)
        else:
            rows_withheld += len(members)
            records_withheld += len(recs)
    return released, rows_withheld, records_withheld, rolled


# --- records → Arrow, and comparing the product's frame with the reference ---

TYPES = {
    "channel": DICT, "direction": DICT, "status": DICT, "tenant": pa.string(), "start_time": TS,
    "answer_time": TS, "end_time": TS, "pdd_ms": pa.int32(), "duration_ms": pa.int64(),
    "source": pa.binary(16), "destination": pa.binary(16), "sip_code": pa.int16(), "q850_cause": pa.int16(),
    "route": pa.string(), "mos": pa.float32(), "jitter_ms": pa.float32(), "packet_loss_pct": pa.float32(),
    "rtt_ms": pa.float32(), "roaming": pa.bool_(), "mno": pa.string(), "device_type": pa.string(),
    "dst_cc": pa.int16(), "dst_region": pa.string(), "dst_prefix": pa.string(), "dst_prefix_name": pa.string(),
}
COUNTS = {"attempts", "answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion", "submitted",
          "delivered", "undelivered", "expired", "deleted", "pending", "distinct_sources", "distinct_destinations"}
EXACT_FLOATS = {"asr", "ner", "ser", "seer", "isa", "acd_s", "total_duration_s", "short_call_ratio",
                "delivery_rate", "dlr_rate"}
RATIOS = ("asr", "ner", "ser", "seer", "isa", "short_call_ratio", "delivery_rate", "dlr_rate")
BOUNDS = {f"{r}_{b}" for r in RATIOS for b in ("lo", "hi")}
MEANS = {"mos_mean", "packet_loss_mean_pct"}
PERCENTILES = {"pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms", "jitter_p95_ms", "latency_p50_s", "latency_p95_s",
               "latency_p99_s"}


def to_batch(records: list[dict], plain_strings: bool = False, columns=None) -> pa.RecordBatch:
    """A prepared batch: every column of TYPES (or ``columns``), null where a record lacks it."""
    names = columns or list(TYPES)
    arrays = {}
    for name in names:
        typ = TYPES[name]
        values = [rec.get(name) for rec in records]
        if pa.types.is_dictionary(typ):
            arr = pa.array(values, pa.string())
            arrays[name] = arr if plain_strings else arr.dictionary_encode()
        else:
            arrays[name] = pa.array(values, typ)
    if "start_time" not in arrays:
        arrays["start_time"] = pa.array([rec["start_time"] for rec in records], TS)
    return pa.RecordBatch.from_pydict(arrays)


def frame_rows(frame: pl.DataFrame, by: tuple[str, ...]) -> dict[tuple, dict]:
    out = {}
    starts = frame["window_start"].dt.epoch("us").to_list()
    for start, row in zip(starts, frame.iter_rows(named=True)):
        out[(start, row["channel"], *(row[name] for name in by))] = row
    return out


def assert_matches(frame: pl.DataFrame, expected: dict[tuple, dict], by: tuple[str, ...]) -> None:
    got = frame_rows(frame, by)
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        for name, value in want.items():
            have = row[name]
            if value is None or have is None:
                assert value is None and have is None, (key, name, have, value)
            elif name in DISTINCT and value > EXACT_DISTINCT:
                assert abs(have - value) <= HLL_ERROR * value, (key, name, have, value)
            elif name in COUNTS or name in EXACT_FLOATS:
                assert have == value, (key, name, have, value)
            elif name in BOUNDS:  # two float formulas of the same interval
                assert math.isclose(have, value, rel_tol=1e-9, abs_tol=1e-12), (key, name, have, value)
            elif name in MEANS:
                assert math.isclose(have, value, rel_tol=1e-6, abs_tol=1e-6), (key, name, have, value)
            elif name in PERCENTILES:
                assert abs(have - value) <= 0.01 * abs(value) + 1e-12, (key, name, have, value)
            else:
                raise AssertionError(f"unexpected column {name}")
