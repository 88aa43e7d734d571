"""Sketch accuracy against exact answers, and merge == sketch of the union.

Reference: exact answers: nearest rank of the sorted values, np.unique sets, exact distinct
counts; the HyperLogLog estimator against a plain-Python transcription of Ertl's algorithm 6."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import sketch as k
from telemetry.metrics.sketches import EXACT_LIMIT, Distinct, Histogram

PCTS = np.array([1, 10, 25, 50, 75, 90, 95, 99, 100], dtype=np.int64)


def nearest_rank(values: np.ndarray, percent: int) -> float:
    ordered = np.sort(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return float(ordered[rank - 1])


DISTRIBUTIONS = {
    "lognormal": lambda rng, n: rng.lognormal(7.0, 1.2, n),
    "uniform": lambda rng, n: rng.uniform(0, 10_000, n),
    "with_zeros": lambda rng, n: np.where(rng.random(n) < 0.3, 0.0, rng.exponential(800, n)),
    "integers_ms": lambda rng, n: rng.integers(0, 20_000, n).astype(np.float64),
    "below_one": lambda rng, n: rng.uniform(0, 1e-3, n),
    "negative": lambda rng, n: rng.normal(0, 100, n),
    "non_positive": lambda rng, n: -rng.integers(0, 50, n).astype(np.float64),
    "zeros": lambda rng, n: np.zeros(n),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantile_relative_error_within_one_percent(name):
    rng = np.random.default_rng(42)
    values = DISTRIBUTIONS[name](rng, 200_000)
    gid = rng.integers(0, 3, len(values))
    hist = Histogram.build(gid, values)
    got, n = hist.quantiles(3, PCTS)
    worst = 0.0
    for g in range(3):
        exact_values = values[gid == g]
        assert n[g] == len(exact_values)
        for q, p in enumerate(PCTS):
            exact = nearest_rank(exact_values, int(p))
            err = abs(got[g, q] - exact) / abs(exact) if exact else abs(got[g, q])
            worst = max(worst, err)
    print(f"{name}: worst relative error {worst:.4%}")
    assert worst <= 0.01


def test_histogram_nan_is_absent_and_empty_group_is_nan():
    hist = Histogram.build(np.array([0, 0, 2]), np.array([np.nan, 5.0, np.nan]))
    values, n = hist.quantiles(3)
    assert list(n) == [1, 0, 0]
    assert abs(values[0, 0] - 5.0) <= 0.05 and np.isnan(values[1]).all() and np.isnan(values[2]).all()


def test_histogram_merge_equals_histogram_of_union():
    rng = np.random.default_rng(1)
    values = rng.lognormal(5, 2, 50_000)
    values[::7] = 0.0
    gid = rng.integers(0, 20, len(values))
    whole = Histogram.build(gid, values)
    cut = 20_000
    a = Histogram.build(gid[:cut], values[:cut])
    b = Histogram.build(gid[cut:], values[cut:])
    merged = Histogram.union([a, b], [20, 20], np.tile(np.arange(20, dtype=np.int64), 2))
    np.testing.assert_array_equal(merged.keys, whole.keys)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    # the other side numbered differently: its group j is this side's group 19 - j
    flip = np.arange(20, dtype=np.int64)[::-1].copy()
    parts = [Histogram.build(flip[gid[cut:]], values[cut:], 20), Histogram.build(gid[:cut], values[:cut], 20)]
    again = Histogram.union(parts, [20, 20], np.concatenate([np.arange(20, dtype=np.int64), flip]))
    np.testing.assert_array_equal(again.regroup(flip).keys, whole.keys)


@pytest.mark.parametrize("groups", [3, 300, 5000])
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_histogram_is_the_sorted_bucket_counts(name, groups):
    # the dense (group × code) table and the sorting path give the plain reference
    rng = np.random.default_rng(7)
    values = DISTRIBUTIONS[name](rng, 20_000)
    values[::11] = np.nan
    gid = rng.integers(0, groups, len(values))
    hist = Histogram.build(gid, values, groups)
    present = ~np.isnan(values)
    codes = np.array([k.bucket_code(v) for v in values[present]], dtype=np.int64)
    expect_keys, expect_counts = np.unique((gid[present] << k.CODE_BITS) | codes, return_counts=True)
    np.testing.assert_array_equal(hist.keys, expect_keys)
    np.testing.assert_array_equal(hist.counts, expect_counts)


def _hashes(rng, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)


@pytest.mark.parametrize("n", [10_000, 100_000, 1_000_000])
def test_distinct_estimate_within_two_percent(n):
    rng = np.random.default_rng(n)
    vals = _hashes(rng, n)
    vals = np.concatenate([vals, vals[: n // 2]])  # repeats must not count
    d = Distinct.build(np.zeros(len(vals), np.int64), vals, 1)
    assert list(d.hll_groups) == [0] and len(d.vals) == 0
    estimate = int(d.counts()[0])
    err = abs(estimate - n) / n
    print(f"distinct {n:>9,}: estimate {estimate:,}, relative error {err:.3%}")
    assert err <= 0.02


def test_distinct_exact_up_to_limit():
    rng = np.random.default_rng(3)
    vals = _hashes(rng, EXACT_LIMIT)
    sizes = [0, 1, 1024, EXACT_LIMIT]
    gid = np.repeat(np.arange(4, dtype=np.int64), sizes)
    values = np.concatenate([vals[:s] for s in sizes])
    d = Distinct.build(gid, np.concatenate([values, values]), 4)  # each value twice
    assert list(d.counts()) == sizes and len(d.hll_groups) == 0


@pytest.mark.parametrize("kind", ["uniform", "small integers", "one top bit pattern"])
def test_distinct_sets_are_the_sorted_unique_values(kind):
    # uniform values take the bucket sort; crowded ones (not HMAC output) the plain sort
    rng = np.random.default_rng(11)
    n = 20_000
    vals = {
        "uniform": _hashes(rng, n),
        "small integers": rng.integers(0, 3000, n).astype(np.uint64),
        "one top bit pattern": (np.uint64(0xABC) << np.uint64(52)) | _hashes(rng, n) >> np.uint64(40),
    }[kind]
    gid = rng.integers(0, 25, n)
    d = Distinct.build(gid, vals, 25)
    halves = [Distinct.build(gid[:n // 2], vals[:n // 2], 25), Distinct.build(gid[n // 2:], vals[n // 2:], 25)]
    merged = Distinct.union(halves, np.tile(np.arange(25, dtype=np.int64), 2), 25)
    for sets in (d, merged):
        for g in range(25):
            np.testing.assert_array_equal(sets.vals[sets.off[g]:sets.off[g + 1]], np.unique(vals[gid == g]))


def test_distinct_merge_equals_sketch_of_union_across_the_limit():
    rng = np.random.default_rng(5)
    n = 3 * EXACT_LIMIT
    vals = _hashes(rng, n)
    gid = rng.integers(0, 3, n)
    gid[: 2 * EXACT_LIMIT] = 0  # group 0 goes over the limit only after merging
    whole = Distinct.build(gid, vals, 3)
    perm = rng.permutation(n)
    parts = np.array_split(perm, 5)
    merged = Distinct.build(gid[parts[0]], vals[parts[0]], 3)
    for p in parts[1:]:
        merged = Distinct.union([merged, Distinct.build(gid[p], vals[p], 3)], np.tile(np.arange(3, dtype=np.int64), 2), 3)
    for name in ("off", "vals", "hll_groups", "hll_regs"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    regrouped = whole.regroup(np.array([0, 0, 1], np.int64), 2)
    direct = Distinct.build(np.where(gid == 2, 1, 0), vals, 2)
    np.testing.assert_array_equal(regrouped.hll_regs, direct.hll_regs)
    np.testing.assert_array_equal(regrouped.counts(), direct.counts())


def test_distinct_union_and_regroup_of_many_register_rows_equal_a_direct_build():
    # parts holding HLL rows for the same groups, groups merged and dropped (-1): the rows
    # are max-combined where they lie, and must give what one build of the values gives
    rng = np.random.default_rng(8)
    n_groups, parts, sources = 6, [], []
    for part in range(4):
        gid = rng.integers(0, n_groups, 6 * EXACT_LIMIT)
        gid[: 2 * EXACT_LIMIT + part] = part % 3  # groups 0-2 over the limit in some parts only
        vals = _hashes(rng, len(gid))
        parts.append(Distinct.build(gid, vals, n_groups))
        sources.append((gid, vals))
    gmap = np.tile(np.array([0, 1, 0, 2, 3, 2], np.int64), len(parts))  # merges across parts
    union = Distinct.union(parts, gmap, 4)
    rows = [int(gmap[g]) for d in parts for g in d.hll_groups]
    assert len(set(rows)) < len(rows)  # register rows of several parts for one group
    gid = np.concatenate([gmap[:n_groups][g] for g, _ in sources])
    vals = np.concatenate([v for _, v in sources])
    direct = Distinct.build(gid, vals, 4)
    for name in ("off", "vals", "hll_groups", "hll_regs"):
        np.testing.assert_array_equal(getattr(union, name), getattr(direct, name))
    for row, g in enumerate(union.hll_groups):  # registers straight from the group's values
        want = np.zeros((1, union.hll_regs.shape[1]), np.uint8)
        k.hll_add(want, 0, vals[gid == g])
        np.testing.assert_array_equal(union.hll_regs[row], want[0])
    dropped = union.regroup(np.array([-1, 1, 0, -1], np.int64), 2)  # 0 and 3 dropped, 2 → 0
    keep = np.isin(gid, [1, 2])
    again = Distinct.build(np.where(gid[keep] == 2, 0, 1), vals[keep], 2)
    for name in ("off", "vals", "hll_groups", "hll_regs"):
        np.testing.assert_array_equal(getattr(dropped, name), getattr(again, name))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_parts=st.integers(1, 4), n_groups=st.integers(1, 12),
       n_targets=st.integers(1, 6))
def test_union_and_take_equal_a_direct_build(seed, n_parts, n_groups, n_targets):
    # groups mapped many to one or dropped (-1), so a group receives no block, one, two (merged)
    # or more (sorted); few distinct values, so equal buckets and pseudonyms meet
    rng = np.random.default_rng(seed)
    gmap = rng.integers(-1, n_targets, n_parts * n_groups)
    n_out = int(gmap.max()) + 1
    hists, sets, kept = [], [], []
    for part in range(n_parts):
        n = int(rng.integers(0, 300))
        gid = rng.integers(0, n_groups, n)
        values = rng.choice([0.0, 1.0, 2.5, 100.0, 1e4, np.nan], n) * rng.choice([1.0, -1.0], n)
        ids = rng.integers(0, 50, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        hists.append(Histogram.build(gid, values, n_groups))
        sets.append(Distinct.build(gid, ids, n_groups))
        target = gmap[part * n_groups + gid]
        kept.append((target[target >= 0], values[target >= 0], ids[target >= 0]))
    gid, values, ids = (np.concatenate(column) for column in zip(*kept))
    union = Histogram.union(hists, [n_groups] * n_parts, gmap)
    direct = Histogram.build(gid, values, n_out)
    np.testing.assert_array_equal(union.keys, direct.keys)
    np.testing.assert_array_equal(union.counts, direct.counts)
    merged = Distinct.union(sets, gmap, n_out)
    for g in range(n_out):
        np.testing.assert_array_equal(merged.vals[merged.off[g]:merged.off[g + 1]], np.unique(ids[gid == g]))
    # take: some groups in any order, renumbered in that order
    groups = rng.permutation(n_out)[: int(rng.integers(0, n_out + 1))]
    pos = np.full(n_out, -1, np.int64)
    pos[groups] = np.arange(len(groups))
    taken = union.take(groups)
    again = Histogram.build(pos[gid][pos[gid] >= 0], values[pos[gid] >= 0], len(groups))
    np.testing.assert_array_equal(taken.keys, again.keys)
    np.testing.assert_array_equal(taken.counts, again.counts)


def test_quantiles_of_percents_in_any_order_are_the_nearest_ranks_of_the_buckets():
    rng = np.random.default_rng(11)
    gid = rng.integers(0, 40, 20_000)
    hist = Histogram.build(gid, rng.lognormal(4, 1.5, len(gid)))
    percents = np.array([99, 50, 95, 50, 100, 1, 0, 75], np.int64)
    got, n = hist.quantiles(40, percents)
    for g in range(40):
        rows = (hist.keys >> k.CODE_BITS) == g
        reps = np.repeat([k.bucket_value(c) for c in hist.keys[rows] & k.CODE_MASK], hist.counts[rows])
        assert n[g] == len(reps)
        assert got[g].tolist() == [nearest_rank(reps, int(p)) for p in percents]


def ertl_estimate(row: np.ndarray) -> float:
    """Ertl's improved raw estimator (arXiv:1702.01284, algorithm 6) of one register row,
    statement by statement in plain Python: the rank histogram by np.bincount, σ and τ
    as their series."""
    m, q = float(k.HLL_M), k.HLL_Q
    counts = np.bincount(row, minlength=q + 2).tolist()

    def sigma(x: float) -> float:
        if x == 1.0:
            return math.inf
        y, z = 1.0, x
        while True:
            x *= x
            z_old, z = z, z + x * y
            y += y
            if z == z_old:
                return z

    def tau(x: float) -> float:
        if x in (0.0, 1.0):
            return 0.0
        y, z = 1.0, 1.0 - x
        while True:
            x = math.sqrt(x)
            z_old = z
            y *= 0.5
            z -= (1.0 - x) ** 2 * y
            if z == z_old:
                return z / 3.0

    z = m * tau(1.0 - counts[q + 1] / m)
    for rank in range(q, 0, -1):
        z = 0.5 * (z + counts[rank])
    z = z + m * sigma(counts[0] / m)
    return m * m / (2.0 * math.log(2.0)) / z if z else math.inf


#: Register rows: (seed, largest rank, share of empty registers, share of saturated ones).
REGISTER_ROWS = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, k.HLL_Q + 1),
                          st.floats(0.0, 1.0), st.floats(0.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(REGISTER_ROWS, min_size=1, max_size=6))
def test_hll_estimate_is_ertls_estimator_bit_for_bit(rows):
    regs = np.zeros((len(rows) + 3, k.HLL_M), np.uint8)
    for r, (seed, top, empty, saturated) in enumerate(rows):
        rng = np.random.default_rng(seed)
        row = np.minimum(rng.geometric(0.5, k.HLL_M), top)  # ranks as hashing leaves them
        row[rng.random(k.HLL_M) < empty] = 0
        row[rng.random(k.HLL_M) < saturated] = k.HLL_Q + 1
        regs[r] = row
    regs[-2] = k.HLL_Q + 1  # every register saturated; regs[-3] stays empty
    regs[-1, ::2] = 1  # equal ranks side by side, then alternating ones
    regs[-1, 1::4] = 2
    got = k.hll_estimate(regs)
    want = [ertl_estimate(row) for row in regs]
    assert got.tolist() == want  # the same floats, not merely close
    assert got[-3] == 0.0 and got[-2] == math.inf


def test_bucket_representatives_bound_the_relative_error():
    xs = np.concatenate([np.geomspace(1e-300, 1e300, 20_001), -np.geomspace(1e-12, 1e12, 1001)])
    for x in xs:
        rep = k.bucket_value(k.bucket_code(x))
        assert abs(rep - x) <= k.ALPHA * abs(x) * (1 + 1e-9), x
    assert k.bucket_value(k.bucket_code(0.0)) == 0.0
    codes = [k.bucket_code(x) for x in np.sort(np.concatenate([xs, [0.0]]))]
    assert codes == sorted(codes)  # bucket codes order like the values
