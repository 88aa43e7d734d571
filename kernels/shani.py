"""HMAC-SHA256 of one-block messages with the CPU's SHA extensions, as LLVM IR.

``sha256rnds2``, ``sha256msg1`` and ``sha256msg2`` (LLVM's ``llvm.x86.*`` intrinsics)
emitted with llvmlite's IR builder into a function being built. One implementation
used twice: :mod:`kernels.sha256` emits it inside its Numba kernel (an intrinsic) for
identifiers of at most 55 bytes, and ``benchmarks/shani.py`` compiles it alone, in a
loop over padded blocks, to measure the bound the kernel is compared with.

From precomputed HMAC midstates a pseudonym is two compressions: the inner one of the
padded message, the outer one of the inner digest. One compression is a chain of
dependent rounds, so the lanes (independent messages) are emitted interleaved, step
by step, and their chains overlap in the SHA unit's pipeline.

Callers guarantee: code containing it is compiled only for a CPU with the extensions
(:func:`available`); LLVM cannot select the instructions for any other.
"""

from __future__ import annotations

import functools
import os
import platform

#: Messages interleaved by the kernel: 4 was the fastest of 1, 2, 4 and 8 in the bound's
#: measurement on this machine (benchmarks/shani.py: 58, 38, 30, 32 ns per message, CPU);
#: the kernel itself took 47-48 ns with 2, 4 or 8.
LANES = 4


