"""IP truncation kernel against Python's ``ipaddress`` as the slow reference.

Reference: Python's ipaddress module."""

from __future__ import annotations

import ipaddress
import os
import random
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.concurrency import failures_in_threads

from telemetry import ipaddr  # noqa: E402

_SPACE = " \t\n\r\x0b\x0c"
#: Row counts shrink when the kernels run as plain Python (NUMBA_DISABLE_JIT=1, for coverage).
BIG = 300 if os.environ.get("NUMBA_DISABLE_JIT", "0") != "0" else 20_000
_PORT = re.compile(r"[0-9]{1,5}")


def _port_ok(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and int(text) <= 65535


def ref_truncate(text: str | None, v4: int = 24, v6: int = 48) -> tuple[str | None, bool]:
    """(network text or None, invalid) by the documented rules, parsing with ``ipaddress``."""
    if text is None:
        return None, False
    t = text.strip(_SPACE)
    if not t:
        return None, False
    try:
        if t.startswith("["):
            close = t.find("]")
            rest = t[close + 1 :]
            if close < 0 or (rest and not (rest[0] == ":" and _port_ok(rest[1:]))):
                return None, True
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(t[1:close])
        elif t.count(":") == 0:
            addr = ipaddress.IPv4Address(t)
        elif t.count(":") == 1:
            host, port = t.split(":")
            if not _port_ok(port):
                return None, True
            addr = ipaddress.IPv4Address(host)
        else:
            addr = ipaddress.IPv6Address(t)
    except ValueError:
        return None, True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return ipaddress.IPv4Network((int(addr), v4), strict=False).compressed, False
    return ipaddress.IPv6Network((int(addr), v6), strict=False).compressed, False


def check(
    values: list[str | None], v4: int = 24, v6: int = 48, array: pa.Array | None = None
) -> None:
    networks, invalid = ipaddr.truncate_ips(
        pa.array(values) if array is None else array, v4_prefix=v4, v6_prefix=v6
    )
    expected = [ref_truncate(v, v4, v6) for v in values]
    assert pa.types.is_string(networks.type) and len(networks) == len(values)
    assert invalid.dtype == np.bool_
    got = list(zip(networks.to_pylist(), invalid.tolist()))
    for value, g, e in zip(values, got, expected):
        assert g == e, value


HANDCRAFTED = [
    "192.0.2.1", " 192.0.2.77 ", "\t198.51.100.200\n", "192.0.2.1:5060", "203.0.113.9:0", "0.0.0.0",
    "255.255.255.255", "[2001:db8::1]:5060", "[2001:db8::1]", "2001:db8:1:2:3:4:5:6",
    "2001:DB8:ABCD:12::",
    "::", "::1", "1::", "0:0:1::1", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:1.2.3.4",
    "::ffff:192.0.2.1", "::FFFF:c000:0201", "[::ffff:198.51.100.7]:5061", "64:ff9b::192.0.2.1",
    "::192.0.2.1",
    "fe80::1%eth0", "[fe80::1%25]:5060", "2001:0db8:0000:0000:0000:0000:0000:0001",
    # invalid
    "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.", "-1.2.3.4", "1.2.3.4/24",
    "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "1::2::3", ":1:2::", "1:2::3:", ":::", "abc", "g::1",
    "12345::",
    "192.0.2.1:99999", "192.0.2.1:", "192.0.2.1:50a", "[2001:db8::1", "[2001:db8::1]5060",
    "[192.0.2.1]:80",
    "[]", "1.2.3.4%eth0", "::1%", "fe80::1%a%b", "::ffff:1.2.3.256", "::1.2.3",
    "1:2:3:4:5:6:7:1.2.3.4",
    "١٩٢.٠.٢.١", "192.0.2.1\u00a0", "2001:db8::/48",
    # blank and null
    "", "   ", None,
]  # fmt: skip


def test_handcrafted() -> None:
    check(HANDCRAFTED)


@pytest.mark.parametrize(
    ("v4", "v6"), [(24, 48), (32, 128), (0, 0), (16, 64), (31, 127), (8, 1), (1, 17)]
)
def test_other_prefixes(v4: int, v6: int) -> None:
    check(HANDCRAFTED, v4, v6)


def _random_addresses(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.randrange(8)
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        # zero runs make "::" compression choices interesting
        v6 = ipaddress.IPv6Address(
            int(
                "".join(
                    rng.choice(["0000", "0000", f"{rng.getrandbits(16):04x}"]) for _ in range(8)
                ),
                16,
            )
        )
        if kind == 0:
            out.append(str(v4))
        elif kind == 1:
            out.append(f"{v4}:{rng.randrange(65536)}")
        elif kind == 2:
            out.append(v6.compressed)
        elif kind == 3:
            out.append(v6.exploded.upper())
        elif kind == 4:
            out.append(f"[{v6.compressed}]:{rng.randrange(65536)}")
        elif kind == 5:
            out.append(f"::ffff:{v4}")
        elif kind == 6:
            out.append(f" {v6.compressed}%eth{rng.randrange(3)} ")
        else:
            out.append(v6.exploded[:30] + str(v4))
    return out


def test_random_addresses() -> None:
    values = _random_addresses(3000, seed=2)
    check(values)
    check(values, 20, 56)


def test_random_grammar_fuzz() -> None:
    # Short strings over the address alphabet: validity and output must match ipaddress exactly.
    rng = random.Random(9)
    alphabet = "0123456789abcdefABCDEF:...%[] "
    values = [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16))) for _ in range(BIG)
    ]
    values += [
        "::" + "".join(rng.choice("0123456789abcdef:.") for _ in range(rng.randrange(0, 40)))
        for _ in range(BIG)
    ]
    check(values)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.text(alphabet="0123456789abcdefABCDEF:.%[] \tx/", max_size=45)),
        max_size=40,
    )
)
def test_property_grammar(values: list[str | None]) -> None:
    check(values)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=10)), max_size=60
    ),
    start=st.integers(0, 10),
    cut=st.integers(0, 60),
    large=st.booleans(),
)
def test_property_arrow_layouts(
    values: list[str | None], start: int, cut: int, large: bool
) -> None:
    array = pa.array(values, pa.large_string() if large else pa.string())
    start = min(start, len(values))
    cut = min(cut, len(values))
    check(values[start:], array=array.slice(start))
    check(values, array=pa.chunked_array([array.slice(0, cut), array.slice(cut)], type=array.type))


