"""HMAC-SHA256 pseudonym kernel against RFC 4231 and a slow per-row reference.

The reference is ``cryptography``'s HMAC one row at a time; the kernel must
agree on every Arrow layout the pipeline can hand it. Both kernels are checked:
the one with the CPU's SHA extensions (where this CPU has them) and the portable
one, forced (``kernel`` fixture).

Reference: RFC 4231 vectors and cryptography's HMAC, one row at a time."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.concurrency import failures_in_threads
from tests.vectorfiles import load_vectors

from telemetry import hashing  # noqa: E402
from kernels import sha256 as ksha  # noqa: E402
from kernels import shani  # noqa: E402

KEYS = [bytes(range(1, 33)), bytes(range(33, 65)), b"\xa5" * 32]
#: Row counts shrink when the kernels run as plain Python (NUMBA_DISABLE_JIT=1, for coverage).
BIG = 300 if os.environ.get("NUMBA_DISABLE_JIT", "0") != "0" else 20_000


def ref_hmac(key: bytes, value: str | bytes | None, size: int = 16) -> bytes | None:
    """The slow twin: one HMAC per row."""
    if value is None:
        return None
    data = value.encode("utf-8") if isinstance(value, str) else value
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()[:size]


def ref_rows(values, keys, key_index=None) -> list[bytes | None]:
    out = []
    for i, v in enumerate(values):
        k = 0 if key_index is None else int(key_index[i])
        out.append(None if k < 0 or keys[k] is None else ref_hmac(keys[k], v))
    return out


def fictional_numbers(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(["+1555010", "+447700900", "+4477009001"])
        + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 3)))
        for _ in range(n)
    ]


def _not_called(*args) -> None:
    raise AssertionError("the other HMAC kernel was called")


@pytest.fixture(params=["sha-ni", "portable"])
def kernel(request, monkeypatch) -> str:
    """Which HMAC kernel ``telemetry.hashing`` uses in the test: the other one fails if called."""
    if request.param == "sha-ni":
        if not shani.available():
            pytest.skip("this CPU has no SHA extensions (or Numba compiles for another)")
        monkeypatch.setattr(ksha, "hmac_rows", _not_called)
    else:
        monkeypatch.setattr(shani, "available", lambda: False)
        monkeypatch.setattr(ksha, "hmac_rows_ni", _not_called)
    return request.param


def test_sha_ni_only_where_numba_compiles_for_this_cpu(monkeypatch) -> None:
    # LLVM cannot select the SHA instructions for another CPU: the kernel with them is
    # chosen only when Numba compiles at all, for this CPU, and the CPU has them
    from pathlib import Path

    for name in ("NUMBA_DISABLE_JIT", "NUMBA_CPU_NAME"):
        monkeypatch.delenv(name, raising=False)
    try:
        for name, value in (("NUMBA_DISABLE_JIT", "1"), ("NUMBA_CPU_NAME", "generic")):
            shani.available.cache_clear()
            monkeypatch.setenv(name, value)
            assert not shani.available()
            monkeypatch.delenv(name)
        shani.available.cache_clear()
        assert shani.available() == ("sha_ni" in Path("/proc/cpuinfo").read_text().split())
    finally:
        shani.available.cache_clear()


# -- published vectors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", load_vectors("rfc-4231-sha256.txt"), ids=lambda v: "case" + v["COUNT"]
)
def test_rfc4231(vector: dict[str, str], kernel: str) -> None:
    # alone, and eight times over with a long row after them: short data then fills the
    # lanes (SHA-NI lanes read 64 bytes from a row's start, inside the buffer)
    key = bytes.fromhex(vector["Key"])
    data = bytes.fromhex(vector["Data"])
    expected = bytes.fromhex(vector["HMAC-SHA-256"])
    states = hashing.midstates([key])
    for values in ([data], [data] * 8 + [bytes(64)]):
        rows = min(len(values), 8)
        full = hashing.hmac_digests(pa.array(values, pa.binary()), states, size=32).to_pylist()[:rows]
        assert [d[: len(expected)] for d in full] == [expected] * rows
        assert hashing.hmac16(pa.array(values, pa.binary()), states).to_pylist()[:rows] == [expected[:16]] * rows


def test_long_key_is_hashed_first() -> None:
    key = bytes(range(100))
    assert np.array_equal(
        hashing.midstates([key]), hashing.midstates([hashlib.sha256(key).digest()])
    )


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 119, 120, 200, 1000])
def test_compress_is_sha256(length: int) -> None:
    # The scalar compression alone, driven as plain SHA-256 from the IV.
    msg = bytes((7 * i + 3) & 0xFF for i in range(length))
    padded = msg + b"\x80" + b"\x00" * ((55 - length) % 64) + (8 * length).to_bytes(8, "big")
    state = ksha.IV256.copy()
    w = np.zeros(64, dtype=np.uint32)
    for blk in range(0, len(padded), 64):
        w[:16] = np.frombuffer(padded[blk : blk + 64], dtype=">u4")
        ksha.compress(state, w)
    assert state.astype(">u4").tobytes() == hashlib.sha256(msg).digest()


# -- random cross-checks against cryptography --------------------------------------------


def test_every_length_0_to_200(kernel: str) -> None:
    rng = random.Random(1)
    values = [
        "".join(rng.choice("+0123456789abcdefXYZ@.:") for _ in range(n))
        for n in range(201)
        for _ in range(3)
    ]
    rng.shuffle(values)  # interleave one-block (lane) and multi-block (scalar) rows
    result = hashing.hmac16(pa.array(values), hashing.midstates([KEYS[0]]))
    assert result.type == pa.binary(16)
    assert result.to_pylist() == ref_rows(values, KEYS[:1])


@pytest.mark.parametrize("size", [4, 16, 20, 32])
def test_random_bytes_against_python_hmac(kernel: str, size: int) -> None:
    # random binary values of 0-120 bytes under three keys, every digest width a
    # caller may ask for, against the standard library's hmac
    import hmac as std_hmac

    rng = np.random.default_rng(size)
    values = [rng.bytes(int(n)) for n in rng.integers(0, 121, 1500)]
    key_index = rng.integers(0, 3, len(values)).astype(np.int32)
    result = hashing.hmac_digests(pa.array(values, pa.binary()), hashing.midstates(KEYS), key_index, size=size)
    want = [std_hmac.new(KEYS[k], v, hashlib.sha256).digest()[:size] for k, v in zip(key_index.tolist(), values)]
    assert result.to_pylist() == want


def test_non_ascii_nulls_and_empty(kernel: str) -> None:
    values = [
        "+15550123",
        None,
        "",
        "Müller",
        "短信发送者",
        "🙂" * 20,
        None,
        "é" * 28,
        "é" * 27 + "a",
        "",
    ] * 11
    result = hashing.hmac16(pa.array(values), hashing.midstates([KEYS[1]]))
    assert result.to_pylist() == ref_rows(values, KEYS[1:2])
    assert result.null_count == 22


def test_many_rows_mixed_keys(kernel: str) -> None:
    values = fictional_numbers(3000)
    for i in range(0, 3000, 17):
        values[i] = "sip:" + "x" * (i % 90) + "@carrier.example"
    rng = np.random.default_rng(3)
    key_index = rng.integers(-1, 3, size=3000).astype(np.int16)
    states = hashing.midstates(KEYS)
    result = hashing.hmac16(pa.array(values), states, key_index)
    assert result.to_pylist() == ref_rows(values, KEYS, key_index)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8])
def test_key_index_dtypes(dtype, kernel: str) -> None:
    values = fictional_numbers(100)
    key_index = (np.arange(100) % 2).astype(dtype)
    result = hashing.hmac16(pa.array(values), hashing.midstates(KEYS[:2]), key_index)
    assert result.to_pylist() == ref_rows(values, KEYS[:2], key_index)


def test_shredded_key_gives_null(kernel: str) -> None:
    values = fictional_numbers(200)
    keys = [KEYS[0], None, KEYS[2]]
    key_index = np.arange(200) % 3
    result = hashing.hmac16(pa.array(values), hashing.midstates(keys), key_index)
    assert result.to_pylist() == ref_rows(values, keys, key_index)
    assert result.null_count == len(range(1, 200, 3))


def test_same_number_same_pseudonym_and_epochs_differ() -> None:
    values = ["+15550142"] * 70 + ["+15550142" + "0" * 60]
    key_index = np.array([0] * 35 + [1] * 35 + [0], dtype=np.int32)
    result = hashing.hmac16(pa.array(values), hashing.midstates(KEYS[:2]), key_index).to_pylist()
    assert len(set(result[:35])) == 1 and len(set(result[35:70])) == 1
    assert result[0] != result[35]


def test_sliced_large_string_and_chunks(kernel: str) -> None:
    values = fictional_numbers(500) + [None, "", "x" * 130]
    random.Random(5).shuffle(values)
    states = hashing.midstates([KEYS[2]])
    expected = ref_rows(values, [KEYS[2]])
    base = pa.array(values)
    for array in (base, base.cast(pa.large_string())):
        sliced = array.slice(37, 400)
        assert hashing.hmac16(sliced, states).to_pylist() == expected[37:437]
        chunked = pa.chunked_array(
            [array.slice(0, 10), array.slice(10, 0), array.slice(10, 200), array.slice(210)]
        )
        result = hashing.hmac16(chunked, states)
        assert isinstance(result, pa.FixedSizeBinaryArray)
        assert result.to_pylist() == expected


def test_chunked_with_key_index_spanning_chunks(kernel: str) -> None:
    values = fictional_numbers(300)
    key_index = np.repeat(np.array([0, 1, -1], dtype=np.int16), 100)
    chunked = pa.chunked_array([pa.array(values[:150]), pa.array(values[150:])])
    result = hashing.hmac16(chunked, hashing.midstates(KEYS[:2]), key_index)
    assert result.to_pylist() == ref_rows(values, KEYS[:2], key_index)


def test_read_only_buffers(kernel: str) -> None:
    values = fictional_numbers(100)
    raw = b"".join(v.encode() for v in values)
    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    array = pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(raw)]
    )
    assert hashing.hmac16(array, hashing.midstates([KEYS[0]])).to_pylist() == ref_rows(
        values, KEYS[:1]
    )


def test_dictionary_and_null_typed_input(kernel: str) -> None:
    values = fictional_numbers(80)
    states = hashing.midstates([KEYS[0]])
    assert hashing.hmac16(pa.array(values).dictionary_encode(), states).to_pylist() == ref_rows(
        values, KEYS[:1]
    )
    assert hashing.hmac16(pa.nulls(5), states).to_pylist() == [None] * 5


def test_empty_input(kernel: str) -> None:
    result = hashing.hmac16(pa.array([], pa.string()), hashing.midstates([KEYS[0]]))
    assert len(result) == 0 and result.type == pa.binary(16)


def test_hex32() -> None:
    values = fictional_numbers(40) + [None]
    result = hashing.hmac16(pa.array(values), hashing.midstates([KEYS[0]]))
    expected = [None if r is None else r.hex() for r in ref_rows(values, KEYS[:1])]
    assert hashing.hex32(result) == expected
    assert hashing.hex32(result.slice(3, 20)) == expected[3:23]
    assert all(h is None or (len(h) == 32 and h == h.lower()) for h in expected)


# -- property tests: Arrow edge cases -------------------------------------------------------

identifiers = st.one_of(
    st.none(), st.text(max_size=80), st.text(alphabet="+0123456789", max_size=16)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(identifiers, max_size=150),
    cut=st.integers(0, 150),
    start=st.integers(0, 20),
    large=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_arrow_layouts(values, cut, start, large, seed, kernel: str) -> None:
    array = pa.array(values, pa.large_string() if large else pa.string())
    cut = min(cut, len(values))
    start = min(start, len(values))
    key_index = (
        np.random.default_rng(seed).integers(-1, 2, size=len(values) - start).astype(np.int32)
    )
    states = hashing.midstates(KEYS[:2])
    sliced = array.slice(start)
    expected = ref_rows(values[start:], KEYS[:2], key_index)
    assert hashing.hmac16(sliced, states, key_index).to_pylist() == expected
    chunked = pa.chunked_array([array.slice(0, cut), array.slice(cut)], type=array.type)
    assert hashing.hmac16(chunked, states).to_pylist() == ref_rows(values, KEYS[:2])


# -- threads, validation -------------------------------------------------------------------------


def test_two_threads_concurrently(kernel: str) -> None:
    states = hashing.midstates(KEYS)
    inputs = [fictional_numbers(BIG, seed=s) for s in (11, 12)]
    arrays = [pa.array(v) for v in inputs]
    indexes = [np.full(BIG, t, dtype=np.int16) for t in (0, 2)]
    expected = [hashing.hmac16(a, states, k) for a, k in zip(arrays, indexes)]
    for t in range(2):  # the single-threaded result is itself checked against the reference
        assert expected[t].to_pylist()[:500] == ref_rows(inputs[t][:500], [KEYS[2 * t]])
    assert failures_in_threads(
        lambda t: hashing.hmac16(arrays[t], states, indexes[t]).equals(expected[t])
    ) == []


def test_midstates_validation() -> None:
    with pytest.raises(TypeError, match="subkeys"):
        hashing.midstates(b"\x00" * 32)
    with pytest.raises(TypeError, match=r"subkeys\[1\]"):
        hashing.midstates([b"\x00" * 32, "not bytes"])
    with pytest.raises(ValueError, match="subkeys"):
        hashing.midstates([])


def test_hmac16_validation() -> None:
    states = hashing.midstates(KEYS[:2])
    values = pa.array(["+15550100", "+15550101"])
    with pytest.raises(TypeError, match="values"):
        hashing.hmac16(["+15550100"], states)
    with pytest.raises(TypeError, match="values"):
        hashing.hmac16(pa.array([1, 2]), states)
    with pytest.raises(ValueError, match="states"):
        hashing.hmac16(values, states[:, 0])
    with pytest.raises(ValueError, match="states"):
        hashing.hmac16(values, states.astype(np.int64))
    with pytest.raises(ValueError, match="key_index"):
        hashing.hmac16(values, states, np.zeros(3, dtype=np.int16))
    with pytest.raises(ValueError, match="key_index"):
        hashing.hmac16(values, states, np.array([0, 2], dtype=np.int16))
    with pytest.raises(TypeError, match="key_index"):
        hashing.hmac16(values, states, np.zeros(2, dtype=np.float64))
    with pytest.raises(TypeError, match="pseudonyms"):
        hashing.hex32(pa.array([b"x" * 32], pa.binary(32)))


def test_errors_do_not_echo_values() -> None:
    secret = "+15550199"
    with pytest.raises(ValueError) as info:
        hashing.hmac16(
            pa.array([secret]), hashing.midstates([KEYS[0]]), np.array([5], dtype=np.int16)
        )
    assert secret not in str(info.value)
    with pytest.raises(TypeError) as info2:
        hashing.midstates([KEYS[0], 12345])
    assert KEYS[0].hex() not in str(info2.value)


def test_pseudonymizer_hashes_distinct_values_once_with_each_rows_epoch() -> None:
    # identifiers() works per distinct value and epoch, then gathers: it must equal
    # one HMAC per row under that row's epoch subkey, nulls and missing keys included.
    from datetime import datetime, timezone

    from telemetry.keys import Keyring
    from telemetry.pseudonyms import Pseudonymizer

    keyring = Keyring.from_key(KEYS[0]).rotate(datetime(2026, 1, 1, tzinfo=timezone.utc), key=KEYS[1])
    keyring = keyring.rotate(datetime(2026, 6, 1, tzinfo=timezone.utc), key=KEYS[2])
    keyring = keyring.shred(keyring.key_ids()[1])
    subkeys = [keyring.subkeys("subscriber")[i] for i in range(3)]
    rng = np.random.default_rng(5)
    pool = [f"+44 7700 900{i:03d}" for i in range(25)] + [f"+1 201 555 01{i:02d}" for i in range(25)]
    values = [pool[int(i)] if i >= 0 else None for i in rng.integers(-1, 50, size=2000)]
    engine = Pseudonymizer(keyring, region="GB")
    for key_index in (rng.integers(-1, 3, size=2000), np.full(2000, 2), np.full(2000, -1)):
        result = engine.identifiers(pa.array(values), key_index.astype(np.int16))
        normalized = [None if v is None else v.replace(" ", "") for v in values]  # E.164 less spaces
        assert result.pseudonyms.to_pylist() == ref_rows(normalized, subkeys, key_index)
        plain = engine.identifiers(pa.array(values).dictionary_encode(), key_index.astype(np.int16))
        assert plain.pseudonyms.equals(result.pseudonyms)
        regions = {v: phonenumbers.region_code_for_number(phonenumbers.parse(v)) for v in pool}
        assert result.region.to_pylist() == [None if v is None else regions[v] for v in values]


_SHARED = [b"+4477009000" + bytes([d]) * n for d in b"01" for n in range(9)] + [b"sip:+1555" * 2 + b"x", b"sip:+1555" * 2]


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.lists(st.one_of(st.none(), st.binary(max_size=12), st.sampled_from(_SHARED)),
                               max_size=40), max_size=6))  # fmt: skip
def test_intern_numbers_values_in_order_of_first_appearance(calls) -> None:
    # kernels.intern against a dict, across calls, from a table small enough to grow;
    # values compared eight bytes at a time, so some share 8 or 16 bytes and differ after
    from kernels.intern import empty, intern
    from telemetry.arrowstr import string_views

    slots, starts, arena, fill = empty(slots=4, arena_bytes=4)
    reference: dict[bytes, int] = {}
    for values in calls:
        views = string_views(pa.array(values, pa.binary()))
        number = np.empty(len(values), np.int64)
        slots, starts, arena = intern(views.offsets, views.data, views.valid, slots, starts, arena, fill, number, True)
        want = [-1 if v is None else reference.setdefault(v, len(reference)) for v in values]
        assert number.tolist() == want
        assert fill[0] == len(reference)


@settings(max_examples=100, deadline=None)
@given(before=st.lists(st.one_of(st.none(), st.binary(max_size=12), st.sampled_from(_SHARED)), max_size=40),
       since=st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(_SHARED)), max_size=40),
       asked=st.lists(st.one_of(st.none(), st.binary(max_size=12), st.sampled_from(_SHARED)), max_size=40),
       slots=st.sampled_from([4, 1024]))  # fmt: skip
def test_intern_lookup_reads_a_table_as_it_was_while_values_are_added(before, since, asked, slots) -> None:
    # A lookup (insert False) given the arrays and a copy of fill taken at some moment,
    # run after more values were added to those arrays (in place, or to grown copies):
    # exactly the values numbered by that moment are found, nothing is written.
    from kernels.intern import TODO, empty, intern
    from telemetry.arrowstr import string_views

    def call(table, fill, values, insert):
        views = string_views(pa.array(values, pa.binary()))
        number = np.empty(len(values), np.int64)
        return intern(views.offsets, views.data, views.valid, *table, fill, number, insert), number

    *table, fill = empty(slots=slots, arena_bytes=64)
    table, _ = call(table, fill, before, True)
    then, count = (table, fill.copy()), int(fill[0])
    call(table, fill, since, True)  # another thread's insert
    kept = [a.copy() for a in then[0]]
    seen = {}
    for v in before:
        if v is not None:
            seen.setdefault(v, len(seen))
    _, number = call(then[0], then[1].copy(), asked, False)
    assert number.tolist() == [-1 if v is None else seen.get(v, TODO) for v in asked]
    assert all(np.array_equal(a, b) for a, b in zip(then[0], kept)) and count == len(seen)


@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=40), flip=st.integers(-1, 39), i=st.integers(0, 9), j=st.integers(0, 9))
def test_intern_byte_comparison_sees_every_byte(value, flip, i, j) -> None:
    # the table compares values eight bytes at a time, then the tail: a difference in
    # any byte, at any offset of either buffer, must count
    from kernels import intern

    other = bytearray(value)
    if 0 <= flip < len(other):
        other[flip] ^= 0x20
    x = np.frombuffer(bytes(i) + value + bytes(8), np.uint8)
    y = np.frombuffer(bytes(j) + bytes(other) + bytes(8), np.uint8)
    assert intern._equal(x, i, y, j, len(value)) == (bytes(other) == value)


def _reference_hash(value: bytes) -> int:
    """kernels.intern._hash as its docstring defines it, in Python: eight bytes at a time
    (little-endian), the tail as one little-endian number, MurmurHash3's fmix64 last."""
    mask = 2**64 - 1
    h = len(value) * 0x9E3779B97F4A7C15 & mask
    p = 0
    while p + 8 <= len(value):
        h = (h ^ int.from_bytes(value[p : p + 8], "little")) * 0xFF51AFD7ED558CCD & mask
        h ^= h >> 32
        p += 8
    h = (h ^ int.from_bytes(value[p:], "little")) * 0xC4CEB9FE1A85EC53 & mask
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h ^= h >> 33
        h = h * multiplier & mask
    return h ^ h >> 33


