"""Contribution bounding for differential privacy (docs/privacy.md): keyed hashes,
and the bounding rule in one pass over a block of records (its verdicts are final for
the windows whose records all are in the block), with the DP histograms' buckets.

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
    n_rows, m = rows.shape
    prefix = np.empty(n_rows, np.uint64)  # the hash so far after each row's key
    for r in range(n_rows):
        h = _mix(np.uint64(salt), np.uint64(_SEED))
        for j in range(m):
            h = _mix(h, np.uint64(rows[r, j]))
        prefix[r] = h
    out = np.empty(gid.shape[0], np.int64)
    bits = np.empty(1, np.float64)
    as_int = bits.view(np.int64)
    for i in range(gid.shape[0]):
        h = _mix(prefix[gid[i]], np.uint64(start[i]))
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
def _before(hashes, a, b):
    """Whether element ``a`` ranks before ``b``: smaller hash, ties the earlier element."""
    return hashes[a] < hashes[b] or (hashes[a] == hashes[b] and a < b)


@njit
def smallest(ids, n_sets, hashes, limit, mask):
    """Whether each element where ``mask`` holds is among the ``limit`` smallest
    ``hashes`` of its set's elements where ``mask`` holds (``ids[i]`` in 0 … n_sets-1;
    elements outside ``mask`` are neither counted nor kept); ties: the earlier element,
    which callers only allow between elements whose contributions are equal. Sets of at
    most ``limit`` elements are kept whole; the members of each other set go through a
    heap of the ``limit`` smallest so far (no sort, no allocation a set). Hashes compare
    as signed int64: any fixed order of the keyed hashes will do."""
    n = ids.shape[0]
    size = np.zeros(n_sets, np.int32)
    for i in range(n):
        if mask[i]:
            size[ids[i]] += 1
    keep = mask.copy()
    end = np.empty(n_sets, np.int32)  # where each set over the limit has its members: first its start
    total = 0
    for s in range(n_sets):
        end[s] = total
        if size[s] > limit:
            total += size[s]
    if total == 0:
        return keep
    members = np.empty(total, np.int32)
    for i in range(n):
        s = ids[i]
        if mask[i] and size[s] > limit:
            members[end[s]] = i
            end[s] += 1
    heap = np.empty(max(limit, 1), np.int64)  # a max-heap: its root ranks last
    for s in range(n_sets):
        if size[s] <= limit:
            continue
        k = 0
        for t in range(end[s] - size[s], end[s]):
            i = members[t]
            keep[i] = False
            if k < limit:  # add, then sift up
                j = k
                k += 1
                while j > 0 and _before(hashes, heap[(j - 1) // 2], i):
                    heap[j] = heap[(j - 1) // 2]
                    j = (j - 1) // 2
                heap[j] = i
            elif limit > 0 and _before(hashes, i, heap[0]):  # replace the root, then sift down
                j = 0
                while True:
                    c = 2 * j + 1
                    if c >= limit:
                        break
                    if c + 1 < limit and _before(hashes, heap[c], heap[c + 1]):
                        c += 1
                    if not _before(hashes, i, heap[c]):
                        break
                    heap[j] = heap[c]
                    j = c
                heap[j] = i
        for j in range(k):
            keep[heap[j]] = True
    return keep


@njit
def _grown(values, ids):
    """The open-addressing table (``values``, ``ids``; id -1: empty) at twice the size."""
    size = values.shape[0] * 2
    mask = size - 1
    out_values = np.empty(size, np.int64)
    out_ids = np.full(size, -1, np.int64)
    for s in range(values.shape[0]):
        if ids[s] >= 0:
            slot = np.int64(_mix(np.uint64(_SEED), np.uint64(values[s])) & np.uint64(mask))
            while out_ids[slot] >= 0:
                slot = (slot + 1) & mask
            out_values[slot] = values[s]
            out_ids[slot] = ids[s]
    return out_values, out_ids


@njit
def _party_ids(src, dst):
    """Dense ids of the parties, either role: each record's source and destination id, and
    each id's party. The table grows with the distinct parties (a batch's few thousand
    subscribers: it stays in cache)."""
    n = src.shape[0]
    values = np.empty(1024, np.int64)
    ids = np.full(1024, -1, np.int64)
    party = np.empty(2 * n, np.int64)
    out = np.empty((2, n), np.int32)
    count = 0
    for role in range(2):
        column = src if role == 0 else dst
        for i in range(n):
            v = column[i]
            mask = values.shape[0] - 1
            slot = np.int64(_mix(np.uint64(_SEED), np.uint64(v)) & np.uint64(mask))
            while True:
                k = ids[slot]
                if k < 0:
                    k = count
                    values[slot] = v
                    ids[slot] = k
                    party[k] = v
                    count += 1
                    if 2 * count > values.shape[0]:
                        values, ids = _grown(values, ids)
                    break
                if values[slot] == v:
                    break
                slot = (slot + 1) & mask
            out[role, i] = k
    return out[0], out[1], party[:count]


@njit
def bound(gid, judged, row_window, row_hash, src, dst, hashes, limit, max_rows, withheld):
    """The bounding rule of docs/privacy.md on the records of a block whose row is
    ``judged``: ``gid[i]`` the record's row (0 … n_rows-1), ``row_window`` and ``row_hash``
    (keyed) of each row. The other records are neither kept nor cut.

    (1) the ``limit`` records of smallest hash of each (row, source); (2) of those, the
    ``limit`` of smallest hash of each (row, destination); (3) of those, the records whose
    row is among the ``max_rows`` rows of smallest hash of (row hash, subscriber) among
    the rows the subscriber has records of step 2 in (either role) in the window, for its
    source and for its destination.

    Returns step 1's mask (what a block can drop for good), the kept mask, and per row the
    kept records and the distinct sources and destinations (``withheld`` not counted)
    among them.

    No hash table but the parties': records are visited row by row, rows in window
    order, so that a party's (row, party) pair, and its (window, party), is new exactly
    when the party was last met in another row (window)."""
    n_all = gid.shape[0]
    n_rows = row_window.shape[0]
    id_src, id_dst, party = _party_ids(src, dst)
    n_parties = party.shape[0]
    # the judged records row by row (stable: a row's records in their order), rows in
    # window order; what the rule reads of record ``order[t]`` copied to position t
    size = np.zeros(n_rows, np.int64)
    for i in range(n_all):
        size[gid[i]] += 1
    at = np.empty(n_rows, np.int64)
    n = 0
    for r in np.argsort(row_window, kind="mergesort"):
        at[r] = n
        if judged[r]:
            n += size[r]
    order = np.empty(n, np.int32)  # ids as int32 (a block holds far fewer than 2^31 records): half the memory
    row = np.empty(n, np.int32)
    h = np.empty(n, np.int64)
    party_at = np.empty((2, n), np.int32)
    for i in range(n_all):
        if not judged[gid[i]]:
            continue
        t = at[gid[i]]
        at[gid[i]] += 1
        order[t] = i
        row[t] = gid[i]
        h[t] = hashes[i]
        party_at[0, t] = id_src[i]
        party_at[1, t] = id_dst[i]
    # (row, party) pairs: step 1 ranks the records of each (row, source) pair, step 2 of
    # each (row, destination) pair
    last_row = np.full(n_parties, -1, np.int32)
    pair_of = np.empty(n_parties, np.int32)
    pair_row = np.empty(2 * n, np.int32)
    pair_party = np.empty(2 * n, np.int32)
    pairs = np.empty((2, n), np.int32)
    m = 0
    for t in range(n):
        r = row[t]
        for role in range(2):
            k = party_at[role, t]
            if last_row[k] != r:
                last_row[k] = r
                pair_of[k] = m
                pair_row[m] = r
                pair_party[m] = k
                m += 1
            pairs[role, t] = pair_of[k]
    p_src = pairs[0]
    p_dst = pairs[1]
    first = smallest(p_src, m, h, limit, np.ones(n, np.bool_))
    bounded = smallest(p_dst, m, h, limit, first)
    active = np.zeros(m, np.bool_)  # pairs with records of step 2
    for t in range(n):
        if bounded[t]:
            active[p_src[t]] = True
            active[p_dst[t]] = True
    # step 3: the (window, party) of each active pair, and the pair's rank hash; the pairs
    # were made row by row, rows in window order, so each window's pairs are one run
    who = np.zeros(m, np.int32)
    rank = np.zeros(m, np.int64)
    last_window = np.empty(n_parties, np.int64)
    seen = np.zeros(n_parties, np.bool_)
    who_of = np.empty(n_parties, np.int32)
    n_who = 0
    for q in range(m):
        if not active[q]:
            continue
        r = pair_row[q]
        k = pair_party[q]
        if not seen[k] or last_window[k] != row_window[r]:
            seen[k] = True
            last_window[k] = row_window[r]
            who_of[k] = n_who
            n_who += 1
        who[q] = who_of[k]
        rank[q] = _pair_hash(row_hash[r], party[k])
    chosen = smallest(who, n_who, rank, max_rows, active)
    for_source = np.ones(n_all, np.bool_)
    keep = np.zeros(n_all, np.bool_)
    kept = np.zeros(n_rows, np.int64)
    has_src = np.zeros(m, np.bool_)
    has_dst = np.zeros(m, np.bool_)
    for t in range(n):
        ok = bounded[t] and chosen[p_src[t]] and chosen[p_dst[t]]
        for_source[order[t]] = first[t]
        keep[order[t]] = ok
        if ok:
            kept[row[t]] += 1
            has_src[p_src[t]] = True
            has_dst[p_dst[t]] = True
    distinct = np.zeros((n_rows, 2), np.int64)
    for q in range(m):
        if party[pair_party[q]] != withheld:
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
