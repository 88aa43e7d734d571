"""SHA-256 compression and keyed HMAC-SHA256 over Arrow string buffers.

HMAC is computed from precomputed midstates: for a key, the states after
compressing ``key XOR ipad`` and ``key XOR opad`` (FIPS 198-1 allows this).
Per identifier of ``n`` bytes the work is then ``ceil((n + 9) / 64)`` inner
compressions and one outer compression.

Identifiers whose padded message fits one block (``n <= 55``: every phone
number, most SIP URIs and network texts) are hashed several at a time. Where the
CPU has the SHA extensions, :func:`hmac_rows_ni` hashes ``kernels.shani.LANES``
rows at a time with them (the LLVM IR of :mod:`kernels.shani`, through an
intrinsic). Elsewhere :func:`hmac_rows` hashes ``LANES`` at a time: the working
variables and message schedule of all lanes live side by side in flat arrays
with compile-time offsets, so LLVM turns each round into SIMD instructions
across lanes. Longer identifiers take the scalar path in both.
"""

from __future__ import annotations

import numpy as np

from kernels import shani
from kernels._jit import intrinsic, njit

#: Rows hashed side by side. Measured on AVX-512 (benchmarks/test_bench_hmac.py): 8 lanes
#: did not vectorize, 16 gave 10 M ids/s, 32 gave 14.7 M, 64 gave 16.4 M, 128 no gain: several
#: independent vectors per round hide the latency of each round's dependency chain.
LANES = 64

#: FIPS 180-4 section 4.2.2 round constants.
K256 = np.array(
    [
        0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1,
        0x923F82A4, 0xAB1C5ED5, 0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3,
        0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174, 0xE49B69C1, 0xEFBE4786,
        0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
        0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147,
        0x06CA6351, 0x14292967, 0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13,
        0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85, 0xA2BFE8A1, 0xA81A664B,
        0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
        0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A,
        0x5B9CCA4F, 0x682E6FF3, 0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208,
        0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
    ],
    dtype=np.uint32,
)  # fmt: skip

#: FIPS 180-4 section 5.3.3 initial hash value.
IV256 = np.array(
    [
        0x6A09E667,
        0xBB67AE85,
        0x3C6EF372,
        0xA54FF53A,
        0x510E527F,
        0x9B05688C,
        0x1F83D9AB,
        0x5BE0CD19,
    ],
    dtype=np.uint32,
)

#: Longest identifier whose padded inner message fits one block.
ONE_BLOCK_MAX = 55


@njit(inline="always")
def _rotr(x, n):
    return np.uint32((x >> np.uint32(n)) | (x << np.uint32(32 - n)))


@njit
def compress(state, w):
    """One SHA-256 compression. Caller guarantees: ``state`` (8,) uint32 is
    updated in place; ``w`` (64,) uint32 holds the block's 16 big-endian words
    in ``w[:16]`` (the rest is scratch)."""
    for t in range(16, 64):
        x = w[t - 15]
        y = w[t - 2]
        s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> np.uint32(3))
        s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> np.uint32(10))
        w[t] = np.uint32(w[t - 16] + s0 + w[t - 7] + s1)
    a = state[0]
    b = state[1]
    c = state[2]
    d = state[3]
    e = state[4]
    f = state[5]
    g = state[6]
    h = state[7]
    for t in range(64):
        t1 = np.uint32(
            h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[t] + w[t]
        )
        t2 = np.uint32((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c)))
        h = g
        g = f
        f = e
        e = np.uint32(d + t1)
        d = c
        c = b
        b = a
        a = np.uint32(t1 + t2)
    state[0] = np.uint32(state[0] + a)
    state[1] = np.uint32(state[1] + b)
    state[2] = np.uint32(state[2] + c)
    state[3] = np.uint32(state[3] + d)
    state[4] = np.uint32(state[4] + e)
    state[5] = np.uint32(state[5] + f)
    state[6] = np.uint32(state[6] + g)
    state[7] = np.uint32(state[7] + h)


@njit
def key_midstates(block, out):
    """Inner and outer midstates of one HMAC key. Caller guarantees: ``block``
    (64,) uint8 is the key zero-padded to 64 bytes (keys longer than 64 bytes
    already replaced by their SHA-256); ``out`` (2, 8) uint32 receives them."""
    w = np.empty(64, dtype=np.uint32)
    for half in range(2):
        pad = np.uint32(0x36) if half == 0 else np.uint32(0x5C)
        for j in range(16):
            word = np.uint32(0)
            for k in range(4):
                word = np.uint32((word << np.uint32(8)) | (np.uint32(block[4 * j + k]) ^ pad))
            w[j] = word
        for j in range(8):
            out[half, j] = IV256[j]
        compress(out[half], w)


