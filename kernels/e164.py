"""Identifier normalization kernels: E.164, SIP/tel URIs, withheld callers.

Callers guarantee: ``offsets``/``data``/``valid`` are views of one Arrow string
chunk, ``tables`` is ``telemetry.phonemeta.tables().kernel``, ``out_data`` holds at least
``offsets[-1] - offsets[0] + 32 * len(valid)`` bytes.

The phone-number path reproduces ``phonenumbers.parse`` step by step
(``_maybe_extract_country_code``, ``_parse_prefix_as_idd``,
``_maybe_strip_national_prefix_carrier_code``, ``_test_number_length``) for
strings made of ASCII digits, one leading ``+`` and the separators
``space - . / ( )``. Rows outside that grammar get kind :data:`FALLBACK` and
are finished by the recipe layer with ``phonenumbers`` itself.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.intern import HIGH, ONES, word
from kernels.ipnet import write_decimal

#: The per-row helpers are compiled without Numba's reference counting. With it,
#: every array argument (``tables`` alone is five) and every view of the scratch
#: buffers costs an atomic incref/decref pair per call, through ~8 call levels per
#: row: perf showed two atomic instructions holding a third of the samples, and an
#: A/B run of the two builds gave 666 vs 402 ns per row. They never allocate (slice
#: copies go through :func:`_put`); :func:`normalize_strings` allocates the scratch.
_lean = njit(_nrt=False)
#: Helpers of the common row, inlined into their callers (in Numba's IR): a call passes each
#: array as its whole structure on the stack (``tables`` alone is 45 words), which cost
#: more than the work of a helper this small.
_inline = njit(_nrt=False, inline="always")

# Kinds (telemetry.numbering.Kind) and the internal "finish in Python" marker.
NULL, WITHHELD, PHONE, SIP, SHORT, ALPHANUMERIC, ERROR, FALLBACK = 0, 1, 2, 3, 4, 5, 6, 7
# Error reasons (telemetry.numbering.REASONS).
R_NO_REGION, R_BAD_CC, R_TOO_SHORT, R_TOO_LONG, R_NOT_NUMBER = 1, 2, 3, 4, 5
# phonenumbers ValidationResult values used by parse().
V_TOO_SHORT, V_TOO_LONG, V_LOCAL_ONLY, V_INVALID_LENGTH = 2, 3, 4, 5
# Program opcodes (telemetry.regexdfa).
OP_CLASS, OP_SPLIT, OP_JMP, OP_SAVE, OP_END, OP_MATCH = 0, 1, 2, 3, 4, 5

MAX_INPUT = 250  # phonenumbers' _MAX_INPUT_STRING_LENGTH
MAX_NSN = 17
MIN_NSN = 2
BUF = 512  # digit scratch: > MAX_INPUT + the longest context + transform growth
STACK = 256  # backtracking depth; deeper patterns send the row to the fallback
CAPS = 8  # group slots 2g, 2g+1; metadata uses at most 3 groups (checked at build)

# ``tables`` = (meta, ccinfo, gtrans, rtrans, prog), all int32 2-D (see telemetry.phonemeta):
# meta[m]: general start, npp program, npp groups, template length, idd program,
#          calling code, template codes (8), _test_number_length by length (65)
M_GSTART, M_NPP, M_GROUPS, M_TLEN, M_IDD, M_CC, M_TMPL, M_LEN = 0, 1, 2, 3, 4, 5, 6, 14
# ccinfo[cc]: main metadata entry (-1: no such code), region (-2: DFA), DFA start
# gtrans[s]: next state by digit (10 columns), accepting (column 10)
# rtrans[s]: next state by digit (10 columns), winning region by length (columns 10..27), the
#            region by length whatever digits follow s (columns 28..45; UNSETTLED: they matter)
LEN_SLOTS = 65
R_WIN, R_SETTLED = 10, 10 + MAX_NSN + 1
UNSETTLED = -2

_WORDS = ("anonymous", "unknown", "restricted", "withheld", "private", "unavailable")
WITHHELD_WORDS = np.zeros((len(_WORDS), 16), dtype=np.uint8)
WITHHELD_LENS = np.array([len(w) for w in _WORDS], dtype=np.int64)
for _k, _w in enumerate(_WORDS):
    WITHHELD_WORDS[_k, : len(_w)] = np.frombuffer(_w.encode(), dtype=np.uint8)


def _bytes(text: bytes) -> np.ndarray:
    return np.frombuffer(text, dtype=np.uint8).copy()


ANON_HOST = _bytes(b"anonymous.invalid")
TEL = _bytes(b"tel:")
SIP_ = _bytes(b"sip:")
SIPS = _bytes(b"sips:")
CONTEXT = _bytes(b";phone-context=")
USER_PHONE = _bytes(b";user=phone")


# ----------------------------------------------------------------- byte helpers
@_lean
def _lower(c):
    if 65 <= c <= 90:
        return c + 32
    return c


@_lean
def _is_space(c):
    return c == 32 or 9 <= c <= 13


@_lean
def _eq_ci(data, s, e, word, wlen):
    """data[s:e] equals the lower-case ``word[:wlen]`` ignoring ASCII case."""
    if e - s != wlen:
        return False
    for k in range(wlen):
        if _lower(data[s + k]) != word[k]:
            return False
    return True


@_lean
def _starts_ci(data, s, e, text):
    n = len(text)
    if e - s < n:
        return False
    for k in range(n):
        if _lower(data[s + k]) != text[k]:
            return False
    return True


@_lean
def _find(data, s, e, c):
    """The first k in s … e - 1 with data[k] == c, or -1; eight bytes at a time (a word
    with no byte c has no zero byte once xor-ed with c in every lane: the test has no
    false negatives, and a false positive only hands the rest to the byte loop)."""
    k = s
    lanes = ONES * np.uint64(c)
    while k + 8 <= e:
        x = word(data, k) ^ lanes
        if (x - ONES) & ~x & HIGH:
            break
        k += 8
    while k < e:
        if data[k] == c:
            return k
        k += 1
    return -1


@_lean
def _is_withheld(data, s, e):
    for w in range(WITHHELD_WORDS.shape[0]):
        if _eq_ci(data, s, e, WITHHELD_WORDS[w], WITHHELD_LENS[w]):
            return True
    return False


@_inline
def _copy(data, s, e, out, pos):
    for k in range(s, e):
        out[pos] = data[k]
        pos += 1
    return pos


@_lean
def _put(dst, src, lo, hi):
    """dst[:hi - lo] = src[lo:hi]; a slice assignment may copy through a temporary."""
    for k in range(hi - lo):
        dst[k] = src[lo + k]


# ----------------------------------------------------------------- matchers
@_lean
def _general(tables, m, x, lo, hi):
    """Full match of metadata entry ``m``'s general_desc pattern on x[lo:hi]."""
    gtrans = tables[2]
    s = tables[0][m, M_GSTART]
    if s == 0:
        return False
    for k in range(lo, hi):
        s = gtrans[s, x[k]]
        if s == 0:
            return False
    return gtrans[s, 10] != 0


