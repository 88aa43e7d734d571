"""Contribution bounding for differential privacy (docs/privacy.md): keyed hashes
and "the n smallest hashes per set" ranks.

Callers guarantee: 2-D arrays are C-contiguous int64, ids are dense (0 … n_sets-1).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.aggregate import _mix


@njit
def row_hashes(rows, salt):
    """A keyed 64-bit hash of each row of ``rows`` (n × m int64), as int64."""
    n, m = rows.shape
    out = np.empty(n, np.int64)
    for i in range(n):
        h = _mix(np.uint64(salt), np.uint64(0x9E3779B97F4A7C15))
        for j in range(m):
            h = _mix(h, np.uint64(rows[i, j]))
        out[i] = np.int64(h)
    return out


@njit
def pair_hashes(a, b):
    """The hash of each pair (a[i], b[i]): ``b`` keyed by the already keyed ``a``."""
    out = np.empty(a.shape[0], np.int64)
    for i in range(a.shape[0]):
        out[i] = np.int64(_mix(_mix(np.uint64(a[i]), np.uint64(b[i])), np.uint64(0x94D049BB133111EB)))
    return out


@njit
def smallest(ids, n_sets, hashes, limit, mask):
    """Whether each element where ``mask`` holds is among the ``limit`` smallest
    ``hashes`` of its set's elements where ``mask`` holds (``ids[i]`` in 0 … n_sets-1;
    elements outside ``mask`` are neither counted nor kept). Sets of at most ``limit`` elements are kept whole
    without sorting; the members of the others are sorted by hash (ties: the earlier
    element, which callers only allow between elements whose contributions are equal).
    Hashes compare as signed int64: any fixed order of the keyed hashes will do."""
    n = ids.shape[0]
    size = np.zeros(n_sets, np.int64)
    for i in range(n):
        if mask[i]:
            size[ids[i]] += 1
    keep = mask.copy()
    big = 0
    for i in range(n):
        if mask[i] and size[ids[i]] > limit:
            big += 1
    if big == 0:
        return keep
    members = np.empty(big, np.int64)
    t = 0
    for i in range(n):
        if mask[i] and size[ids[i]] > limit:
            members[t] = i
            t += 1
    order = members[np.argsort(hashes[members], kind="mergesort")]
    rank = np.zeros(n_sets, np.int64)  # members met so far, per set, in hash order
    for t in range(big):
        i = order[t]
        s = ids[i]
        keep[i] = rank[s] < limit
        rank[s] += 1
    return keep


@njit
def set_sizes(ids, n_sets, mask):
    """Elements per set among those where ``mask`` holds."""
    out = np.zeros(n_sets, np.int64)
    for i in range(ids.shape[0]):
        if mask[i]:
            out[ids[i]] += 1
    return out


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
