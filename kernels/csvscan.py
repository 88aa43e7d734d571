"""The fields a reader keeps from a range of a CSV file, when the range is regular.

A regular range is what CDR writers (Asterisk's cdr_csv, FreeSWITCH's cdr_csv,
Kamailio's acc) produce: records of exactly ``width`` fields ending in ``\\n``, a
field either bare (no quote, CR or NUL) or quoted from its first byte to a quote
followed by the delimiter or the line's end, quotes doubled inside, no NUL, and
no byte above 0x7F in a kept field. :func:`scan` gives up (-1) on anything else —
a blank line, another width, a CR outside quotes, text after a closing quote, a
quote still open at the end — and the caller reads the range the general way.

Callers guarantee: ``data`` is the range's bytes, starting at a record boundary;
``column[f]`` is the output column of field f (-1: not kept), for the ``width``
fields; ``delimiter`` is one ASCII byte other than ``"``, CR and LF.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.intern import HIGH, ONES, word

QUOTE = 34
LF = 10
CR = 13
_QUOTES = ONES * np.uint64(QUOTE)


@njit(_nrt=False)
def _quoted_end(data, i, kept):
    """From ``i`` inside a quoted field, the first byte that is a quote, a NUL or,
    in a kept field, above 0x7F; eight bytes at a time (a byte is zero in
    ``x`` iff ``(x - 0x01…) & ~x`` has its top bit set, exactly in the lowest one)."""
    n = len(data)
    while i + 8 <= n:
        w = word(data, i)
        q = w ^ _QUOTES
        special = ((q - ONES) & ~q) | ((w - ONES) & ~w)
        if kept:
            special |= w
        if special & HIGH:
            break
        i += 8
    while i < n:
        b = data[i]
        if b == QUOTE or b == 0 or (kept and b > 0x7F):
            return i
        i += 1
    return n


@njit
def _grown(array, rows):
    out = np.empty((array.shape[0], rows), array.dtype)
    out[:, : array.shape[1]] = array
    return out


@njit
def scan(data, delimiter, column, width, starts, ends, sizes):
    """``(records, starts, ends, sizes)``: per kept column and record, where the
    field's text is (``data[start:end]``, quotes doubled) and its length once
    undoubled (0: an empty field); ``records`` is -1 when the range is not regular.
    The arrays passed in (int32, one row per kept column) are filled, or replaced
    by larger ones when the range has more records than they have columns."""
    n = len(data)
    rows = starts.shape[1]
    records = 0
    i = 0
    while i < n:
        if records == rows:
            rows = 2 * rows + 16
            starts, ends, sizes = _grown(starts, rows), _grown(ends, rows), _grown(sizes, rows)
        f = 0
        while True:
            if f == width:
                return -1, starts, ends, sizes  # more fields than the width
            c = column[f]
            if i < n and data[i] == QUOTE:
                i += 1
                s = i
                doubled = 0
                while True:
                    i = _quoted_end(data, i, c >= 0)
                    if i >= n or data[i] != QUOTE:
                        return -1, starts, ends, sizes  # still open, a NUL, or not ASCII
                    if i + 1 < n and data[i + 1] == QUOTE:
                        doubled += 1
                        i += 2
                        continue
                    break
                e = i
                i += 1
                size = e - s - doubled
            else:
                s = i
                while i < n:
                    b = data[i]
                    if b == delimiter or b == LF:
                        break
                    if b == QUOTE or b == CR or b == 0 or (b > 0x7F and c >= 0):
                        return -1, starts, ends, sizes
                    i += 1
                e = i
                size = e - s
            if c >= 0:
                starts[c, records] = np.int32(s)
                ends[c, records] = np.int32(e)
                sizes[c, records] = np.int32(size)
            f += 1
            if i >= n:
                break  # the last record, without a line feed
            b = data[i]
            i += 1
            if b == LF:
                break
            if b != delimiter:
                return -1, starts, ends, sizes  # text after a closing quote, or a CR
        if f != width:
            return -1, starts, ends, sizes  # fewer fields (a blank line has one)
        records += 1
    return records, starts, ends, sizes


@njit(_nrt=False)
def _put(out, p, w):
    """out[p:p + 8] = the bytes of ``w``, little-endian (one store)."""
    q = np.uint64(p)
    for k in range(8):
        out[q + np.uint64(k)] = np.uint8((w >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit
def gather(data, starts, ends, sizes, records, bases, offsets, out):
    """The kept columns of the first ``records`` records as Arrow string columns:
    column c's bytes go to ``out`` from ``bases[c]`` on (the columns one after
    another, then 8 spare bytes), its offsets (from 0) to ``offsets[c]``
    (``records + 1`` int32); quotes undoubled. Fields are copied eight bytes at a
    time: what a copy writes past a field's end, the next one overwrites (the
    columns are written in order, the last into the spare bytes)."""
    n = len(data)
    for c in range(starts.shape[0]):
        a = bases[c]
        offsets[c, 0] = 0
        for r in range(records):
            s = starts[c, r]
            e = ends[c, r]
            j = s
            if sizes[c, r] == e - s:
                while j < e and j + 8 <= n:
                    _put(out, a, word(data, j))
                    a += 8
                    j += 8
                if j > e:
                    a -= j - e
                    j = e
                while j < e:
                    out[a] = data[j]
                    a += 1
                    j += 1
            else:
                while j < e:
                    out[a] = data[j]
                    a += 1
                    j += 2 if data[j] == QUOTE else 1
            offsets[c, r + 1] = a - bases[c]