@njit
def _outer(inner, outer_state, w, st):
    # The outer message is the 32-byte inner digest, padded; its bit length
    # counts the 64-byte key block in front: (64 + 32) * 8 = 768.
    for j in range(8):
        w[j] = inner[j]
        st[j] = outer_state[j]
    w[8] = np.uint32(0x80000000)
    for j in range(9, 15):
        w[j] = np.uint32(0)
    w[15] = np.uint32(768)
    compress(st, w)


@njit
def _hmac_scalar(data, start, n, state, w, st, inner):
    """HMAC of ``data[start:start+n]`` under midstates ``state`` (2, 8) into ``st``."""
    for j in range(8):
        inner[j] = state[0, j]
    nblocks = (n + 9 + 63) // 64
    bits = (np.int64(64) + n) * 8
    for blk in range(nblocks):
        base = blk * 64
        for j in range(16):
            word = np.uint32(0)
            for k in range(4):
                pos = base + 4 * j + k
                if pos < n:
                    byte = np.uint32(data[start + pos])
                elif pos == n:
                    byte = np.uint32(0x80)
                else:
                    byte = np.uint32(0)
                word = np.uint32((word << np.uint32(8)) | byte)
            w[j] = word
        if blk == nblocks - 1:
            w[14] = np.uint32(bits >> 32)
            w[15] = np.uint32(bits & 0xFFFFFFFF)
        compress(inner, w)
    _outer(inner, state[1], w, st)


@njit(inline="always")
def _round_lanes(v, a, b, c, d, e, f, g, h, w, t):
    # One round for all lanes; the caller rotates the roles of the eight
    # working-variable rows instead of moving data, so only d and h are written.
    kt = K256[t]
    wo = t * LANES
    ao = a * LANES
    bo = b * LANES
    co = c * LANES
    do = d * LANES
    eo = e * LANES
    fo = f * LANES
    go = g * LANES
    ho = h * LANES
    for ln in range(LANES):
        ev = v[eo + ln]
        av = v[ao + ln]
        t1 = np.uint32(
            v[ho + ln]
            + (_rotr(ev, 6) ^ _rotr(ev, 11) ^ _rotr(ev, 25))
            + ((ev & v[fo + ln]) ^ (~ev & v[go + ln]))
            + kt
            + w[wo + ln]
        )
        bv = v[bo + ln]
        cv = v[co + ln]
        t2 = np.uint32(
            (_rotr(av, 2) ^ _rotr(av, 13) ^ _rotr(av, 22)) + ((av & bv) ^ (av & cv) ^ (bv & cv))
        )
        v[do + ln] = np.uint32(v[do + ln] + t1)
        v[ho + ln] = np.uint32(t1 + t2)


@njit
def compress_lanes(state, w, v):
    """``LANES`` SHA-256 compressions side by side. Caller guarantees: flat
    uint32 arrays, lane ``l`` of word ``j`` at ``j * LANES + l``; ``state``
    (8 * LANES) updated in place; ``w`` (64 * LANES) holds the 16 block words
    first; ``v`` (8 * LANES) is scratch."""
    for t in range(16, 64):
        for ln in range(LANES):
            x = w[(t - 15) * LANES + ln]
            y = w[(t - 2) * LANES + ln]
            s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> np.uint32(3))
            s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> np.uint32(10))
            w[t * LANES + ln] = np.uint32(
                w[(t - 16) * LANES + ln] + s0 + w[(t - 7) * LANES + ln] + s1
            )
    for j in range(8 * LANES):
        v[j] = state[j]
    for t in range(0, 64, 8):
        _round_lanes(v, 0, 1, 2, 3, 4, 5, 6, 7, w, t)
        _round_lanes(v, 7, 0, 1, 2, 3, 4, 5, 6, w, t + 1)
        _round_lanes(v, 6, 7, 0, 1, 2, 3, 4, 5, w, t + 2)
        _round_lanes(v, 5, 6, 7, 0, 1, 2, 3, 4, w, t + 3)
        _round_lanes(v, 4, 5, 6, 7, 0, 1, 2, 3, w, t + 4)
        _round_lanes(v, 3, 4, 5, 6, 7, 0, 1, 2, w, t + 5)
        _round_lanes(v, 2, 3, 4, 5, 6, 7, 0, 1, w, t + 6)
        _round_lanes(v, 1, 2, 3, 4, 5, 6, 7, 0, w, t + 7)
    for j in range(8 * LANES):
        state[j] = np.uint32(state[j] + v[j])


