"""The common forms of CDR fields read straight from Arrow string buffers.

Each kernel takes the one form CDR writers use and answers False at the first row
in any other form, so that its caller reads the batch the general way (Arrow's
casts, regexes and their reasons): a kernel never decides what is valid, only
reads what is plainly so, exactly as Arrow's cast reads it.

Callers guarantee: ``offsets``/``data``/``valid`` are views of one Arrow string
array (``telemetry.arrowstr.string_views``); ``out`` has one slot per row (a null
row's slot is left as it was).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.intern import HIGH, ONES, word


@njit(_nrt=False)
def _digits(data, s, count):
    """The value of ``count`` ASCII digits from ``data[s]``, or -1 if one is not a digit."""
    value = 0
    for k in range(count):
        d = np.int64(data[s + k]) - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value


@njit(_nrt=False)
def _days_from_civil(y, m, d):
    """Days from 1970-01-01 to a proleptic Gregorian date of year 1 or later (H.
    Hinnant's algorithm; unsigned, so that dividing by constants is a multiply)."""
    yy = np.uint64(y - 1 if m <= 2 else y)
    era = yy // np.uint64(400)
    yoe = yy - era * np.uint64(400)
    mp = np.uint64(m + 9 if m <= 2 else m - 3)
    doy = (np.uint64(153) * mp + np.uint64(2)) // np.uint64(5) + np.uint64(d - 1)
    doe = yoe * np.uint64(365) + yoe // np.uint64(4) - yoe // np.uint64(100) + doy
    return np.int64(era * np.uint64(146097) + doe) - 719468


@njit(_nrt=False)
def _month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m == 4 or m == 6 or m == 9 or m == 11 else 31


@njit(_nrt=False)
def wall_clock(offsets, data, valid, out):
    """``out[i]``: row i as microseconds since 1970-01-01 00:00:00 of the same wall
    clock, for rows ``YYYY-MM-DD hh:mm:ss`` (or ``T`` between date and time) of a
    real date and time in years 1 to 9999. False at the first row not so. CDRs
    come about in time order: a row with the last row's date reuses its day."""
    date = np.uint64(0)  # bytes 0-7 of the last date read, and bytes 2-9
    tail = np.uint64(0)
    days = np.int64(0)
    for i in range(len(valid)):
        if not valid[i]:
            continue
        s = np.int64(offsets[i])
        if np.int64(offsets[i + 1]) - s != 19:
            return False
        if data[s + 10] != 32 and data[s + 10] != 84:
            return False  # space or T
        if data[s + 13] != 58 or data[s + 16] != 58:
            return False  # : :
        head = word(data, s)
        more = word(data, s + 2)
        if head != date or more != tail:
            if data[s + 4] != 45 or data[s + 7] != 45:
                return False  # - -
            y = _digits(data, s, 4)
            m = _digits(data, s + 5, 2)
            d = _digits(data, s + 8, 2)
            if y < 1 or m < 1 or m > 12 or d < 1 or d > _month_days(y, m):
                return False
            days = _days_from_civil(y, m, d)
            date = head
            tail = more
        hh = _digits(data, s + 11, 2)
        mm = _digits(data, s + 14, 2)
        ss = _digits(data, s + 17, 2)
        if hh < 0 or hh > 23 or mm < 0 or mm > 59 or ss < 0 or ss > 59:
            return False
        out[i] = (((days * 24 + hh) * 60 + mm) * 60 + ss) * 1000000
    return True


@njit(_nrt=False)
def plain_uints(offsets, data, valid, out):
    """``out[i]``: row i's value, for rows of 1 to 18 ASCII digits. False at the first
    row not so."""
    for i in range(len(valid)):
        if not valid[i]:
            continue
        s = np.int64(offsets[i])
        count = np.int64(offsets[i + 1]) - s
        if count < 1 or count > 18:
            return False
        value = _digits(data, s, count)
        if value < 0:
            return False
        out[i] = value
    return True


@njit(_nrt=False)
def ascii_only(data, lo, hi):
    """Whether ``data[lo:hi]`` holds only bytes below 0x80 (so is UTF-8), eight at a time."""
    seen = np.uint64(0)
    i = lo
    while i + 8 <= hi:
        seen |= word(data, i)
        i += 8
    while i < hi:
        seen |= np.uint64(data[i])
        i += 1
    return (seen & HIGH) == 0


@njit(_nrt=False)
def _all_hex(w):
    """Whether all 8 bytes of ``w`` are ASCII hex digits: for a byte v < 0x80,
    v + (0x80 - lo) has its top bit set iff v >= lo, and no sum carries into the
    next byte."""
    folded = w | (ONES * np.uint64(0x20))  # A-F as a-f
    digit = (w + ONES * np.uint64(0x80 - 48)) & ~(w + ONES * np.uint64(0x7F - 57)) & HIGH
    letter = (folded + ONES * np.uint64(0x80 - 97)) & ~(folded + ONES * np.uint64(0x7F - 102)) & HIGH
    return ((digit | letter) == HIGH) and (w & HIGH) == 0


@njit(_nrt=False)
def _same_head(data, a, b, size):
    """data[a:a + size] == data[b:b + size], eight bytes at a time, the last eight first
    (trunk names differ at their ends: carrier-a, carrier-b). Each head is followed
    by its 9-byte counter, so a word read past its end stays inside its row."""
    if size < 8:
        mask = (np.uint64(1) << np.uint64(8 * size)) - np.uint64(1)
        return ((word(data, a) ^ word(data, b)) & mask) == 0
    if word(data, a + size - 8) != word(data, b + size - 8):
        return False
    for j in range(0, size - 8, 8):
        if word(data, a + j) != word(data, b + j):
            return False
    return True


@njit(_nrt=False)
def channel_heads(offsets, data, valid, firsts, codes):
    """Channel names ending in ``-`` and 8 hex digits (a SIP or PJSIP channel's
    counter), grouped by what precedes the counter: ``codes[i]`` numbers row i's
    head among the distinct heads in the order first met, ``firsts[k]`` is the first
    row with head k; -1 for the other rows. CDRs name few trunks: a head is looked
    for among the known ONES, the last row's first. Returns the number of heads, or
    -1 when there are more than ``len(firsts)``."""
    count = 0
    last = -1
    for i in range(len(valid)):
        codes[i] = -1
        if not valid[i]:
            continue
        s = np.int64(offsets[i])
        e = np.int64(offsets[i + 1])
        if e - s < 9 or data[e - 9] != 45 or not _all_hex(word(data, e - 8)):
            continue
        size = e - 9 - s
        code = -1
        for step in range(count + 1):
            k = last if step == 0 else step - 1
            if k < 0 or (step > 0 and k == last):
                continue
            a = np.int64(offsets[firsts[k]])
            if np.int64(offsets[firsts[k] + 1]) - 9 - a == size and _same_head(data, a, s, size):
                code = k
                break
        if code < 0:
            if count == len(firsts):
                return -1
            firsts[count] = i
            code = count
            count += 1
        codes[i] = code
        last = code
    return count
