"""Bounded hypothesis fuzzing of the parsers the reader suites do not fuzz file by file:
format sniffers and ``--format auto``, reader settings, SMPP receipt text, Twilio
times and Parquet bytes. The readers themselves are fuzzed in tests/test_readers.py
(csv, jsonl), test_readers_voip.py (asterisk, freeswitch, kamailio) and
test_readers_messaging.py (smpp-dlr, twilio-*, mapped); ``make fuzz`` runs the
atheris harnesses of fuzz/ for longer.

Reference: the error contract (one line, no identifier, no traceback) on generated bad input."""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from telemetry.errors import ConfigError, InputError
from telemetry.generate import generate
from telemetry.readers import FORMATS, ReaderOptions, check_settings, detect_format, get_format
from telemetry.readers.smpp import parse_receipt
from telemetry.readers.twilio import parse_time
from tests.conftest import reader_schemas

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: pieces of every format's first line, so sniffers meet near-misses, not only noise
_PIECES = st.sampled_from([
    b"start_time", b"end_time", b"duration", b"answer_time", b"sid", b"account_sid", b"from",
    b"to", b"status", b"receipt", b"date_sent", b"num_media", b",", b";", b"\t", b"|", b'"',
    b"\n", b"\r\n", b"{", b"}", b":", b'"calls": [', b'"messages": [', b"NORMAL_CLEARING",
    b"ANSWERED", b"NO ANSWER", b"2026-12-01 09:00:00", b"1796115600", b"1796115600000000",
    b"CA0001", b"SM0001", b"id:1 submit date:2611011000 stat:DELIVRD", b"PAR1", b"\xef\xbb\xbf",
    b"\xff", b"\x00", b"acme", b"+15550100",
])
HEADS = st.one_of(st.binary(max_size=300), st.lists(_PIECES, max_size=30).map(b"".join))
NAMES = st.sampled_from(["data", "data.csv", "data.jsonl", "data.txt", "Master.csv",
                         "acc_cdrs.csv", "data.parquet", "x.ndjson"])


@FUZZ
@given(head=HEADS, name=NAMES)
def test_fuzz_sniffers_and_detection(head: bytes, name: str) -> None:
    for fmt in FORMATS:
        sniff = get_format(fmt).sniff
        if sniff is not None:
            assert isinstance(sniff(head), bool)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(head)
        try:
            fmt = detect_format(path)
        except InputError as exc:
            message = str(exc)
            assert "\n" not in message and "pass --format" in message
            return
    assert fmt in FORMATS


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
    st.sampled_from(["UTC", "Europe/London", "a,b,c", '"${uuid}","${billsec}"', "route"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
_KEYS = st.sampled_from(["timezone", "template", "columns", "asterisk", "freeswitch",
                         "kamailio", "smpp-dlr", "mapped", "twilio-calls", "csv"])


@FUZZ
@given(st.dictionaries(_KEYS, st.one_of(_VALUES, st.dictionaries(_KEYS, _VALUES, max_size=3)),
                       max_size=3))
def test_fuzz_reader_settings_fail_only_as_config_errors(extra: dict) -> None:
    try:
        check_settings(extra)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:",
                              "err:", "text:", "Text:", " ", "0000000000", "2611011000",
                              "261101100059", "20261101100059", "DELIVRD", "abc", "\n", "ÿ"]),
             max_size=30).map("".join),
))
def test_fuzz_receipt_text(text: str) -> None:
    try:
        receipt = parse_receipt(text)
    except ValueError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("receipt")
        return
    assert receipt.id and " " not in receipt.id and receipt.stat
    assert receipt.done is None or isinstance(receipt.done, dt.datetime)


