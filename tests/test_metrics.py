"""Kernels + state + finalize against the slow reference (tests/reference_metrics.py).

Reference: the slow twin tests/reference_metrics.py (a Python loop over records); HLL counts
within its stated error of exact counts."""

from __future__ import annotations

import datetime as dt
import pickle
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.metrics import AggSpec, accumulate, finalize, merge
from telemetry.metrics.frame import metric_columns
from tests.reference_metrics import DISTINCT, EXACT_DISTINCT, assert_matches, reference_metrics, to_batch

W15 = 15 * 60 * 1_000_000
T0 = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z, a window boundary for every window length
POOL = [bytes([i]) * 16 for i in range(1, 9)]  # fictional pseudonyms
VOICE_STATUS = ["answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion", None]
MESSAGE_STATUS = ["delivered", "undelivered", "expired", "rejected", "deleted", "accepted", "enroute", "unknown", None]
SIP = [None, 200, 180, 302, 401, 402, 407, 408, 480, 486, 487, 500, 503, 504, 600, 603]
f32 = st.floats(0, 100, width=32, allow_nan=False)


@st.composite
def record(draw) -> dict:
    channel = draw(st.sampled_from(["voice", "sms", "mms", "voicemail", "conference", None]))
    is_message = channel in ("sms", "mms")
    start = T0 + draw(st.sampled_from([0, 1, W15 - 1, W15, 2 * W15, -1, -W15])) + draw(st.sampled_from([0, 0, 7_000_000]))
    rec = {
        "channel": channel,
        "status": draw(st.sampled_from(MESSAGE_STATUS if is_message else VOICE_STATUS)),
        "start_time": start,
        "end_time": draw(st.one_of(st.none(), st.integers(0, 120_000_000).map(lambda d: start + d))),
        "pdd_ms": draw(st.one_of(st.none(), st.integers(0, 20_000))),
        "duration_ms": draw(st.one_of(st.none(), st.integers(0, 600_000))),
        "sip_code": draw(st.sampled_from(SIP)),
        "mos": draw(st.one_of(st.none(), st.floats(1, 5, width=32))),
        "jitter_ms": draw(st.one_of(st.none(), f32)),
        "packet_loss_pct": draw(st.one_of(st.none(), f32)),
        "source": draw(st.sampled_from(POOL + [None])),
        "destination": draw(st.sampled_from(POOL + [None])),
        "route": draw(st.sampled_from(["carrier-a", "carrier-b", None])),
        "dst_region": draw(st.sampled_from(["GB", "US", None])),
        "dst_cc": draw(st.sampled_from([44, 1, None])),
        "roaming": draw(st.sampled_from([True, False, None])),
        "direction": draw(st.sampled_from(["outbound", "inbound", None])),
        "tenant": draw(st.sampled_from(["t1", "t2"])),
    }
    return rec


BYS = st.sampled_from([(), ("route",), ("route", "dst_region"), ("dst_cc", "roaming"), ("tenant", "direction", "route")])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record(), max_size=40), by=BYS, plain=st.booleans(), short=st.sampled_from([6.0, 0.0, 30.5]))
def test_matches_reference_on_random_records(records, by, plain, short):
    spec = AggSpec(window="15m", by=by, short_call_s=short)
    frame = finalize(accumulate(to_batch(records, plain_strings=plain), spec))
    assert frame.columns == metric_columns(by)
    assert_matches(frame, reference_metrics(records, W15, by, short), by)


@settings(max_examples=25, deadline=None)
@given(records=st.lists(record(), min_size=1, max_size=40), by=BYS, seed=st.integers(0, 2**32 - 1))
def test_split_and_merge_order_do_not_matter(records, by, seed):
    spec = AggSpec(window="15m", by=by)
    whole = finalize(accumulate(to_batch(records), spec))
    assert _split_merge(records, spec, random.Random(seed)).equals(whole)


def _split_merge(records, spec, rng: random.Random) -> pl.DataFrame:
    cuts = sorted(rng.sample(range(1, len(records)), min(len(records) - 1, rng.randint(0, 6)))) if len(records) > 1 else []
    parts = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)])]
    states = [accumulate(to_batch(p, plain_strings=rng.random() < 0.5), spec) for p in parts]
    while len(states) > 1:  # a random merge tree
        i = rng.randrange(len(states) - 1)
        a, b = states.pop(i), states.pop(i)
        states.insert(i, b.merge(a) if rng.random() < 0.5 else a.merge(b))
    return finalize(states[0])


