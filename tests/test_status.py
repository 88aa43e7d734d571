"""Status derivation (SPEC 2.1) in every voice reader, over SIP codes × Q.850 causes × what
the record shows (an answer, alerting), checked against the SPEC table written out by hand
below — not against telemetry.status's own constants."""

from __future__ import annotations

import csv
import datetime as dt
import json

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.readers import ReaderOptions, open_inputs
from telemetry.readers.freeswitch import template_names
from telemetry.readers.asterisk import DISPOSITIONS
from telemetry.readers.twilio import CALL_STATUSES
from telemetry.status import status_from_codes
from tests.conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "voip"

# -- SPEC 2.1, by hand -------------------------------------------------------------------------
# "200→answered; 486, 600 (Q.850 17)→busy; 480, 408 after alerting (Q.850 18, 19)→no_answer;
#  603 (Q.850 21)→rejected; 487 (caller hung up before answer)→cancelled;
#  503, 34, 42→congestion; every other failure→failed."
SIP_TABLE = {486: "busy", 600: "busy", 480: "no_answer", 603: "rejected", 487: "cancelled"}
SIP_TABLE |= {503: "congestion"}
Q850_TABLE = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected", 34: "congestion"}
Q850_TABLE |= {42: "congestion"}


def spec_status(
    sip: int | None, q850: int | None, answered: bool | None, alerted: bool
) -> str | None:
    """The status SPEC 2.1 gives a record with these codes, plus the decisions of
    docs/formats.md where it depends on context: an answered record is answered whatever
    its codes; 408 is no_answer only after alerting (a 180/183, or Q.850 19 "user
    alerted"), else failed; 2xx is the answer itself; Q.850 16/31 (normal clearing) is
    cancelled when the record shows no answer, else answered; the SIP code wins."""
    if sip is None and q850 is None:
        return None
    if answered:
        return "answered"
    if sip is not None:
        if 200 <= sip <= 299:
            return "answered"
        if sip == 408:
            return "no_answer" if alerted or q850 == 19 else "failed"
        return SIP_TABLE.get(sip, "failed")
    if q850 in (16, 31):
        return "cancelled" if answered is False else "answered"
    return Q850_TABLE.get(q850, "failed")


# the context-dependent codes (408; 16, 19) drawn often, the tables' codes next, then any
SIP = st.one_of(
    st.none(),
    st.just(408),
    st.sampled_from([200, 202, 480, 486, 487, 503, 600, 603, 404, 484, 500, 504, 302]),
    st.integers(100, 699),
)
Q850 = st.one_of(
    st.none(),
    st.sampled_from([16, 19, 102]),
    st.sampled_from([17, 18, 21, 31, 34, 42, 1, 41]),
    st.integers(0, 127),
)
#: a row: SIP code, Q.850 cause, answered, alerted (a 180/183 before the end)
ROW = st.tuples(SIP, Q850, st.booleans(), st.booleans())
ROWS = st.lists(ROW, min_size=1, max_size=24)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
START = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.timezone.utc)


def statuses(path, fmt: str, **extra) -> list[str | None]:
    """The status of every row a reader gives, in row order; no row may be rejected."""
    got: dict[int, str | None] = {}
    for part in open_inputs([path], fmt, batch_rows=7, options=ReaderOptions(extra=extra)):
        assert part.rejects == []
        got.update(zip(part.rows.tolist(), part.batch.column("status").to_pylist(), strict=True))
    return [got[i] for i in sorted(got)]


# -- the derivation itself ----------------------------------------------------------------------


@given(rows=ROWS, answer_known=st.booleans())
@SETTINGS
def test_status_from_codes(rows, answer_known):
    sip, q850, answered, alerted = (list(c) for c in zip(*rows, strict=True))
    got = status_from_codes(
        pa.array(sip, pa.int16()),
        pa.array(q850, pa.int16()),
        np.ma.masked_array(answered, mask=[not answer_known] * len(rows)),
        np.array(alerted),
    )
    known = [a if answer_known else None for a in answered]
    assert got.to_pylist() == [spec_status(*r) for r in zip(sip, q850, known, alerted, strict=True)]


def test_spec_table_rows():
    """The rows the issue names, one by one."""
    assert spec_status(408, None, None, True) == "no_answer"  # 408 after a 180/183
    assert spec_status(408, None, None, False) == "failed"  # a timeout before alerting
    assert spec_status(408, 19, False, False) == "no_answer"  # the cause says: user alerted
    assert spec_status(408, 102, False, False) == "failed"  # recovery on timer expiry
    assert spec_status(487, None, True, True) == "answered"  # 487 after answer
    assert spec_status(200, None, False, False) == "answered"  # 2xx without an answer time
    assert spec_status(None, 16, False, True) == "cancelled"  # normal clearing, no answer
    expected = ["no_answer", "failed", "no_answer", "failed", "answered", "answered", "cancelled"]
    got = status_from_codes(
        pa.array([408, 408, 408, 408, 487, 200, None]),
        pa.array([None, None, 19, 102, None, None, 16]),
        np.ma.masked_array([0, 0, 0, 0, 1, 0, 0], mask=[1, 1, 0, 0, 0, 0, 0]).astype(bool),
        np.array([1, 0, 0, 0, 1, 0, 1], dtype=bool),
    )
    assert got.to_pylist() == expected


