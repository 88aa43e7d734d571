"""What each vendor format keeps of a canonical record: per-row projections, shared by
the reader round trips (tests/test_readers_voip.py, test_readers_messaging.py) and the
CLI generate → process round trips (tests/test_formats.py).

Each function maps a generated canonical row to the values its format's writer then
reader give back; :data:`PROJECTIONS` names, per writable format, the channels the
format holds (None: all) and the projection as a full canonical row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from telemetry.readers.mapped import EXAMPLE_MAPPING
from telemetry.schema import CANONICAL, MESSAGE_CHANNELS, VOICE_CHANNELS

# a 408 is no_answer only after alerting, which an acc_cdrs export without pdd_ms cannot show
SIP_STATUS = {486: "busy", 600: "busy", 480: "no_answer", 408: "failed", 603: "rejected"}
SIP_STATUS |= {487: "cancelled", 503: "congestion"}
DEFAULT_SIP = {"answered": 200, "busy": 486, "no_answer": 480, "rejected": 603}
DEFAULT_SIP |= {"cancelled": 487, "failed": 500, "congestion": 503}
ASTERISK_STATUS = {"cancelled": "no_answer", "rejected": "failed"}
Q850_STATUS = {16: "answered", 17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected"}
DEFAULT_Q850 = {"answered": 16, "busy": 17, "no_answer": 19, "rejected": 21}
DEFAULT_Q850 |= {"failed": 41, "congestion": 34}


def _second(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(microsecond=0) if value else None


def _billed(row: dict) -> int:
    return (((row["duration_ms"] or 0) + 500) // 1000) * 1000 if row["answer_time"] else 0


def _blank() -> dict:
    return {name: None for name in CANONICAL.names} | {"channel": "voice"}


def _switch_cdr(row: dict) -> dict:
    """What a PBX CSV keeps of any call: ids, parties, whole-second times, billed time."""
    return _blank() | {
        "record_id": row["record_id"],
        "tenant": row["tenant"],
        "source": row["source"],
        "destination": row["destination"],
        "start_time": _second(row["start_time"]),
        "answer_time": _second(row["answer_time"]),
        "end_time": _second(row["end_time"] or row["answer_time"] or row["start_time"]),
        "duration_ms": _billed(row),
    }


def asterisk(row: dict) -> dict:
    return _switch_cdr(row) | {
        "status": ASTERISK_STATUS.get(row["status"], row["status"]),
        "route": None if row["direction"] == "inbound" else row["route"],
    }


def freeswitch(row: dict) -> dict:
    status, q850 = row["status"], row["q850_cause"]
    if status == "cancelled":
        q850 = None  # ORIGINATOR_CANCEL is FreeSWITCH's own cause, not Q.850
    elif q850 is None or not (
        status in ("failed", "congestion") or Q850_STATUS.get(q850) == status
    ):
        q850 = DEFAULT_Q850[status]
    return _switch_cdr(row) | {
        "status": status,
        "q850_cause": q850,
    }


def kamailio(row: dict) -> dict:
    """Written as the acc module does by default (start at the INVITE, duration from
    there to the BYE) and read with its default ``start = "invite"``: the answer instant
    is unknown and the duration includes the ringing."""
    sip = row["sip_code"] or DEFAULT_SIP[row["status"]]
    answered = 200 <= sip < 300
    begin = row["start_time"]
    end = (row["end_time"] or begin) if row["answer_time"] else begin
    seconds = f"{(end - begin).total_seconds():.3f}"  # float(10,3), as written
    return _blank() | {
        "record_id": row["record_id"],
        "source": row["source"],
        "destination": row["destination"],
        "source_ip": row["source_ip"],
        "route": row["route"],
        "start_time": _second(begin),
        "answer_time": None,
        "end_time": _second(end),
        "duration_ms": round(float(seconds) * 1000) if answered else 0,
        "sip_code": sip,
        "status": "answered" if answered else SIP_STATUS.get(sip, "failed"),
    }


def twilio_calls(row: dict) -> dict:
    status = {"rejected": "busy", "congestion": "failed"}.get(row["status"], row["status"])
    answered = status == "answered"
    seconds = (row["duration_ms"] + 500) // 1000 if answered else 0
    start, end = _second(row["start_time"]), _second(row["end_time"] or row["start_time"])
    answer = max(start, end - dt.timedelta(seconds=seconds)) if answered else None
    return dict(record_id=row["record_id"], tenant=row["tenant"], source=row["source"],
                destination=row["destination"], channel="voice",
                direction="inbound" if row["direction"] == "inbound" else "outbound",
                status=status, start_time=start, answer_time=answer, end_time=end,
                duration_ms=seconds * 1000)


def twilio_messages(row: dict) -> dict:
    status = {"expired": "undelivered", "unknown": "enroute"}.get(row["status"], row["status"])
    final = status in ("delivered", "undelivered", "rejected", "deleted")
    return dict(record_id=row["record_id"], tenant=row["tenant"], source=row["source"],
                destination=row["destination"], channel=row["channel"],
                direction="inbound" if row["direction"] == "inbound" else "outbound",
                status=status, start_time=_second(row["start_time"]),
                end_time=_second(row["end_time"] or row["start_time"]) if final else None)


def smpp_dlr(row: dict) -> dict:
    final = row["status"] in ("delivered", "undelivered", "expired", "rejected", "deleted")
    return dict(record_id=row["record_id"], tenant=row["tenant"], source=row["source"],
                destination=row["destination"], route=row["route"], channel="sms",
                direction="outbound", status=row["status"],
                start_time=_second(row["start_time"]),
                end_time=_second(row["end_time"]) if final else None)


def mapped(row: dict) -> dict:
    kept = {k: row[k] for k in EXAMPLE_MAPPING if k in CANONICAL.names}
    for name in ("start_time", "answer_time", "end_time"):
        kept[name] = _second(row[name])
    kept["mos"] = None if row["mos"] is None else round(row["mos"], 2)
    return kept


def canonical(row: dict) -> dict:
    return dict(row)


def full(project: Callable[[dict], dict]) -> Callable[[dict], dict]:
    """``project`` completed to a full canonical row as a reader gives it: columns it does
    not name are null, an absent channel is voice."""
    return lambda row: _blank() | project(row)


PROJECTIONS: dict[str, tuple[tuple[str, ...] | None, Callable[[dict], dict]]] = {
    "parquet": (None, canonical),
    "csv": (None, canonical),
    "jsonl": (None, canonical),
    "asterisk": (VOICE_CHANNELS, asterisk),
    "freeswitch": (VOICE_CHANNELS, freeswitch),
    "kamailio": (VOICE_CHANNELS, kamailio),
    "mapped": (None, full(mapped)),
    "smpp-dlr": (MESSAGE_CHANNELS, full(smpp_dlr)),
    "twilio-calls": (VOICE_CHANNELS, full(twilio_calls)),
    "twilio-messages": (MESSAGE_CHANNELS, full(twilio_messages)),
}
