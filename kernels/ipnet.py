"""Parse IPv4/IPv6 text; write the truncated network, or an address, in canonical text;
the prefix blocks and flip bits of Crypto-PAn over sorted addresses.

The address grammar follows Python's ``ipaddress`` (no leading zeros in IPv4
octets, at most one ``::``, an optional dotted IPv4 tail and ``%zone`` suffix in
IPv6); the output is what ``ipaddress.ip_network(...).compressed`` prints.
Around the address the kernel accepts what signalling logs contain: ASCII
whitespace, ``a.b.c.d:port`` and ``[v6]`` or ``[v6]:port``. IPv4-mapped IPv6
(``::ffff:a.b.c.d``) is treated as the IPv4 address it carries, so a client
seen over a dual-stack socket lands in the same network as over IPv4.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit

#: Longest output: eight 4-digit hextets, seven colons, "/128".
MAX_TEXT = 43

_COLON = 58
_DOT = 46
_SLASH = 47
_PERCENT = 37
_LBRACKET = 91
_RBRACKET = 93


@njit(inline="always")
def _is_space(c):
    return c == 32 or (c >= 9 and c <= 13)


@njit(inline="always")
def _hexval(c):
    if c >= 48 and c <= 57:
        return c - 48
    if c >= 97 and c <= 102:
        return c - 87
    if c >= 65 and c <= 70:
        return c - 55
    return -1


@njit
def parse_v4(data, s, e):
    """``(ok, value)`` of dotted-quad text ``data[s:e]``."""
    value = np.int64(0)
    octet = 0
    digits = 0
    first = 0
    dots = 0
    for p in range(s, e):
        c = np.int64(data[p])
        if c >= 48 and c <= 57:
            if digits == 0:
                first = c
            elif first == 48:  # leading zeros are ambiguous (octal or decimal)
                return False, np.int64(0)
            digits += 1
            if digits > 3:
                return False, np.int64(0)
            octet = octet * 10 + (c - 48)
        elif c == _DOT:
            if digits == 0 or octet > 255 or dots == 3:
                return False, np.int64(0)
            value = (value << 8) | octet
            dots += 1
            digits = 0
            octet = 0
        else:
            return False, np.int64(0)
    if digits == 0 or dots != 3 or octet > 255:
        return False, np.int64(0)
    return True, (value << 8) | octet


@njit
def _parse_hextet(data, s, e):
    if e <= s or e - s > 4:
        return -1
    value = 0
    for p in range(s, e):
        d = _hexval(np.int64(data[p]))
        if d < 0:
            return -1
        value = value * 16 + d
    return value


@njit
def parse_v6(data, s, e, hextets, starts, ends):
    """Parse ``data[s:e]`` into ``hextets`` (8,) int64; False if malformed.
    ``starts``/``ends`` are scratch of at least 10 entries."""
    for p in range(s, e):  # a zone id ("%eth0") does not change the address
        if data[p] == _PERCENT:
            if p + 1 == e:
                return False
            for q in range(p + 1, e):
                if data[q] == _PERCENT:
                    return False
            e = p
            break
    nparts = 0
    begin = s
    for p in range(s, e + 1):
        if p == e or data[p] == _COLON:
            if nparts == 10:
                return False
            starts[nparts] = begin
            ends[nparts] = p
            nparts += 1
            begin = p + 1
    if nparts < 3:
        return False
    v4tail = False
    for p in range(starts[nparts - 1], ends[nparts - 1]):
        if data[p] == _DOT:
            v4tail = True
    if nparts > (8 if v4tail else 9):
        return False
    # Parts as Python counts them: a dotted tail stands for two hextets.
    total = nparts + 1 if v4tail else nparts
    skip = -1
    for i in range(1, nparts - 1):
        if starts[i] == ends[i]:
            if skip >= 0:
                return False
            skip = i
    first_empty = starts[0] == ends[0]
    last_empty = starts[nparts - 1] == ends[nparts - 1]
    if skip >= 0:
        hi = skip
        lo = total - skip - 1
        if first_empty:
            hi -= 1
            if hi != 0:
                return False
        if last_empty:
            lo -= 1
            if lo != 0:
                return False
        if 8 - (hi + lo) < 1:
            return False
    else:
        if total != 8 or first_empty or last_empty:
            return False
        hi = total
        lo = 0
    for j in range(8):
        hextets[j] = 0
    # Fill the hextets before "::" from the front and those after it from the back.
    nparse = nparts - 1 if v4tail else nparts
    for i in range(nparse):
        if i < hi:
            slot = i
        elif i >= total - lo:
            slot = 8 - total + i
        else:
            continue
        value = _parse_hextet(data, starts[i], ends[i])
        if value < 0:
            return False
        hextets[slot] = value
    if v4tail:
        ok, v4 = parse_v4(data, starts[nparts - 1], ends[nparts - 1])
        if not ok:
            return False
        hextets[6] = (v4 >> 16) & 0xFFFF
        hextets[7] = v4 & 0xFFFF
    return True


@njit
def write_decimal(out, pos, value):
    """ASCII decimal of ``value`` (0–999) at ``out[pos]``; the position after it."""
    if value >= 100:
        out[pos] = 48 + value // 100
        pos += 1
    if value >= 10:
        out[pos] = 48 + (value // 10) % 10
        pos += 1
    out[pos] = 48 + value % 10
    return pos + 1


@njit
def _write_hex(out, pos, value):
    started = False
    for shift in range(12, -1, -4):
        d = (value >> shift) & 0xF
        if d != 0 or started or shift == 0:
            out[pos] = 48 + d if d < 10 else 87 + d
            pos += 1
            started = True
    return pos


@njit
def _write_v4_text(out, pos, value):
    for j in range(4):
        if j > 0:
            out[pos] = _DOT
            pos += 1
        pos = write_decimal(out, pos, (value >> (24 - 8 * j)) & 0xFF)
    return pos


@njit
def write_v4(out, pos, value, prefix):
    """Write the /prefix network of IPv4 ``value`` at ``out[pos:]``; return the end."""
    mask = (np.int64(0xFFFFFFFF) << (32 - prefix)) & 0xFFFFFFFF
    pos = _write_v4_text(out, pos, value & mask)
    out[pos] = _SLASH
    return write_decimal(out, pos + 1, prefix)


@njit
def write_v6(out, pos, hextets, prefix):
    """Write the /prefix network of ``hextets`` (modified) at ``out[pos:]``."""
    for j in range(8):
        keep = prefix - 16 * j
        if keep <= 0:
            hextets[j] = 0
        elif keep < 16:
            hextets[j] &= (0xFFFF << (16 - keep)) & 0xFFFF
    pos = _write_v6_text(out, pos, hextets)
    out[pos] = _SLASH
    return write_decimal(out, pos + 1, prefix)


@njit
def _write_v6_text(out, pos, hextets):
    # The first longest run of at least two zero hextets becomes "::" (RFC 5952).
    best_start = -1
    best_len = 0
    run_start = -1
    run_len = 0
    for j in range(8):
        if hextets[j] == 0:
            if run_len == 0:
                run_start = j
            run_len += 1
            if run_len > best_len:
                best_len = run_len
                best_start = run_start
        else:
            run_len = 0
    if best_len < 2:
        best_start = 8
        best_len = 0
    for j in range(best_start):
        if j > 0:
            out[pos] = _COLON
            pos += 1
        pos = _write_hex(out, pos, hextets[j])
    if best_len > 0:
        out[pos] = _COLON
        out[pos + 1] = _COLON
        pos += 2
        for j in range(best_start + best_len, 8):
            if j > best_start + best_len:
                out[pos] = _COLON
                pos += 1
            pos = _write_hex(out, pos, hextets[j])
    return pos


@njit
def _parse_port(data, s, e):
    if e <= s or e - s > 5:
        return False
    value = 0
    for p in range(s, e):
        c = np.int64(data[p])
        if c < 48 or c > 57:
            return False
        value = value * 10 + c - 48
    return value <= 65535


@njit
def parse_address(data, s, e, hextets, starts, ends):
    """``(kind, v4)`` of the address text ``data[s:e]``: kind 0 blank, 4 IPv4 (its
    value ``v4``), 6 IPv6 (its value in ``hextets``), -1 not an address. Whitespace
    around, a port and brackets are accepted; IPv4-mapped IPv6 is kind 4."""
    while s < e and _is_space(data[s]):
        s += 1
    while e > s and _is_space(data[e - 1]):
        e -= 1
    if s == e:
        return 0, np.int64(0)
    ok = False
    is_v4 = False
    v4 = np.int64(0)
    if data[s] == _LBRACKET:
        close = -1
        for p in range(s + 1, e):
            if data[p] == _RBRACKET:
                close = p
                break
        if close > 0 and (
            close + 1 == e
            or (data[close + 1] == _COLON and _parse_port(data, close + 2, e))
        ):
            ok = parse_v6(data, s + 1, close, hextets, starts, ends)
    else:
        colons = 0
        last_colon = -1
        for p in range(s, e):
            if data[p] == _COLON:
                colons += 1
                last_colon = p
        if colons == 0:
            ok, v4 = parse_v4(data, s, e)
            is_v4 = True
        elif colons == 1:
            if _parse_port(data, last_colon + 1, e):
                ok, v4 = parse_v4(data, s, last_colon)
                is_v4 = True
        else:
            ok = parse_v6(data, s, e, hextets, starts, ends)
    if not ok:
        return -1, np.int64(0)
    if not is_v4:
        mapped = hextets[5] == 0xFFFF
        for j in range(5):
            if hextets[j] != 0:
                mapped = False
        if not mapped:
            return 6, np.int64(0)
        v4 = (hextets[6] << 16) | hextets[7]
    return 4, v4


@njit
def truncate_rows(
    offsets, data, valid, v4_prefix, v6_prefix, out_offsets, out_data, out_valid, invalid
):
    """Truncated networks of one Arrow string chunk of IP address texts.

    Caller guarantees: ``offsets``/``data``/``valid`` as from
    ``telemetry.arrowstr.string_views``; prefixes within 0..32 and 0..128;
    ``out_offsets`` (n + 1,) int32 or int64; ``out_data`` uint8 of at least
    ``n * MAX_TEXT`` bytes; ``out_valid`` and ``invalid`` (n,) bool. Null and
    blank rows are null and not invalid; unparseable rows are null and invalid.
    """
    hextets = np.zeros(8, dtype=np.int64)
    starts = np.zeros(10, dtype=np.int64)
    ends = np.zeros(10, dtype=np.int64)
    n = valid.shape[0]
    pos = 0
    out_offsets[0] = 0
    for i in range(n):
        out_valid[i] = False
        invalid[i] = False
        if valid[i]:
            kind, v4 = parse_address(data, np.int64(offsets[i]), np.int64(offsets[i + 1]), hextets, starts, ends)
            if kind < 0:
                invalid[i] = True
            elif kind == 4:
                pos = write_v4(out_data, pos, v4, v4_prefix)
                out_valid[i] = True
            elif kind == 6:
                pos = write_v6(out_data, pos, hextets, v6_prefix)
                out_valid[i] = True
        out_offsets[i + 1] = pos
    return pos


@njit
def address_rows(offsets, data, valid, kind, words):
    """Parse one Arrow string chunk of IP address texts into 128-bit values.

    Caller guarantees: ``offsets``/``data``/``valid`` as from
    ``telemetry.arrowstr.string_views``; ``kind`` (n,) int8 receives 0 (null or
    blank), 4, 6 or -1 (not an address, see :func:`parse_address`); ``words``
    (n, 8) uint16 the eight 16-bit groups, an IPv4 address in the last two.
    """
    hextets = np.zeros(8, dtype=np.int64)
    starts = np.zeros(10, dtype=np.int64)
    ends = np.zeros(10, dtype=np.int64)
    for i in range(valid.shape[0]):
        for j in range(8):
            words[i, j] = 0
        kind[i] = 0
        if valid[i]:
            k, v4 = parse_address(data, np.int64(offsets[i]), np.int64(offsets[i + 1]), hextets, starts, ends)
            kind[i] = k
            if k == 4:
                words[i, 6] = (v4 >> 16) & 0xFFFF
                words[i, 7] = v4 & 0xFFFF
            elif k == 6:
                for j in range(8):
                    words[i, j] = hextets[j]


@njit
def format_rows(kind, words, out_offsets, out_data):
    """Text of the addresses in ``words`` (as :func:`address_rows` fills it): dotted
    quad where ``kind`` is 4, RFC 5952 text where 6, nothing elsewhere.

    Caller guarantees: ``out_offsets`` (n + 1,) int64; ``out_data`` uint8 of at
    least ``n * MAX_TEXT`` bytes. Returns the bytes written.
    """
    hextets = np.zeros(8, dtype=np.int64)
    pos = 0
    out_offsets[0] = 0
    for i in range(kind.shape[0]):
        if kind[i] == 4:
            pos = _write_v4_text(out_data, pos, (np.int64(words[i, 6]) << 16) | np.int64(words[i, 7]))
        elif kind[i] == 6:
            for j in range(8):
                hextets[j] = words[i, j]
            pos = _write_v6_text(out_data, pos, hextets)
        out_offsets[i + 1] = pos
    return pos


@njit
def shared_prefix(high, low, lcp):
    """Leading bits each 128-bit value shares with the one before it (-1 for the first).

    Caller guarantees: ``high``/``low`` (n,) int64, the bit patterns of the values'
    upper and lower halves, sorted ascending as unsigned; ``lcp`` (n,) int64.
    """
    for i in range(high.shape[0]):
        if i == 0:
            lcp[i] = -1
            continue
        x = high[i] ^ high[i - 1]
        base = 0
        if x == 0:
            x = low[i] ^ low[i - 1]
            base = 64
        if x == 0:
            lcp[i] = 128
            continue
        b = 63
        while not (x >> b) & 1:
            b -= 1
        lcp[i] = base + 63 - b


@njit(inline="always")
def _top(k):
    """int64 pattern of a 64-bit word with its top ``k`` bits set (k clipped to 0..64)."""
    if k <= 0:
        return np.int64(0)
    if k >= 64:
        return np.int64(-1)
    return np.int64(-1) << (64 - k)


@njit(inline="always")
def _bit(k):
    """int64 pattern of a 64-bit word with bit ``k`` (0 = least significant) set."""
    if k == 63:
        return np.int64(-9223372036854775807 - 1)
    return np.int64(1) << k


@njit
def prefix_blocks(high, low, first, levels, pad_high, pad_low, row, out):
    """Write the AES input blocks of rows ``row…`` into ``out`` until it is full:
    for level ``p`` from ``first[i]`` to ``levels - 1``, the value's top ``p`` bits then
    the pad's other bits, as 16 big-endian bytes. Returns (next row, blocks written).

    Caller guarantees: ``high``/``low``/``pad_*`` int64 bit patterns; ``first`` (n,)
    int64 within 0..levels; ``out`` (m, 16) uint8 with m >= levels.
    """
    used = 0
    n = high.shape[0]
    while row < n and used + levels - first[row] <= out.shape[0]:
        for p in range(first[row], levels):
            keep_high = _top(p)
            keep_low = _top(p - 64)
            h = (high[row] & keep_high) | (pad_high & ~keep_high)
            lo = (low[row] & keep_low) | (pad_low & ~keep_low)
            for j in range(8):
                out[used, j] = (h >> (56 - 8 * j)) & 0xFF
                out[used, 8 + j] = (lo >> (56 - 8 * j)) & 0xFF
            used += 1
        row += 1
    return row, used


@njit
def assemble_flips(first, own, levels, flips_high, flips_low):
    """The flip words of sorted values: the bits of levels below ``first[i]`` are
    the previous value's (same prefix, same block), the others its own in ``own``
    (top bit of each encrypted block, value after value). Level ``p`` is bit
    ``127 - p`` of the left-aligned 128-bit word.

    Caller guarantees: ``first`` as :func:`prefix_blocks` used it; ``flips_*``
    (n,) int64 receiving bit patterns.
    """
    h = np.int64(0)
    lo = np.int64(0)
    k = 0
    for i in range(first.shape[0]):
        h &= _top(first[i])
        lo &= _top(first[i] - 64)
        for p in range(first[i], levels):
            if own[k]:
                if p < 64:
                    h |= _bit(63 - p)
                else:
                    lo |= _bit(127 - p)
            k += 1
        flips_high[i] = h
        flips_low[i] = lo