def test_intern_hash_of_every_length_and_offset() -> None:
    # the tail of a value of eight bytes or more is read with one load of its last eight
    from kernels import intern

    rng = random.Random(4)
    buffer = bytes(rng.randrange(256) for _ in range(64))
    data = np.frombuffer(buffer, np.uint8)
    for length in range(41):
        for start in (0, 3, 64 - length):
            got = intern._hash(data, np.int64(start), np.int64(start + length))
            assert int(got) == _reference_hash(buffer[start : start + length]), (length, start)


def test_identifiers_seen_before_give_what_a_fresh_run_gives(monkeypatch) -> None:
    # A Pseudonymizer remembers identifiers (and pseudonyms per epoch) across batches,
    # and starts afresh past SEEN_LIMIT: every batch must read as in a run of its own.
    from datetime import UTC, datetime

    from telemetry import pseudonyms
    from telemetry.keys import Keyring

    monkeypatch.setattr(pseudonyms, "SEEN_LIMIT", 40)
    keyring = Keyring.from_key(KEYS[0]).rotate(datetime(2026, 1, 1, tzinfo=UTC), key=KEYS[1])
    rng = np.random.default_rng(9)
    pool = [f"+44 7700 900{i:03d}" for i in range(60)] + ["anonymous", "12", "AcmeBank", "+999 1"]
    engine = pseudonyms.Pseudonymizer(keyring, region="GB")
    for _ in range(12):
        rows = int(rng.integers(1, 50))
        values = pa.array([pool[int(i)] if i >= 0 else None for i in rng.integers(-1, len(pool), rows)])
        key_index = rng.integers(-1, 2, rows).astype(np.int16)
        got = engine.identifiers(values, key_index)
        want = pseudonyms.Pseudonymizer(keyring, region="GB").identifiers(values, key_index)
        assert got.pseudonyms.equals(want.pseudonyms)
        assert got.normalized.to_pylist() == want.normalized.to_pylist()
        assert got.region.to_pylist() == want.region.to_pylist()
        for name in ("kind", "reason", "cc"):
            assert np.array_equal(getattr(got, name), getattr(want, name))
        assert engine._seen.fill[0] <= pseudonyms.SEEN_LIMIT  # memory stays bounded