def _big_records(n: int, seed: int) -> list[dict]:
    """Enough distinct subscribers in one group to leave exact counting (HLL path)."""
    rng = np.random.default_rng(seed)
    starts = T0 + rng.integers(0, 3 * 3600 * 1_000_000, n)
    src = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    chans = rng.choice(["voice", "sms"], n, p=[0.8, 0.2])
    out = []
    for i in range(n):
        out.append({
            "channel": str(chans[i]), "start_time": int(starts[i]),
            "status": "answered" if i % 3 else ("delivered" if chans[i] == "sms" else "busy"),
            "end_time": int(starts[i]) + int(rng.integers(0, 50_000_000)),
            "pdd_ms": int(rng.integers(0, 9000)), "duration_ms": int(rng.integers(0, 300_000)),
            "sip_code": 200 if i % 3 else 486, "mos": float(np.float32(rng.uniform(1, 5))),
            "jitter_ms": float(np.float32(rng.exponential(5))), "packet_loss_pct": float(np.float32(rng.uniform(0, 3))),
            "source": bytes(src[i]), "destination": POOL[i % 8] if i % 5 else bytes(src[(i * 7) % n]),
            "route": ["carrier-a", "carrier-b"][i % 2],
        })
    return out


def test_split_invariance_bit_for_bit_with_hll_groups():
    records = _big_records(12_000, seed=3)
    spec = AggSpec(window="1d", by=("route",))
    whole_state = accumulate(to_batch(records), spec)
    assert len(whole_state.sources.hll_groups) > 0  # the large groups left exact counting
    whole = finalize(whole_state)
    rng = random.Random(11)
    for _ in range(3):
        shuffled = records[:]
        rng.shuffle(shuffled)
        assert _split_merge(shuffled, spec, rng).equals(whole)
    # float columns identical bit for bit, not merely close
    other = _split_merge(records[::-1], spec, rng)
    for name in ("mos_mean", "packet_loss_mean_pct", "acd_s", "pdd_p99_ms", "jitter_p95_ms", "latency_p50_s"):
        a = whole[name].to_numpy().view(np.uint64)
        b = other[name].to_numpy().view(np.uint64)
        assert (a == b).all(), name


def test_hll_distinct_counts_within_the_stated_error_of_exact_counts():
    # groups past the exact limit against the exact counts of the slow twin (Python sets)
    records = _big_records(12_000, seed=3)
    spec = AggSpec(window="1d", by=("route",))
    state = accumulate(to_batch(records), spec)
    assert len(state.sources.hll_groups) == 2  # the two voice routes
    expected = reference_metrics(records, 86_400_000_000, spec.by)
    estimated = [row[name] for row in expected.values() for name in DISTINCT if row[name] > EXACT_DISTINCT]
    assert len(estimated) == 2
    assert_matches(finalize(state), expected, spec.by)


def test_merge_function_and_pickle():
    records = _big_records(3000, seed=5)
    spec = AggSpec(window="1h", by=("route",))
    states = [accumulate(to_batch(records[i : i + 500]), spec) for i in range(0, 3000, 500)]
    restored = pickle.loads(pickle.dumps(merge(states)))
    assert finalize(restored).equals(finalize(accumulate(to_batch(records), spec)))


def test_accumulate_from_two_threads():
    records = _big_records(6000, seed=7)
    spec = AggSpec(window="15m", by=("route",))
    batches = [to_batch(records[:3000]), to_batch(records[3000:])]
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            results[i] = accumulate(batches[i], spec)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sequential = finalize(accumulate(batches[0], spec).merge(accumulate(batches[1], spec)))
    assert finalize(results[0].merge(results[1])).equals(sequential)


# --- handcrafted edge cases ------------------------------------------------------


def test_empty_batch_gives_empty_frame_with_stable_schema():
    spec = AggSpec(by=("route", "dst_cc", "roaming"))
    frame = finalize(accumulate(to_batch([]), spec))
    assert frame.height == 0 and frame.columns == metric_columns(spec.by)
    assert frame.schema["dst_cc"] == pl.String and frame.schema["attempts"] == pl.Int64
    assert frame.schema["asr"] == pl.Float64 and frame.schema["window_start"] == pl.Datetime("us", "UTC")
    batch = pa.RecordBatch.from_pydict({"start_time": pa.array([], pa.timestamp("us", tz="UTC"))})
    assert finalize(accumulate(batch, spec)).equals(frame)


