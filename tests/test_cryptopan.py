"""Crypto-PAn against the reference implementation's published sample trace, a bit-by-bit
slow twin (Python integers, one AES block per bit), yacryptopan, and the prefix-preserving
property; record output with ``--ip-mode cryptopan`` through the real CLI."""

from __future__ import annotations

import csv
import ipaddress
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from yacryptopan import CryptoPAn as YaCryptoPAn

from tests.concurrency import failures_in_threads
from tests.conftest import TEST_KEY, run_cli
from tests.test_pipeline import hkdf_sha256
from tests.vectorfiles import load_vectors

from telemetry.cryptopan import CryptoPAn, anonymize_by_epoch

KEY = bytes(range(100, 132))


def slow_anonymize(key: bytes, text: str) -> str:
    """The paper's definition, one bit at a time: bit i is flipped by the top bit of
    AES(first i bits of the address, then the pad's remaining bits)."""
    aes = Cipher(algorithms.AES(key[:16]), modes.ECB()).encryptor()
    pad = int.from_bytes(aes.update(key[16:]), "big")
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = address.max_prefixlen
    value = int(address) << (128 - bits)  # left-aligned in the 128-bit block
    flips = 0
    for i in range(bits):
        keep = ((1 << i) - 1) << (128 - i)
        block = (value & keep) | (pad & ~keep & ((1 << 128) - 1))
        top = aes.update(block.to_bytes(16, "big"))[0] >> 7
        flips = (flips << 1) | top
    return ipaddress.ip_address(int(address) ^ flips).compressed if bits == 128 else str(
        ipaddress.IPv4Address(int(address) ^ flips))


def _sample_trace() -> list[tuple[bytes, str, str]]:
    out, key = [], None
    for record in load_vectors("cryptopan-sample-trace.txt"):
        key = bytes.fromhex(record["Key"]) if "Key" in record else key
        if "Raw" in record:
            out.append((key, record["Raw"], record["Anonymized"]))
    return out


SAMPLE = _sample_trace()


def test_reproduces_the_reference_sample_trace():
    assert len(SAMPLE) == 101
    by_key: dict[bytes, list[tuple[str, str]]] = {}
    for key, raw, anonymized in SAMPLE:
        by_key.setdefault(key, []).append((raw, anonymized))
        assert CryptoPAn(key).anonymize(raw) == anonymized
    for key, pairs in by_key.items():  # the vectorized form, repeats and order included
        raws = [r for r, _ in pairs]
        out, invalid = CryptoPAn(key).anonymize_array(pa.array(raws + raws[::-1]))
        assert out.to_pylist() == [a for _, a in pairs] + [a for _, a in pairs][::-1]
        assert not invalid.any()


def test_the_slow_twin_reproduces_the_sample_trace_too():
    """The twin the random tests trust is itself checked against the published output."""
    for key, raw, anonymized in SAMPLE[:20]:
        assert slow_anonymize(key, raw) == anonymized


addresses_v4 = st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v)))
addresses_v6 = st.integers(0, 2**128 - 1).map(lambda v: ipaddress.IPv6Address(v).compressed)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(addresses_v4, addresses_v6), min_size=1, max_size=40), st.binary(min_size=32, max_size=32))
def test_vectorized_equals_the_slow_twin(texts, key):
    out, invalid = CryptoPAn(key).anonymize_array(pa.array(texts))
    assert out.to_pylist() == [slow_anonymize(key, t) for t in texts]
    assert not invalid.any()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=60), st.data())
def test_shared_prefix_kernel(values, data):
    """kernels.ipnet.shared_prefix against Python integers, duplicates and neighbours included."""
    from kernels.ipnet import shared_prefix

    values = sorted(values + data.draw(st.lists(st.sampled_from(values), max_size=5)))
    halves = np.array([[v >> 64, v & (2**64 - 1)] for v in values], np.uint64)
    lcp = np.empty(len(values), np.int64)
    shared_prefix(halves[:, 0].view(np.int64), halves[:, 1].view(np.int64), lcp)
    assert lcp.tolist() == [-1] + [_shared_prefix(a, b, 128) for a, b in zip(values, values[1:])]


