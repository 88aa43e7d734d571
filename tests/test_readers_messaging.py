"""Twilio, SMPP delivery-receipt and mapped readers: published receipts, fixtures written
from each format's documentation, generate → read round trips against a per-row
projection of the canonical records, bad input, and hypothesis fuzzing.

Reference: published SMPP receipts, vendor-documented fixtures, per-row projections
(tests/projections.py), email.utils for Twilio times."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import telemetry
from telemetry.errors import ConfigError, TelemetryError
from telemetry.generate import generate
from telemetry.readers import ReaderOptions, detect_format, get_format
from telemetry.readers.mapped import EXAMPLE_MAPPING
from telemetry.readers.smpp import parse_receipt
from telemetry.readers.twilio import parse_time
from telemetry.schema import CANONICAL, MESSAGE_CHANNELS, VOICE_CHANNELS
from tests import projections
from tests.conftest import assert_first_rejects_described, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "messaging"
UTC = dt.timezone.utc


def read_all(fmt: str, path, options: ReaderOptions | None = None, batch_rows: int = 5):
    """(good rows as dicts with their row number under ``_row``, rejects)."""
    rows, rejects = [], []
    for part in get_format(fmt).read(os.fspath(path), batch_rows, options or ReaderOptions()):
        assert part.batch.schema.equals(CANONICAL)
        for number, row in zip(part.rows, part.batch.to_pylist(), strict=True):
            rows.append(row | {"_row": int(number)})
        rejects.extend(part.rejects)
    return rows, rejects


def accounted(rows, rejects) -> list[int]:
    numbers = sorted([r["_row"] for r in rows] + [r.row for r in rejects])
    assert len(numbers) == len(set(numbers)), "a row counted twice"
    return numbers


def ts(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# -- SMPP: the published cloudhopper-smpp receipts ----------------------------------------------


def cloudhopper_vectors() -> list[dict]:
    lines = (FIXTURES / "cloudhopper-receipts.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize("vector", cloudhopper_vectors(), ids=lambda v: v["source"].split("::")[1])
def test_cloudhopper_receipts(vector):
    expect = vector["expect"]
    if expect is None:
        with pytest.raises(ValueError):
            parse_receipt(vector["receipt"])
        return
    got = parse_receipt(vector["receipt"])
    assert got.id == expect["id"]
    assert got.sub == expect["sub"] and got.dlvrd == expect["dlvrd"]
    assert got.submit == dt.datetime.fromisoformat(expect["submit"])
    assert got.done == dt.datetime.fromisoformat(expect["done"])
    assert got.stat == expect["stat"] and got.err == expect["err"]
    assert "text" not in got._fields


def test_cloudhopper_vector_count():
    # 8 parses and 8 malformed receipts in DeliveryReceiptTest (one toShortMessage output)
    vectors = cloudhopper_vectors()
    assert sum(v["expect"] is not None for v in vectors) == 8
    assert sum(v["expect"] is None for v in vectors) == 7


def test_receipt_zero_done_date_and_label_inside_text():
    r = parse_receipt(
        "id:7 submit date:2611011000 done date:0000000000 stat:ENROUTE text:stat:X id:9"
    )
    assert (r.id, r.stat, r.done, r.sub) == ("7", "ENROUTE", None, None)
    with pytest.raises(ValueError, match="submit date"):
        parse_receipt("id:7 submit date:2613011000 done date:0000000000 stat:ENROUTE")
    with pytest.raises(ValueError, match="no stat"):
        parse_receipt("id:7 submit date:2611011000 done date:2611011000")


@pytest.mark.parametrize("name", ["smpp-dlr.jsonl", "smpp-dlr.csv"])
def test_smpp_fixture(name):
    path = FIXTURES / name
    assert detect_format(path) == "smpp-dlr"
    rows, rejects = read_all("smpp-dlr", path)
    assert accounted(rows, rejects) == list(range(1, 9))
    by_id = {r["record_id"]: r for r in rows}
    assert set(by_id) == {f"000000000{i}" for i in range(1, 6)}
    one = by_id["0000000001"]
    assert (one["status"], one["channel"], one["direction"]) == ("delivered", "sms", "outbound")
    assert (one["route"], one["tenant"]) == ("carrier-a", "tenant-01")
    assert one["source"] == "+15555550120"
    assert one["start_time"] == one["end_time"] == ts(2026, 11, 1, 10, 0)
    assert by_id["0000000002"]["start_time"] == ts(2026, 11, 1, 10, 0, 5)  # 12 digits
    assert by_id["0000000002"]["status"] == "undelivered"
    three = by_id["0000000003"]  # 14 digits, fields out of order, no tenant
    assert (three["status"], three["tenant"]) == ("expired", None)
    assert three["end_time"] == ts(2026, 11, 1, 12, 0, 10)
    assert (by_id["0000000004"]["status"], by_id["0000000004"]["end_time"]) == ("enroute", None)
    assert by_id["0000000005"]["status"] == "undelivered"  # non-standard FAILED
    reasons = {r.row: r.reason for r in rejects}
    assert reasons == {
        6: "receipt submit date: not a valid date and time",
        7: "end_time: before start_time",
        8: "receipt stat: not a known delivery state",
    }
    for reject in rejects:
        assert "5555" not in json.dumps(reject.fields) and "7700" not in json.dumps(reject.fields)
        assert "text" not in json.dumps(reject.fields).lower().replace("\"", "")


def test_smpp_timezone_setting(tmp_path):
    path = tmp_path / "r.jsonl"
    receipt = "id:1 submit date:2607011000 done date:2607011001 stat:DELIVRD"
    record = {"route": "r", "source": "1", "destination": "2", "receipt": receipt}
    path.write_text(json.dumps(record) + "\n")
    rows, _ = read_all("smpp-dlr", path, ReaderOptions(extra={"timezone": "Europe/London"}))
    assert rows[0]["start_time"] == ts(2026, 7, 1, 9, 0)


# -- Twilio --------------------------------------------------------------------------------------


def test_rfc2822_times():
    assert parse_time("Tue, 01 Nov 2026 10:00:00 +0000") == ts(2026, 11, 1, 10)
    assert parse_time("01 Nov 2026 10:00:00 -0130") == ts(2026, 11, 1, 11, 30)
    assert parse_time("2026-11-01T10:00:00Z") == ts(2026, 11, 1, 10)
    assert parse_time("") is None
    for bad in ("Tue, 41 Nov 2026 10:00:00 +0000", "yesterday", "01/11/2026"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_twilio_calls_page():
    path = FIXTURES / "twilio-calls-page.json"
    assert detect_format(path) == "twilio-calls"
    rows, rejects = read_all("twilio-calls", path)
    assert accounted(rows, rejects) == list(range(1, 7))
    assert [(r.row, r.reason) for r in rejects] == [
        (6, "status: call not finished (queued, ringing or in progress)")
    ]
    status = [r["status"] for r in rows]
    assert status == ["answered", "busy", "no_answer", "cancelled", "failed"]
    first = rows[0]
    assert first["start_time"] == ts(2010, 8, 31, 20, 36, 29)
    assert first["end_time"] == ts(2010, 8, 31, 20, 36, 44)
    assert first["answer_time"] == ts(2010, 8, 31, 20, 36, 29)  # end − 15 s
    assert first["duration_ms"] == 15000
    assert first["tenant"] == "AC" + "a" * 32 and first["record_id"].startswith("CA")
    assert (first["source"], first["destination"], first["direction"]) == (
        "+15555550100", "+15555550101", "outbound")
    assert rows[2]["start_time"] == ts(2026, 11, 1, 9, 1)  # +0100
    assert rows[2]["direction"] == "inbound"
    assert all(r["answer_time"] is None and r["duration_ms"] == 0 for r in rows[1:])
    assert all(r["channel"] == "voice" for r in rows)


@pytest.mark.parametrize("name", ["twilio-messages.ndjson", "twilio-messages.csv"])
def test_twilio_messages(name):
    path = FIXTURES / name
    assert detect_format(path) == "twilio-messages"
    rows, rejects = read_all("twilio-messages", path)
    assert not rejects and [r["_row"] for r in rows] == list(range(1, 7))
    assert [r["status"] for r in rows] == [
        "delivered", "undelivered", "enroute", "delivered", "rejected", "accepted"]
    assert [r["channel"] for r in rows] == ["sms", "sms", "sms", "mms", "sms", "sms"]
    assert rows[0]["end_time"] - rows[0]["start_time"] == dt.timedelta(seconds=3)
    assert rows[2]["end_time"] is None and rows[5]["end_time"] is None  # not final
    assert rows[1]["source"] == "AcmeBank"


def test_twilio_bad_rows(tmp_path):
    good = {"sid": "CA1", "from": "+15555550100", "to": "+15555550101", "status": "completed",
            "start_time": "Sun, 01 Nov 2026 10:00:00 +0000", "duration": "5",
            "end_time": "Sun, 01 Nov 2026 10:00:09 +0000"}
    lines = [
        json.dumps(good),
        json.dumps(good | {"duration": "-4"}),
        json.dumps(good | {"start_time": "Sun, 01 Nov 2026 25:00:00 +0000"}),
        json.dumps(good | {"status": "teleported"}),
        json.dumps(good | {"end_time": "Sun, 01 Nov 2026 09:00:00 +0000"}),
        json.dumps(good | {"from": {"nested": 1}}),
        "{not json",
        "[1, 2]",
        json.dumps(good | {"duration": "ten"}),
    ]
    path = tmp_path / "calls.ndjson"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"sid": "\xff"}\n')
    rows, rejects = read_all("twilio-calls", path)
    assert accounted(rows, rejects) == list(range(1, 11))
    assert [r["_row"] for r in rows] == [1]
    reasons = {r.row: r.reason for r in rejects}
    assert reasons[2] == "duration: negative"
    assert reasons[3].startswith("start_time:")
    assert reasons[4] == "status: not a Twilio call status"
    assert reasons[5] == "end_time: before start_time"
    assert reasons[6] == "from: nested value where a scalar belongs"
    assert reasons[7] == "not valid JSON" and reasons[8] == "not a JSON object"
    assert reasons[9] == "duration: not a number" and reasons[10] == "not valid UTF-8"
    assert "5555" not in json.dumps([r.fields for r in rejects])


# -- round trips: generate → write → read against a per-row projection -------------------------


ROUND_TRIPS = [
    ("twilio-calls", "calls.json", VOICE_CHANNELS, projections.twilio_calls),
    ("twilio-calls", "calls.csv", VOICE_CHANNELS, projections.twilio_calls),
    ("twilio-messages", "messages.ndjson", MESSAGE_CHANNELS, projections.twilio_messages),
    ("twilio-messages", "messages.csv", MESSAGE_CHANNELS, projections.twilio_messages),
    ("smpp-dlr", "dlr.jsonl", MESSAGE_CHANNELS, projections.smpp_dlr),
    ("mapped", "mapped.csv", None, projections.mapped),
]


@pytest.mark.parametrize(("fmt", "name", "channels", "project"), ROUND_TRIPS,
                         ids=[f"{r[0]}-{r[1]}" for r in ROUND_TRIPS])
def test_round_trip(tmp_path, fmt, name, channels, project):
    source = pa.Table.from_batches(list(generate(3000, seed=7, batch_rows=700))).to_pylist()
    path = tmp_path / name
    written = get_format(fmt).write(iter(generate(3000, seed=7, batch_rows=700)), str(path))
    kept = [r for r in source if channels is None or r["channel"] in channels]
    assert written == len(kept) > 100
    if fmt != "mapped":
        assert get_format(fmt).sniff(path.read_bytes()[:65536])
        assert detect_format(path) == fmt
    options = ReaderOptions(extra={"mapping": EXAMPLE_MAPPING})
    rows, rejects = read_all(fmt, path, options, batch_rows=512)
    assert not rejects
    assert [r["_row"] for r in rows] == list(range(1, len(kept) + 1))
    for got, want in zip(rows, map(project, kept), strict=True):
        got_kept = {k: got[k] for k in want}
        if "mos" in want and want["mos"] is not None:
            assert got_kept.pop("mos") == pytest.approx(want.pop("mos"), abs=1e-4)
        assert got_kept == want
        untouched = set(CANONICAL.names) - set(want) - {"mos"}
        assert all(got[k] is None for k in untouched if k != "channel")


# -- mapped --------------------------------------------------------------------------------------

MAPPING = {"record_id": "Ref", "start_time": "Started", "source": "Caller",
           "destination": "Callee", "status": "Outcome", "duration_ms": "TalkSecs",
           "route": "Trunk", "time_format": "%d/%m/%Y %H:%M:%S", "timezone": "Europe/London"}


def test_mapped_fixture():
    rows, rejects = read_all("mapped", FIXTURES / "mapped.csv",
                             ReaderOptions(extra={"mapping": MAPPING}))
    assert accounted(rows, rejects) == [1, 2, 3, 4, 5]
    assert [r["record_id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["start_time"] == ts(2026, 11, 1, 10)  # GMT in November
    first = rows[0]
    assert (first["status"], first["duration_ms"]) == ("answered", 42000)
    assert first["route"] == "carrier-a"
    reasons = {r.row: r.reason for r in rejects}
    assert reasons == {3: "start_time: does not match [mapping] time_format",
                       4: "duration_ms: negative", 5: "expected 8 columns, found 5"}
    assert rejects[0].fields["source"] == "+" + "*" * 11


def test_mapped_jsonl_iso_times(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join([
        json.dumps({"when": "2026-07-01 10:00:00", "a": "+15555550140", "kind": "sms"}),
        json.dumps({"when": 1793527200, "a": "+15555550141"}),
        "",
        json.dumps({"a": "+15555550142"}),
    ]) + "\n")
    mapping = {"start_time": "when", "source": "a", "channel": "kind", "timezone": "Europe/London"}
    rows, rejects = read_all("mapped", path, ReaderOptions(extra={"mapping": mapping}))
    assert rows[0]["start_time"] == ts(2026, 7, 1, 9) and rows[0]["channel"] == "sms"
    assert rows[1]["start_time"] == dt.datetime.fromtimestamp(1793527200, UTC)
    assert [(r.row, r.reason) for r in rejects] == [(3, "start_time: missing")]


BAD_MAPPINGS = [None, {}, {"source": "a"}, {"start_time": "t", "colour": "c"}, {"start_time": 3},
                {"start_time": "t", "timezone": "Mars/Base"}]


@pytest.mark.parametrize("mapping", BAD_MAPPINGS)
def test_mapped_configuration_errors(tmp_path, mapping):
    path = tmp_path / "m.csv"
    path.write_text("t,a\n2026-01-01T00:00:00Z,1\n")
    extra = {} if mapping is None else {"mapping": mapping}
    with pytest.raises(ConfigError):
        read_all("mapped", path, ReaderOptions(extra=extra))


def test_mapped_missing_header_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("t,a\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(TelemetryError, match="lacks the source column .* for source"):
        mapping = {"start_time": "t", "source": "x"}
        read_all("mapped", path, ReaderOptions(extra={"mapping": mapping}))


# -- many blocks ---------------------------------------------------------------------------------

_TWILIO_CALL = {"sid": "CA1", "from": "+15555550100", "to": "+15555550101", "status": "completed",
                "start_time": "Sun, 01 Nov 2026 10:00:00 +0000", "duration": "5",
                "end_time": "Sun, 01 Nov 2026 10:00:09 +0000"}
_RECEIPT = json.loads((FIXTURES / "smpp-dlr.jsonl").read_text().splitlines()[0])
# format, file name, (header, good record, record with a bad time), reason, options
_MANY_BLOCKS = {
    "mapped": ("m.csv", ("Ref,Started,Caller", "r1,01/11/2026 10:00:00,+15555550130",
                         "r1,not a time,+15555550130"),
               "start_time: does not match [mapping] time_format",
               {"mapping": {"record_id": "Ref", "start_time": "Started", "source": "Caller",
                            "time_format": "%d/%m/%Y %H:%M:%S"}}),
    "smpp-dlr": ("dlr.jsonl", (None, json.dumps(_RECEIPT), json.dumps(_RECEIPT | {
        "receipt": _RECEIPT["receipt"].replace("submit date:2611011000", "submit date:no")})),
        "receipt submit date: not 10, 12 or 14 digits", {}),
    "twilio-calls": ("calls.jsonl", (None, json.dumps(_TWILIO_CALL),
                                     json.dumps(_TWILIO_CALL | {"start_time": "not a time"})),
                     "start_time: not an RFC 2822 or ISO 8601 time", {}),
}


@pytest.mark.parametrize("fmt", list(_MANY_BLOCKS))
def test_describes_only_the_files_first_rejects_of_a_reason(tmp_path, monkeypatch, fmt):
    """A file read in many blocks: only the file's first FULL_REJECTS rejects of a reason
    are described (their fields masked, ~1 ms each); the rest come as runs, in every block
    after them. Each block used to describe its own first ones, which the writer then
    dropped. Reference: the records written with a bad time."""
    from telemetry.quarantine import FULL_REJECTS
    from telemetry.readers import mapped

    monkeypatch.setattr(mapped, "_BLOCK", 512)  # the block of every reader of keyed records
    name, (header, good, bad_time), reason, extra = _MANY_BLOCKS[fmt]
    n = 5 * FULL_REJECTS // 2  # records with a bad time, every other record
    path = tmp_path / name
    path.write_text("\n".join(([header] if header else []) + [good, bad_time] * n) + "\n")
    parts = list(get_format(fmt).read(os.fspath(path), 65536, ReaderOptions(extra=extra)))
    assert len(parts) > 2
    rows = [int(row) for part in parts for row in part.rows]
    rejects = [r for part in parts for r in part.rejects]
    assert_first_rejects_described(rows, rejects, n, reason)


# -- end to end ----------------------------------------------------------------------------------


def test_process_twilio_and_smpp_with_quarantine(tmp_path, test_key):
    inputs = [FIXTURES / "twilio-calls-page.json", FIXTURES / "smpp-dlr.csv"]
    result = telemetry.process(inputs, key=test_key, out=tmp_path / "out", k=1)
    s = result.summary
    assert (s["records_in"], s["records_ok"], s["records_quarantined"]) == (14, 10, 4)
    text = (tmp_path / "out" / "quarantine" / "rejects.jsonl").read_text()
    assert len(text.splitlines()) == 4
    assert "5555" not in text and "7700" not in text and "0000000006" not in text


def test_process_mapped_from_config(tmp_path, test_key):
    config = tmp_path / "telemetry.toml"
    lines = ['format = "mapped"', "[mapping]"] + [f'{k} = "{v}"' for k, v in MAPPING.items()]
    config.write_text("\n".join(lines) + "\n")
    result = telemetry.process([FIXTURES / "mapped.csv"], key=test_key, config=config, k=1)
    assert (result.summary["records_ok"], result.summary["records_quarantined"]) == (2, 3)


# -- fuzzing (bounded; atheris runs the same checks for longer under `make fuzz`) ----------------

FUZZ_OPTIONS = {
    "mapped": ReaderOptions(extra={"mapping": {"start_time": "t", "source": "a", "status": "s",
                                               "duration_ms": "d", "end_time": "e"}}),
}


def _check_any_bytes(tmp_path, fmt: str, data: bytes) -> None:
    path = tmp_path / "fuzz.in"
    path.write_bytes(data)
    try:
        rows, rejects = read_all(fmt, path, FUZZ_OPTIONS.get(fmt), batch_rows=3)
    except TelemetryError as exc:
        assert "\n" not in str(exc)
        return
    numbers = accounted(rows, rejects)
    assert all(n >= 1 for n in numbers)
    assert all("\n" not in r.reason for r in rejects)


_PIECES = st.sampled_from([
    b"{", b"}", b'"receipt":', b'"id:1 submit date:2611011000 stat:DELIVRD"', b",", b"\n",
    b'"calls":[', b"]", b'"status":"completed"', b'"start_time":"Sun, 01 Nov 2026 10:00:00 +0000"',
    b'"duration":"-1"', b"t,a,s,d,e\n", b"2026-01-01T00:00:00Z", b'"', b"\xff", b"\r\n",
    b'"from":"+15555550100"', b"null", b"1e999", b"route,source,destination,receipt\n",
])
_INPUT = st.one_of(st.binary(max_size=600), st.lists(_PIECES, max_size=40).map(b"".join))


@pytest.mark.parametrize("fmt", ["smpp-dlr", "twilio-calls", "twilio-messages", "mapped"])
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=_INPUT)
def test_fuzz_readers(tmp_path, fmt, data):
    _check_any_bytes(tmp_path, fmt, data)


_DIGITS = st.integers(min_value=0, max_value=999)


@settings(max_examples=300, deadline=None)
@given(
    order=st.permutations(["id", "sub", "dlvrd", "submit date", "done date", "stat", "err"]),
    width=st.sampled_from([10, 12, 14]),
    submit=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
    delay=st.integers(min_value=0, max_value=10**6),
    ident=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=40),
    stat=st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "FAILED", "enroute"]),
    sub=_DIGITS, upper=st.booleans(), text=st.text(max_size=30),
)
def test_fuzz_receipt_fields(order, width, submit, delay, ident, stat, sub, upper, text):
    submit = submit.replace(microsecond=0, second=0 if width == 10 else submit.second)
    step = dt.timedelta(minutes=1) if width == 10 else dt.timedelta(seconds=1)
    done = submit + delay * step
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S", 14: "%Y%m%d%H%M%S"}[width]
    if done.year > 2099:
        done = submit
    values = {"id": ident, "sub": f"{sub:03d}", "dlvrd": "001", "submit date": submit.strftime(fmt),
              "done date": done.strftime(fmt), "stat": stat, "err": "000"}
    receipt = " ".join(f"{k.upper() if upper else k}:{values[k]}" for k in order)
    receipt += f" {'Text' if upper else 'text'}:{text}"
    got = parse_receipt(receipt)
    assert (got.id, got.sub, got.submit, got.done, got.stat) == (ident, sub, submit, done, stat)


def test_cli_auto_format_exit_codes(tmp_path, key_env):
    out = tmp_path / "out"
    done = run_cli("process", str(FIXTURES / "twilio-messages.ndjson"),
                   str(FIXTURES / "smpp-dlr.jsonl"), "--out", str(out), "--k", "1", env=key_env)
    assert done.returncode == 1, done.stderr  # three receipts quarantined
    summary = json.loads((out / "run.json").read_text())
    assert (summary["records_in"], summary["records_quarantined"]) == (14, 3)
    assert "5555" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    done = run_cli("process", str(FIXTURES / "mapped.csv"), "--format", "mapped",
                   "--out", str(tmp_path / "o2"), env=key_env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "[mapping]" in done.stderr


def test_twilio_console_export_headers(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "From,To,Body,Status,SentDate,ApiVersion,NumSegments,ErrorCode,AccountSid,Sid,Direction\n"
        "+15555550150,+447700900150,hi there,delivered,2026-11-01T10:00:00Z,2010-04-01,1,,"
        "ACx,SMx,outbound-api\n"
    )
    assert detect_format(path) == "twilio-messages"
    rows, rejects = read_all("twilio-messages", path)
    assert not rejects and rows[0]["start_time"] == ts(2026, 11, 1, 10)
    assert (rows[0]["status"], rows[0]["tenant"], rows[0]["direction"]) == (
        "delivered", "ACx", "outbound")


@st.composite
def rfc2822_times(draw) -> str:
    """RFC 2822 times as Twilio writes them, and near misses: impossible dates, hours,
    zones, lower-case months, missing seconds or weekday, ISO times, junk."""
    day = draw(st.integers(0, 32))
    month = draw(st.sampled_from(["Jan", "feb", "Feb", "MAR", "Apr", "Sep", "Dec", "Foo"]))
    year = draw(st.sampled_from([1, 1900, 1999, 2000, 2024, 2026, 2100, 9999]))
    clock = f"{draw(st.integers(0, 25)):02d}:{draw(st.integers(0, 61)):02d}"
    if draw(st.booleans()):
        clock += f":{draw(st.integers(0, 61)):02d}"
    zones = ["+0000", "-0000", "+0100", "-0530", "+2359", "+2400", "-0190", "GMT", "UT", "Z", "EST", "pdt",
             "utc", "CET"]
    zone = draw(st.sampled_from(zones))
    weekday = draw(st.sampled_from(["", "Mon, ", "Tue,", "Sun,  "]))
    text = f"{weekday}{day:0{draw(st.integers(1, 2))}d} {month} {year:04d} {clock} {zone}"
    others = [" " + text + " ", "2026-11-02T10:00:00Z", "not a time", ""]
    return draw(st.sampled_from([text, text, text, *others]))


def stdlib_time(value: str | None) -> dt.datetime | None:
    """The reference: ``email.utils.parsedate_to_datetime`` for RFC 2822, else
    ``datetime.fromisoformat`` (Z as UTC); a time without a zone (RFC 2822's -0000)
    is UTC, a zone name email.utils does not know (``CET``) is no time at all, not
    UTC. ValueError where the standard library sees no time."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    else:
        if parsed.tzinfo is None and not text.endswith("-0000"):
            raise ValueError("a zone email.utils does not know")
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(rfc2822_times(), st.none()), min_size=1, max_size=12))
def test_vectorized_rfc2822_times_read_as_the_standard_library_does(values):
    # the one-pass reading of Twilio's times, and parse_time, give each row what the stdlib gives
    from telemetry.readers._convert import Verdict
    from telemetry.readers.twilio import _times

    verdict = Verdict(len(values))
    got = _times(values, "start_time", verdict).to_pylist()
    expected, bad = [], []
    for value in values:
        try:
            expected.append(stdlib_time(value))
        except (ValueError, OverflowError):
            expected.append(None)
        bad.append(value is not None and value.strip() != "" and expected[-1] is None)
        event("bad" if bad[-1] else "read")
        if not bad[-1]:
            assert parse_time(value) == expected[-1]
        else:
            with pytest.raises((ValueError, OverflowError)):
                parse_time(value)
    assert got == expected
    assert verdict.bad.tolist() == bad