def test_threads_share_the_identifiers_seen(monkeypatch) -> None:
    # One table per run, shared by the threads: lookups, additions and the emptying
    # past SEEN_LIMIT race here, and every thread must still get a fresh run's results.
    from telemetry import pseudonyms
    from telemetry.keys import Keyring

    monkeypatch.setattr(pseudonyms, "SEEN_LIMIT", 300)
    keyring = Keyring.from_key(KEYS[0])
    pool = [f"+44 7700 900{i:03d}" for i in range(400)]
    batches = [pa.array([pool[(7 * t + 13 * i) % 400] for i in range(150)]) for t in range(8)]
    wanted = [pseudonyms.Pseudonymizer(keyring, region="GB").identifiers(b).pseudonyms for b in batches]
    engine = pseudonyms.Pseudonymizer(keyring, region="GB")
    calls = iter(range(10**6))

    def check(_: int) -> bool:
        k = next(calls) % len(batches)
        return engine.identifiers(batches[k]).pseudonyms.equals(wanted[k])

    assert failures_in_threads(check, threads=4, rounds=25) == []


def test_identifier_columns_together_equal_each_alone() -> None:
    from telemetry.keys import Keyring
    from telemetry.pseudonyms import Pseudonymizer

    engine = Pseudonymizer(Keyring.from_key(KEYS[0]), region="GB")
    source = pa.array(["+44 7700 900001", None, "anonymous", "07700 900002", "sip:Bob@Example.net", "12"] * 50)
    destination = pa.chunked_array([
        pa.array(["07700 900002", "+44 7700 900001", None], pa.large_string()),
        pa.array(["+999 1", "AcmeBank", "+1 201 555 0123"] * 98 + ["+44 7700 900003"] * 3, pa.large_string()),
    ])  # fmt: skip (chunked, and large_string beside the source's string)
    together = engine.identifier_columns([source, destination], np.arange(300) % 1)
    for alone, joint in zip((engine.identifiers(source), engine.identifiers(destination)), together):
        assert joint.pseudonyms.equals(alone.pseudonyms)
        assert joint.region.to_pylist() == alone.region.to_pylist()
        assert joint.normalized.to_pylist() == alone.normalized.to_pylist()
        for name in ("kind", "reason", "cc"):
            assert np.array_equal(getattr(joint, name), getattr(alone, name))
    # a subscriber is the same pseudonym as caller and as callee
    assert together[0].pseudonyms[0] == together[1].pseudonyms[1]


