"""Contribution bounding for differential privacy (docs/privacy.md): keyed hashes
and the bounding rule in one pass over a block of records of whole windows.

Callers guarantee: 2-D arrays are C-contiguous int64, ids are dense (0 … n_sets-1).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.aggregate import _mix

_SEED = 0x9E3779B97F4A7C15
_PAIR = 0x94D049BB133111EB


@njit
def row_hashes(rows, salt):
    """A keyed 64-bit hash of each row of ``rows`` (n × m int64), as int64."""
    n, m = rows.shape
    out = np.empty(n, np.int64)
    for i in range(n):
        h = _mix(np.uint64(salt), np.uint64(_SEED))
        for j in range(m):
            h = _mix(h, np.uint64(rows[i, j]))
        out[i] = np.int64(h)
    return out


@njit
def record_hashes(rows, gid, start, src, dst, status, sip, duration, mos, loss, pdd, jitter, latency, salt):
    """The keyed hash of each record's whole content: :func:`row_hashes` of its row
    ``rows[gid[i]]`` followed by its start, parties, status, SIP code and duration, then
    the IEEE bits of its measures as float64 (the stored float32 widened), without
    building that joined matrix."""
    m = rows.shape[1]
    out = np.empty(gid.shape[0], np.int64)
    bits = np.empty(1, np.float64)
    as_int = bits.view(np.int64)
    for i in range(gid.shape[0]):
        h = _mix(np.uint64(salt), np.uint64(_SEED))
        r = gid[i]
        for j in range(m):
            h = _mix(h, np.uint64(rows[r, j]))
        h = _mix(h, np.uint64(start[i]))
        h = _mix(h, np.uint64(src[i]))
        h = _mix(h, np.uint64(dst[i]))
        h = _mix(h, np.uint64(np.int64(status[i])))
        h = _mix(h, np.uint64(np.int64(sip[i])))
        h = _mix(h, np.uint64(duration[i]))
        for v in (np.float64(mos[i]), np.float64(loss[i]), np.float64(pdd[i]), np.float64(jitter[i]), latency[i]):
            bits[0] = v
            h = _mix(h, np.uint64(as_int[0]))
        out[i] = np.int64(h)
    return out


@njit
def _pair_hash(a, b):
    """The hash of the pair (a, b): ``b`` keyed by the already keyed ``a``."""
    return np.int64(_mix(_mix(np.uint64(a), np.uint64(b)), np.uint64(_PAIR)))


@njit
def smallest(ids, n_sets, hashes, limit, mask):
    """Whether each element where ``mask`` holds is among the ``limit`` smallest
    ``hashes`` of its set's elements where ``mask`` holds (``ids[i]`` in 0 … n_sets-1;
    elements outside ``mask`` are neither counted nor kept). Sets of at most ``limit``
    elements are kept whole without sorting; the members of each other set are sorted by
    hash on their own (ties: the earlier element, which callers only allow between
    elements whose contributions are equal). Hashes compare as signed int64: any fixed
    order of the keyed hashes will do."""
    n = ids.shape[0]
    size = np.zeros(n_sets, np.int64)
    for i in range(n):
        if mask[i]:
            size[ids[i]] += 1
    keep = mask.copy()
    start = np.empty(n_sets + 1, np.int64)  # where each set over the limit has its members
    total = 0
    for s in range(n_sets):
        start[s] = total
        if size[s] > limit:
            total += size[s]
    start[n_sets] = total
    if total == 0:
        return keep
    members = np.empty(total, np.int64)
    fill = start[:n_sets].copy()
    for i in range(n):
        s = ids[i]
        if mask[i] and size[s] > limit:
            members[fill[s]] = i
            fill[s] += 1
    for s in range(n_sets):
        if size[s] > limit:
            block = members[start[s] : start[s + 1]]
            order = np.argsort(hashes[block], kind="mergesort")
            for t in range(limit, block.shape[0]):
                keep[block[order[t]]] = False
    return keep


@njit
def _pairs(gid, src, dst):
    """Dense ids of the (row, party) pairs of both roles: each record's (row, source) and
    (row, destination) pair, and each pair's row and party."""
    n = gid.shape[0]
    size = 2
    while size < 4 * n:
        size <<= 1
    mask = size - 1
    table = np.full(size, -1, np.int64)
    pair_row = np.empty(2 * n, np.int64)
    pair_party = np.empty(2 * n, np.int64)
    ids = np.empty((2, n), np.int64)
    m = 0
    for role in range(2):
        party = src if role == 0 else dst
        for i in range(n):
            r = gid[i]
            p = party[i]
            slot = np.int64(_mix(_mix(np.uint64(_SEED), np.uint64(r)), np.uint64(p)) & np.uint64(mask))
            while True:
                q = table[slot]
                if q < 0:
                    table[slot] = m
                    pair_row[m] = r
                    pair_party[m] = p
                    q = m
                    m += 1
                    break
                if pair_row[q] == r and pair_party[q] == p:
                    break
                slot = (slot + 1) & mask
            ids[role, i] = q
    return ids[0], ids[1], pair_row[:m], pair_party[:m]


