"""Pseudonym throughput: the HMAC kernel against Python's ``hmac`` and the SHA-NI bound,
and the cost of a new identifier through ``telemetry.pseudonymize``.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_hmac.py -s``. The kernel test
records in ``extra_info`` (and prints) identifiers per second, wall and CPU time per
identifier, the baseline's rate, their ratio, and the share of the SHA-NI bound:
HMAC-SHA256 of the same 1 M numbers from precomputed midstates with the kernel's own
SHA-NI code (kernels/shani.py) over blocks padded beforehand, independent messages
interleaved (benchmarks/shani.py), timed in turns with the kernel. (The former bound,
``hashlib.sha256`` streaming 64 MiB, is one dependent chain of compressions: the
multi-lane kernel reached 112 % of it.) The pseudonymize test prints the wall and CPU
time per new identifier beside the HMAC kernel's and the Python loop's, in turns.

Figures (AMD EPYC with SHA-NI, 2 cores shared with other jobs at a load of 7, best of 7
in turns, five runs): hmac16 with SHA-NI 93-114 ns/id wall, 49-50 ns CPU: 60-62% of the
bound's CPU time (29-30 ns, 4 messages; its wall share swung 43-79%, so the target is
judged on CPU), 33-38x the Python loop (portable kernel: 63 ns CPU). pseudonymize over
1 M distinct E.164 numbers 232-288 ns per new identifier wall, 116-122 ns CPU (HMAC
kernel alone 49-50 ns CPU) against the loop's 2,837-3,969 / 1,604-1,709 ns: 11.0-14.1x
wall, 13.6-14.3x CPU (before the SHA-NI kernel and the E.164 fast path: 573 ns wall,
257 ns CPU, 6.0x).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

BASELINE_ROWS = 100_000


def best_seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.fixture(scope="session")
def hashing():
    from telemetry import hashing

    hashing.hmac16(pa.array(["+15550100", "x" * 100]), hashing.midstates([bytes(32)]))  # compile
    return hashing


@pytest.fixture(scope="session")
def python_hmac_rate(numbers_1m: pa.Array, bench_key: bytes) -> float:
    """Identifiers per second of the plain per-row ``hmac`` loop, on a subset."""
    values = numbers_1m.slice(0, BASELINE_ROWS).to_pylist()

    def loop() -> None:
        for v in values:
            hmac.new(bench_key, v.encode(), hashlib.sha256).digest()

    return BASELINE_ROWS / best_seconds(loop)


@pytest.fixture(scope="session")
def sha_ni_bound(numbers_1m: pa.Array, bench_key: bytes):
    """benchmarks/shani.py's bound over the numbers, checked; None without SHA instructions."""
    from benchmarks.shani import ShaNiBound
    from kernels.shani import available

    return ShaNiBound(bench_key, numbers_1m) if available() else None


def _rate(benchmark, rows: int, fallback: Callable[[], object]) -> float:
    stats = getattr(benchmark, "stats", None)
    seconds = stats.stats.min if stats is not None else best_seconds(fallback)
    return rows / seconds


