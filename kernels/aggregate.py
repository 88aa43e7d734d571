"""Group ids and per-group exact counters.

Callers guarantee: key matrices are C-contiguous int64; per-row arrays have the
same length; nulls are already replaced by the sentinels documented per kernel.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit

# Counter columns of the per-group int64 matrix. Status counters are indexed by
# the status code (position in telemetry.schema.STATUSES) for the first
# N_STATUS_COUNTED statuses; the pending message statuses are derived later.
RECORDS = 0
STATUS0 = 1
N_STATUS_COUNTED = 11  # answered … congestion, delivered, undelivered, expired, deleted
ANSWERED_CODE = 0
SIP_N = 12
SIP_3XX = 13
SIP_AUTH = 14  # 401, 402, 407: excluded from the SER denominator (RFC 6076 4.6)
SIP_200 = 15
SEER_NUM = 16
ISA_NUM = 17
DUR_ANSWERED_MS = 18
DUR_TOTAL_MS = 19
SHORT = 20
MOS_N = 21
MOS_SUM = 22  # fixed point, 1e-6 units: integer sums are exact and order-independent
LOSS_N = 23
LOSS_SUM = 24
N_COUNTERS = 25

FIXED_POINT = 1e6
# Magnitudes above this are not media measurements; skipping them also keeps
# the fixed-point sums far from int64 overflow.
FIXED_POINT_LIMIT = 1e6


@njit
def _mix(h: np.uint64, v: np.uint64) -> np.uint64:
    h = (h ^ v) * np.uint64(0xBF58476D1CE4E5B9)
    return h ^ (h >> np.uint64(31))


@njit
def group_rows(keys):
    """Dense group ids for the rows of ``keys`` (n × m int64), in order of first
    appearance, and the first row of each group. Open addressing, O(n)."""
    n, m = keys.shape
    size = 2
    while size < 2 * n:
        size <<= 1
    mask = size - 1
    table = np.full(size, -1, np.int64)
    gid = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    ng = 0
    for i in range(n):
        h = np.uint64(0x9E3779B97F4A7C15)
        for j in range(m):
            h = _mix(h, np.uint64(keys[i, j]))
        slot = np.int64(h & np.uint64(mask))
        while True:
            g = table[slot]
            if g < 0:
                table[slot] = ng
                first[ng] = i
                gid[i] = ng
                ng += 1
                break
            r = first[g]
            same = True
            for j in range(m):
                if keys[r, j] != keys[i, j]:
                    same = False
                    break
            if same:
                gid[i] = g
                break
            slot = (slot + 1) & mask
    return gid, first[:ng].copy()


@njit
def _floor_div(t, w, inv_w):
    """floor(t / w) for int64 t and w > 0, exactly: a float estimate, then corrected
    (int64 division costs ~10x a multiply, and was most of a batch's window pass).
    The estimate is off by at most one unless |t| is beyond 2^53 µs."""
    q = np.int64(math.floor(t * inv_w))
    r = t - q * w
    while r < 0:
        q -= 1
        r += w
    while r >= w:
        q += 1
        r -= w
    return q


#: A batch's groups are numbered through a dense table (no hashing) when the
#: ranges of its key columns span at most this many cells per row.
DENSE_GROUP_CELLS = 2


@njit
def batch_groups(start_us, window_us, codes):
    """The groups of a batch keyed by (window index of ``start_us``, ``codes[0][i]``,
    ``codes[1][i]``, …) — ``codes`` is m × n int64, C-contiguous — numbered in
    order of first appearance like :func:`group_rows`: per-row group ids, and
    each group's key row (window index first).

    Keys of one batch span few values (a few windows, channels, routes,
    regions), so the rows usually index a dense table by their offsets within
    those ranges; wider spans go through :func:`group_rows`."""
    m, n = codes.shape
    w = np.empty(n, np.int64)
    inv = 1.0 / window_us
    for i in range(n):
        w[i] = _floor_div(start_us[i], window_us, inv)
    lo = np.empty(m + 1, np.int64)
    span = np.empty(m + 1, np.int64)
    limit = DENSE_GROUP_CELLS * n + 64
    cells = np.int64(1)
    for j in range(m + 1):
        col = w if j == 0 else codes[j - 1]
        a = col[0] if n else 0
        b = a
        for i in range(n):
            a = min(a, col[i])
            b = max(b, col[i])
        lo[j] = a
        span[j] = b - a + 1
        if cells <= limit:  # past the limit, stop multiplying: no overflow
            cells = cells * span[j] if span[j] <= limit else limit + 1
    if cells > limit:
        keys = np.empty((n, m + 1), np.int64)
        for i in range(n):
            keys[i, 0] = w[i]
            for j in range(m):
                keys[i, j + 1] = codes[j, i]
        gid, first = group_rows(keys)
        out = np.empty((first.shape[0], m + 1), np.int64)
        for g in range(first.shape[0]):
            out[g] = keys[first[g]]
        return gid, out
    table = np.full(cells, -1, np.int64)
    gid = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    ng = 0
    for i in range(n):
        cell = w[i] - lo[0]
        for j in range(m):
            cell = cell * span[j + 1] + (codes[j, i] - lo[j + 1])
        g = table[cell]
        if g < 0:
            g = ng
            table[cell] = g
            first[ng] = i
            ng += 1
        gid[i] = g
    out = np.empty((ng, m + 1), np.int64)
    for g in range(ng):
        out[g, 0] = w[first[g]]
        for j in range(m):
            out[g, j + 1] = codes[j, first[g]]
    return gid, out


@njit
def latency_us(start_us, end_us, status, delivered, end_valid):
    """end − start (float µs) of rows whose status is ``delivered`` and that have an
    end time; NaN (absent) for every other row."""
    n = start_us.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        if status[i] == delivered and end_valid[i]:
            out[i] = end_us[i] - start_us[i]
        else:
            out[i] = np.nan
    return out


@njit
def accumulate_counts(gid, n_groups, status, sip, duration_ms, short_ms, mos, loss):
    """Per-group counters. Sentinels: status -1 = none/unknown, sip -1 = null,
    duration null = 0, mos/loss NaN = null."""
    counts = np.zeros((n_groups, N_COUNTERS), np.int64)
    for i in range(gid.shape[0]):
        g = gid[i]
        counts[g, RECORDS] += 1
        s = status[i]
        if s >= 0 and s < N_STATUS_COUNTED:
            counts[g, STATUS0 + s] += 1
        d = duration_ms[i]
        counts[g, DUR_TOTAL_MS] += d
        if s == ANSWERED_CODE:
            counts[g, DUR_ANSWERED_MS] += d
            if d < short_ms:
                counts[g, SHORT] += 1
        c = sip[i]
        if c >= 0:
            counts[g, SIP_N] += 1
            if c >= 300 and c < 400:
                counts[g, SIP_3XX] += 1
            elif c == 401 or c == 402 or c == 407:
                counts[g, SIP_AUTH] += 1
            if c == 200:
                counts[g, SIP_200] += 1
            if c == 200 or c == 480 or c == 486 or c == 600 or c == 603:
                counts[g, SEER_NUM] += 1
            if c == 408 or c == 500 or c == 503 or c == 504:
                counts[g, ISA_NUM] += 1
        v = mos[i]
        if math.isfinite(v) and abs(v) <= FIXED_POINT_LIMIT:
            counts[g, MOS_N] += 1
            counts[g, MOS_SUM] += np.int64(math.floor(v * FIXED_POINT + 0.5))
        v = loss[i]
        if math.isfinite(v) and abs(v) <= FIXED_POINT_LIMIT:
            counts[g, LOSS_N] += 1
            counts[g, LOSS_SUM] += np.int64(math.floor(v * FIXED_POINT + 0.5))
    return counts


@njit
def add_rows(target, rows, index):
    """target[index[i]] += rows[i]; ``index`` may repeat (many-to-one regrouping)."""
    for i in range(rows.shape[0]):
        t = index[i]
        for j in range(rows.shape[1]):
            target[t, j] += rows[i, j]


@njit
def with_nulls(values, valid, null, out):
    """``out[i] = values[i]`` where ``valid[i]``, else ``null``: one vectorized select
    (NumPy's where and copyto(where=) take twenty times longer)."""
    for i in range(out.shape[0]):
        out[i] = values[i] if valid[i] else null
