"""A table of distinct byte strings that lasts across batches: each row of an
Arrow string chunk → the number of its value, new values numbered as they come.

Callers guarantee: ``offsets``/``data``/``valid`` are views of one Arrow string
chunk (``telemetry.arrowstr.string_views``); ``slots``, ``starts``, ``arena`` and
``fill`` come from :func:`empty` or an earlier call, and the arrays a call
returns replace the ones passed in (they grow as values are added).

A table only grows: a value keeps its number and its slot, and a value's probe
sequence holds, before it, only values added before it. So a lookup that reads
the table while another call adds to it (``insert`` False, :func:`intern`) is
exact for the values numbered below a count taken before: it stops at an empty
slot or at a value numbered since, which can only lie past the value it seeks.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit

EMPTY = -1
TODO = -2  # a row whose number a lookup (insert False) did not find


#: Eight bytes at a time: ``ONES * b`` is byte b in every lane, ``HIGH`` each lane's top bit.
ONES = np.uint64(0x0101010101010101)
HIGH = np.uint64(0x8080808080808080)


@njit(_nrt=False)
def word(data, p):
    """data[p:p + 8] as a little-endian uint64 (the kernels' eight-bytes-at-a-time
    reads). LLVM turns the eight loads into one when the indices are unsigned (no
    wraparound check for negative ones)."""
    q = np.uint64(p)
    w = np.uint64(0)
    for k in range(8):
        w |= np.uint64(data[q + np.uint64(k)]) << np.uint64(8 * k)
    return w


@njit(_nrt=False)
def _hash(data, s, e):
    """A multiply-xor hash of data[s:e], eight bytes at a time, finished with
    MurmurHash3's fmix64 so that the low bits (the table index) are well mixed."""
    h = np.uint64(e - s) * np.uint64(0x9E3779B97F4A7C15)
    p = s
    while p + 8 <= e:
        h = (h ^ word(data, p)) * np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(32)
        p += 8
    tail = np.uint64(0)
    if p < e and e - s >= 8:  # the last eight bytes, those mixed above shifted out: one load
        tail = word(data, e - 8) >> np.uint64(8 * (8 - (e - p)))
    else:
        shift = np.uint64(0)
        while p < e:
            tail |= np.uint64(data[p]) << shift
            shift += np.uint64(8)
            p += 1
    h = (h ^ tail) * np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@njit(_nrt=False)
def _equal(x, i, y, j, n):
    """x[i:i+n] == y[j:j+n], eight bytes at a time."""
    k = 0
    while k + 8 <= n:
        if word(x, i + k) != word(y, j + k):
            return False
        k += 8
    while k < n:
        if x[i + k] != y[j + k]:
            return False
        k += 1
    return True