def test_agrees_with_yacryptopan():
    rng = random.Random(7)
    texts = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(200)]
    texts += [ipaddress.IPv6Address(rng.getrandbits(128)).compressed for _ in range(200)]
    theirs = YaCryptoPAn(KEY)
    expected = [ipaddress.ip_address(theirs.anonymize(t)).compressed for t in texts]
    assert CryptoPAn(KEY).anonymize_array(pa.array(texts))[0].to_pylist() == expected


def _shared_prefix(a: int, b: int, bits: int) -> int:
    return bits - (a ^ b).bit_length()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([32, 128]), st.data())
def test_prefix_preserving(bits, data):
    """Addresses sharing exactly an n-bit prefix map to addresses sharing exactly n bits."""
    a = data.draw(st.integers(0, 2**bits - 1))
    n = data.draw(st.integers(0, bits))
    if n == bits:
        b = a
    else:
        low = data.draw(st.integers(0, 2 ** (bits - n - 1) - 1))
        b = ((a >> (bits - n)) << (bits - n)) | ((~a >> (bits - n - 1) & 1) << (bits - n - 1)) | low
    assert _shared_prefix(a, b, bits) == n
    kind = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
    texts = [str(kind(a)), str(kind(b))]
    x, y = (int(ipaddress.ip_address(t)) for t in CryptoPAn(KEY).anonymize_array(pa.array(texts))[0].to_pylist())
    assert _shared_prefix(x, y, bits) == n


def test_arrow_edge_cases_and_notations():
    cp = CryptoPAn(KEY)
    texts = ["192.0.2.1", " 192.0.2.1 ", "192.0.2.1:5060", "::ffff:192.0.2.1", "2001:db8::1",
             "[2001:db8::1]:5061", "2001:DB8:0:0:0:0:0:1", "fe80::1%eth0", None, "", "   ",
             "192.0.2.256", "not an address", "01.2.3.4"]
    out, invalid = cp.anonymize_array(pa.array(texts))
    v4, v6 = slow_anonymize(KEY, "192.0.2.1"), slow_anonymize(KEY, "2001:db8::1")
    assert out.to_pylist() == [v4] * 4 + [v6] * 3 + [slow_anonymize(KEY, "fe80::1")] + [None] * 6
    assert invalid.tolist() == [False] * 11 + [True] * 3
    for shaped in (pa.array(texts, pa.large_string()), pa.array(texts).dictionary_encode(),
                   pa.chunked_array([texts[:5], texts[5:]])):
        got, bad = cp.anonymize_array(shaped)
        assert got.to_pylist() == out.to_pylist() and bad.tolist() == invalid.tolist()
    sliced = pa.array(["x"] + texts)[1:]
    assert cp.anonymize_array(sliced)[0].to_pylist() == out.to_pylist()
    assert cp.anonymize_array(pa.nulls(3, pa.string()))[0].null_count == 3
    assert len(cp.anonymize_array(pa.array([], pa.string()))[0]) == 0


def test_errors_name_no_address_and_no_key():
    cp = CryptoPAn(KEY)
    with pytest.raises(ValueError) as info:
        cp.anonymize("198.51.100.999")
    assert "198.51" not in str(info.value)
    assert KEY.hex() not in repr(cp) and str(KEY) not in repr(cp)
    with pytest.raises(ValueError, match="32 bytes"):
        CryptoPAn(KEY[:16])
    with pytest.raises(TypeError):
        cp.anonymize_array(["192.0.2.1"])