def test_all_null_and_absent_columns():
    records = [{"start_time": T0 + i} for i in range(4)]
    spec = AggSpec(by=("route", "dst_region"))
    full = finalize(accumulate(to_batch(records), spec))
    only_time = finalize(accumulate(to_batch(records, columns=["start_time"]), spec))
    assert full.equals(only_time)
    row = full.row(0, named=True)
    assert full.height == 1 and row["channel"] == "voice"  # a missing channel means voice
    assert row["attempts"] == 4 and row["answered"] == 0 and row["asr"] == 0.0
    assert row["ser"] is None and row["acd_s"] is None and row["pdd_p50_ms"] is None and row["mos_mean"] is None
    assert row["submitted"] is None and row["distinct_sources"] == 0 and row["route"] is None
    assert_matches(full, reference_metrics(records, W15, spec.by), spec.by)


def test_no_answered_calls_gives_null_ratios_over_answered():
    records = [{"start_time": T0, "status": "busy", "sip_code": 486, "duration_ms": 0} for _ in range(3)]
    row = finalize(accumulate(to_batch(records), AggSpec(by=()))).row(0, named=True)
    assert row["asr"] == 0.0 and row["ner"] == 1.0 and row["acd_s"] is None and row["short_call_ratio"] is None
    assert row["seer"] == 1.0 and row["ser"] == 0.0 and row["total_duration_s"] == 0.0


def test_window_boundaries():
    spec = AggSpec(window="15m", by=())
    records = [{"start_time": T0 - 1}, {"start_time": T0}, {"start_time": T0 + W15 - 1}, {"start_time": T0 + W15}]
    frame = finalize(accumulate(to_batch(records), spec))
    starts = frame["window_start"].dt.epoch("us").to_list()
    assert starts == [T0 - W15, T0, T0 + W15] and frame["attempts"].to_list() == [1, 2, 1]
    assert (frame["window_end"].dt.epoch("us") - frame["window_start"].dt.epoch("us")).to_list() == [W15] * 3
    before_epoch = finalize(accumulate(to_batch([{"start_time": -1}]), spec))
    assert before_epoch["window_start"].dt.epoch("us").to_list() == [-W15]


def test_withheld_callers_and_source_as_destination():
    a, b = POOL[0], POOL[1]
    records = [
        {"start_time": T0, "source": None, "destination": a},
        {"start_time": T0, "source": a, "destination": b},
        {"start_time": T0, "source": b, "destination": a},
        {"start_time": T0, "source": None, "destination": None},
    ]
    row = finalize(accumulate(to_batch(records), AggSpec(by=()))).row(0, named=True)
    assert row["distinct_sources"] == 2 and row["distinct_destinations"] == 2 and row["attempts"] == 4


def test_rfc6076_ratios_by_hand():
    codes = [200, 200, 302, 401, 486, 503, 408, 603, None]
    records = [{"start_time": T0, "sip_code": c} for c in codes]
    row = finalize(accumulate(to_batch(records), AggSpec(by=()))).row(0, named=True)
    assert row["ser"] == 2 / (8 - 1 - 1)  # 8 with a code, minus one 3xx, minus one 401
    assert row["seer"] == 4 / (8 - 1)  # 200, 200, 486, 603
    assert row["isa"] == 2 / 8  # 503, 408


def test_messages_pending_latency_and_voice_columns_null():
    records = [
        {"channel": "sms", "start_time": T0, "status": "delivered", "end_time": T0 + 2_000_000},
        {"channel": "sms", "start_time": T0, "status": "delivered", "end_time": None},
        {"channel": "sms", "start_time": T0, "status": "enroute"},
        {"channel": "sms", "start_time": T0, "status": None},
        {"channel": "sms", "start_time": T0, "status": "rejected"},
    ]
    row = finalize(accumulate(to_batch(records), AggSpec(by=()))).row(0, named=True)
    assert row["submitted"] == 5 and row["delivered"] == 2 and row["pending"] == 2 and row["rejected"] == 1
    assert row["dlr_rate"] == 3 / 5 and row["delivery_rate"] == 2 / 5
    assert abs(row["latency_p50_s"] - 2.0) <= 0.02 and row["attempts"] is None and row["asr"] is None