@_lean
def _vm(prog, pc, x, lo, n, zero, caps, stack):
    """``re.match`` of a compiled program on the ``n`` digits ``x[lo + j] - zero``
    (``zero`` as :func:`region_of` takes it): the match end, -1 for no match, -2 when
    the backtracking stack overflows. ``caps[2g]`` and ``caps[2g+1]`` bound group
    ``g`` (-1 when it did not participate)."""
    for j in range(CAPS):
        caps[j] = -1
    sp = 0
    pos = 0
    while True:
        op = prog[pc, 0]
        ok = True
        if op == OP_CLASS:
            if pos < n and (prog[pc, 1] >> (x[lo + pos] - zero)) & 1:
                pos += 1
                pc += 1
                continue
            ok = False
        elif op == OP_SPLIT:
            if sp == stack.shape[0]:
                return -2
            stack[sp, 0] = prog[pc, 2]
            stack[sp, 1] = pos
            for j in range(CAPS):
                stack[sp, 2 + j] = caps[j]
            sp += 1
            pc = prog[pc, 1]
            continue
        elif op == OP_JMP:
            pc = prog[pc, 1]
            continue
        elif op == OP_SAVE:
            caps[prog[pc, 1]] = pos
            pc += 1
            continue
        elif op == OP_END:
            if pos == n:
                pc += 1
                continue
            ok = False
        else:
            return pos
        if not ok:
            if sp == 0:
                return -1
            sp -= 1
            pc = stack[sp, 0]
            pos = stack[sp, 1]
            for j in range(CAPS):
                caps[j] = stack[sp, 2 + j]