@njit
def _store(st, nwords, out, i):
    for j in range(nwords):
        word = st[j]
        out[i, 4 * j] = np.uint8(word >> np.uint32(24))
        out[i, 4 * j + 1] = np.uint8((word >> np.uint32(16)) & np.uint32(0xFF))
        out[i, 4 * j + 2] = np.uint8((word >> np.uint32(8)) & np.uint32(0xFF))
        out[i, 4 * j + 3] = np.uint8(word & np.uint32(0xFF))


@njit(_nrt=False)
def _lane_group(offsets, data, rows, g, key_index, states, out, nwords, w, st, v):
    # Inner compression of one block per lane (rows[g:g + LANES]), then the outer compression.
    for j in range(16 * LANES):
        w[j] = np.uint32(0)
    for ln in range(LANES):
        i = rows[g + ln]
        k = key_index[i]
        start = offsets[i]
        n = offsets[i + 1] - start
        for p in range(n):
            j = p >> 2
            w[j * LANES + ln] |= np.uint32(data[start + p]) << np.uint32(24 - 8 * (p & 3))
        w[(n >> 2) * LANES + ln] |= np.uint32(0x80) << np.uint32(24 - 8 * (n & 3))
        w[15 * LANES + ln] = np.uint32((64 + n) * 8)
        for j in range(8):
            st[j * LANES + ln] = states[k, 0, j]
    compress_lanes(st, w, v)
    for j in range(8):
        for ln in range(LANES):
            w[j * LANES + ln] = st[j * LANES + ln]
    for ln in range(LANES):
        w[8 * LANES + ln] = np.uint32(0x80000000)
        for j in range(9, 15):
            w[j * LANES + ln] = np.uint32(0)
        w[15 * LANES + ln] = np.uint32(768)
        k = key_index[rows[g + ln]]
        for j in range(8):
            st[j * LANES + ln] = states[k, 1, j]
    compress_lanes(st, w, v)
    for ln in range(LANES):
        i = rows[g + ln]
        for j in range(nwords):
            word = st[j * LANES + ln]
            out[i, 4 * j] = np.uint8(word >> np.uint32(24))
            out[i, 4 * j + 1] = np.uint8((word >> np.uint32(16)) & np.uint32(0xFF))
            out[i, 4 * j + 2] = np.uint8((word >> np.uint32(8)) & np.uint32(0xFF))
            out[i, 4 * j + 3] = np.uint8(word & np.uint32(0xFF))


@intrinsic
def _hmac_ni(typingctx, data, states, out, lanes):
    """HMAC-SHA256 of ``shani.LANES`` rows of one block with the SHA extensions
    (:mod:`kernels.shani`), into their rows of ``out`` ((n, m) uint8, C-contiguous).
    ``lanes`` (LANES, 4) int64: per lane the row, the start of its bytes in ``data``,
    their length (at most 55; 64 bytes readable from the start) and its key's index in
    ``states`` ((K, 2, 8) uint32, C-contiguous)."""
    from numba.core import types

    def codegen(context, builder, signature, args):
        import llvmlite.ir as ir

        data_a, states_a, out_a, lanes_a = (context.make_array(t)(context, builder, a)
                                            for t, a in zip(signature.args, args))  # fmt: skip
        i64 = ir.IntType(64)
        width = builder.extract_value(out_a.shape, 1)
        blocks, inner, outer, targets = [], [], [], []
        for ln in range(shani.LANES):
            row, start, length, key = (builder.load(builder.gep(lanes_a.data, [ir.Constant(i64, 4 * ln + f)]))
                                       for f in range(4))  # fmt: skip
            blocks.append(shani.padded_block(builder, builder.gep(data_a.data, [start]), length))
            first = builder.mul(key, ir.Constant(i64, 16))
            inner.append(shani.load_state(builder, builder.gep(states_a.data, [first])))
            second = builder.add(first, ir.Constant(i64, 8))
            outer.append(shani.load_state(builder, builder.gep(states_a.data, [second])))
            targets.append(builder.gep(out_a.data, [builder.mul(row, width)]))
        for digest, target in zip(shani.hmac(builder, blocks, inner, outer), targets):
            shani.store_words(builder, digest, target, builder.lshr(width, ir.Constant(i64, 2)))
        return context.get_dummy_value()

    return types.void(data, states, out, lanes), codegen


