"""Shared benchmark data, built once per session."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

#: A fixed, obviously fake key: benchmarks never touch real key material.
BENCH_KEY = bytes(range(32))


def generated_numbers(n: int, seed: int = 2024) -> pa.Array:
    """``n`` generated E.164-like numbers, 12 and 13 bytes (``+1555``/``+447700`` plus digits)."""
    rng = np.random.default_rng(seed)
    us = np.char.add("+1555", np.char.zfill(rng.integers(0, 10**7, n).astype(str), 7))
    uk = np.char.add("+447700", np.char.zfill(rng.integers(0, 10**6, n).astype(str), 6))
    return pa.array(np.where(rng.random(n) < 0.5, us, uk).tolist(), pa.string())


@pytest.fixture(scope="session")
def numbers_1m() -> pa.Array:
    return generated_numbers(1_000_000)


@pytest.fixture(scope="session")
def bench_key() -> bytes:
    return BENCH_KEY