def test_pdd_zero_and_percentile_ranks():
    records = [{"start_time": T0, "pdd_ms": v} for v in [0] * 50 + list(range(1000, 1050))]
    row = finalize(accumulate(to_batch(records), AggSpec(by=()))).row(0, named=True)
    assert row["pdd_p50_ms"] == 0.0  # rank ⌈0.5·100⌉ = 50: the last zero
    assert abs(row["pdd_p95_ms"] - 1044) <= 10.44 and abs(row["pdd_p99_ms"] - 1048) <= 10.48


def test_dimension_columns_are_strings():
    records = [{"start_time": T0, "dst_cc": 44, "roaming": True, "route": "r"},
               {"start_time": T0, "dst_cc": None, "roaming": False, "route": "r"}]
    frame = finalize(accumulate(to_batch(records), AggSpec(by=("dst_cc", "roaming"))))
    assert frame.select("dst_cc", "roaming").rows() == [("44", "true"), (None, "false")]


@pytest.mark.parametrize(
    "window,micros",
    [("1m", 60_000_000), ("90s", 90_000_000), ("15m", W15), ("1h", 3_600_000_000), ("1d", 86_400_000_000),
     (dt.timedelta(minutes=5), 300_000_000)],
)
def test_window_parsing(window, micros):
    assert AggSpec(window=window).window_us == micros


@pytest.mark.parametrize("window", ["30s", "2d", "7x", "", "1.5h", dt.timedelta(seconds=90.5)])
def test_bad_windows(window):
    with pytest.raises(ValueError, match="window"):
        AggSpec(window=window)


def test_bad_by_names_the_argument_and_allowed_names():
    with pytest.raises(ValueError, match=r"by .*'source'.*allowed: route"):
        AggSpec(by=("route", "source"))


def test_unknown_channel_is_an_input_error():
    from telemetry.errors import InputError

    with pytest.raises(InputError, match="channel"):
        accumulate(to_batch([{"start_time": T0, "channel": "fax"}]), AggSpec())


def test_merge_refuses_other_spec():
    a = accumulate(to_batch([{"start_time": T0}]), AggSpec(window="15m"))
    b = accumulate(to_batch([{"start_time": T0}]), AggSpec(window="1h"))
    with pytest.raises(ValueError, match="AggSpec"):
        a.merge(b)


def test_sliced_batch():
    records = _big_records(300, seed=9)
    batch = to_batch(records)
    spec = AggSpec(by=("route",))
    assert finalize(accumulate(batch.slice(100, 150), spec)).equals(finalize(accumulate(to_batch(records[100:250]), spec)))


def test_large_states_consolidated_on_threads_equal_one_thread(monkeypatch):
    # Over SIDE_BY_SIDE_MIN groups the five sketches are merged on a thread pool;
    # the result must equal the same merge done on one thread, bit for bit.
    import telemetry.metrics.state as state_module
    from telemetry.metrics import release

    records = [r | {"route": f"carrier-{i % 16}"} for i, r in enumerate(_big_records(12_000, seed=5))]
    spec = AggSpec(window="1m", by=("route",))  # 180 windows × 16 routes × 2 channels, sparsely
    parts = [accumulate(to_batch(records[i::4]), spec) for i in range(4)]

    def consolidated():
        merged = merge(parts)
        return finalize(merged), release(merged, spec, k=2).metrics

    assert merge(parts).n_groups > state_module.SIDE_BY_SIDE_MIN
    threaded = consolidated()
    monkeypatch.setattr(state_module, "SIDE_BY_SIDE_MIN", 1 << 62)
    serial = consolidated()
    assert threaded[0].equals(serial[0]) and threaded[1].equals(serial[1])
    assert threaded[0].equals(finalize(accumulate(to_batch(records), spec)))