# ----------------------------------------------------------------- parse steps
@_lean
def _strip_np(tables, m, x, n, out, caps, stack):
    """``_maybe_strip_national_prefix_carrier_code`` of x[:n] with entry ``m``:
    the resulting number goes to ``out``; returns its length (-2: fallback)."""
    meta = tables[0]
    pc = meta[m, M_NPP]
    end = -1
    if n > 0 and pc >= 0:
        end = _vm(tables[4], pc, x, 0, n, 0, caps, stack)
        if end == -2:
            return -2
    if end < 0:
        _put(out, x, 0, n)
        return n
    viable = _general(tables, m, x, 0, n)
    last = meta[m, M_GROUPS]
    if meta[m, M_TLEN] < 0 or caps[2 * last + 1] < 0:
        if viable and not _general(tables, m, x, end, n):
            _put(out, x, 0, n)
            return n
        _put(out, x, end, n)
        return n - end
    k = 0
    for t in range(meta[m, M_TLEN]):
        code = meta[m, M_TMPL + t]
        if code < 10:
            out[k] = code
            k += 1
        else:
            g = code - 10
            a = caps[2 * g]
            b = caps[2 * g + 1]
            if a >= 0 and b >= 0:
                for j in range(a, b):
                    out[k] = x[j]
                    k += 1
    for j in range(end, n):
        out[k] = x[j]
        k += 1
    if viable and not _general(tables, m, out, 0, k):
        _put(out, x, 0, n)
        return n
    return k


@_lean
def _length_result(tables, m, n):
    return tables[0][m, M_LEN + min(n, LEN_SLOTS - 1)]


@_lean
def _extract_country(tables, dm, x, n, plus, nsn, tmp, caps, stack):
    """``_maybe_extract_country_code``: (reason, calling code, length of the
    national number written to ``nsn``); code 0 = none found, reason -1 asks
    for the fallback."""
    meta = tables[0]
    ccinfo = tables[1]
    lo = 0
    international = plus
    if not plus and dm >= 0 and meta[dm, M_IDD] >= 0:
        end = _vm(tables[4], meta[dm, M_IDD], x, 0, n, 0, caps, stack)
        if end == -2:
            return -1, 0, 0
        if end >= 0 and not (end < n and x[end] == 0):
            international = True
            lo = end
    if international:
        if n - lo <= MIN_NSN:
            return R_TOO_SHORT, 0, 0
        if x[lo] == 0:
            return R_BAD_CC, 0, 0
        code = 0
        for k in range(lo, min(n, lo + 3)):
            code = code * 10 + x[k]
            if ccinfo[code, 0] >= 0:
                _put(nsn, x, k + 1, n)
                return 0, code, n - k - 1
        return R_BAD_CC, 0, 0
    if dm >= 0:
        code = meta[dm, M_CC]
        width = 1 if code < 10 else (2 if code < 100 else 3)
        if n >= width:
            v = 0
            for k in range(width):
                v = v * 10 + x[k]
            if v == code:
                _put(tmp, x, width, n)
                p = _strip_np(tables, dm, tmp, n - width, nsn, caps, stack)
                if p == -2:
                    return -1, 0, 0
                if (not _general(tables, dm, x, 0, n) and _general(tables, dm, nsn, 0, p)) or _length_result(
                    tables, dm, n
                ) == V_TOO_LONG:
                    return 0, code, p
    return 0, 0, 0