@functools.cache
def available() -> bool:
    """Whether code with the SHA extensions may be compiled and run here: the CPU has
    them (``sha_ni`` among /proc/cpuinfo's flags, which the compiled-ahead module's
    digest reads too; elsewhere LLVM's host features, whose import costs 30 ms), Numba
    compiles for this CPU (no ``NUMBA_CPU_NAME`` naming another) and compiles at all
    (not ``NUMBA_DISABLE_JIT``: an intrinsic has no Python twin)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return False
    if os.environ.get("NUMBA_CPU_NAME", "host") != "host":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "sha_ni" in line.split()
    except OSError:
        pass
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    return bool(llvm.get_host_cpu_features().get("sha"))


def _vector():
    import llvmlite.ir as ir

    return ir.VectorType(ir.IntType(32), 4)


def _constant(words):
    import llvmlite.ir as ir

    return ir.Constant(_vector(), [ir.Constant(ir.IntType(32), w) for w in words])


def _intrinsic(builder, name: str, *args, result=None):
    """``call @llvm.NAME(args)``, declared in the builder's module on first use; it
    returns ``result`` (an LLVM type; default: its first argument's type)."""
    import llvmlite.ir as ir

    module = builder.module
    function = module.globals.get(f"llvm.{name}")
    if function is None:
        kind = ir.FunctionType(result or args[0].type, [a.type for a in args])
        function = ir.Function(module, kind, f"llvm.{name}")
    return builder.call(function, args)


def _splat(builder, value, count: int):
    """<count x T> of ``value`` (type T) in every element."""
    import llvmlite.ir as ir

    i32 = ir.IntType(32)
    undefined = ir.Constant(ir.VectorType(value.type, count), ir.Undefined)
    one = builder.insert_element(undefined, value, ir.Constant(i32, 0))
    return _shuffle(builder, one, undefined, (0,) * count)


def _shuffle(builder, a, b, lanes: tuple[int, ...]):
    import llvmlite.ir as ir

    i32 = ir.IntType(32)
    mask = ir.Constant(ir.VectorType(i32, len(lanes)), [ir.Constant(i32, i) for i in lanes])
    return builder.shuffle_vector(a, b, mask)


def load_words(builder, pointer, count: int) -> list:
    """``count`` big-endian 16-byte groups of 32-bit words from the bytes at ``pointer``
    (any pointer type, no alignment), as <4 x i32> in host order."""
    vector = _vector()
    base = builder.bitcast(pointer, vector.as_pointer())
    return [_intrinsic(builder, "bswap.v4i32", builder.load(builder.gep(base, [_i64(j)]), align=1))
            for j in range(count)]  # fmt: skip


def padded_block(builder, pointer, length) -> list:
    """The HMAC inner block of the ``length`` (i64, at most 55) bytes at ``pointer``:
    the message, 0x80, zeros, and its bit length counting the 64-byte key block in
    front; as :func:`load_words` gives it. 64 bytes must be readable at ``pointer``
    (the bytes past the message are read, then replaced). 128-bit vectors only, like
    :func:`store_words`: the SHA instructions have no VEX form, and on some CPUs legacy
    SSE code after wider vectors that left their upper halves in use runs a hundred
    times slower (docs/design.md)."""
    import llvmlite.ir as ir

    i8, i32 = ir.IntType(8), ir.IntType(32)
    bytes16 = ir.VectorType(i8, 16)
    n = _splat(builder, builder.trunc(length, i8), 16)
    marker = ir.Constant(bytes16, [ir.Constant(i8, 0x80)] * 16)
    zero = ir.Constant(bytes16, None)
    base = builder.bitcast(pointer, bytes16.as_pointer())
    wide = length.type
    bits = builder.mul(builder.add(length, ir.Constant(wide, 64)), ir.Constant(wide, 8))
    words = []
    for j in range(4):
        raw = builder.load(builder.gep(base, [_i64(j)]), align=1)
        where = ir.Constant(bytes16, [ir.Constant(i8, 16 * j + b) for b in range(16)])
        pad = builder.select(builder.icmp_unsigned("==", where, n), marker, zero)
        block = builder.select(builder.icmp_unsigned("<", where, n), raw, pad)
        if j == 3:
            high = builder.trunc(builder.lshr(bits, ir.Constant(wide, 8)), i8)
            block = builder.insert_element(block, high, ir.Constant(i32, 14))
            block = builder.insert_element(block, builder.trunc(bits, i8), ir.Constant(i32, 15))
        words.append(_intrinsic(builder, "bswap.v4i32", builder.bitcast(block, _vector())))
    return words


def load_state(builder, pointer) -> tuple:
    """A state of 8 host-order 32-bit words at ``pointer``: (ABCD, EFGH)."""
    base = builder.bitcast(pointer, _vector().as_pointer())
    return tuple(builder.load(builder.gep(base, [_i64(j)]), align=4) for j in range(2))


def store_words(builder, digest: tuple, pointer, count) -> None:
    """The first ``count`` (i64, 1 to 8) words of a digest as SHA-256 writes them
    (big-endian) at ``pointer``, nothing past them (two 128-bit masked stores)."""
    import llvmlite.ir as ir

    i32 = ir.IntType(32)
    target = builder.bitcast(pointer, _vector().as_pointer())
    align = ir.Constant(i32, 1)
    limit = _splat(builder, builder.trunc(count, i32), 4)
    for half, words in enumerate(digest):
        which = _constant(range(4 * half, 4 * half + 4))
        mask = builder.icmp_unsigned("<", which, limit)
        swapped = _intrinsic(builder, "bswap.v4i32", words)
        _intrinsic(builder, "masked.store.v4i32.p0", swapped, builder.gep(target, [_i64(half)]), align, mask,
                   result=ir.VoidType())  # fmt: skip


def _i64(value: int):
    import llvmlite.ir as ir

    return ir.Constant(ir.IntType(64), value)


def compress(builder, states: list[tuple], blocks: list[list]) -> list[tuple]:
    """SHA-256 of one 64-byte block per lane: (ABCD, EFGH) state vectors in and out;
    a lane's block is four <4 x i32> of message words."""
    from kernels.sha256 import K256

    abef = [_shuffle(builder, lo, hi, (5, 4, 1, 0)) for lo, hi in states]
    cdgh = [_shuffle(builder, lo, hi, (7, 6, 3, 2)) for lo, hi in states]
    first = list(zip(abef, cdgh))
    groups = [list(g) for g in blocks]
    for j in range(16):
        wk_constant = _constant(int(k) for k in K256[4 * j : 4 * j + 4])
        for lane, g in enumerate(groups):
            if j >= 4:  # W[4j..4j+3] from the four groups before (the SHA-NI message schedule)
                s1 = _intrinsic(builder, "x86.sha256msg1", g[j - 4], g[j - 3])
                w7 = _shuffle(builder, g[j - 2], g[j - 1], (1, 2, 3, 4))
                g.append(_intrinsic(builder, "x86.sha256msg2", builder.add(s1, w7), g[j - 1]))
            wk = builder.add(g[j], wk_constant)
            cdgh[lane] = _intrinsic(builder, "x86.sha256rnds2", cdgh[lane], abef[lane], wk)
            high = _shuffle(builder, wk, wk, (2, 3, 0, 0))
            # two rounds make the first output ABEF, two more make it CDGH beside the new ABEF
            abef[lane] = _intrinsic(builder, "x86.sha256rnds2", abef[lane], cdgh[lane], high)
    out = []
    for lane, (a0, c0) in enumerate(first):
        a = builder.add(abef[lane], a0)
        c = builder.add(cdgh[lane], c0)
        out.append((_shuffle(builder, a, c, (3, 2, 7, 6)), _shuffle(builder, a, c, (1, 0, 5, 4))))
    return out


def hmac(builder, blocks: list[list], inner: list[tuple], outer: list[tuple]) -> list[tuple]:
    """HMAC-SHA256 per lane of a message that fits one block: ``blocks`` as
    :func:`compress` takes them (padded, its bit length counting the 64-byte key block
    in front), ``inner``/``outer`` the key's midstates; the digest words, (ABCD, EFGH)."""
    digests = compress(builder, inner, blocks)
    # the outer message: the 32-byte inner digest, padded; (64 + 32) * 8 bits
    tail = [_constant((0x80000000, 0, 0, 0)), _constant((0, 0, 0, (64 + 32) * 8))]
    return compress(builder, outer, [[lo, hi, *tail] for lo, hi in digests])