@FUZZ
@given(st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda day, month, year, hh, mm, zone: f"Sun, {day} {month} {year} {hh}:{mm}:00 {zone}",
        st.integers(0, 40), st.sampled_from(["Jan", "Feb", "Nov", "Foo"]),
        st.integers(0, 10000), st.integers(0, 30), st.integers(0, 70),
        st.sampled_from(["+0000", "-0500", "GMT", "Z", "+9999"]),
    ),
))
def test_fuzz_twilio_times(text: str) -> None:
    try:
        value = parse_time(text)
    except ValueError:
        return
    assert value is None or value.utcoffset() == dt.timedelta(0)


def _parquet_file() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_batches(list(generate(40, seed=3, batch_rows=20))), sink,
                   row_group_size=10)
    return sink.getvalue()


_PARQUET = _parquet_file()


# Arrow does not check that string data it reads is UTF-8; a flipped byte in a string
# page then reaches the reader unchecked (see the regression tests below).
@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_PARQUET) - 1), st.integers(0, 255)), max_size=4),
       st.integers(0, len(_PARQUET)))
def test_fuzz_damaged_parquet(flips: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(_PARQUET)
    for at, byte in flips:
        data[at] = byte
    data = bytes(data[: max(keep, 4)])
    assume(data != _PARQUET)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "damaged.parquet")
        with open(path, "wb") as handle:
            handle.write(data)
        parquet = get_format("parquet")
        for read in (parquet.read, lambda *a: (p for piece in parquet.pieces(*a) for p in piece.read())):
            try:
                parts = list(read(path, 16, ReaderOptions()))
            except InputError as exc:
                assert "\n" not in str(exc)
                continue
            rows = [int(r) for p in parts for r in p.rows] + [r.row for p in parts for r in p.rejects]
            assert sorted(rows) == list(range(1, len(rows) + 1))
            assert all(p.batch.schema in reader_schemas() for p in parts)


# -- regressions the fuzzers found -------------------------------------------------------------


def test_parquet_column_name_not_utf8_is_a_one_line_error(tmp_path) -> None:
    # pyarrow decodes the footer's column names when it opens the file and raises
    # UnicodeDecodeError, not an Arrow error, for a name that is not UTF-8
    path = tmp_path / "name.parquet"
    path.write_bytes(_PARQUET.replace(b"destination", b"\x80estination"))  # every copy of the name
    with pytest.raises(InputError, match="is not a readable Parquet file") as info:
        list(get_format("parquet").read(str(path), 16, ReaderOptions()))
    assert "\n" not in str(info.value)


def _strings(values: list[bytes]) -> pa.Array:
    """A string array of raw bytes, not checked for UTF-8, as a damaged Parquet page or
    pyarrow's JSON parser hands it over."""
    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    buffers = [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def _reasons(path: str, fmt: str) -> dict[int, str]:
    parts = list(get_format(fmt).read(path, 16, ReaderOptions()))
    return {r.row: r.reason for p in parts for r in p.rejects}


def test_parquet_strings_that_are_not_utf8_are_quarantined(tmp_path) -> None:
    start = dt.datetime(2026, 11, 1, 10, tzinfo=dt.timezone.utc)
    table = pa.table({
        "start_time": pa.array([start] * 3, pa.timestamp("us", tz="UTC")),
        "source": _strings([b"+15550100", b"+1555\xd80101", b"+15550102"]),
        "status": _strings([b"answered", b"answered", b"\x80busy"]).dictionary_encode(),
    })
    path = str(tmp_path / "damaged.parquet")
    pq.write_table(table, path)
    reasons = _reasons(path, "parquet")
    assert set(reasons) == {2, 3} and reasons[2] == "source: not valid UTF-8"


def test_jsonl_strings_that_are_not_utf8_are_quarantined(tmp_path) -> None:
    path = tmp_path / "damaged.jsonl"  # what the atheris jsonl harness found, reduced
    path.write_bytes(
        b'{"start_time": "2026-11-01T10:00:00Z", "source": "+1555\xd80100"}\n'
        b'{"start_time": "not a time", "source": "+1555\xd80101"}\n'
    )
    reasons = _reasons(str(path), "jsonl")
    assert set(reasons) == {1, 2} and reasons[1] == "source: not valid UTF-8"