@_lean
def parse_digits(tables, dm, x, n, plus, nsn, tmp, caps, stack):
    """``phonenumbers.parse`` from the normalized digits x[:n] (``plus``: the
    number began with ``+``) with default region entry ``dm`` (-1: none).
    Returns (reason, calling code, national significant number length in
    ``nsn``); reason -1 asks for the fallback."""
    attempt_plus = plus
    for attempt in range(2):
        # parse() retries a '+' number whose code is unknown without the '+'
        reason, code, k = _extract_country(tables, dm, x, n, attempt_plus, nsn, tmp, caps, stack)
        if attempt == 0 and reason == R_BAD_CC and plus:
            attempt_plus = False
            continue
        if attempt == 1 and reason == 0 and code == 0:
            reason = R_BAD_CC
        break
    if reason != 0:
        return reason, 0, 0
    if code != 0:
        m = tables[1][code, 0]
    else:
        if dm < 0:
            return R_NO_REGION, 0, 0
        _put(nsn, x, 0, n)
        k = n
        code = tables[0][dm, M_CC]
        m = dm
    if k < MIN_NSN:
        return R_TOO_SHORT, 0, 0
    p = _strip_np(tables, m, nsn, k, tmp, caps, stack)
    if p == -2:
        return -1, 0, 0
    v = _length_result(tables, m, p)
    if v != V_TOO_SHORT and v != V_LOCAL_ONLY and v != V_INVALID_LENGTH:
        _put(nsn, tmp, 0, p)
        k = p
    if k < MIN_NSN:
        return R_TOO_SHORT, 0, 0
    if k > MAX_NSN:
        return R_TOO_LONG, 0, 0
    return 0, code, k


@_inline
def region_of(tables, code, x, lo, k, zero):
    """``region_code_for_number`` as a region index (-1: none) of the national number
    whose ``k`` digits are ``x[lo + j] - zero`` (``zero`` 0 for digit values, 48 for text).
    A shared code's DFA is walked until its state settles the region for ``k`` digits
    (mostly three or four: the walk is a chain of dependent loads)."""
    ccinfo = tables[1]
    r = ccinfo[code, 1]
    if r != -2:
        return r
    rtrans = tables[3]
    s = ccinfo[code, 2]
    for j in range(k):
        r = rtrans[s, R_SETTLED + k]
        if r != UNSETTLED:
            return r
        s = rtrans[s, x[lo + j] - zero]
    return rtrans[s, R_WIN + k]


# ----------------------------------------------------------------- rows
@_lean
def _scan(data, s, e, dig, nd):
    """Appends the digits of a phone notation to ``dig`` from ``nd``; returns
    (new count, saw '+', grammar ok). The grammar: separators ``space - . /
    ( )``, ASCII digits, at most one '+' before the first digit."""
    plus = False
    for k in range(s, e):
        c = data[k]
        if 48 <= c <= 57:
            if nd < BUF:
                dig[nd] = c - 48
            nd += 1
        elif c == 43:
            if plus or nd > 0:
                return nd, plus, False
            plus = True
        elif not (c == 32 or c == 45 or c == 46 or c == 47 or c == 40 or c == 41):
            return nd, plus, False
    return nd, plus, True


@_lean
def _parsed(tables, reason, code, nsn, k, out, pos):
    """The row of a parse's result (``parse_digits``): E.164 written at ``pos``, or the
    error or fallback; (kind, reason, calling code, region, new pos)."""
    if reason == -1:
        return FALLBACK, 0, 0, -1, pos
    if reason != 0:
        return ERROR, reason, 0, -1, pos
    out[pos] = 43
    pos = write_decimal(out, pos + 1, code)
    for j in range(k):
        out[pos] = 48 + nsn[j]
        pos += 1
    return PHONE, 0, code, region_of(tables, code, nsn, 0, k, 0), pos