def test_hmac16_kernel(
    benchmark, capsys, figure, hashing, numbers_1m, bench_key, python_hmac_rate, sha_ni_bound
) -> None:
    # The kernel and the SHA-NI bound in turns (bound, kernel, bound, kernel …), as many
    # passes of each, each pass's wall and CPU time kept: the shares are of the best of
    # each. The bound's interleaving is the one of least CPU time (wall time on this
    # shared machine picks whichever ran in a quiet moment).
    from kernels.shani import available

    states = hashing.midstates([bench_key])
    n = len(numbers_1m)
    lanes = sha_ni_bound.fastest() if sha_ni_bound else 0
    bound_s: list[tuple[float, float]] = []
    kernel_cpu: list[float] = []

    def turn() -> None:
        if sha_ni_bound:
            bound_s.append(sha_ni_bound.timed(lanes))

    def kernel() -> pa.Array:
        start = time.process_time()
        result = hashing.hmac16(numbers_1m, states)
        kernel_cpu.append((time.process_time() - start) / n)
        return result

    result = benchmark.pedantic(kernel, setup=turn, rounds=7, iterations=1, warmup_rounds=1)
    for i in (0, 1, 12_345, n - 1):
        value = numbers_1m[i].as_py().encode()
        assert result[i].as_py() == hmac.new(bench_key, value, hashlib.sha256).digest()[:16]
    wall = benchmark.stats.stats.min / n
    cpu = min(kernel_cpu)
    rate = 1 / wall
    info = {
        "ids_per_s": round(rate),
        "ns_per_id": round(wall * 1e9, 1),
        "cpu_ns_per_id": round(cpu * 1e9, 1),
        "sha_ni": available(),
        "python_hmac_ids_per_s": round(python_hmac_rate),
        "ratio_vs_python_hmac": round(rate / python_hmac_rate, 1),
    }
    if bound_s:
        bound_wall, bound_cpu = min(b[0] for b in bound_s), min(b[1] for b in bound_s)
        info.update(sha_ni_bound_ns_per_id=round(bound_wall * 1e9, 1), sha_ni_bound_cpu_ns_per_id=round(bound_cpu * 1e9, 1),
                    sha_ni_share=round(bound_wall / wall, 3), sha_ni_share_cpu=round(bound_cpu / cpu, 3))  # fmt: skip
        share = (f"{bound_wall / wall:.0%} of the SHA-NI bound wall, {bound_cpu / cpu:.0%} CPU (bound "
                 f"{bound_wall * 1e9:.0f} ns/id wall, {bound_cpu * 1e9:.0f} ns CPU, {lanes} messages interleaved)")  # fmt: skip
        met = bound_cpu / cpu >= 0.5  # CPU: the wall share swung 43-79% between runs here, the CPU share 60-62%
    else:
        share = "no SHA-NI bound (the CPU has no SHA instructions)"
        met = True
    benchmark.extra_info.update(info)
    figure(
        "HMAC-SHA256 kernel (pseudonyms), one thread, 1 M numbers",
        f"{rate / 1e6:.2f} M ids/s ({wall * 1e9:.0f} ns/id wall, {cpu * 1e9:.0f} ns CPU); {share}",
        f"Python hmac loop: {python_hmac_rate / 1e6:.3f} M ids/s",
        rate / python_hmac_rate,
        "≥ 10x; ≥ 50% of the bound",
        rate / python_hmac_rate >= 10 and met,
        "SHA-NI bound: HMAC-SHA256 of the same numbers from precomputed midstates with the kernel's own "
        "sha256rnds2/msg1/msg2 code (kernels/shani.py), 1, 2, 4 or 8 messages interleaved (the fastest), "
        "blocks padded beforehand; benchmarks/shani.py; best of 7, bound and kernel in turns; the target is "
        "judged on the CPU share (on a shared machine the wall share depends on which pass ran in a quiet moment)",
    )
    with capsys.disabled():
        print(f"\nhmac16 ({'SHA-NI' if available() else 'portable'}): {rate / 1e6:.2f} M ids/s, {wall * 1e9:.0f} ns/id "
              f"wall, {cpu * 1e9:.0f} ns CPU; python hmac: {python_hmac_rate / 1e6:.3f} M ids/s; "
              f"ratio {info['ratio_vs_python_hmac']}x; {share}")  # fmt: skip


def test_hmac16_multikey(benchmark, hashing, numbers_1m, bench_key) -> None:
    # Three epochs interleaved row by row: each lane gathers its own midstate.
    states = hashing.midstates([bench_key, bench_key[::-1], bytes(32)])
    key_index = (np.arange(len(numbers_1m)) % 3).astype(np.int16)
    benchmark.pedantic(
        hashing.hmac16,
        args=(numbers_1m, states, key_index),
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )
    benchmark.extra_info["ids_per_s"] = round(
        _rate(benchmark, len(numbers_1m), lambda: hashing.hmac16(numbers_1m, states, key_index))
    )