# -- Twilio trunking directions and withheld callers, through `telemetry process` -------------


def _process(tmp_path, env, fixture: str, *extra: str) -> pl.DataFrame:
    out = tmp_path / "out"
    done = run_cli("process", str(FIXTURES / fixture), "--out", str(out), "--k", "1",
                   "--by", "direction", *extra, env=env)
    assert done.returncode == 0, done.stderr
    return pl.read_parquet(out / "metrics" / "**" / "*.parquet").sort("direction")


def test_process_trunking_directions(tmp_path, key_env):
    # the Call resource: trunking-terminating = from the customer to the PSTN (outbound),
    # trunking-originating = from the PSTN to the customer (inbound)
    got = _process(tmp_path, key_env, "twilio-calls-trunking.json").select(
        "direction", "attempts", "answered", "busy", "no_answer", "total_duration_s")
    assert got.rows() == [
        ("inbound", 3, 2, 0, 1, 45.0 + 20.0),  # 2 trunking-originating + 1 inbound
        ("outbound", 4, 3, 1, 0, 60.0 + 30.0 + 10.0),  # 3 trunking-terminating + 1 outbound-api
    ]


def test_process_withheld_twilio_callers(tmp_path, key_env):
    # five calls from Twilio's placeholders (ANONYMOUS, UNAVAILABLE, RESTRICTED, BLOCKED,
    # UNKNOWN on a keypad), three from two real numbers
    got = _process(tmp_path, key_env, "twilio-calls-withheld.csv", "--emit-records")
    assert got.select("direction", "attempts", "answered", "busy", "no_answer",
                      "distinct_sources", "distinct_destinations").rows() == [
        ("inbound", 8, 6, 1, 1, 2, 1)]
    records = pl.read_parquet(tmp_path / "out" / "records" / "**" / "*.parquet")
    assert records["source_withheld"].sum() == 5
    assert records.filter(pl.col("source_withheld"))["source"].null_count() == 5