@_lean
def _phone(data, s, e, cs, ce, tables, dm, short_max, out, pos, bufs, caps, stack):
    """Phone notation data[s:e] with optional RFC 3966 phone-context data[cs:ce].
    Returns (kind, reason, calling code, region, new pos); SHORT, FALLBACK and
    ALPHANUMERIC write nothing (the caller decides what to keep)."""
    dig = bufs[0]
    nsn = bufs[1]
    tmp = bufs[2]
    nd, plus, ok = _scan(data, s, e, dig, 0)
    if not ok:
        return FALLBACK, 0, 0, -1, pos
    if nd == 0:
        return ALPHANUMERIC, 0, 0, -1, pos
    if not plus and ce > cs and data[cs] == 43:
        # a local number with a global context: context digits, then the number
        nc, cplus, cok = _scan(data, cs + 1, ce, tmp, 0)
        if not cok or cplus or nc == 0 or nc + nd > BUF:
            return ERROR, R_NOT_NUMBER, 0, -1, pos
        for j in range(nd):
            tmp[nc + j] = dig[j]
        nd += nc
        _put(dig, tmp, 0, nd)
        plus = True
    if e - s > MAX_INPUT or nd > MAX_INPUT:
        return ERROR, R_TOO_LONG, 0, -1, pos
    if not plus:
        if nd <= short_max:
            return SHORT, 0, 0, -1, pos
        if dm < 0:
            return ERROR, R_NO_REGION, 0, -1, pos
    elif nd < 3:
        return ERROR, R_NOT_NUMBER, 0, -1, pos
    reason, code, k = parse_digits(tables, dm, dig, nd, plus, nsn, tmp, caps, stack)
    return _parsed(tables, reason, code, nsn, k, out, pos)


@_lean
def _context(data, s, e):
    """Bounds of the ``;phone-context=`` value within parameters data[s:e]."""
    key = CONTEXT
    for k in range(s, e - len(key) + 1):
        if _starts_ci(data, k, e, key):
            v = k + len(key)
            end = _find(data, v, e, 59)
            return v, (e if end < 0 else end)
    return 0, 0


@_lean
def _sip_parts(data, s, e):
    """Splits the part after ``sip:``/``sips:``: (user start, user end without
    password and user parameters, user end, host start, host end without port,
    URI parameters start, end without headers)."""
    q = _find(data, s, e, 63)  # '?' headers
    if q >= 0:
        e = q
    at = _find(data, s, e, 64)
    if at >= 0:
        us, ue, hs = s, at, at + 1
    else:
        us, ue, hs = s, s, s
    semi = _find(data, hs, e, 59)
    he = e if semi < 0 else semi
    ps = he
    if hs < he and data[hs] == 91:  # [IPv6]
        close = _find(data, hs, he, 93)
        he = he if close < 0 else close + 1
    else:
        colon = _find(data, hs, he, 58)
        he = he if colon < 0 else colon
    colon = _find(data, us, ue, 58)  # a password is never kept
    if colon >= 0:
        ue = colon
    um = _find(data, us, ue, 59)  # telephone-subscriber parameters
    umain = ue if um < 0 else um
    return us, umain, ue, hs, he, ps, e


@_lean
def _has_param(data, s, e, param):
    for k in range(s, e - len(param) + 1):
        if data[k] == 59 and _starts_ci(data, k, e, param):
            return True
    return False