@njit(_nrt=False)
def _ni_groups(offsets, data, rows, count, key_index, states, out, lanes):
    # rows[:count] shani.LANES at a time, the rest left over. Without reference counting:
    # in a function with it, each array handed on per group cost an atomic incref/decref.
    for g in range(0, count - count % shani.LANES, shani.LANES):
        for ln in range(shani.LANES):
            i = rows[g + ln]
            lanes[ln, 0] = i
            lanes[ln, 1] = offsets[i]
            lanes[ln, 2] = offsets[i + 1] - offsets[i]
            lanes[ln, 3] = key_index[i]
        _hmac_ni(data, states, out, lanes)


@njit
def _other_rows(offsets, data, valid, key_index, states, out, out_valid, rows, reach):
    """The rows no lane group hashes: ``out_valid`` of every row (a zero digest where
    False), the HMAC of rows longer than one block or whose ``reach`` bytes from their
    start run past ``data``; lists the others in ``rows`` and returns how many."""
    nwords = out.shape[1] // 4
    nkeys = states.shape[0]
    usable = np.zeros(nkeys, dtype=np.bool_)
    for k in range(nkeys):
        for half in range(2):
            for j in range(8):
                if states[k, half, j] != 0:
                    usable[k] = True
    w1 = np.empty(64, dtype=np.uint32)
    st1 = np.empty(8, dtype=np.uint32)
    inner1 = np.empty(8, dtype=np.uint32)
    filled = 0
    for i in range(valid.shape[0]):
        k = key_index[i]
        ok = valid[i] and k >= 0 and k < nkeys
        if ok:
            ok = usable[k]
        out_valid[i] = ok
        if not ok:
            for j in range(out.shape[1]):
                out[i, j] = np.uint8(0)
            continue
        start = offsets[i]
        length = offsets[i + 1] - start
        if length <= ONE_BLOCK_MAX and start + reach <= len(data):
            rows[filled] = i
            filled += 1
        else:
            _hmac_scalar(data, start, length, states[k], w1, st1, inner1)
            _store(st1, nwords, out, i)
    return filled


@njit
def _scalar_rows(offsets, data, key_index, states, out, rows):
    """HMAC of the listed rows one by one (those left over from the lane groups)."""
    nwords = out.shape[1] // 4
    w1 = np.empty(64, dtype=np.uint32)
    st1 = np.empty(8, dtype=np.uint32)
    inner1 = np.empty(8, dtype=np.uint32)
    for i in rows:
        start = offsets[i]
        _hmac_scalar(data, start, offsets[i + 1] - start, states[key_index[i]], w1, st1, inner1)
        _store(st1, nwords, out, i)


@njit
def hmac_rows(offsets, data, valid, key_index, states, out, out_valid):
    """HMAC-SHA256 of every row of one Arrow string chunk, truncated to
    ``out.shape[1]`` bytes; the portable kernel (:func:`hmac_rows_ni` where the CPU
    has the SHA extensions).

    Caller guarantees: ``offsets`` (n + 1,) int32/int64 and ``data`` uint8 as
    from ``telemetry.arrowstr.string_views``; ``valid`` (n,) bool;
    ``key_index`` (n,) integer, ``-1`` or an index into ``states``;
    ``states`` (K, 2, 8) uint32 midstates, an all-zero entry marking a
    shredded key; ``out`` (n, m) uint8 with m a multiple of 4, at most 32;
    ``out_valid`` (n,) bool. Rows that are null, have key ``-1`` or a shredded
    key get ``out_valid`` False and zero bytes.
    """
    rows = np.empty(valid.shape[0], np.int64)
    count = _other_rows(offsets, data, valid, key_index, states, out, out_valid, rows, 0)
    grouped = count - count % LANES
    w = np.empty(64 * LANES, dtype=np.uint32)
    st = np.empty(8 * LANES, dtype=np.uint32)
    v = np.empty(8 * LANES, dtype=np.uint32)
    for g in range(0, grouped, LANES):
        _lane_group(offsets, data, rows, g, key_index, states, out, out.shape[1] // 4, w, st, v)
    _scalar_rows(offsets, data, key_index, states, out, rows[grouped:count])


@njit
def hmac_rows_ni(offsets, data, valid, key_index, states, out, out_valid):
    """:func:`hmac_rows` with the CPU's SHA extensions for rows of one block (those
    whose 64 bytes from their start lie in ``data``). Caller guarantees, besides:
    ``kernels.shani.available()``; ``states`` and ``out`` C-contiguous."""
    rows = np.empty(valid.shape[0], np.int64)
    count = _other_rows(offsets, data, valid, key_index, states, out, out_valid, rows, 64)
    grouped = count - count % shani.LANES
    _ni_groups(offsets, data, rows, count, key_index, states, out, np.empty((shani.LANES, 4), np.int64))
    _scalar_rows(offsets, data, key_index, states, out, rows[grouped:count])