def test_release_on_another_thread_uses_the_cores_it_is_given(monkeypatch):
    # Off the main thread (an engine's worker) the release's parts run one after another,
    # unless the caller says cores are free (cores_free, as the Dask release task does):
    # then on a pool of that many threads, with the same rows as on one thread.
    import telemetry.metrics.state as state_module
    from telemetry.metrics import release

    pools = []

    class Counted(state_module.ThreadPoolExecutor):
        def __init__(self, workers, **kwargs):
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(state_module, "ThreadPoolExecutor", Counted)
    records = [r | {"route": f"carrier-{i % 16}"} for i, r in enumerate(_big_records(12_000, seed=5))]
    spec = AggSpec(window="1m", by=("route",))
    merged = merge([accumulate(to_batch(records[i::2]), spec) for i in range(2)])
    assert merged.n_groups > state_module.SIDE_BY_SIDE_MIN

    def on_a_thread(cores):
        def run():
            if cores is None:
                return release(merged, spec, k=2).table
            with state_module.cores_free(cores):
                return release(merged, spec, k=2).table

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result()

    pools.clear()  # the merge above, on the main thread
    serial = on_a_thread(None)
    assert pools == []
    assert on_a_thread(1).equals(serial) and pools == []
    assert on_a_thread(2).equals(serial) and pools and set(pools) == {2}
    assert serial.equals(release(merge([accumulate(to_batch(records), spec)]), spec, k=2).table)