@_lean
def _row(data, s, e, tables, dm, short_max, out, pos, bufs, caps, stack, first):
    while s < e and _is_space(data[s]):
        s += 1
    while e > s and _is_space(data[e - 1]):
        e -= 1
    if s == e or _is_withheld(data, s, e):
        return WITHHELD, 0, 0, -1, pos
    us, ue = s, e
    lt = _find(data, s, e, 60)
    if lt >= 0:  # name-addr: display name <URI>
        gt = _find(data, lt, e, 62)
        if gt >= 0:
            us, ue = lt + 1, gt
    mode = 0  # plain text
    ps, pe, cs, ce = s, e, 0, 0  # the phone candidate and its phone-context
    hs = he = 0
    if _starts_ci(data, us, ue, TEL):
        mode = 1
        ps = us + 4
        pe = _find(data, ps, ue, 59)
        if pe < 0:
            pe = ue
        if pe == ps:
            return ERROR, R_NOT_NUMBER, 0, -1, pos
        if _is_withheld(data, ps, pe):
            return WITHHELD, 0, 0, -1, pos
        cs, ce = _context(data, pe, ue)
    elif _starts_ci(data, us, ue, SIP_) or _starts_ci(data, us, ue, SIPS):
        mode = 2
        start = us + (4 if data[us + 3] == 58 else 5)
        ps, pe, user_end, hs, he, params, end = _sip_parts(data, start, ue)
        if _is_withheld(data, ps, pe) or _eq_ci(data, hs, he, ANON_HOST, len(ANON_HOST)):
            return WITHHELD, 0, 0, -1, pos
        if hs == he:
            return ALPHANUMERIC, 0, 0, -1, _copy(data, s, e, out, pos)
        numeric = pe > ps
        for k in range(ps, pe):
            c = data[k]
            if not (48 <= c <= 57 or (c == 43 and k == ps)):
                numeric = False
        if numeric and data[ps] == 43:
            # a user part of '+' and digits (interconnects' sip:+447700900123@gw;user=phone) is
            # read as a row of them is (_rows): the full parse only when that cannot tell
            c, g, p = _e164_as_written(data, ps, pe, tables, first, out, pos, caps, stack)
            if c:
                return PHONE, 0, c, g, p
            if _plus_digits(data, ps, pe, bufs[0]):
                kind, reason, code, region, p = _e164(pe - ps - 1, tables, dm, first, out, pos, bufs, caps, stack)
                if kind == PHONE or kind == ERROR:
                    return kind, reason, code, region, p
                mode = 3  # _phone would give FALLBACK too: kept as sip:user@host
        if mode == 2 and pe > ps and (numeric or _has_param(data, params, end, USER_PHONE)):
            cs, ce = _context(data, pe, user_end)
        else:
            mode = 3  # a SIP URI that is not a number
    else:
        for k in range(s, e):
            c = data[k]
            if 65 <= c <= 90 or 97 <= c <= 122:
                return ALPHANUMERIC, 0, 0, -1, _copy(data, s, e, out, pos)
    kind, reason, code, region = FALLBACK, 0, 0, -1
    if mode != 3:
        kind, reason, code, region, p = _phone(
            data, ps, pe, cs, ce, tables, dm, short_max, out, pos, bufs, caps, stack
        )
        if kind == PHONE or kind == ERROR:
            return kind, reason, code, region, p
    if mode == 0:
        if kind == SHORT or kind == ALPHANUMERIC:
            return kind, 0, 0, -1, _copy(data, s, e, out, pos)
        return FALLBACK, 0, 0, -1, pos
    if mode == 1:
        if kind == SHORT:
            return SHORT, 0, 0, -1, _copy(data, ps, pe, out, pos)
        if kind == ALPHANUMERIC:
            return ERROR, R_NOT_NUMBER, 0, -1, pos
        return FALLBACK, 0, 0, -1, pos
    # SIP: anything but a phone number is kept as sip:user@host
    for c in (115, 105, 112, 58):  # "sip:"
        out[pos] = c
        pos += 1
    if pe > ps:
        pos = _copy(data, ps, pe, out, pos)
        out[pos] = 64
        pos += 1
    for k in range(hs, he):
        out[pos] = _lower(data[k])
        pos += 1
    return SIP, 0, 0, -1, pos


@_lean
def _plus_digits(data, s, e, dig):
    """Whether data[s:e] is '+' and ASCII digits alone (E.164 as interconnects and
    canonical files write it), their values then in ``dig``: a row ``_scan`` would
    read as a plus and those digits, with nothing for ``_row`` to strip, match or
    take apart first."""
    if e - s < 4 or e - s > MAX_INPUT or data[s] != 43:
        return False
    for k in range(s + 1, e):
        c = data[k]
        if c < 48 or c > 57:
            return False
        dig[k - s - 1] = c - 48
    return True


#: Bit of :func:`npp_first`'s masks: the program can match without reading a(nother) digit.
EMPTY_MATCH = 1 << 10