def test_hmac16_long_identifiers(benchmark, hashing, bench_key) -> None:
    # 60-120 byte SIP URIs: two or three inner blocks, the scalar path.
    rng = np.random.default_rng(5)
    values = pa.array(
        [
            f"sip:{'u' * int(k)}{i}@trunk-{i % 7}.carrier.example"
            for i, k in enumerate(rng.integers(30, 90, 200_000))
        ]
    )
    states = hashing.midstates([bench_key])
    benchmark.pedantic(
        hashing.hmac16, args=(values, states), rounds=3, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info["ids_per_s"] = round(
        _rate(benchmark, len(values), lambda: hashing.hmac16(values, states))
    )


def test_python_hmac_baseline(benchmark, numbers_1m, bench_key) -> None:
    values = numbers_1m.slice(0, BASELINE_ROWS).to_pylist()

    def loop() -> list[bytes]:
        return [hmac.new(bench_key, v.encode(), hashlib.sha256).digest()[:16] for v in values]

    benchmark.pedantic(loop, rounds=3, iterations=1)
    benchmark.extra_info["rows"] = BASELINE_ROWS
    benchmark.extra_info["ids_per_s"] = round(_rate(benchmark, BASELINE_ROWS, loop))


def test_hmac_compile_time(benchmark) -> None:
    # A fresh interpreter: import Numba and compile the kernel for string input.
    code = (
        "import pyarrow as pa; from telemetry import hashing; "
        "hashing.hmac16(pa.array(['+15550100']), hashing.midstates([bytes(32)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TELEMETRY_CACHE_DIR"}
    benchmark.pedantic(
        lambda: subprocess.run([sys.executable, "-c", code], check=True, env=env),
        rounds=1,
        iterations=1,
    )


def test_truncate_ips(benchmark) -> None:
    from telemetry.ipaddr import truncate_ips

    rng = np.random.default_rng(6)
    v4 = [f"{a}.{b}.{c}.{d}:5060" for a, b, c, d in rng.integers(0, 256, (150_000, 4))]
    v6 = [f"2001:db8:{a:x}::{b:x}" for a, b in rng.integers(0, 65536, (50_000, 2))]
    values = pa.array(v4 + v6)
    truncate_ips(values[:10])
    networks, invalid = benchmark.pedantic(
        truncate_ips, args=(values,), rounds=3, iterations=1, warmup_rounds=1
    )
    assert not invalid.any()
    benchmark.extra_info["ids_per_s"] = round(
        _rate(benchmark, len(values), lambda: truncate_ips(values))
    )


@pytest.fixture(scope="session")
def distinct_e164() -> pa.Array:
    """1 M E.164 numbers, each once: a transit day's destinations (every record a new one)."""
    from telemetry.generate import Shape, generate

    shape = Shape(destinations=1.0)
    return pa.concat_arrays([b.column("destination") for b in generate(1_000_000, shape=shape, seed=9)])


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def test_pseudonymize_all_distinct_vs_python_hmac(benchmark, capsys, figure, hashing, distinct_e164, bench_key) -> None:
    # The notebook API over numbers that never repeat: normalization, HMAC and the work
    # around each new identifier, on one thread; beside it the HMAC kernel alone over the
    # same text and Python's plain hmac loop (which normalizes nothing), in turns, each
    # pass's wall and CPU time kept.
    import telemetry

    n = len(distinct_e164)
    assert pa.compute.count_distinct(distinct_e164).as_py() == n
    states = hashing.midstates([bench_key])
    values = distinct_e164.slice(0, BASELINE_ROWS).to_pylist()
    loop_s: list[tuple[float, float]] = []
    kernel_s: list[tuple[float, float]] = []
    ours_cpu: list[float] = []

    def baselines() -> None:
        loop_s.append(_timed(lambda: [hmac.new(bench_key, v.encode(), hashlib.sha256).digest() for v in values]))
        kernel_s.append(_timed(lambda: hashing.hmac16(distinct_e164, states)))

    def ours() -> pa.Array:
        start = time.process_time()
        result = telemetry.pseudonymize(distinct_e164, key=bench_key)
        ours_cpu.append(time.process_time() - start)
        return result

    telemetry.pseudonymize(distinct_e164.slice(0, 10_000), key=bench_key)  # kernels loaded
    result = benchmark.pedantic(ours, setup=baselines, rounds=7, iterations=1)
    from telemetry.keys import Keyring

    subkey = Keyring.from_key(bench_key).subkeys("subscriber")[0]
    for i in (0, 12_345, n - 1):
        assert result[i].as_py() == hmac.new(subkey, distinct_e164[i].as_py().encode(), hashlib.sha256).digest()[:16]
    wall, cpu = benchmark.stats.stats.min / n, min(ours_cpu) / n
    loop = min(w for w, _ in loop_s) / BASELINE_ROWS, min(c for _, c in loop_s) / BASELINE_ROWS
    kernel = min(w for w, _ in kernel_s) / n, min(c for _, c in kernel_s) / n
    ratio, ratio_cpu = loop[0] / wall, loop[1] / cpu
    benchmark.extra_info.update(ns_per_id=round(wall * 1e9), cpu_ns_per_id=round(cpu * 1e9),
                                hmac_kernel_ns_per_id=round(kernel[0] * 1e9), hmac_kernel_cpu_ns_per_id=round(kernel[1] * 1e9),
                                python_hmac_ns_per_id=round(loop[0] * 1e9), python_hmac_cpu_ns_per_id=round(loop[1] * 1e9),
                                ratio=round(ratio, 1), ratio_cpu=round(ratio_cpu, 1))  # fmt: skip
    figure(
        "`telemetry.pseudonymize`, one thread, 1 M distinct E.164 numbers (no repeats)",
        f"{1 / wall / 1e6:.2f} M ids/s: {wall * 1e9:.0f} ns per new identifier wall, {cpu * 1e9:.0f} ns CPU "
        f"(HMAC kernel alone: {kernel[0] * 1e9:.0f} ns wall, {kernel[1] * 1e9:.0f} ns CPU)",
        f"Python hmac loop: {1 / loop[0] / 1e6:.3f} M ids/s ({loop[0] * 1e9:.0f} ns wall, {loop[1] * 1e9:.0f} ns CPU)",
        ratio,
        "≥ 10x",
        ratio >= 10,
        f"ratio of CPU times {ratio_cpu:.1f}x; normalized (E.164, region) and hashed per row: each batch's value "
        "sample tells the pseudonymizer the values are new, so it skips the table of identifiers seen; the loop "
        f"ran on {BASELINE_ROWS:,} of the numbers; best of 7, the three in turns",
    )
    with capsys.disabled():
        print(f"\npseudonymize: {wall * 1e9:.0f} ns per new identifier wall, {cpu * 1e9:.0f} ns CPU; HMAC kernel "
              f"alone {kernel[0] * 1e9:.0f} ns wall, {kernel[1] * 1e9:.0f} ns CPU; python hmac loop "
              f"{loop[0] * 1e9:.0f} ns wall, {loop[1] * 1e9:.0f} ns CPU; ratio {ratio:.1f}x wall, {ratio_cpu:.1f}x CPU")  # fmt: skip