def test_empty_null_typed_and_all_null() -> None:
    networks, invalid = ipaddr.truncate_ips(pa.array([], pa.string()))
    assert len(networks) == 0 and invalid.shape == (0,)
    networks, invalid = ipaddr.truncate_ips(pa.nulls(3))
    assert networks.to_pylist() == [None] * 3 and not invalid.any()


def test_two_threads_concurrently() -> None:
    values = [_random_addresses(BIG, seed=s) for s in (3, 4)]
    arrays = [pa.array(v) for v in values]
    expected = [ipaddr.truncate_ips(a) for a in arrays]
    for t in range(2):
        check(values[t][:300])
    def agrees(t: int) -> bool:
        networks, invalid = ipaddr.truncate_ips(arrays[t])
        return networks.equals(expected[t][0]) and np.array_equal(invalid, expected[t][1])

    assert failures_in_threads(agrees) == []


def test_validation() -> None:
    with pytest.raises(TypeError, match="values"):
        ipaddr.truncate_ips(["192.0.2.1"])
    with pytest.raises(TypeError, match="values"):
        ipaddr.truncate_ips(pa.array([1]))
    with pytest.raises(ValueError, match="v4_prefix"):
        ipaddr.truncate_ips(pa.array(["192.0.2.1"]), v4_prefix=33)
    with pytest.raises(ValueError, match="v6_prefix"):
        ipaddr.truncate_ips(pa.array(["192.0.2.1"]), v6_prefix=-1)