@settings(max_examples=80, deadline=None)
@given(
    starts=st.lists(st.one_of(st.integers(-(2**53), 2**53), st.integers(T0 - 3 * W15, T0 + 3 * W15)), max_size=60),
    window=st.sampled_from([1, 7, 1_000_000, W15, 86_400_000_000]),
    spans=st.tuples(st.integers(1, 4), st.integers(1, 500)),
    seed=st.integers(0, 2**32 - 1),
)
def test_batch_groups_matches_group_rows(starts, window, spans, seed):
    # The dense table (narrow key spans) and the hashed fallback (wide ones) number
    # groups as group_rows does on the full key rows, window index = floor division.
    from kernels.aggregate import batch_groups, group_rows

    n = len(starts)
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(-2, spans[0], n), rng.integers(-2, spans[1], n)]).astype(np.int64)
    start = np.array(starts, np.int64)
    gid, keys = batch_groups(start, np.int64(window), np.ascontiguousarray(codes))
    full = np.column_stack([np.array([s // window for s in starts], np.int64).reshape(n), codes.T])
    want_gid, first = group_rows(np.ascontiguousarray(full, np.int64))
    assert gid.tolist() == want_gid.tolist()
    assert keys.tolist() == full[first].tolist()


def test_window_index_is_floor_division_at_every_boundary():
    # The float estimate lands on either side of a boundary; the correction must fix both.
    from kernels.aggregate import batch_groups

    for window in (1, 3, 7, 1_000_000, 60_000_000, W15):
        k = np.array([-(2**53) // window, -3, -1, 0, 1, T0 // window, 2**52 // window, 2**53 // window - 1])
        # beyond 2^53 µs the float estimate also falls short (times found by a search)
        far = np.array([1450665332545715734, 2317630084245287153, 1006051300342561413, 3573878119971710404])
        starts = np.unique(np.concatenate([k * window + d for d in (-1, 0, 1)] + [far, -far]).astype(np.int64))
        gid, keys = batch_groups(starts, np.int64(window), np.zeros((0, len(starts)), np.int64))
        assert keys[gid, 0].tolist() == [int(s) // window for s in starts.tolist()]


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), max_size=70),
    skip=st.integers(0, 17),
    kind=st.sampled_from([pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.timestamp("us", tz="UTC"), "dictionary"]),
)
def test_arrow_columns_as_numpy_match_arrow(values, skip, kind):
    # The buffer readers (validity bitmap unpacked at once, one select for the nulls)
    # must agree with Arrow's own is_valid / fill_null on sliced arrays of every type used.
    from telemetry.arrowstr import validity
    from telemetry.metrics.state import _floats, _ints

    if kind == "dictionary":
        array = pa.array([None] * skip + [None if v is None else str(v % 7) for v in values]).dictionary_encode()
    else:
        array = pa.array([None] * skip + values, pa.int64()).cast(kind)
    array = array.slice(skip)
    assert validity(array).tolist() == array.is_valid().to_pylist()
    if kind == "dictionary":
        array = array.indices
    as_int = array.cast(pa.int64()) if pa.types.is_timestamp(array.type) else array
    assert _ints(array, len(values), -9).tolist() == as_int.cast(pa.int64()).fill_null(-9).to_pylist()
    if not pa.types.is_timestamp(array.type):
        want = [np.nan if v is None else float(v) for v in array.cast(pa.float64()).to_pylist()]
        assert np.array_equal(_floats(array, len(values)), np.array(want, np.float64), equal_nan=True)


def _hourly(hours: range, rows: int = 3) -> list[dict]:
    """Calls in the given hours of T0's day: each hour its own windows."""
    return [
        {"start_time": T0 + h * 3_600_000_000 + i, "channel": "voice", "status": "answered", "route": "carrier-a",
         "duration_ms": 1000 * i, "pdd_ms": 100 * i, "source": bytes([i]) * 16, "destination": bytes([h]) * 16}
        for h in hours
        for i in range(rows)
    ]


def test_merging_folds_runs_that_share_groups_and_keeps_time_ordered_ones_apart(monkeypatch):
    import telemetry.metrics.state as state_module

    monkeypatch.setattr(state_module, "PENDING_BYTES", 0)  # pending runs past the largest: a fold is due
    spec = AggSpec(window="15m", by=("route",))
    ordered = [accumulate(to_batch(_hourly(range(h, h + 1))), spec) for h in range(6)]
    apart = merge(ordered)
    # batches in time order share no group: folding would copy them all to save nothing
    assert len(apart.apart()) == 6
    again = [accumulate(to_batch(_hourly(range(2))), spec) for _ in range(6)]
    folded = merge(again)
    assert len(folded.apart()) < 3  # the same groups over and over: folded as they come
    # looked at again only when the runs have doubled: six more of one hour's groups
    # join the six apart, and are folded with them at twelve
    state = apart
    for n in range(7, 13):
        state = state.merge(accumulate(to_batch(_hourly(range(9, 10))), spec))
        assert len(state.apart()) == (n if n < 12 else 1)
    monkeypatch.setattr(state_module, "MAX_RUNS", 4)
    assert len(merge(ordered).apart()) <= 4  # however they relate, no more runs than that
    for state, records in ((apart, _hourly(range(6))), (folded, _hourly(range(2)) * 6)):
        assert_matches(finalize(state, spec), reference_metrics(records, W15, ("route",)), ("route",))


def test_by_window_gives_each_window_the_state_of_its_own_records():
    """A state split by window (the stream's windows): each window's state is, array for
    array, the state of that window's groups taken one window at a time, and gives the rows
    of a state accumulated from that window's records alone; with groups past the exact
    limit (HLL) in every window, and groups not in window order."""
    records = _big_records(24_000, seed=5)
    random.Random(2).shuffle(records)
    spec = AggSpec(window="1h", by=("route",))
    state = accumulate(to_batch(records), spec)
    window = state.keys[:, 0]
    assert (np.diff(window) < 0).any()
    parts = state.by_window()
    assert sorted(parts) == sorted(set(window.tolist())) and len(parts) >= 3
    for w, part in parts.items():
        taken = state.take(np.flatnonzero(window == w))
        assert len(part.sources.hll_groups) > 0
        assert (part.keys == taken.keys).all() and (part.counts == taken.counts).all()
        for name in ("pdd", "jitter", "latency", "sources", "destinations"):
            for field, value in vars(getattr(taken, name)).items():
                assert np.array_equal(getattr(getattr(part, name), field), value), (w, name, field)
        own = [r for r in records if r["start_time"] // spec.window_us == w]
        assert finalize(part).equals(finalize(accumulate(to_batch(own), spec)))
    first = [r for r in records if r["start_time"] // spec.window_us == min(parts)]
    one = accumulate(to_batch(first), spec)
    assert one.by_window() == {min(parts): one}


def test_concat_of_states_apart_gives_what_merge_gives():
    """States that share no group (windows apart, some of several runs, with HLL groups
    and other dimension values) put side by side give the rows of merging them."""
    from telemetry.metrics.state import concat

    records = _big_records(24_000, seed=6)
    spec = AggSpec(window="1h", by=("route",))
    windows = {}
    for part in (records[:9_000], records[9_000:]):  # each window of two batches: two runs
        for w, state in accumulate(to_batch(part), spec).by_window().items():
            windows[w] = windows[w].merge(state) if w in windows else state
    states = list(windows.values())
    assert any(len(s.apart()) == 2 for s in states)
    assert any(len(s.sources.hll_groups) for s in states)
    together = concat(states)
    assert len(together.apart()) == 1
    assert finalize(together).equals(finalize(merge(states)))
    assert finalize(together).equals(finalize(accumulate(to_batch(records), spec)))