def test_each_row_under_its_epochs_key():
    keys = [bytes(range(i, i + 32)) for i in (1, 50)]
    pans = [CryptoPAn(keys[0]), None, CryptoPAn(keys[1])]
    texts = ["192.0.2.1", "2001:db8::7", "192.0.2.1", "bad", "198.51.100.3", "192.0.2.1"]
    index = np.array([0, 2, 2, 0, 1, -1], np.int16)
    out, invalid = anonymize_by_epoch(pa.array(texts), pans, index)
    assert out.to_pylist() == [slow_anonymize(keys[0], texts[0]), slow_anonymize(keys[1], texts[1]),
                               slow_anonymize(keys[1], texts[2]), None, None, None]
    assert invalid.tolist() == [False, False, False, True, False, False]


def test_threads_share_one_instance():
    cp = CryptoPAn(KEY)
    rng = random.Random(3)
    texts = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(3000)]
    expected = cp.anonymize_array(pa.array(texts))[0]
    assert failures_in_threads(lambda t: cp.anonymize_array(pa.array(texts))[0].equals(expected)) == []


# -- record output through the CLI ------------------------------------------------------

IPS = ["192.0.2.10", "192.0.2.77", "198.51.100.5:5060", "2001:db8:a::1", "[2001:db8:a::2]:5061", ""]


def _records_input(path):
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["record_id", "channel", "start_time", "source", "destination", "status",
                    "duration_ms", "route", "source_ip"])
        for i, ip in enumerate(IPS):
            w.writerow([f"r{i}", "voice", f"2026-11-01T09:0{i}:00Z", "+447700900101", "+447700900102",
                        "answered", "1000", "carrier-a", ip])
        w.writerow(["bad", "voice", "2026-11-01T09:09:00Z", "+447700900101", "+447700900102",
                    "answered", "1000", "carrier-a", "192.0.2.300"])


def test_process_ip_mode_cryptopan(tmp_path, key_env):
    data = tmp_path / "in.csv"
    _records_input(data)
    out = tmp_path / "out"
    res = run_cli("process", str(data), "--out", str(out), "--emit-records", "--k", "1",
                  "--ip-mode", "cryptopan", env=key_env)
    assert res.returncode == 1, res.stderr  # the bad address is quarantined
    table = pq.read_table(out / "records").sort_by("start_time")
    assert table.schema.field("source_ip").type == pa.string()
    key = hkdf_sha256(TEST_KEY, b"telemetry/v1/cryptopan")
    bare = ["192.0.2.10", "192.0.2.77", "198.51.100.5", "2001:db8:a::1", "2001:db8:a::2"]
    assert table.column("source_ip").to_pylist() == [slow_anonymize(key, ip) for ip in bare] + [None]
    anonymized = table.column("source_ip").to_pylist()
    # the two addresses of 192.0.2.0/24 still share exactly their 25-bit prefix
    a, b = (int(ipaddress.ip_address(x)) for x in anonymized[:2])
    assert _shared_prefix(a, b, 32) == _shared_prefix(int(ipaddress.ip_address(bare[0])),
                                                       int(ipaddress.ip_address(bare[1])), 32)
    assert "source_ip: not an IPv4 or IPv6 address" in (out / "quarantine" / "rejects.jsonl").read_text()

    # the default stays the network pseudonym; a config file chooses as the flag does
    res = run_cli("process", str(data), "--out", str(tmp_path / "t"), "--emit-records", "--k", "1", env=key_env)
    assert pq.read_table(tmp_path / "t" / "records").schema.field("source_ip").type == pa.binary(16)
    config = tmp_path / "telemetry.toml"
    config.write_text('ip_mode = "cryptopan"\n')
    res = run_cli("process", str(data), "--out", str(tmp_path / "c"), "--emit-records", "--k", "1",
                  "--config", str(config), env=key_env)
    assert pq.read_table(tmp_path / "c" / "records").sort_by("start_time").column("source_ip").to_pylist() \
        == anonymized
    config.write_text('ip_mode = "hash"\n')
    res = run_cli("process", str(data), "--out", str(tmp_path / "x"), "--config", str(config), env=key_env)
    assert res.returncode == 2 and "ip_mode must be one of truncate, cryptopan" in res.stderr