_IDS = ["+44 7700 900001", "07700 900002", "anonymous", "sip:Bob@Example.net", "12", "+999 1", "", "AcmeBank"]


@st.composite
def _dictionary_column(draw, rows: int) -> pa.Array:
    """``rows`` identifiers as a dictionary array: repeated and unused dictionary
    entries, null indices, either string width, maybe sliced."""
    words = draw(st.lists(st.sampled_from(_IDS), min_size=1, max_size=10))
    picks = draw(st.lists(st.one_of(st.none(), st.integers(0, len(words) - 1)), min_size=rows, max_size=rows))
    extra = draw(st.integers(0, 3))
    dictionary = pa.array(words, draw(st.sampled_from([pa.string(), pa.large_string()])))
    column = pa.DictionaryArray.from_arrays(pa.array([None] * extra + picks, pa.int32()), dictionary)
    return column.slice(extra)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=st.integers(0, 30), plain_destination=st.booleans())
def test_dictionary_columns_give_what_their_text_gives(data, rows, plain_destination) -> None:
    # Parquet hands identifiers over as its dictionary pages: looked up per dictionary
    # entry and gathered per row, they must read as the same text decoded row by row.
    from telemetry.keys import Keyring
    from telemetry.pseudonyms import Pseudonymizer

    engine = Pseudonymizer(Keyring.from_key(KEYS[0]), region="GB")
    source = data.draw(_dictionary_column(rows))
    destination = data.draw(_dictionary_column(rows))
    if plain_destination:
        destination = destination.dictionary_decode()
    texts = [pa.array(c.to_pylist(), pa.string()) for c in (source, destination)]
    got = engine.identifier_columns([source, destination])
    want = Pseudonymizer(Keyring.from_key(KEYS[0]), region="GB").identifier_columns(texts)
    for g, w in zip(got, want):
        assert g.pseudonyms.equals(w.pseudonyms)
        assert g.normalized.to_pylist() == w.normalized.to_pylist()
        assert g.region.to_pylist() == w.region.to_pylist()
        for name in ("kind", "reason", "cc"):
            assert np.array_equal(getattr(g, name), getattr(w, name))


