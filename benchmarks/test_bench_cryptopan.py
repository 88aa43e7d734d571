"""Crypto-PAn throughput: the vectorized form (every prefix block of every distinct address
in large AES-ECB calls) against yacryptopan's per-address loop, timed in the same run.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_cryptopan.py``. Addresses are
distinct (the worst case: the vectorized form anonymizes each distinct text once), IPv4
and IPv6 separately since an IPv6 address needs four times the AES blocks.
"""

from __future__ import annotations

import ipaddress
import random
import time

import pyarrow as pa
import pytest
from conftest import BENCH_KEY
from yacryptopan import CryptoPAn as YaCryptoPAn

from telemetry.cryptopan import CryptoPAn

ROWS = 500_000
BASELINE_ROWS = 5_000


def _addresses(version: int, n: int) -> list[str]:
    rng = random.Random(version)
    if version == 4:
        return [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(n)]
    return [ipaddress.IPv6Address(rng.getrandbits(128)).compressed for _ in range(n)]


@pytest.mark.parametrize("version", [4, 6])
def test_cryptopan_vectorized(benchmark, figure, version) -> None:
    texts = _addresses(version, ROWS)
    values = pa.array(texts)
    ours = CryptoPAn(BENCH_KEY)
    ours.anonymize_array(values.slice(0, 10))  # compile the parsing kernels

    result = benchmark.pedantic(ours.anonymize_array, args=(values,), rounds=3, iterations=1)
    rate = ROWS / benchmark.stats.stats.min

    theirs = YaCryptoPAn(BENCH_KEY)
    sample = texts[:BASELINE_ROWS]
    start = time.perf_counter()
    expected = [theirs.anonymize(t) for t in sample]
    baseline = BASELINE_ROWS / (time.perf_counter() - start)
    got = result[0].slice(0, BASELINE_ROWS).to_pylist()
    assert got == [ipaddress.ip_address(e).compressed for e in expected]

    ratio = rate / baseline
    benchmark.extra_info.update(addresses_per_s=round(rate), yacryptopan_per_s=round(baseline),
                                ratio=round(ratio, 1))
    figure(
        f"Crypto-PAn IPv{version}, one thread, {ROWS:,} distinct addresses",
        f"{rate / 1e3:,.0f} k addresses/s",
        f"yacryptopan loop: {baseline / 1e3:,.1f} k addresses/s",
        ratio,
        "≥ 10x",
        ratio >= 10,
    )