# -- canonical formats: pdd_ms shows alerting; answer_time / duration_ms an answer --------------


def _canonical_rows(rows, answer_column: str | None) -> list[dict]:
    out = []
    for i, (sip, q850, answered, alerted) in enumerate(rows):
        start = START + dt.timedelta(minutes=i)
        row = {"start_time": start.isoformat(), "sip_code": sip, "q850_cause": q850,
               "pdd_ms": 2300 if alerted or answered else None}
        if answer_column == "answer_time":
            row["answer_time"] = (start + dt.timedelta(seconds=9)).isoformat() if answered else None
        elif answer_column == "duration_ms":
            row["duration_ms"] = 61000 if answered else 0
        out.append(row)
    return out


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@given(rows=ROWS, answer_column=st.sampled_from([None, "answer_time", "duration_ms"]))
@SETTINGS
def test_canonical_readers(tmp_path, fmt, rows, answer_column):
    records = _canonical_rows(rows, answer_column)
    path = tmp_path / f"calls.{fmt}"
    if fmt == "parquet":
        table = pa.Table.from_pylist(records)
        start = table.column("start_time").cast(pa.timestamp("us", "UTC"))
        pq.write_table(table.set_column(0, "start_time", start), path)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        with open(path, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    # pdd_ms runs to the 180/183, or to the 200 when none came: answered rows have it
    expected = [spec_status(s, q, a if answer_column else None, al or a) for s, q, a, al in rows]
    assert statuses(path, fmt) == expected


@given(rows=ROWS)
@SETTINGS
def test_mapped_reader(tmp_path, rows):
    mapping = {"start_time": "Started", "answer_time": "Answered", "pdd_ms": "PddMs",
               "status": "Outcome", "sip_code": "SipCode", "q850_cause": "Cause"}
    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["Started", "Answered", "PddMs", "Outcome", "SipCode", "Cause"])
        for i, (sip, q850, answered, alerted) in enumerate(rows):
            start = START + dt.timedelta(minutes=i)
            answer = (start + dt.timedelta(seconds=9)).isoformat() if answered else ""
            writer.writerow([start.isoformat(), answer, "1800" if alerted else "", "",
                             "" if sip is None else sip, "" if q850 is None else q850])
    assert statuses(path, "mapped", mapping=mapping) == [spec_status(*r) for r in rows]


# -- FreeSWITCH: progressmsec (180) / progress_mediamsec (183) show alerting --------------------

TEMPLATE = ("uuid,start_epoch,answer_epoch,end_epoch,billsec,hangup_cause,sip_term_status,"
            "progressmsec,progress_mediamsec")
# Q.850 names as switch_types.h spells them
CAUSE_NAMES = {
    1: "UNALLOCATED_NUMBER", 16: "NORMAL_CLEARING", 17: "USER_BUSY", 18: "NO_USER_RESPONSE",
    19: "NO_ANSWER", 21: "CALL_REJECTED", 31: "NORMAL_UNSPECIFIED", 34: "NORMAL_CIRCUIT_CONGESTION",
    41: "NORMAL_TEMPORARY_FAILURE", 42: "SWITCH_CONGESTION", 102: "RECOVERY_ON_TIMER_EXPIRE",
    127: "INTERWORKING",
}
# FreeSWITCH's own causes (above 127) and what they mean without an answer; None: a timer
# that fires before or after ringing alike, so no_answer after alerting, else failed
OWN_CAUSES = {
    "ORIGINATOR_CANCEL": "cancelled", "LOSE_RACE": "cancelled", "PROGRESS_TIMEOUT": "failed",
    "MANAGER_REQUEST": "failed", "MEDIA_TIMEOUT": "failed", "GATEWAY_DOWN": "congestion",
    "DECLINE": "rejected", "ALLOTTED_TIMEOUT": None, "NO_PICKUP": None,
}
FS_ROW = st.tuples(
    SIP,
    st.one_of(st.none(), st.sampled_from(sorted(CAUSE_NAMES)), st.sampled_from(sorted(OWN_CAUSES)),
              st.sampled_from(["ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT", 102, 19])),
    st.booleans(), st.booleans(), st.booleans(),
)


def fs_status(sip, cause, answered: bool, alerted: bool) -> str | None:
    if cause in OWN_CAUSES:  # the switch's own verdict, against what the record shows
        if answered:
            return "answered"
        own = OWN_CAUSES[cause]
        return own if own is not None else ("no_answer" if alerted else "failed")
    return spec_status(sip, cause, answered, alerted or answered)


