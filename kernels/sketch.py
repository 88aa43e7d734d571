"""Mergeable per-group sketches: log-bucket quantile histograms and distinct sets.

Quantile histograms are stored as sorted unique int64 keys ``group << 23 | code``
with int64 counts, where ``code`` orders buckets by value (negative buckets,
the zero bucket, positive buckets). Distinct sets are CSR arrays (``off``,
``vals``) of sorted unique uint64 pseudonym prefixes per group, plus
HyperLogLog registers for groups above the exact limit.

Callers guarantee: key arrays are sorted and unique where a kernel says so;
group ids are within ``n_groups``; ``vals`` are uint64.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit

# --- quantile histograms (DDSketch's logarithmic mapping) -------------------

ALPHA = 0.005  # relative accuracy of a bucket's representative; half the 1% budget
GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
LN_GAMMA = math.log(GAMMA)
INV_LN_GAMMA = 1.0 / LN_GAMMA
CODE_BITS = 23
CODE_MASK = (1 << CODE_BITS) - 1
IDX_OFF = 1 << 20  # bucket indices are clipped to [-2^20, 2^20): beyond float64's range anyway
ZERO_CODE = 1 << 21


@njit
def bucket_code(x):
    # Only 0 has its own (exact) bucket: any other magnitude, subnormals included,
    # gets a signed log index, so values below 1 keep the same relative accuracy.
    a = abs(x)
    if a == 0.0:
        return ZERO_CODE
    if math.isinf(a):
        i = np.int64(IDX_OFF - 1)
    else:
        i = np.int64(math.ceil(math.log(a) * INV_LN_GAMMA))
    if i < -IDX_OFF:
        i = -IDX_OFF
    elif i >= IDX_OFF:
        i = IDX_OFF - 1
    if x > 0:
        return ZERO_CODE + 1 + (i + IDX_OFF)
    return ZERO_CODE - 1 - (i + IDX_OFF)


@njit
def bucket_value(code):
    """The representative 2·γ^i/(γ+1) of bucket (γ^(i-1), γ^i]: relative error ≤ ALPHA."""
    if code == ZERO_CODE:
        return 0.0
    if code > ZERO_CODE:
        i = code - ZERO_CODE - 1 - IDX_OFF
        return 2.0 * math.exp(i * LN_GAMMA) / (GAMMA + 1.0)
    i = ZERO_CODE - 1 - code - IDX_OFF
    return -2.0 * math.exp(i * LN_GAMMA) / (GAMMA + 1.0)


SMALL = 48  # segments up to this length are insertion-sorted: no allocation, few moves


@njit
def _insertion_sort2(c, w, a, b):
    """Sort c[a:b] ascending, carrying w along."""
    for i in range(a + 1, b):
        cv = c[i]
        wv = w[i]
        j = i - 1
        while j >= a and c[j] > cv:
            c[j + 1] = c[j]
            w[j + 1] = w[j]
            j -= 1
        c[j + 1] = cv
        w[j + 1] = wv


@njit
def _grouped(gids, codes, weights, n_groups):
    """Sorted unique keys ``g << CODE_BITS | code`` with summed weights. A stable
    counting sort by group, then a sort only of segments not already in order:
    linear when a whole sorted run moves to a new group (merges, renumbering)."""
    n = gids.shape[0]
    start = np.zeros(n_groups + 1, np.int64)
    for i in range(n):
        start[gids[i] + 1] += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    c = np.empty(n, np.int64)
    w = np.empty(n, np.int64)
    for i in range(n):
        p = fill[gids[i]]
        c[p] = codes[i]
        w[p] = weights[i]
        fill[gids[i]] += 1
    out_k = np.empty(n, np.int64)
    out_c = np.empty(n, np.int64)
    k = 0
    for g in range(n_groups):
        _sort_segment(c, w, start[g], start[g + 1])
        k = _append_summed(c, w, start[g], start[g + 1], start[g + 1], g, out_k, out_c, k)
    return out_k[:k].copy(), out_c[:k].copy()


@njit
def _sort_segment(c, w, a, b):
    """Sort codes c[a:b] ascending, carrying weights w along; nothing to do when in order."""
    for t in range(a + 1, b):
        if c[t] < c[t - 1]:
            break
    else:
        return
    if b - a <= SMALL:
        _insertion_sort2(c, w, a, b)
    elif b - a < (1 << 20):
        # pack (code, position) so one plain sort orders codes and finds their weights
        packed = np.empty(b - a, np.int64)
        for t in range(a, b):
            packed[t - a] = (c[t] << 20) | (t - a)
        packed.sort()
        ws = w[a:b].copy()
        for t in range(b - a):
            c[a + t] = packed[t] >> 20
            w[a + t] = ws[packed[t] & 0xFFFFF]
    else:
        order = np.argsort(c[a:b], kind="mergesort")
        cs = c[a:b][order]
        ws = w[a:b][order]
        c[a:b] = cs
        w[a:b] = ws


@njit
def _append_summed(c, w, a, m, b, g, out_k, out_c, k):
    """Append group g's codes, the sorted runs c[a:m] and c[m:b] merged (m = b: one run),
    as keys at out_k[k:], summing equal ones; the new k."""
    i = a
    j = m
    while i < m or j < b:
        if j >= b or (i < m and c[i] <= c[j]):
            t = i
            i += 1
        else:
            t = j
            j += 1
        key = (g << CODE_BITS) | c[t]
        if k > 0 and out_k[k - 1] == key:
            out_c[k - 1] += w[t]
        else:
            out_k[k] = key
            out_c[k] = w[t]
            k += 1
    return k


#: A histogram is counted in a dense (group × code) table when the table has at most
#: this many cells per value (plus DENSE_SLACK, a table the cache holds whatever the
#: values); else its values' cells are sorted (:func:`_sorted_cells`), linear too. A
#: batch's table is mostly empty: a few thousand groups times a metric's few hundred
#: codes, 10-100 cells per value, tens of MB. Per-batch histograms of transit and
#: retail days (4 M-record benchmark files, 8 to 9 thousand groups, 80 to 170 thousand values):
#: 1.4-1.7 ms sorted, where the table took 5.4-8.4 ms and the sorting by group
#: (_grouped) 2.5-7.4 ms. At 2 cells per value the table is faster (1.1 vs 1.4 ms for
#: 170 thousand values), at 8 slower (2.6 vs 1.2 ms).
DENSE_CELLS = 4
DENSE_SLACK = 1 << 16


@njit
def histogram(gid, values, n_groups):
    """Histogram keys and counts of ``values`` (float64; NaN = absent) per group."""
    n = values.shape[0]
    gids = np.empty(n, np.int64)
    codes = np.empty(n, np.int64)
    k = 0
    lo = np.int64(1) << CODE_BITS  # the range of codes other than zero's, which sits apart
    hi = np.int64(-1)
    for i in range(n):
        v = values[i]
        if not math.isnan(v):
            c = bucket_code(v)
            gids[k] = gid[i]
            codes[k] = c
            if c != ZERO_CODE:
                lo = min(lo, c)
                hi = max(hi, c)
            k += 1
    if hi < lo:
        lo = hi = np.int64(ZERO_CODE)  # zeros only (with both signs, zero lies inside the range)
    if n_groups * (hi - lo + 2) <= DENSE_CELLS * k + DENSE_SLACK:
        return _dense(gids[:k], codes[:k], lo, hi - lo + 1, n_groups)
    return _sorted_cells(gids[:k], codes[:k], lo, hi - lo + 1, n_groups)


@njit
def _cell(c, lo, span):
    """The place of code ``c`` among a group's ``span + 1`` cells: codes lo … lo + span - 1
    in order, and zero's code, when outside that range, before them (it is below lo) or
    after them (above). Cells in order are codes in order."""
    zero_first = ZERO_CODE < lo
    if c == ZERO_CODE and not (lo <= c < lo + span):
        return 0 if zero_first else span
    return c - lo + (1 if zero_first else 0)


@njit
def _cell_code(t, lo, span):
    """The code of cell ``t`` (:func:`_cell`'s inverse)."""
    t -= 1 if ZERO_CODE < lo else 0
    return ZERO_CODE if (t < 0 or t == span) else t + lo


@njit
def _dense(gids, codes, lo, span, n_groups):
    """Sorted unique keys and counts by counting in a table: per group, the cells of
    codes lo … lo + span - 1 and one for zero's code when that lies outside (:func:`_cell`)."""
    width = span + 1
    table = np.zeros(n_groups * width, np.int32)  # counts of one call's values: below 2^31
    for i in range(gids.shape[0]):
        table[gids[i] * width + _cell(codes[i], lo, span)] += 1
    m = 0
    for cell in range(table.shape[0]):
        if table[cell]:
            m += 1
    out_k = np.empty(m, np.int64)
    out_c = np.empty(m, np.int64)
    j = 0
    for g in range(n_groups):
        for cell in range(g * width, (g + 1) * width):
            if table[cell]:
                out_k[j] = (g << CODE_BITS) | _cell_code(cell - g * width, lo, span)
                out_c[j] = table[cell]
                j += 1
    return out_k, out_c


#: Bits of the cell numbers one pass of :func:`_sorted_cells` sorts by: its 2^11 counters
#: stay in the core's first-level cache.
RADIX_BITS = 11


@njit
def _sorted_cells(gids, codes, lo, span, n_groups):
    """:func:`_dense`'s keys and counts by sorting the values' cells (group × (span + 1) +
    :func:`_cell`, in order as keys are) instead of counting in the table: a least
    significant digit radix sort, RADIX_BITS a pass, then the runs of equal cells.
    Linear in the values whatever the table's size: a batch's table is mostly empty
    (thousands of groups, a few dozen values each) and larger than the cache."""
    width = span + 1
    n = gids.shape[0]
    cells = np.empty(n, np.int64)
    for i in range(n):
        cells[i] = gids[i] * width + _cell(codes[i], lo, span)
    spare = np.empty(n, np.int64)
    starts = np.empty(1 << RADIX_BITS, np.int64)
    mask = (1 << RADIX_BITS) - 1
    shift = 0
    while shift < 63 and (n_groups * width - 1) >> shift:
        starts[:] = 0
        for i in range(n):
            starts[(cells[i] >> shift) & mask] += 1
        total = 0
        for b in range(1 << RADIX_BITS):
            count = starts[b]
            starts[b] = total
            total += count
        for i in range(n):
            b = (cells[i] >> shift) & mask
            spare[starts[b]] = cells[i]
            starts[b] += 1
        cells, spare = spare, cells
        shift += RADIX_BITS
    m = 0
    for i in range(n):
        if i == 0 or cells[i] != cells[i - 1]:
            m += 1
    out_k = np.empty(m, np.int64)
    out_c = np.zeros(m, np.int64)
    j = -1
    for i in range(n):
        if i == 0 or cells[i] != cells[i - 1]:
            j += 1
            g = cells[i] // width
            out_k[j] = (g << CODE_BITS) | _cell_code(cells[i] - g * width, lo, span)
        out_c[j] += 1
    return out_k, out_c


@njit
def _block_targets(seg, gmap, n_groups):
    """Where the blocks ``[seg[g], seg[g + 1])`` land when group g moves to group
    ``gmap[g]`` (-1 drops it): each target group's start (CSR offsets) and how
    many non-empty blocks it receives."""
    start = np.zeros(n_groups + 1, np.int64)
    sources = np.zeros(n_groups, np.int64)
    for g in range(gmap.shape[0]):
        t = gmap[g]
        if t >= 0 and seg[g + 1] > seg[g]:
            start[t + 1] += seg[g + 1] - seg[g]
            sources[t] += 1
    for t in range(n_groups):
        start[t + 1] += start[t]
    return start, sources


@njit
def regroup_histogram(keys, counts, gmap, n_groups):
    """Move every bucket of group g to group gmap[g] (-1 drops it); sums duplicates.
    ``keys`` are sorted by group (any histogram, and the concatenation of several
    with increasing group bases): each group's buckets move as one block; a group
    that receives two blocks merges them, one that receives more sorts them. Linear
    when groups do not meet or meet in pairs (merging time-ordered batches)."""
    n = keys.shape[0]
    n_src = gmap.shape[0]
    seg = np.zeros(n_src + 1, np.int64)  # source group g's buckets: [seg[g], seg[g + 1])
    for i in range(n):
        seg[(keys[i] >> CODE_BITS) + 1] += 1
    for g in range(n_src):
        seg[g + 1] += seg[g]
    start, sources = _block_targets(seg, gmap, n_groups)
    fill = start[:-1].copy()
    first_end = start[1:].copy()  # where the first block a group receives ends
    c = np.empty(start[-1], np.int64)
    w = np.empty(start[-1], np.int64)
    for g in range(n_src):
        t = gmap[g]
        if t >= 0:
            p = fill[t]
            for i in range(seg[g], seg[g + 1]):
                c[p] = keys[i] & CODE_MASK
                w[p] = counts[i]
                p += 1
            if fill[t] == start[t]:
                first_end[t] = p
            fill[t] = p
    out_k = np.empty(start[-1], np.int64)
    out_c = np.empty(start[-1], np.int64)
    k = 0
    for t in range(n_groups):
        m = start[t + 1]
        if sources[t] == 2:
            m = first_end[t]
        elif sources[t] > 2:
            _sort_segment(c, w, start[t], start[t + 1])
        k = _append_summed(c, w, start[t], m, start[t + 1], t, out_k, out_c, k)
    return _trimmed(out_k, k), _trimmed(out_c, k)


@njit
def _trimmed(out, k):
    """``out[:k]`` as an array of its own (not a view keeping the rest alive)."""
    if k == out.shape[0]:
        return out
    return out[:k].copy()


@njit
def histogram_take(keys, counts, groups):
    """The buckets of ``groups`` (distinct, in any order) with group ``groups[t]``
    renumbered t: each group's run found by binary search, not a pass over every key."""
    lo = np.searchsorted(keys, groups << CODE_BITS)
    hi = np.searchsorted(keys, (groups + 1) << CODE_BITS)
    n = 0
    for t in range(groups.shape[0]):
        n += hi[t] - lo[t]
    out_k = np.empty(n, np.int64)
    out_c = np.empty(n, np.int64)
    p = 0
    for t in range(groups.shape[0]):
        for i in range(lo[t], hi[t]):
            out_k[p] = (np.int64(t) << CODE_BITS) | (keys[i] & CODE_MASK)
            out_c[p] = counts[i]
            p += 1
    return out_k, out_c


@njit
def quantiles(keys, counts, n_groups, percents):
    """Nearest-rank quantiles per group: the bucket holding rank ⌈p·n/100⌉.
    Returns (values (n_groups × len(percents)), NaN where a group is empty; n per group)."""
    out = np.full((n_groups, percents.shape[0]), np.nan)
    totals = np.zeros(n_groups, np.int64)
    i = 0
    while i < keys.shape[0]:
        g = keys[i] >> CODE_BITS
        j = i
        n = 0
        while j < keys.shape[0] and (keys[j] >> CODE_BITS) == g:
            n += counts[j]
            j += 1
        totals[g] = n
        # one scan of the group's buckets for ascending percents (a smaller rank starts over)
        t = i
        seen = counts[i]
        last = np.int64(0)
        for q in range(percents.shape[0]):
            rank = (percents[q] * n + 99) // 100  # integer ceil: no float rounding at .0
            if rank < 1:
                rank = 1
            if rank < last:
                t = i
                seen = counts[i]
            last = rank
            while seen < rank and t + 1 < j:
                t += 1
                seen += counts[t]
            if seen >= rank:
                out[g, q] = bucket_value(keys[t] & CODE_MASK)
        i = j
    return out, totals


# --- distinct sets ---------------------------------------------------------------

HLL_P = 14
HLL_M = 1 << HLL_P
HLL_Q = 64 - HLL_P


MOVES = 8  # per value, beyond which _sort_uniform takes the values for not uniform


@njit
def _sort_uniform(buf, a, b):
    """Sort ``buf[a:b]`` (uint64 pseudonym prefixes: uniform, as HMAC output is) in
    expected linear time: spread by the top bits, about one value per bucket, then
    an insertion pass that moves values only within their bucket (repeats of a value
    cost nothing). Values that are not uniform — the pass moving more than
    ``MOVES`` values per value — get the plain sort."""
    m = b - a
    bits = 1
    while (1 << bits) < m:
        bits += 1
    shift = np.uint64(64 - bits)
    count = np.zeros((1 << bits) + 1, np.int64)
    for i in range(a, b):
        count[np.int64(buf[i] >> shift) + 1] += 1
    for t in range(1 << bits):
        count[t + 1] += count[t]
    tmp = np.empty(m, np.uint64)
    for i in range(a, b):
        h = np.int64(buf[i] >> shift)
        tmp[count[h]] = buf[i]
        count[h] += 1
    budget = MOVES * m
    for i in range(1, m):
        v = tmp[i]
        j = i - 1
        while j >= 0 and tmp[j] > v:
            tmp[j + 1] = tmp[j]
            j -= 1
        tmp[j + 1] = v
        budget -= i - 1 - j
        if budget < 0:
            tmp.sort()
            break
    buf[a:b] = tmp


@njit
def distinct_build(gid, vals, n_groups):
    """CSR of sorted unique ``vals`` per group from unsorted (gid, val) pairs."""
    n = gid.shape[0]
    sizes = np.zeros(n_groups + 1, np.int64)
    for i in range(n):
        sizes[gid[i] + 1] += 1
    for g in range(n_groups):
        sizes[g + 1] += sizes[g]
    fill = sizes[:-1].copy()
    buf = np.empty(n, np.uint64)
    for i in range(n):
        g = gid[i]
        buf[fill[g]] = vals[i]
        fill[g] += 1
    off = np.zeros(n_groups + 1, np.int64)
    k = 0
    for g in range(n_groups):
        a = sizes[g]
        b = sizes[g + 1]
        in_order = True  # a group from one part of a merge arrives sorted already
        for t in range(a + 1, b):
            if buf[t] < buf[t - 1]:
                in_order = False
                break
        if in_order:
            pass
        elif b - a <= SMALL:
            for i in range(a + 1, b):  # insertion sort: no allocation for small groups
                v = buf[i]
                j = i - 1
                while j >= a and buf[j] > v:
                    buf[j + 1] = buf[j]
                    j -= 1
                buf[j + 1] = v
        else:
            _sort_uniform(buf, a, b)
        for t in range(a, b):
            if t == a or buf[t] != buf[k - 1]:
                buf[k] = buf[t]
                k += 1
        off[g + 1] = k
    return off, buf[:k].copy()


@njit
def csr_regroup(off, vals, gmap, n_groups):
    """CSR sets regrouped: group g's sorted unique run moves as one block to group
    ``gmap[g]`` (-1 drops it); a group that receives two runs merges them, one that
    receives more sorts them, each value kept once. Linear when groups do not meet or
    meet in pairs (merging time-ordered batches)."""
    n_src = off.shape[0] - 1
    start, sources = _block_targets(off, gmap, n_groups)
    fill = start[:-1].copy()
    first_end = start[1:].copy()  # where the first run a group receives ends
    buf = np.empty(start[-1], np.uint64)
    for g in range(n_src):
        t = gmap[g]
        if t >= 0:
            p = fill[t]
            for i in range(off[g], off[g + 1]):
                buf[p] = vals[i]
                p += 1
            if fill[t] == start[t]:
                first_end[t] = p
            fill[t] = p
    out = np.empty(start[-1], np.uint64)
    new_off = np.zeros(n_groups + 1, np.int64)
    k = 0
    for t in range(n_groups):
        m = start[t + 1]
        if sources[t] == 2:
            m = first_end[t]
        elif sources[t] > 2:
            _sort_uniform(buf, start[t], start[t + 1])
        k = _append_unique(buf, start[t], m, start[t + 1], out, k)
        new_off[t + 1] = k
    return new_off, _trimmed(out, k)


@njit
def _append_unique(buf, a, m, b, out, k):
    """Append the sorted runs buf[a:m] and buf[m:b] merged (m = b: one run) at out[k:],
    each value once; the new k."""
    first = k
    i = a
    j = m
    while i < m or j < b:
        if j >= b or (i < m and buf[i] <= buf[j]):
            v = buf[i]
            i += 1
        else:
            v = buf[j]
            j += 1
        if k == first or out[k - 1] != v:
            out[k] = v
            k += 1
    return k


@njit
def csr_take(off, vals, groups):
    """The sets of ``groups`` (in that order) as a new CSR."""
    new_off = np.zeros(groups.shape[0] + 1, np.int64)
    for t in range(groups.shape[0]):
        g = groups[t]
        new_off[t + 1] = new_off[t] + off[g + 1] - off[g]
    out = np.empty(new_off[-1], np.uint64)
    for t in range(groups.shape[0]):
        g = groups[t]
        out[new_off[t] : new_off[t + 1]] = vals[off[g] : off[g + 1]]
    return new_off, out


@njit
def hll_max_rows(out, rows, regs):
    """out[rows[i]] = max(out[rows[i]], regs[i]) register by register."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(regs.shape[1]):
            if regs[i, j] > out[r, j]:
                out[r, j] = regs[i, j]


@njit
def hll_add(regs, row, vals):
    """Insert 64-bit uniform hashes into register row ``row``: index = top P bits,
    rank = 1 + leading zeros of the remaining Q bits (Q + 1 when all are 0)."""
    top = np.uint64(1) << np.uint64(63)
    for t in range(vals.shape[0]):
        v = vals[t]
        idx = np.int64(v >> np.uint64(HLL_Q))
        w = v << np.uint64(HLL_P)
        rank = 1
        while rank <= HLL_Q and (w & top) == 0:
            rank += 1
            w = w << np.uint64(1)
        if rank > regs[row, idx]:
            regs[row, idx] = rank


@njit
def _sigma(x):
    if x == 1.0:
        return np.inf
    y = 1.0
    z = x
    while True:
        x = x * x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


@njit
def _tau(x):
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0


#: Histograms :func:`hll_estimate` counts a row's registers into, register j into lane
#: j % HLL_LANES: consecutive registers of equal rank (most are) then increment different
#: counters, where one histogram makes each increment wait for the one before (1-2.6 ns
#: a register, 0.3 ns with 8 lanes).
HLL_LANES = 8


@njit
def hll_estimate(regs):
    """Ertl's improved raw estimator (arXiv:1702.01284, algorithm 6) per register
    row: no bias tables, accurate from small to very large cardinalities."""
    h = regs.shape[0]
    out = np.empty(h, np.float64)
    m = float(HLL_M)
    lanes = np.zeros((HLL_LANES, 256), np.int32)  # any uint8 is a column: no index out of range
    hist = np.zeros(HLL_Q + 2, np.int64)
    for r in range(h):
        lanes[:] = 0
        for j in range(0, HLL_M, HLL_LANES):
            for t in range(HLL_LANES):
                lanes[t, regs[r, j + t]] += 1
        for v in range(HLL_Q + 2):
            hist[v] = 0
            for t in range(HLL_LANES):
                hist[v] += lanes[t, v]
        z = m * _tau(1.0 - hist[HLL_Q + 1] / m)
        for k in range(HLL_Q, 0, -1):
            z = 0.5 * (z + hist[k])
        z = z + m * _sigma(hist[0] / m)
        out[r] = m * m / (2.0 * math.log(2.0)) / z
    return out
