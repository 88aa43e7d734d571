"""The SHA-NI bound of the HMAC benchmark: HMAC-SHA256 of short messages as fast as this
core's SHA extensions compute it, used the way the pseudonym kernel is used.

The kernel hashes identifiers of at most 55 bytes from precomputed HMAC midstates, so a
pseudonym is exactly two compressions (inner: the padded message; outer: the inner digest),
and it hashes many rows side by side. A bound measured by streaming one long buffer through
``hashlib`` (one dependent chain of compressions) is not a bound for that: independent
messages overlap in the SHA unit's pipeline. So the bound here is measured with SHA-NI
instructions (``sha256rnds2``, ``sha256msg1``, ``sha256msg2``) over ``lanes`` independent
messages interleaved round by round, messages already padded into blocks (work the kernel
must also do, left out), midstates given: the best of 1, 2, 4 and 8 lanes. The code is LLVM
IR generated below and compiled for the host CPU by llvmlite (which Numba already needs);
its digests are checked against ``hmac`` before it is timed.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import time

import numpy as np
import pyarrow as pa

#: FIPS 180-4 section 4.2.2.
K256 = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip
IV256 = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
LANES = (1, 2, 4, 8)  # 16 measured slower: the lanes no longer fit the registers
V = "<4 x i32>"


def _vec(words) -> str:
    return "<" + ", ".join(f"i32 {w - (1 << 32) if w >= 1 << 31 else w}" for w in words) + ">"


class _IR:
    """Straight-line IR with fresh names; one compression per lane, emitted round-robin
    over the lanes at each step so the lanes' independent chains interleave."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def op(self, text: str) -> str:
        self.n += 1
        self.lines.append(f"  %t{self.n} = {text}")
        return f"%t{self.n}"

    def shuffle(self, a: str, b: str, lanes: tuple[int, ...]) -> str:
        mask = ", ".join(f"i32 {i}" for i in lanes)
        return self.op(f"shufflevector {V} {a}, {V} {b}, <4 x i32> <{mask}>")

    def compress(self, states: list[tuple[str, str]], blocks: list[list[str]]) -> list[tuple[str, str]]:
        """SHA-256 of one 64-byte block per lane: (ABCD, EFGH) state vectors in, out."""
        abef = [self.shuffle(lo, hi, (5, 4, 1, 0)) for lo, hi in states]
        cdgh = [self.shuffle(lo, hi, (7, 6, 3, 2)) for lo, hi in states]
        first = list(zip(abef, cdgh))
        groups = [list(g) for g in blocks]
        for j in range(16):
            for lane, g in enumerate(groups):
                if j >= 4:  # W[4j..4j+3] from the four groups before (the SHA-NI schedule)
                    s1 = self.op(f"call {V} @llvm.x86.sha256msg1({V} {g[j - 4]}, {V} {g[j - 3]})")
                    w7 = self.shuffle(g[j - 2], g[j - 1], (1, 2, 3, 4))
                    g.append(self.op(f"call {V} @llvm.x86.sha256msg2({V} {self.op(f'add {V} {s1}, {w7}')}, "
                                     f"{V} {g[j - 1]})"))
                wk = self.op(f"add {V} {g[j]}, {_vec(K256[4 * j:4 * j + 4])}")
                cdgh[lane] = self.op(f"call {V} @llvm.x86.sha256rnds2({V} {cdgh[lane]}, {V} {abef[lane]}, {V} {wk})")
                high = self.shuffle(wk, wk, (2, 3, 0, 0))
                # two rounds make the first output ABEF, two more make it CDGH beside the new ABEF
                abef[lane] = self.op(f"call {V} @llvm.x86.sha256rnds2({V} {abef[lane]}, {V} {cdgh[lane]}, {V} {high})")
        out = []
        for lane, (a0, c0) in enumerate(first):
            a = self.op(f"add {V} {abef[lane]}, {a0}")
            c = self.op(f"add {V} {cdgh[lane]}, {c0}")
            out.append((self.shuffle(a, c, (3, 2, 7, 6)), self.shuffle(a, c, (1, 0, 5, 4))))
        return out

    def load(self, base: str, index: str) -> str:
        ptr = self.op(f"getelementptr {V}, ptr {base}, i64 {index}")
        return self.op(f"call {V} @llvm.bswap.v4i32({V} {self.op(f'load {V}, ptr {ptr}, align 1')})")