@njit
def npp_first(tables):
    """Per metadata entry (row), what its national-prefix-for-parsing program can read
    of a national number of at least MIN_NSN digits: column 0, the digits it can read
    first (bit d), and EMPTY_MATCH when it can match reading none; column 1 + d, the
    digits it can read after a first d, and EMPTY_MATCH when it can match after that d
    alone. All 0 when it has no such program. A number whose first digit, or first two
    digits, the program cannot read (and that it cannot match before) keeps its digits
    in ``_strip_np``: the program finds no match."""
    meta = tables[0]
    prog = tables[4]
    out = np.zeros((meta.shape[0], 11), np.int32)
    stamp = np.zeros(prog.shape[0], np.int64)
    todo = np.empty(2 * prog.shape[0] + 2, np.int64)
    firsts = np.empty(prog.shape[0], np.int64)
    seconds = np.empty(prog.shape[0], np.int64)
    mark = 0
    for m in range(meta.shape[0]):
        if meta[m, M_NPP] < 0:
            continue
        mark += 1
        count, match = _reach(prog, meta[m, M_NPP], stamp, mark, todo, firsts)
        if match:
            out[m, 0] |= EMPTY_MATCH
        for a in range(count):
            digits = prog[firsts[a], 1] & 0x3FF
            out[m, 0] |= digits
            mark += 1
            more, match = _reach(prog, firsts[a] + 1, stamp, mark, todo, seconds)
            then = EMPTY_MATCH if match else 0
            for b in range(more):
                then |= prog[seconds[b], 1] & 0x3FF
            for d in range(10):
                if (digits >> d) & 1:
                    out[m, 1 + d] |= then
    return out


@njit
def _reach(prog, pc, stamp, mark, todo, found):
    """The OP_CLASS instructions a program reaches from ``pc`` without reading a digit,
    listed in ``found``: (how many, whether it reaches OP_MATCH so). ``stamp``: the
    instructions seen, marked with ``mark`` (new for each call)."""
    todo[0] = pc
    top = 1
    count = 0
    match = False
    while top:
        top -= 1
        pc = todo[top]
        if stamp[pc] == mark:
            continue
        stamp[pc] = mark
        op = prog[pc, 0]
        if op == OP_CLASS:
            found[count] = pc
            count += 1
        elif op == OP_SPLIT:
            todo[top] = prog[pc, 1]
            todo[top + 1] = prog[pc, 2]
            top += 2
        elif op == OP_JMP:
            todo[top] = prog[pc, 1]
            top += 1
        elif op == OP_SAVE:
            todo[top] = pc + 1
            top += 1
        elif op == OP_MATCH:
            match = True
        # OP_END: '$' before the last digit fails, the numbers having at least MIN_NSN
    return count, match


@_inline
def _npp_may_match(first, m, x, lo, zero):
    """Whether entry ``m``'s national-prefix program (``first``: :func:`npp_first`) may
    match a national number of at least MIN_NSN digits ``x[lo + j] - zero``: False
    when it can read neither its first digit nor its first two (and cannot match before)."""
    reads = first[m, 0]
    if reads & EMPTY_MATCH:
        return True
    d = np.int64(x[lo]) - zero
    if not (reads >> d) & 1:
        return False
    return (first[m, 1 + d] & (EMPTY_MATCH | (1 << (np.int64(x[lo + 1]) - zero)))) != 0


@_lean
def _e164(n, tables, dm, first, out, pos, bufs, caps, stack):
    """``_phone`` of a '+' and ``n`` digits (3 ≤ n < MAX_INPUT) already in ``bufs[0]``.
    When the calling code's national-prefix program cannot read the national number's
    first digit or first two (``first``: :func:`npp_first`), ``parse_digits`` would keep
    the number as it is: only its length is checked."""
    dig = bufs[0]
    nsn = bufs[1]
    tmp = bufs[2]
    reason, code, k = _extract_country(tables, dm, dig, n, True, nsn, tmp, caps, stack)
    if reason != 0 or k < MIN_NSN or _npp_may_match(first, tables[1][code, 0], nsn, 0, 0):
        reason, code, k = parse_digits(tables, dm, dig, n, True, nsn, tmp, caps, stack)
    elif k > MAX_NSN:
        reason = R_TOO_LONG
    return _parsed(tables, reason, code, nsn, k, out, pos)


