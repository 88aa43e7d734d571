"""Crypto-PAn throughput: the vectorized form (every prefix block of every distinct address
in large AES-ECB calls) against yacryptopan's per-address loop, timed in the same run.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_cryptopan.py``. Addresses are
distinct (the vectorized form anonymizes each distinct text once), IPv4 and IPv6
separately (an IPv6 address has four times the prefix blocks), random over the whole
space (few shared prefixes: the worst case) or clustered in subnets as traffic is (the
shared prefixes' blocks are encrypted once).
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


def _addresses(version: int, n: int, clustered: bool) -> list[str]:
    """Distinct addresses: random over the whole space, or clustered as traffic is
    (IPv4: 2,000 random /24 networks; IPv6: 5,000 random /64 networks)."""
    rng = random.Random(version)
    bits = 32 if version == 4 else 128
    host_bits = 8 if version == 4 else 64
    networks = [rng.getrandbits(bits - host_bits) for _ in range(2000 if version == 4 else 5000)]
    seen: set[int] = set()
    while len(seen) < n:
        if clustered:
            seen.add((rng.choice(networks) << host_bits) | rng.getrandbits(host_bits))
        else:
            seen.add(rng.getrandbits(bits))
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [make(v).compressed for v in sorted(seen, key=lambda v: rng.random())]


@pytest.mark.parametrize("clustered", [False, True], ids=["random", "clustered"])
@pytest.mark.parametrize("version", [4, 6])
def test_cryptopan_vectorized(benchmark, figure, version, clustered) -> None:
    texts = _addresses(version, ROWS, clustered)
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
        f"Crypto-PAn IPv{version}, one thread, {ROWS:,} distinct {'clustered' if clustered else 'random'} addresses",
        f"{rate / 1e3:,.0f} k addresses/s",
        f"yacryptopan loop: {baseline / 1e3:,.1f} k addresses/s",
        ratio,
        "≥ 10x",
        ratio >= 10,
    )