def empty(slots: int = 1 << 16, arena_bytes: int = 1 << 20) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An empty table: ``slots`` (power of two; 31 hash bits << 32 | number, -1
    empty), ``starts`` (value m is ``arena[starts[m]:starts[m + 1]]``), ``arena``
    and ``fill`` ([values, arena bytes used])."""
    return (
        np.full(slots, EMPTY, np.int64),
        np.zeros(slots // 2 + 1, np.int64),
        np.empty(arena_bytes, np.uint8),
        np.zeros(2, np.int64),
    )


@njit(_nrt=False)
def _place(slots, h, number):
    """Put ``number`` (hash ``h``) into the first free slot of its probe sequence."""
    mask = np.uint64(len(slots) - 1)
    slot = np.int64(h & mask)
    while slots[slot] != EMPTY:
        slot = (slot + 1) & (len(slots) - 1)
    slots[slot] = (np.int64(h >> np.uint64(33)) << 32) | number


@njit
def _grown_slots(slots, starts, arena, count):
    """A table twice as large holding the same ``count`` values."""
    bigger = np.full(2 * len(slots), EMPTY, np.int64)
    _placed(bigger, starts, arena, count)
    return bigger


@njit(_nrt=False)
def _placed(slots, starts, arena, count):
    for m in range(count):
        _place(slots, _hash(arena, starts[m], starts[m + 1]), m)


@njit
def _grown(array, need):
    out = np.empty(max(2 * len(array), need), array.dtype)
    out[: len(array)] = array
    return out


@njit
def sample(offsets, data, valid, bits, rows):
    """Writes to ``rows`` the rows whose value's hash has its top ``bits`` bits zero
    (about one value in 2^bits, and a value wherever it occurs: a value sample, not
    a row sample); returns how many. Nulls are never taken."""
    return _sampled(offsets, data, valid, bits, rows)


@njit(_nrt=False)
def _sampled(offsets, data, valid, bits, rows):
    # sample's loop, compiled without reference counting (see _rows)
    k = 0
    top = np.uint64(64 - bits)
    for i in range(len(valid)):
        if valid[i] and _hash(data, np.int64(offsets[i]), np.int64(offsets[i + 1])) >> top == 0:
            rows[k] = i
            k += 1
    return k


#: Rows looked up per block: the lines a block's lookups touch (slots, starts and
#: bytes of up to 3 × BLOCK values) stay in the core's cache until its lookups run.
BLOCK = 64


@njit(_nrt=False)
def _warm(offsets, data, valid, slots, starts, arena, count, hashes, lo, hi):
    """Hash rows lo … hi - 1, then load the lines their lookups will touch, one pass
    per level: loads that do not wait on each other overlap, where a lookup's three
    dependent misses (slot, start, bytes) would be paid one after another. Values
    numbered from ``count`` on are not touched (a lookup's ``starts`` may predate them)."""
    mask = np.uint64(len(slots) - 1)
    for i in range(lo, hi):
        hashes[i] = _hash(data, np.int64(offsets[i]), np.int64(offsets[i + 1])) if valid[i] else np.uint64(0)
    acc = np.int64(0)
    for i in range(lo, hi):
        acc += slots[np.int64(hashes[i] & mask)]
    for i in range(lo, hi):
        v = slots[np.int64(hashes[i] & mask)]
        if v >= 0 and (v & 0xFFFFFFFF) < count:
            acc += starts[v & 0xFFFFFFFF]
    for i in range(lo, hi):
        v = slots[np.int64(hashes[i] & mask)]
        if v >= 0 and (v & 0xFFFFFFFF) < count:
            acc += arena[starts[v & 0xFFFFFFFF]]
    return acc


@njit
def intern(offsets, data, valid, slots, starts, arena, fill, number, insert):
    """``number[i]`` = the number of row i's bytes (-1 for a null row); values not
    seen before get the next numbers, from ``fill[0]`` on. Returns the table's
    ``slots``, ``starts`` and ``arena`` (new arrays when they had to grow).

    With ``insert`` False nothing is written but ``number``: a value not among the
    first ``fill[0]`` gets TODO. Such a lookup may run while one call with ``insert``
    adds to the same table (see the module docstring), given a ``fill`` of its own
    copied before, while no call was adding."""
    hashes = np.empty(len(valid), np.uint64)
    i = 0
    while True:
        i = _rows(offsets, data, valid, slots, starts, arena, fill, number, insert, hashes, i)
        if i == len(valid):
            return slots, starts, arena
        # row i is a new value the table has no room for: grow what it lacks, then go on
        size = np.int64(offsets[i + 1]) - np.int64(offsets[i])
        if fill[1] + size > len(arena):
            arena = _grown(arena, fill[1] + size)
        if fill[0] + 2 > len(starts):
            starts = _grown(starts, fill[0] + 2)
        if 2 * (fill[0] + 1) > len(slots):  # keep the load under one half
            slots = _grown_slots(slots, starts, arena, fill[0])


@njit(_nrt=False)
def _rows(offsets, data, valid, slots, starts, arena, fill, number, insert, hashes, i):
    """:func:`intern`'s loop from row ``i`` on, compiled without reference counting:
    with it, each array handed to a helper per row (``_equal``; ``_hash`` from ``_warm``)
    cost an atomic incref/decref pair, a third of a lookup's time. Returns the number of
    rows done: all of them, or the row of a new value the table must grow for first
    (``fill`` then holds the counts so far)."""
    count = fill[0]
    used = fill[1]
    while i < len(valid):
        if i % BLOCK == 0:  # (a call resumed inside a block has its rows' hashes already)
            _warm(offsets, data, valid, slots, starts, arena, count, hashes, i, min(i + BLOCK, len(valid)))
        if not valid[i]:
            number[i] = -1
            i += 1
            continue
        s = np.int64(offsets[i])
        e = np.int64(offsets[i + 1])
        h = hashes[i]
        tag = np.int64(h >> np.uint64(33))
        slot = np.int64(h & np.uint64(len(slots) - 1))
        found = -1
        while slots[slot] != EMPTY:
            v = slots[slot]
            m = v & 0xFFFFFFFF
            if m >= count:  # added since this lookup's count: what it seeks is not further on
                break
            if (v >> 32) == tag:
                a = starts[m]
                if starts[m + 1] - a == e - s and _equal(arena, a, data, s, e - s):
                    found = m
                    break
            slot = (slot + 1) & (len(slots) - 1)
        if found < 0 and not insert:
            number[i] = TODO
            i += 1
            continue
        if found < 0:
            if used + (e - s) > len(arena) or count + 2 > len(starts) or 2 * (count + 1) > len(slots):
                break
            for k in range(e - s):
                arena[used + k] = data[s + k]
            used += e - s
            starts[count + 1] = used
            found = count
            count += 1
            slots[slot] = (tag << 32) | found
        number[i] = found
        i += 1
    fill[0] = count
    fill[1] = used
    return i
