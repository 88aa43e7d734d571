"""Quarantine: masking, the lazy writer, floods summarized, and no identifier digit in
rejects.jsonl.

Reference: handwritten expected lines, the rows the test writes, and every letter and digit of
their identifiers searched in rejects.jsonl."""

from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from telemetry.quarantine import FULL_REJECTS, QuarantineWriter, mask, mask_fields, masked
from telemetry.readers import Reject, open_inputs
from telemetry.schema import CANONICAL


def test_mask_keeps_punctuation_only():
    assert mask("+44 7700 900123") == "+** **** ******"
    assert (
        mask("sip:+447700900123@gw.example.net;user=phone")
        == "***:+************@**.*******.***;****=*****"
    )
    assert mask("tel:+1-202-555-0143") == "***:+*-***-***-****"
    assert mask("2001:db8::1") == "****:***::*"
    assert mask("") == ""
    assert mask(None) is None


@given(st.text())
def test_mask_leaves_no_letter_or_digit(value):
    out = mask(value)
    assert len(out) == len(value)
    assert not any(ch.isalnum() for ch in out)
    # everything that was not a letter or digit is unchanged
    assert all(a == b for a, b in zip(value, out, strict=True) if not a.isalnum())


def test_masked_fields_text_and_columns():
    fields = masked(
        {
            "source": "+1 202 555 0143",
            "route": "carrier-a",
            "pdd_ms": 1500,
            "roaming": True,
            "start_time": dt.datetime(2026, 11, 1, 10, tzinfo=dt.timezone.utc),
            "location": "",
            "record_id": b"call-7",
        }
    )
    assert fields == {
        "source": "+* *** *** ****",
        "route": "carrier-a",
        "pdd_ms": "1500",
        "roaming": "true",
        "start_time": "2026-11-01T10:00:00+00:00",
        "location": None,
        "record_id": "****-*",
    }


def test_mask_fields_of_a_canonical_batch():
    row = {name: None for name in CANONICAL.names}
    row.update(
        record_id="call-0042",
        channel="voice",
        start_time=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
        source="+44 7700 900123",
        destination="07700 900124",
        source_ip="192.0.2.14",
        location="cell 0421",
        route="carrier-b",
        duration_ms=61000,
    )
    batch = pa.RecordBatch.from_pylist([row, row], schema=CANONICAL).slice(1)
    fields = mask_fields(batch, 0)
    assert set(fields) == set(CANONICAL.names)
    for name in ("record_id", "source", "destination", "source_ip", "location"):
        assert fields[name] is None or not re.search(r"[0-9A-Za-z]", fields[name])
    assert (
        fields["route"] == "carrier-b"
        and fields["duration_ms"] == "61000"
        and fields["channel"] == "voice"
    )
    assert fields["start_time"].startswith("2026-11-01T00:00:00")


def test_writer_is_lazy_and_appends(tmp_path):
    writer = QuarantineWriter(tmp_path)
    writer.write([])
    writer.close()
    assert not (tmp_path / "quarantine").exists() and writer.count == 0

    with QuarantineWriter(tmp_path) as writer:
        writer.write([Reject("a.csv", 3, "start_time: missing", {"source": "+** ****"})])
        writer.write(
            [Reject("a.csv", 9, "pdd_ms: negative", {}), Reject("b.csv", 1, "x", {"route": None})]
        )
        assert writer.count == 3
    lines = [
        json.loads(line)
        for line in (tmp_path / "quarantine" / "rejects.jsonl").read_text().splitlines()
    ]
    assert lines == [
        {
            "file": "a.csv",
            "row": 3,
            "reason": "start_time: missing",
            "fields": {"source": "+** ****"},
        },
        {"file": "a.csv", "row": 9, "reason": "pdd_ms: negative", "fields": {}},
        {"file": "b.csv", "row": 1, "reason": "x", "fields": {"route": None}},
    ]


IDENTIFIERS = [
    "+44 7700 900461",
    "07700 900462",
    "tel:+1-202-555-0173",
    "sip:night.shift@pbx.example.net",
    "sip:+447700900463@gw.example.net;user=phone",
    "AcmeAlerts",
    "60123",
]