def _module(lanes: int) -> str:
    """``hmac_L(blocks, states, out, groups)``: for ``groups`` × ``lanes`` padded inner
    blocks, the 8 words of HMAC-SHA256 from midstates ``states`` (inner, outer; 16 words)."""
    ir = _IR()
    ir.lines.append("loop:")
    ir.lines.append("  %g = phi i64 [0, %entry], [%next, %loop]")
    base = ir.op(f"mul i64 %g, {4 * lanes}")
    blocks = [[ir.load("%blocks", ir.op(f"add i64 {base}, {4 * lane + w}")) for w in range(4)]
              for lane in range(lanes)]
    inner = ir.compress([("%ilo", "%ihi")] * lanes, blocks)
    tail = (_vec((0x80000000, 0, 0, 0)), _vec((0, 0, 0, (64 + 32) * 8)))
    outer = ir.compress([("%olo", "%ohi")] * lanes, [[lo, hi, *tail] for lo, hi in inner])
    first = ir.op(f"mul i64 %g, {2 * lanes}")
    for lane, (lo, hi) in enumerate(outer):
        for half, value in enumerate((lo, hi)):
            ptr = ir.op(f"getelementptr {V}, ptr %out, i64 {ir.op(f'add i64 {first}, {2 * lane + half}')}")
            ir.lines.append(f"  store {V} {value}, ptr {ptr}, align 1")
    ir.lines.append("  %next = add i64 %g, 1")
    ir.lines.append("  %done = icmp eq i64 %next, %groups")
    ir.lines.append("  br i1 %done, label %exit, label %loop")
    head = [
        f"define void @hmac_{lanes}(ptr %blocks, ptr %states, ptr %out, i64 %groups) {{",
        "entry:",
    ]
    for name, offset in (("ilo", 0), ("ihi", 1), ("olo", 2), ("ohi", 3)):
        head.append(f"  %p{name} = getelementptr {V}, ptr %states, i64 {offset}")
        head.append(f"  %{name} = load {V}, ptr %p{name}, align 1")
    head.append("  br label %loop")
    return "\n".join([*head, *ir.lines, "exit:", "  ret void", "}"]) + "\n"


def _compile():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    declarations = "".join(f"declare {V} @{name}({', '.join([V] * arity)})\n" for name, arity in (
        ("llvm.x86.sha256rnds2", 3), ("llvm.x86.sha256msg1", 2), ("llvm.x86.sha256msg2", 2), ("llvm.bswap.v4i32", 1)))
    module = llvm.parse_assembly(declarations + "".join(_module(n) for n in LANES))
    module.verify()
    engine = llvm.create_mcjit_compiler(module, target)
    engine.finalize_object()
    kind = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    functions = {n: kind(engine.get_function_address(f"hmac_{n}")) for n in LANES}
    return engine, functions


def _sha256_block(state: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    """One compression in Python (FIPS 180-4 6.2.2), for the midstates only."""
    rotr = lambda x, n: ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF  # noqa: E731
    w = list(int.from_bytes(block[i:i + 4], "big") for i in range(0, 64, 4))
    for t in range(16, 64):
        s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xFFFFFFFF)
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[t] + w[t]) & 0xFFFFFFFF
        t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & 0xFFFFFFFF
        a, b, c, d, e, f, g, h = (t1 + t2) & 0xFFFFFFFF, a, b, c, (d + t1) & 0xFFFFFFFF, e, f, g
    return tuple((x + y) & 0xFFFFFFFF for x, y in zip(state, (a, b, c, d, e, f, g, h)))


def padded_blocks(values: pa.StringArray) -> np.ndarray:
    """The inner block of each value (at most 55 bytes), which follows the 64-byte ipad block."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset : values.offset + n + 1]
    lengths = np.diff(offsets)
    assert lengths.max() <= 55, "one-block messages only"
    blocks = np.zeros((n, 64), np.uint8)
    rows = np.repeat(np.arange(n), lengths)
    blocks[rows, np.arange(len(rows)) - np.repeat(offsets[:-1] - offsets[0], lengths)] = np.frombuffer(
        values.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    blocks[np.arange(n), lengths] = 0x80
    blocks[:, 56:] = ((64 + lengths) * 8).astype(">u8").view(np.uint8).reshape(n, 8)
    return blocks


def available() -> bool:
    """Whether this CPU has the SHA extensions (else there is no SHA-NI bound to measure)."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    return bool(llvm.get_host_cpu_features().get("sha"))


def sha_ni_bound(key: bytes, values: pa.StringArray, repeat: int = 3) -> tuple[float, int]:
    """(HMAC-SHA256 of ``values`` per second, lanes) of the fastest interleaving; every
    interleaving's digests are first checked against ``hmac`` on a few rows."""
    padded = key.ljust(64, b"\0")
    states = np.array([_sha256_block(IV256, bytes(k ^ pad for k in padded)) for pad in (0x36, 0x5C)],
                      np.uint32).reshape(-1)  # inner then outer midstate
    engine, functions = _compile()
    blocks = padded_blocks(values)
    best = (0.0, 0)
    for lanes, function in functions.items():
        n = len(values) - len(values) % lanes
        out = np.zeros((n, 8), np.uint32)
        args = (blocks.ctypes.data, states.ctypes.data, out.ctypes.data, n // lanes)
        function(*args)
        for i in (0, 1, n // 2, n - 1):
            digest = out[i].astype(">u4").tobytes()
            assert digest == hmac.new(key, values[i].as_py().encode(), hashlib.sha256).digest(), (lanes, i)
        seconds = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            function(*args)
            seconds = min(seconds, time.perf_counter() - start)
        best = max(best, (n / seconds, lanes))
    del engine  # the compiled code lives as long as the engine
    return best
