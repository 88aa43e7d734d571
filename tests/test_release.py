"""The k-threshold release rule against the reference and by hand.

Reference: reference_release of tests/reference_metrics.py and cases worked by hand."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.metrics import AggSpec, accumulate, finalize, merge, release
from telemetry.metrics.frame import metric_columns
from tests.reference_metrics import assert_matches, reference_release, to_batch
from tests.test_metrics import BYS, T0, W15, record

SUBS = [bytes([0x10 + i]) * 16 for i in range(12)]  # fictional pseudonyms


def calls(route: str, n_sources: int, n_destinations: int, *, region: str = "GB", rows: int | None = None) -> list[dict]:
    rows = rows or max(n_sources, n_destinations)
    return [
        {"start_time": T0, "route": route, "dst_region": region, "status": "answered", "duration_ms": 30_000,
         "pdd_ms": 1000 + 100 * i, "source": SUBS[i % n_sources], "destination": SUBS[-1 - i % n_destinations]}
        for i in range(rows)
    ]


def run(records, by, k):
    spec = AggSpec(window="15m", by=by)
    return release(accumulate(to_batch(records), spec), spec, k=k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record(), max_size=40), by=BYS, k=st.integers(1, 4))
def test_matches_reference_release(records, by, k):
    out = run(records, by, k)
    want, rows_withheld, records_withheld, rolled = reference_release(records, W15, by, k)
    assert_matches(out.metrics, want, by)
    assert out.metrics.columns == metric_columns(by)
    assert (out.rows_released, out.rows_withheld, out.records_withheld, out.rows_rolled_up) == (
        len(want), rows_withheld, records_withheld, rolled)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record(), min_size=1, max_size=30), by=BYS, k=st.integers(1, 4),
       cuts=st.lists(st.integers(1, 59), max_size=3))  # fmt: skip
def test_release_reads_unconsolidated_runs_like_the_reference(records, by, k, cuts):
    # batches merged as runs that stay apart (as a pipeline's last batches do); the records
    # twice over, cut between the copies and elsewhere, so that runs share groups and also
    # hold groups of their own: the release of the runs is the release of all records
    spec = AggSpec(window="15m", by=by)
    both = records + records[::-1]
    bounds = sorted({0, len(records), len(both), *(c for c in cuts if c < len(both))})
    state = merge([accumulate(to_batch(both[a:b]), spec) for a, b in zip(bounds, bounds[1:])])
    assert len(state.apart()) == len(bounds) - 1
    out = release(state, spec, k=k)
    want, rows_withheld, records_withheld, rolled = reference_release(both, W15, by, k)
    assert_matches(out.metrics, want, by)
    assert (out.rows_released, out.rows_withheld, out.records_withheld, out.rows_rolled_up) == (
        len(want), rows_withheld, records_withheld, rolled)


def test_exactly_k_is_released_and_k_minus_1_rolls_up():
    records = calls("a", 5, 5) + calls("b", 4, 5) + calls("c", 5, 4)
    out = run(records, ("route",), k=5)
    assert sorted(out.metrics["route"].to_list()) == ["__other__", "a"]
    other = out.metrics.filter(route="__other__").row(0, named=True)
    # b and c merged as states: distincts are of the union, percentiles over all their records
    assert other["attempts"] == 10 and other["distinct_sources"] == 5 and other["distinct_destinations"] == 5
    assert abs(other["pdd_p95_ms"] - 1400) <= 14
    assert (out.rows_released, out.rows_withheld, out.records_withheld, out.rows_rolled_up) == (2, 0, 0, 2)


def test_rollup_still_below_k_is_withheld():
    records = calls("a", 5, 5) + calls("b", 2, 2) + calls("c", 2, 2)  # b and c share subscribers: union 2
    out = run(records, ("route",), k=5)
    assert out.metrics["route"].to_list() == ["a"]
    assert (out.rows_withheld, out.records_withheld, out.rows_rolled_up) == (2, 4, 0)


def test_rollup_keeps_coarser_dimensions_and_window_and_channel():
    records = (calls("a", 3, 3, region="GB") + calls("b", 3, 3, region="GB")
               + [dict(r, source=SUBS[6 + i % 3]) for i, r in enumerate(calls("c", 3, 3, region="US"))])
    out = run(records, ("dst_region", "route"), k=5)
    # GB: a and b share subscribers → union 3, withheld; US: c alone → withheld
    assert out.metrics.height == 0 and out.rows_withheld == 3
    records += [dict(r, source=SUBS[6 + i % 3], destination=SUBS[3 + i % 3])
                for i, r in enumerate(calls("b2", 3, 3, region="GB"))]
    out = run(records, ("dst_region", "route"), k=5)
    assert out.metrics.select("dst_region", "route").rows() == [("GB", "__other__")]
    assert out.rows_rolled_up == 3 and out.rows_withheld == 1 and out.records_withheld == 3


def test_windows_and_channels_are_never_mixed_in_a_rollup():
    late = [dict(r, start_time=T0 + W15) for r in calls("b", 3, 3)]
    sms = [dict(r, channel="sms", source=SUBS[6 + i % 3]) for i, r in enumerate(calls("c", 3, 3))]
    out = run(calls("a", 3, 3) + late + sms, ("route",), k=4)
    assert out.metrics.height == 0 and out.rows_withheld == 3


def test_no_by_releases_or_withholds_the_group():
    out = run(calls("a", 4, 5), (), k=5)
    assert out.metrics.height == 0 and (out.rows_withheld, out.records_withheld) == (1, 5)
    out = run(calls("a", 5, 5), (), k=5)
    assert out.metrics.height == 1 and out.rows_withheld == 0


def test_withheld_callers_do_not_count_towards_k():
    records = calls("a", 4, 5) + [dict(calls("a", 1, 1)[0], source=None)]
    assert run(records, ("route",), k=5).rows_withheld == 1


def test_non_string_finest_dimension_rolls_up_to_other_string():
    records = ([dict(r, dst_cc=44) for r in calls("a", 3, 3)]
               + [dict(r, dst_cc=1, source=SUBS[6 + i % 3], destination=SUBS[i % 3]) for i, r in enumerate(calls("a", 3, 3))])
    out = run(records, ("route", "dst_cc"), k=5)
    assert out.metrics.select("route", "dst_cc").rows() == [("a", "__other__")]
    assert out.metrics.schema == finalize(accumulate(to_batch(records), AggSpec(by=("route", "dst_cc")))).schema
    records = [dict(r, roaming=i % 2 == 0) for i, r in enumerate(records)]
    out = run(records, ("roaming",), k=6)
    assert out.metrics["roaming"].to_list() == ["__other__"]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must"):
        run(calls("a", 1, 1), ("route",), k=k)