@_inline
def _e164_as_written(data, s, e, tables, first, out, pos, caps, stack):
    """The common row of an interconnect: '+' and digits, a known calling code (first
    digit not 0), a national number of MIN_NSN to MAX_NSN digits that the code's
    national-prefix program does not match (told by its first two digits, ``first``:
    :func:`npp_first`, else by running it). Such a number is its own E.164
    (``parse_digits`` keeps its digits), so its text is copied as it stands and read
    once, where :func:`_e164` copies digit values three times. Returns (calling code,
    region, new pos); code 0 when the row is not that (nothing written: the caller
    takes the general path)."""
    ccinfo = tables[1]
    if e - s < 4 or data[s] != 43 or data[s + 1] == 48:
        return 0, -1, pos
    code = 0
    lo = 0
    for k in range(s + 1, s + 4):
        d = np.int64(data[k]) - 48
        if d < 0 or d > 9:
            return 0, -1, pos
        code = code * 10 + d
        if ccinfo[code, 0] >= 0:
            lo = k + 1
            break
    n = e - lo
    if lo == 0 or n < MIN_NSN or n > MAX_NSN:
        return 0, -1, pos
    for k in range(lo, e):
        if data[k] < 48 or data[k] > 57:
            return 0, -1, pos
    m = ccinfo[code, 0]
    if _npp_may_match(first, m, data, lo, 48):
        if _vm(tables[4], tables[0][m, M_NPP], data, lo, n, 48, caps, stack) != -1:
            return 0, -1, pos
    region = region_of(tables, code, data, lo, n, 48)
    return code, region, _copy(data, s, e, out, pos)


@njit
def normalize_strings(offsets, data, valid, tables, dm, short_max, out, out_offsets, kind, reason, code, region):
    """Normalizes every row; row i's text is out[out_offsets[i]:out_offsets[i+1]].
    Every row is parsed: callers pass distinct values (``telemetry.numbering``
    dedupes with Arrow's hash table, a run remembers values in ``kernels.intern``).
    Returns how many rows are their own normalization, copied as written (all of
    them: ``out`` then holds the input's text, at its offsets less the first)."""
    bufs = np.zeros((3, BUF), dtype=np.uint8)
    caps = np.full(CAPS, -1, dtype=np.int64)
    stack = np.zeros((STACK, 2 + CAPS), dtype=np.int64)
    first = npp_first(tables)
    out_offsets[0] = 0
    return _rows(offsets, data, valid, tables, dm, short_max, out, out_offsets, kind, reason, code, region,
                 first, bufs, caps, stack)  # fmt: skip


@_lean
def _rows(offsets, data, valid, tables, dm, short_max, out, out_offsets, kind, reason, code, region,
          first, bufs, caps, stack):  # fmt: skip
    # The loop of normalize_strings, compiled without reference counting like the helpers it
    # calls: in a function with it, every array handed to a helper per row cost an atomic
    # incref/decref pair (perf: a quarter of the time).
    pos = 0
    verbatim = 0
    for i in range(len(valid)):
        kind[i] = NULL
        reason[i] = 0
        code[i] = 0
        region[i] = -1
        s = np.int64(offsets[i])
        e = np.int64(offsets[i + 1])
        if valid[i]:
            c, g, end = _e164_as_written(data, s, e, tables, first, out, pos, caps, stack)
            if c:
                k, r, pos = PHONE, 0, end
                verbatim += 1
            elif _plus_digits(data, s, e, bufs[0]):
                k, r, c, g, pos = _e164(e - s - 1, tables, dm, first, out, pos, bufs, caps, stack)
            else:
                k, r, c, g, pos = _row(data, s, e, tables, dm, short_max, out, pos, bufs, caps, stack, first)
            kind[i] = k
            reason[i] = r
            code[i] = c
            region[i] = g
        out_offsets[i + 1] = pos
    return verbatim