def test_mostly_new_identifiers_go_without_the_table_and_come_back() -> None:
    # A column whose batches are mostly new numbers (transit, A2P) is normalized and
    # hashed row by row without the run's table; a value sample tells when it repeats
    # again. Either way every row must be what phonenumbers + one HMAC per row give.
    from datetime import datetime, timezone

    from telemetry import pseudonyms
    from telemetry.keys import Keyring

    keyring = Keyring.from_key(KEYS[0]).rotate(datetime(2026, 1, 1, tzinfo=timezone.utc), key=KEYS[1])
    subkeys = keyring.subkeys("subscriber")
    rng = np.random.default_rng(11)
    engine = pseudonyms.Pseudonymizer(keyring, region="GB")
    rows = pseudonyms.DECIDE_MIN * 2
    fresh = iter(range(10**7))
    notations = ["+44 7700 {:06d}", "07700 {:06d}", "+447700{:06d}", "sip:+447700{:06d}@gw.example;user=phone"]

    def batch(repeat: list[str] | None) -> list[str | None]:
        out = []
        for i in range(rows):
            if repeat is not None:
                out.append(repeat[int(rng.integers(len(repeat)))])
            elif i % 97 == 0:
                out.append(None if i % 2 else "anonymous")
            else:
                out.append(notations[i % 4].format(next(fresh)))
        return out

    def check(values: list[str | None], ki: np.ndarray, direct: bool) -> None:
        got = engine.identifiers(pa.array(values, pa.string()), ki)
        assert engine._seen.direct[0] == direct  # without the table from here on
        want, regions = [], []
        for v in values:
            number = None if v in (None, "anonymous") else phonenumbers.parse(v.removeprefix("sip:").split("@")[0], "GB")
            want.append(None if number is None else phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
            regions.append(None if number is None else phonenumbers.region_code_for_number(number))
        assert got.pseudonyms.to_pylist() == ref_rows(want, subkeys, ki)
        assert got.normalized.to_pylist() == want and got.region.to_pylist() == regions

    check(batch(None), np.zeros(rows, np.int16), direct=True)  # the first batch's sample: all new
    second = batch(None)
    check(second, rng.integers(-1, 2, rows).astype(np.int16), direct=True)
    repeats = [v for v in second if v is not None][: rows // 50]
    check(batch(repeats), np.ones(rows, np.int16), direct=False)  # the sample sees the repeats
    check(batch(repeats), rng.integers(0, 2, rows).astype(np.int16), direct=False)
    check(batch(None), np.zeros(rows, np.int16), direct=True)  # looked up, all new: the next goes without
    check(batch(None), np.zeros(rows, np.int16), direct=True)


def test_a_dictionary_column_takes_the_table_from_its_first_batch() -> None:
    # A Parquet dictionary's entries are distinct within their batch, so a first batch is all
    # new whether or not its values come back: it takes the table (a first sample said 0.98 new
    # and sent the retail day's numbers without the table, then back, then off again), and the
    # batches after it, repeats, stay there. Every row as phonenumbers + one HMAC give it.
    from telemetry import pseudonyms
    from telemetry.keys import Keyring

    engine = pseudonyms.Pseudonymizer(Keyring.from_key(KEYS[0]), region="GB")
    subkeys = Keyring.from_key(KEYS[0]).subkeys("subscriber")
    numbers = [f"07700 {i:06d}" for i in range(pseudonyms.DECIDE_MIN * 2)]
    rng = np.random.default_rng(5)
    for _ in range(3):
        values = [numbers[i] for i in rng.integers(0, len(numbers), 4 * len(numbers))]
        got = engine.identifiers(pa.array(values, pa.string()).dictionary_encode())
        assert engine._seen.direct[0] is False
        want = [phonenumbers.format_number(phonenumbers.parse(v, "GB"), phonenumbers.PhoneNumberFormat.E164)
                for v in values]  # fmt: skip
        assert got.pseudonyms.to_pylist() == ref_rows(want, subkeys, np.zeros(len(values), np.int16))
        assert got.normalized.to_pylist() == want
    assert engine._seen.fill[0] == len(numbers)  # each number added once
