"""The field kernels (kernels/fields.py) against Arrow's casts, the reference they
stand in for, and the text conversion built on them (readers._convert._text).

Reference: Arrow's casts (pyarrow.compute)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.fields import ascii_only, plain_uints, wall_clock
from telemetry.arrowstr import string_views
from telemetry.readers._convert import Verdict, _text

TIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
# the form with any digits in it: impossible dates and times (02-30, 24:00, :60), year 0000
DIGITS = st.text(alphabet="0123456789", min_size=14, max_size=14).map(
    lambda d: f"{d[:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}:{d[12:]}"
)
OTHER = st.sampled_from(
    ["2026-11-02 10:00", "2026-11-02  10:00:00", "2026-11-02 10:00:00Z", "2026/11/02 10:00:00",
     "2026-11-02x10:00:00", "2026-11-02 10:00:00.5", "", " 2026-11-02 10:00:00", "+2026-11-2 10:00:00"]
)


def arrow(values: list, target: pa.DataType) -> list:
    """Arrow's cast of each value alone: its value, or "bad"."""
    out = []
    for value in values:
        try:
            out.append(pc.cast(pa.array([value], pa.string()), target)[0].as_py())
        except pa.ArrowInvalid:
            out.append("bad")
    return out


def kernel(function, values: list, target: pa.DataType) -> list | None:
    array = pa.array(values, pa.string())
    views = string_views(array)
    out = np.zeros(len(values), np.int64)
    if not function(views.offsets, views.data, views.valid, out):
        return None
    return [None if v is None else o for v, o in zip(values, out.tolist())]


def as_int(values: list, target: pa.DataType) -> list:
    return [v if v in (None, "bad") else pa.scalar(v, target).cast(pa.int64()).as_py() for v in values]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TIMES.map(str).map(lambda t: t[:19]), DIGITS, OTHER, st.none()), max_size=8), st.booleans())
def test_wall_clock_reads_as_arrow_or_declines(values, with_t) -> None:
    if with_t:
        values = [v[:10] + "T" + v[11:] if v and len(v) > 10 else v for v in values]
    target = pa.timestamp("us")
    expect = as_int(arrow(values, target), target)
    got = kernel(wall_clock, values, target)
    if got is not None:
        assert got == expect  # never a value Arrow reads otherwise, never one it rejects
    plain = all(v is None or (len(v) == 19 and v[:4] != "0000" and "bad" != e) for v, e in zip(values, expect))
    if plain and all(v is None or v[4] == "-" and v[13] == ":" for v in values):
        assert got is not None  # the common form is read by the kernel


@settings(deadline=None)
@given(st.lists(TIMES.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0")), min_size=1, max_size=30))
def test_wall_clock_reads_every_real_time(values) -> None:
    got = kernel(wall_clock, sorted(values), pa.timestamp("us"))
    assert got == as_int(arrow(sorted(values), pa.timestamp("us")), pa.timestamp("us"))


@settings(deadline=None)
@given(TIMES, st.lists(st.integers(0, 5 * 86400), min_size=1, max_size=30))
def test_wall_clock_reads_times_days_apart(base, steps) -> None:
    # CDR times come in order, many on one day: the kernel reuses a row's day for the next
    stamps = [base + dt.timedelta(seconds=s) for s in steps if base + dt.timedelta(seconds=s) < dt.datetime(9999, 12, 31)]
    values = [t.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0") for t in stamps]
    assert kernel(wall_clock, values, pa.timestamp("us")) == as_int(arrow(values, pa.timestamp("us")), pa.timestamp("us"))


@pytest.mark.parametrize(
    "value, read",
    [("2000-02-29 00:00:00", True), ("2024-02-29 12:00:00", True), ("1900-02-29 00:00:00", False),
     ("2023-02-29 00:00:00", False), ("2026-04-31 00:00:00", False), ("2026-12-31 23:59:59", True),
     ("0001-01-01 00:00:00", True), ("9999-12-31 23:59:59", True), ("2026-01-01 24:00:00", False),
     ("2026-01-01 00:60:00", False), ("2026-01-01 00:00:60", False), ("2026-00-01 00:00:00", False)],
)
def test_wall_clock_calendar_edges(value, read) -> None:
    got = kernel(wall_clock, [value], pa.timestamp("us"))
    assert (got is not None) == read
    if read:
        assert got == as_int(arrow([value], pa.timestamp("us")), pa.timestamp("us"))
    else:
        assert arrow([value], pa.timestamp("us")) == ["bad"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 10**19).map(str), st.text("0123456789 +-x", max_size=20), st.none()), max_size=8))
def test_plain_uints_reads_as_arrow_or_declines(values) -> None:
    expect = arrow(values, pa.int64())
    got = kernel(plain_uints, values, pa.int64())
    if got is not None:
        assert got == expect
    if all(v is None or (v.isdigit() and 1 <= len(v) <= 18) for v in values):
        assert got is not None


@settings(deadline=None)
@given(st.binary(max_size=40), st.integers(0, 40), st.integers(0, 40))
def test_ascii_only_is_bytes_isascii(data, lo, hi) -> None:
    lo, hi = min(lo, len(data)), min(max(lo, hi), len(data))
    assert ascii_only(np.frombuffer(data, np.uint8), lo, hi) == data[lo:hi].isascii()


@settings(deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=4), st.none()), max_size=10), st.integers(0, 3))
def test_text_is_utf8_checked_and_empty_is_null(values, cut) -> None:
    # as string (Arrow does not check what it reads) and as binary, sliced
    for kind in (pa.string(), pa.binary()):
        array = pa.array(values, pa.binary()).view(kind).slice(min(cut, len(values)))
        verdict = Verdict(len(array))
        text = _text(array, "source", verdict)
        expect, bad = [], []
        for value in array.view(pa.binary()).to_pylist():
            try:
                decoded = None if value is None else value.decode("utf-8")
            except UnicodeDecodeError:
                decoded = "bad"
            bad.append(decoded == "bad")
            expect.append(None if decoded in ("", "bad") else decoded)
        assert text.type == pa.string() and text.to_pylist() == expect
        assert verdict.bad.tolist() == bad