@njit
def bound(gid, row_window, row_hash, src, dst, hashes, limit, max_rows, withheld):
    """The bounding rule of docs/privacy.md on records of whole windows: ``gid[i]`` the
    record's row (0 … n_rows-1), ``row_window`` and ``row_hash`` (keyed) of each row.

    (1) the ``limit`` records of smallest hash of each (row, source); (2) of those, the
    ``limit`` of smallest hash of each (row, destination); (3) of those, the records whose
    row is among the ``max_rows`` rows of smallest hash of (row hash, subscriber) among
    the rows the subscriber has records of step 2 in (either role) in the window, for its
    source and for its destination.

    Returns step 1's mask (what a part can drop for good), the kept mask, and per row the
    kept records and the distinct sources and destinations (``withheld`` not counted)
    among them."""
    n = gid.shape[0]
    n_rows = row_window.shape[0]
    p_src, p_dst, pair_row, pair_party = _pairs(gid, src, dst)
    m = pair_row.shape[0]
    for_source = smallest(p_src, m, hashes, limit, np.ones(n, np.bool_))
    bounded = smallest(p_dst, m, hashes, limit, for_source)
    active = np.zeros(m, np.bool_)  # pairs with records of step 2
    for i in range(n):
        if bounded[i]:
            active[p_src[i]] = True
            active[p_dst[i]] = True
    # (window, subscriber) of each active pair, and the pair's rank hash
    size = 2
    while size < 2 * m:
        size <<= 1
    mask = size - 1
    table = np.full(size, -1, np.int64)
    who = np.zeros(m, np.int64)
    rank = np.zeros(m, np.int64)
    first = np.empty(m, np.int64)
    n_who = 0
    for q in range(m):
        if not active[q]:
            continue
        w = row_window[pair_row[q]]
        p = pair_party[q]
        rank[q] = _pair_hash(row_hash[pair_row[q]], p)
        slot = np.int64(_mix(_mix(np.uint64(_SEED), np.uint64(w)), np.uint64(p)) & np.uint64(mask))
        while True:
            k = table[slot]
            if k < 0:
                table[slot] = n_who
                first[n_who] = q
                k = n_who
                n_who += 1
                break
            f = first[k]
            if pair_party[f] == p and row_window[pair_row[f]] == w:
                break
            slot = (slot + 1) & mask
        who[q] = k
    chosen = smallest(who, n_who, rank, max_rows, active)
    keep = np.empty(n, np.bool_)
    kept = np.zeros(n_rows, np.int64)
    has_src = np.zeros(m, np.bool_)
    has_dst = np.zeros(m, np.bool_)
    for i in range(n):
        keep[i] = bounded[i] and chosen[p_src[i]] and chosen[p_dst[i]]
        if keep[i]:
            kept[gid[i]] += 1
            has_src[p_src[i]] = True
            has_dst[p_dst[i]] = True
    distinct = np.zeros((n_rows, 2), np.int64)
    for q in range(m):
        if pair_party[q] != withheld:
            if has_src[q]:
                distinct[pair_row[q], 0] += 1
            if has_dst[q]:
                distinct[pair_row[q], 1] += 1
    return for_source, keep, kept, distinct


@njit
def buckets(values, lo, per_octave, n_buckets):
    """The DP histogram bucket of each value: -1 for NaN (absent), 0 below ``lo``,
    then ``per_octave`` log buckets per doubling, the last one open-ended."""
    out = np.empty(values.shape[0], np.int64)
    for i in range(values.shape[0]):
        v = values[i]
        if v != v:
            out[i] = -1
        elif v < lo:
            out[i] = 0
        else:
            b = np.int64(np.floor(np.log2(v / lo) * per_octave)) + 1
            out[i] = min(b, n_buckets - 1)
    return out


@njit
def bucket_counts(gid, n_groups, bucket, n_buckets):
    """(n_groups × n_buckets) counts of the rows with ``gid >= 0`` and a bucket."""
    out = np.zeros((n_groups, n_buckets), np.int64)
    for i in range(gid.shape[0]):
        if gid[i] >= 0 and bucket[i] >= 0:
            out[gid[i], bucket[i]] += 1
    return out
