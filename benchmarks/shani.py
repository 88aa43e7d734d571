"""The SHA-NI bound of the HMAC benchmark: HMAC-SHA256 of short messages as fast as this
core's SHA extensions compute it, used the way the pseudonym kernel is used.

The kernel hashes identifiers of at most 55 bytes from precomputed HMAC midstates, so a
pseudonym is exactly two compressions (inner: the padded message; outer: the inner digest),
and it hashes many rows side by side. A bound measured by streaming one long buffer through
``hashlib`` (one dependent chain of compressions) is not a bound for that: independent
messages overlap in the SHA unit's pipeline. So the bound here is measured with SHA-NI
instructions (``sha256rnds2``, ``sha256msg1``, ``sha256msg2``) over ``lanes`` independent
messages interleaved round by round, messages already padded into blocks (work the kernel
must also do, left out), midstates given: the best of 1, 2, 4 and 8 lanes. The code is the
kernel's own (kernels/shani.py emits it), in a loop over the blocks built here with
llvmlite's IR builder and compiled for the host CPU by llvmlite; its digests are checked
against ``hmac`` before it is timed.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import time

import numpy as np
import pyarrow as pa

from kernels import shani

LANES = (1, 2, 4, 8)  # 16 measured slower: the lanes no longer fit the registers


def _function(module, lanes: int) -> None:
    """``hmac_L(blocks, states, out, groups)``: for ``groups`` × ``lanes`` padded inner
    blocks, the 8 words of HMAC-SHA256 from midstates ``states`` (inner, outer; 16 words)."""
    import llvmlite.ir as ir

    i64 = ir.IntType(64)
    u8p, u32p = ir.IntType(8).as_pointer(), ir.IntType(32).as_pointer()
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [u8p, u32p, u32p, i64]), f"hmac_{lanes}")
    blocks, states, out, groups = function.args
    entry, loop, done = (function.append_basic_block(name) for name in ("entry", "loop", "exit"))
    builder = ir.IRBuilder(entry)
    inner = shani.load_state(builder, states)
    outer = shani.load_state(builder, builder.gep(states, [ir.Constant(i64, 8)]))
    builder.branch(loop)
    builder.position_at_end(loop)
    g = builder.phi(i64)
    g.add_incoming(ir.Constant(i64, 0), entry)
    first = builder.mul(g, ir.Constant(i64, lanes))
    rows = [builder.add(first, ir.Constant(i64, lane)) for lane in range(lanes)]
    words = [shani.load_words(builder, builder.gep(blocks, [builder.mul(r, ir.Constant(i64, 64))]), 4) for r in rows]
    digests = shani.hmac(builder, words, [inner] * lanes, [outer] * lanes)
    for row, (lo, hi) in zip(rows, digests):  # host-order words, as the checks read them
        base = builder.bitcast(builder.gep(out, [builder.mul(row, ir.Constant(i64, 8))]), lo.type.as_pointer())
        builder.store(lo, base, align=4)
        builder.store(hi, builder.gep(base, [ir.Constant(i64, 1)]), align=4)
    following = builder.add(g, ir.Constant(i64, 1))
    g.add_incoming(following, loop)
    builder.cbranch(builder.icmp_unsigned("==", following, groups), done, loop)
    builder.position_at_end(done)
    builder.ret_void()


def _compile():
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    module = ir.Module()
    for lanes in LANES:
        _function(module, lanes)
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    engine = llvm.create_mcjit_compiler(parsed, target)
    engine.finalize_object()
    kind = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    functions = {n: kind(engine.get_function_address(f"hmac_{n}")) for n in LANES}
    return engine, functions


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


class ShaNiBound:
    """The bound's code compiled for ``values`` under ``key``: every interleaving's
    digests checked against ``hmac`` on a few rows, then timed one pass at a time
    (:meth:`timed`), so that a benchmark can take turns with the kernel."""

    def __init__(self, key: bytes, values: pa.StringArray) -> None:
        from telemetry.hashing import midstates

        self.rows = len(values)
        self._states = midstates([key])[0].reshape(-1)  # inner then outer midstate
        self._engine, self._functions = _compile()  # the code lives as long as the engine
        self._blocks = padded_blocks(values)
        self._out = np.zeros((self.rows, 8), np.uint32)
        for lanes in LANES:
            n = self._run(lanes)
            for i in (0, 1, n // 2, n - 1):
                digest = self._out[i].astype(">u4").tobytes()
                assert digest == hmac.new(key, values[i].as_py().encode(), hashlib.sha256).digest(), (lanes, i)

    def _run(self, lanes: int) -> int:
        n = self.rows - self.rows % lanes
        self._functions[lanes](self._blocks.ctypes.data, self._states.ctypes.data, self._out.ctypes.data, n // lanes)
        return n

    def timed(self, lanes: int) -> tuple[float, float]:
        """(wall, CPU) seconds per message of one pass with ``lanes`` interleaved."""
        wall, cpu = time.perf_counter(), time.process_time()
        n = self._run(lanes)
        return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n

    def fastest(self, repeat: int = 3) -> int:
        """The interleaving of least CPU time per message, best of ``repeat`` in turns."""
        times = {lanes: float("inf") for lanes in LANES}
        for _ in range(repeat):
            for lanes in LANES:
                times[lanes] = min(times[lanes], self.timed(lanes)[1])
        return min(times, key=times.get)