def test_no_identifier_digit_in_rejects_file(tmp_path):
    """Rejected rows of every kind carry identifiers; none of their letters or digits
    reaches rejects.jsonl (free text never does either)."""
    path = tmp_path / "bad.csv"
    lines = ["record_id,start_time,source,destination,source_ip,location,duration_ms,notes"]
    for i, ident in enumerate(IDENTIFIERS):
        other = IDENTIFIERS[(i + 1) % len(IDENTIFIERS)]
        lines.append(
            f"id-{ident},not a time,{ident},{other},198.51.100.77,cell near {ident},1,"
            f"secret note {ident}"
        )
        lines.append(f"id-{ident},2026-11-01T09:00:00Z,{ident},{other},,,-4,call me")
        lines.append(f"id-{ident},2026-11-01T09:00:00Z,{ident}")  # wrong column count
    path.write_text("\n".join(lines) + "\n")
    rejects = [r for part in open_inputs([path]) for r in part.rejects]
    assert len(rejects) == 3 * len(IDENTIFIERS)
    with QuarantineWriter(tmp_path / "out") as writer:
        writer.write(rejects)
    records = [
        json.loads(line)
        for line in (tmp_path / "out" / "quarantine" / "rejects.jsonl").read_text().splitlines()
    ]
    assert sorted(r["row"] for r in records) == list(range(1, 3 * len(IDENTIFIERS) + 1))
    # start_time is not an identifier and stays readable; everything else is scanned
    blob = json.dumps(
        [
            {k: v for k, v in r["fields"].items() if k not in ("start_time", "duration_ms")}
            for r in records
        ]
    )
    assert "note" not in blob and "call" not in blob
    for ident in IDENTIFIERS:
        for token in re.findall(r"[0-9A-Za-z]{3,}", ident):
            assert token not in blob
    assert not re.search(r"[0-9]", blob)
    assert all(r["reason"] and "." not in r["reason"] for r in records)  # reasons echo no value


def test_only_strict_forms_are_shown():
    """Each column shows a value only in its own strict form; a number anywhere else is masked."""
    number = "+44 7700 900555"
    shown = {
        "status": "NO ANSWER", "channel": "sms", "direction": "outbound-api", "roaming": "yes",
        "start_time": "2026-11-01 09:00:00", "end_time": "2026-11-01T09:00:05.123+01:00",
        "duration_ms": "61000", "sip_code": "486", "mos": "4.2",
        "route": "carrier-a", "tenant": "Acme Ltd", "mno": "EE", "device_type": "smartphone",
    }  # fmt: skip
    assert masked(shown) == shown
    hidden = {
        "status": number, "channel": "447700900555", "direction": "AcmeAlerts",
        "start_time": "4477-00-90 05:55:55", "answer_time": "1762000000", "end_time": number,
        "duration_ms": "447700900555", "pdd_ms": "4477009", "mos": "4.47700900555",
        "route": "+447700900555", "tenant": "07700 900555", "mno": "alice@example.com",
        "device_type": "__other__", "roaming": "4477", "record_id": "ok", "location": "north",
        "source_ip": "192.0.2.1", "some_vendor_field": "x",
    }  # fmt: skip
    out = masked(hidden)
    assert out == {name: mask(value) for name, value in hidden.items()}
    assert not re.search(r"[0-9A-Za-z]", "".join(out.values()))


def test_floods_are_summarized_per_file_and_reason(tmp_path):
    n = FULL_REJECTS + 250
    with QuarantineWriter(tmp_path) as writer:
        writer.write([Reject("a.csv", i, "start_time: missing", {}) for i in range(1, n + 1)])
        writer.write([Reject("a.csv", n + 1, "pdd_ms: negative", {})])
        writer.write([Reject("b.csv", 7, "start_time: missing", {})])
        assert writer.count == n + 2
    lines = [json.loads(x) for x in (tmp_path / "quarantine" / "rejects.jsonl").read_text().splitlines()]
    full = [x for x in lines if "row" in x]
    assert [x["row"] for x in full if x["file"] == "a.csv"] == [*range(1, FULL_REJECTS + 1), n + 1]
    summaries = [x for x in lines if "summarized" in x]
    assert summaries == [
        {"file": "a.csv", "reason": "start_time: missing", "summarized": 250,
         "first_row": FULL_REJECTS + 1, "last_row": n},
    ]  # fmt: skip
    assert lines.index(summaries[0]) < lines.index(full[-1])  # a.csv's summary before b.csv's rows
    assert len(full) + summaries[0]["summarized"] == n + 2