@given(rows=st.lists(FS_ROW, min_size=1, max_size=24))
@SETTINGS
def test_freeswitch_reader(tmp_path, rows):
    path = tmp_path / "cdr.csv"
    with open(path, "w", newline="") as out:
        for i, (sip, cause, answered, alerted, early_media) in enumerate(rows):
            start = int(START.timestamp()) + 60 * i
            progress = ("0", "2100") if early_media else ("2100", "0")
            name = CAUSE_NAMES.get(cause, cause) if cause is not None else ""
            fields = [f"uuid-{i}", str(start), str(start + 9) if answered else "0", str(start + 40),
                      "31" if answered else "0", name, "" if sip is None else str(sip),
                      *(progress if alerted else ("0", "0"))]
            out.write(",".join(f'"{f}"' for f in fields) + "\n")
    expected = [fs_status(s, c, a, al) for s, c, a, al, _ in rows]
    assert statuses(path, "freeswitch", template=TEMPLATE) == expected


# -- Kamailio acc_cdrs: a 2xx is the answer; only a pdd_ms extra column shows alerting ----------


@given(rows=st.lists(st.tuples(SIP, st.booleans(), st.booleans()), min_size=1, max_size=24),
       pdd_column=st.booleans())
@SETTINGS
def test_kamailio_reader(tmp_path, rows, pdd_column):
    path = tmp_path / "acc_cdrs.csv"
    header = ["id", "start_time", "end_time", "duration", "callid", "sip_code"]
    header += ["pdd_ms"] if pdd_column else []
    expected = []
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for i, (sip, talked, alerted) in enumerate(rows):
            answered = sip is not None and 200 <= sip <= 299 or (sip is None and talked)
            start = START + dt.timedelta(minutes=i)
            end = start + dt.timedelta(seconds=30)
            row = [i + 1, f"{start:%Y-%m-%d %H:%M:%S}", f"{end:%Y-%m-%d %H:%M:%S}",
                   "30.000" if answered else "0.000", f"c{i}@pbx", "" if sip is None else sip]
            writer.writerow(row + (["1700" if alerted else ""] if pdd_column else []))
            if sip is None:  # the reader's own rule without a code: a confirmed dialog or a failure
                expected.append("answered" if answered else "failed")
            else:
                expected.append(spec_status(sip, None, answered, alerted and pdd_column))
    assert statuses(path, "kamailio") == expected


# -- formats whose records carry a status and no code: the vendor's word maps directly ---------

ASTERISK = {"ANSWERED": "answered", "NO ANSWER": "no_answer", "BUSY": "busy", "FAILED": "failed",
            "CONGESTION": "congestion"}
TWILIO = {"completed": "answered", "busy": "busy", "no-answer": "no_answer", "failed": "failed",
          "canceled": "cancelled"}


def test_vendor_statuses_without_codes():
    """Asterisk dispositions and Twilio call statuses are the switch's verdicts (no SIP code,
    no ringing time in the record): they map by SPEC 2.1's vocabulary, not by alerting."""
    assert set(DISPOSITIONS) == set(ASTERISK)
    assert {k: v for k, v in CALL_STATUSES.items() if v is not None} == TWILIO


# -- through the CLI: FreeSWITCH 408s with and without progressmsec ------------------------------


def test_freeswitch_timeouts_through_the_cli(tmp_path, key_env):
    """tests/fixtures/voip/freeswitch_timeouts.csv, counted by hand per route: carrier-a's
    408s came after a 180 (progressmsec), a 183 (progress_mediamsec) or with Q.850 19;
    carrier-b's two 408s, its PROGRESS_TIMEOUT and one ALLOTTED_TIMEOUT came before any."""
    names = template_names((FIXTURES / "freeswitch_custom.template").read_text(encoding="utf-8"))
    out = tmp_path / "out"
    done = run_cli("process", str(FIXTURES / "freeswitch_timeouts.csv"), "--out", str(out),
                   "--template", ",".join(names), "--by", "route", "--window", "1h", "--k", "1",
                   env=key_env)
    assert done.returncode == 0, done.stderr
    rows = pl.read_parquet(out / "metrics" / "**" / "*.parquet").sort("route").to_dicts()
    columns = ("route", "attempts", "answered", "busy", "no_answer", "failed", "cancelled")
    assert [tuple(r[c] for c in columns) for r in rows] == [
        # 200; 408 after a 180, after a 183, with cause 19; 486
        ("carrier-a", 5, 1, 1, 3, 0, 0),
        # 200; 480 and ALLOTTED_TIMEOUT after a 180; 408 × 2, PROGRESS_ and ALLOTTED_TIMEOUT before
        ("carrier-b", 7, 1, 0, 2, 4, 0),
    ]
    # NER = (answered + busy + no_answer + rejected) / attempts
    assert rows[0]["ner"] == pytest.approx(5 / 5)
    assert rows[1]["ner"] == pytest.approx(3 / 7)  # every 408 counted no_answer would say 7 / 7
