"""SMPP delivery receipts (format ``smpp-dlr``): one receipt per JSON line or CSV row.

Each record has ``route``, ``source``, ``destination``, ``receipt`` and optionally
``tenant`` (keys in any case). ``receipt`` is the short-message text of a
``deliver_sm`` receipt, SMPP 3.4 appendix B::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E text:...

Read as SMSCs really send it (the cases of cloudhopper-smpp's
``DeliveryReceiptTest``): fields in any order, labels in any case (``Text:``),
``sub`` / ``dlvrd`` / ``err`` / ``text`` optional, dates of 10 (YYMMDDhhmm), 12
(YYMMDDhhmmss) or 14 (YYYYMMDDhhmmss) digits, ``done date:0000000000`` meaning no
final time. A label inside the ``text`` is not a field once that field was seen.
The text itself is never kept.

Mapping: ``id`` → record_id, ``submit date`` → start_time, ``done date`` →
end_time (final states only: a pending receipt has no final time),
``stat`` → status (:data:`STATES`); channel ``sms``, direction ``outbound``
(receipts answer mobile-terminated messages). Dates are in UTC unless the
``timezone`` reader setting says otherwise. ``sub``, ``dlvrd`` and ``err`` are
checked and dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.readers import ReadBatch, ReaderFormat, ReaderOptions, Reject, register
from telemetry.readers._convert import (
    Verdict,
    check_timezone,
    first_csv_record,
    local_time,
    setting,
    split,
    to_canonical,
)
from telemetry.readers.mapped import keyed_records, text_column, triaged
from telemetry.schema import MESSAGE_CHANNELS, MESSAGE_FINAL_STATUSES

#: ``stat:`` values → SPEC 2.1 statuses: appendix B's seven-letter states, the
#: spellings some SMSCs send instead, and the ``message_state`` numbers (SMPP 5.2.28).
STATES: dict[str, str] = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "UNDELIV": "undelivered",
    "UNDELIVERABLE": "undelivered",
    "FAILED": "undelivered",  # non-standard, common: the SMSC gave up
    "EXPIRED": "expired",
    "REJECTD": "rejected",
    "REJECTED": "rejected",
    "DELETED": "deleted",
    "ACCEPTD": "accepted",
    "ACCEPTED": "accepted",
    "ENROUTE": "enroute",
    "UNKNOWN": "unknown",
    "BADSTAT": "unknown",  # what cloudhopper writes for a receipt with no state
    "1": "enroute",
    "2": "delivered",
    "3": "expired",
    "4": "deleted",
    "5": "undelivered",
    "6": "accepted",
    "7": "unknown",
    "8": "rejected",
}

_LABEL = re.compile(r"(?i)(?<![^\s])(id|sub|dlvrd|submit date|done date|stat|err|text):")
_DATE = re.compile(r"^(\d{10}|\d{12}|\d{14})$")
_RULES = {
    "id": (re.compile(r"^\S+$"), "id: missing or not one word"),
    "sub": (re.compile(r"^\d+$"), "sub: not a number"),
    "dlvrd": (re.compile(r"^\d+$"), "dlvrd: not a number"),
    "submit date": (_DATE, "submit date: not 10, 12 or 14 digits"),
    "done date": (_DATE, "done date: not 10, 12 or 14 digits"),
    "stat": (re.compile(r"^[A-Za-z0-9_]+$"), "stat: missing or not one word"),
    "err": (re.compile(r"^[0-9A-Fa-f]+$"), "err: not a number"),
}


class Receipt(NamedTuple):
    """A parsed receipt. Dates are naive (the SMSC's clock); ``done`` is None for
    ``0000000000``; ``sub`` / ``dlvrd`` / ``err`` are None when absent. The text is
    not kept."""

    id: str
    sub: int | None
    dlvrd: int | None
    submit: dt.datetime
    done: dt.datetime | None
    stat: str
    err: str | None


def parse_receipt(text: str) -> Receipt:
    """The fields of one receipt; ValueError with a one-line reason (no values) when
    it is not a receipt: a missing ``id``, ``submit date`` or ``stat``, a field
    that does not fit its form, an impossible date."""
    values: dict[str, str] = {}
    taken: list[tuple[str, int, int]] = []  # (label, value start, label start)
    for match in _LABEL.finditer(text):
        label = match.group(1).lower()
        if label in values:
            continue  # a repeat is part of the text
        taken.append((label, match.end(), match.start()))
        values[label] = ""
    for i, (label, start, _) in enumerate(taken):
        end = taken[i + 1][2] if i + 1 < len(taken) else len(text)
        values[label] = text[start:end].strip()
    if taken and text[: taken[0][2]].strip():
        raise ValueError("receipt: text before the first field")
    for label in ("id", "submit date", "stat"):
        if label not in values:
            raise ValueError(f"receipt: no {label} field")
    for label, (pattern, reason) in _RULES.items():
        if label in values and not pattern.match(values[label]):
            raise ValueError(f"receipt {reason}")
    submit = _date(values["submit date"], "submit date")
    if submit is None:
        raise ValueError("receipt submit date: zero")
    done = _date(values["done date"], "done date") if "done date" in values else None
    return Receipt(
        values["id"],
        int(values["sub"]) if "sub" in values else None,
        int(values["dlvrd"]) if "dlvrd" in values else None,
        submit,
        done,
        values["stat"],
        values.get("err"),
    )


def _date(digits: str, label: str) -> dt.datetime | None:
    if not digits.strip("0"):
        return None
    if len(digits) == 14:
        year, rest = int(digits[:4]), digits[4:]
    else:
        year, rest = 2000 + int(digits[:2]), digits[2:]
    try:
        return dt.datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]) if len(rest) > 8 else 0,
        )
    except ValueError:
        raise ValueError(f"receipt {label}: not a valid date and time") from None


# -- reading -------------------------------------------------------------------------------------


def read_smpp(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    timezone = check_timezone(setting(options, "smpp-dlr", "timezone", "UTC"))
    yield from triaged(path, keyed_records(path, fold=True), batch_rows,
                       lambda rows, objects, rejects, seen: _block(path, rows, objects, rejects, timezone, seen))


def _block(
    path: str,
    rows: list[int],
    objects: list[dict[str, Any]],
    rejects: list[Reject],
    tz: str,
    seen: Counter[str],
) -> ReadBatch:
    n = len(objects)
    verdict = Verdict(n)
    text = {
        name: text_column(objects, name, verdict)
        for name in ("route", "source", "destination", "tenant")
    }
    receipts = text_column(objects, "receipt", verdict).to_pylist()
    ids: list[str | None] = [None] * n
    submits: list[str | None] = [None] * n
    dones: list[str | None] = [None] * n
    statuses: list[str | None] = [None] * n
    reasons: dict[int, str] = {}
    for i, receipt in enumerate(receipts):
        if receipt is None:
            reasons[i] = "receipt: missing"
            continue
        try:
            parsed = parse_receipt(receipt)
        except ValueError as exc:
            reasons[i] = str(exc)
            continue
        status = STATES.get(parsed.stat.upper())
        if status is None:
            reasons[i] = "receipt stat: not a known delivery state"
            continue
        ids[i] = parsed.id
        submits[i] = parsed.submit.isoformat(sep=" ")
        if parsed.done is not None and status in MESSAGE_FINAL_STATUSES:
            dones[i] = parsed.done.isoformat(sep=" ")
        statuses[i] = status
    for reason in sorted(set(reasons.values())):
        flags = np.zeros(n, dtype=np.bool_)
        flags[[i for i, r in reasons.items() if r == reason]] = True
        verdict.flag(flags, reason)
    raw: dict[str, pa.Array] = dict(text)
    raw["record_id"] = pa.array(ids, pa.string())
    raw["start_time"] = local_time(pa.array(submits, pa.string()), "submit date", verdict, tz)
    raw["end_time"] = local_time(pa.array(dones, pa.string()), "done date", verdict, tz)
    raw["status"] = pa.array(statuses, pa.string())
    raw["channel"] = pa.array(["sms"] * n, pa.string())
    raw["direction"] = pa.array(["outbound"] * n, pa.string())
    batch, verdict = to_canonical(raw, n, verdict)

    def fields_of(i: int) -> dict[str, Any]:
        shown = {name: column[i].as_py() for name, column in text.items()}
        return shown | {"record_id": ids[i], "status": statuses[i]}

    return split(path, np.asarray(rows, np.int64), batch, verdict, raw, rejects, fields_of, seen)


# -- writing -------------------------------------------------------------------------------------

_STAT_OF = {
    "delivered": "DELIVRD",
    "undelivered": "UNDELIV",
    "expired": "EXPIRED",
    "rejected": "REJECTD",
    "deleted": "DELETED",
    "accepted": "ACCEPTD",
    "enroute": "ENROUTE",
    "unknown": "UNKNOWN",
}


def write_smpp(batches: Iterator[pa.RecordBatch], path: str) -> int:
    """Message records of ``batches`` as JSON lines of receipts (12-digit UTC dates, a
    placeholder text); voice records have no receipt and are skipped."""
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        for batch in batches:
            for row in batch.to_pylist():
                if row["channel"] not in MESSAGE_CHANNELS:
                    continue
                written += 1
                out.write(json.dumps(_receipt_record(row, written)) + "\n")
    return written


def _receipt_record(row: dict[str, Any], seq: int) -> dict[str, Any]:
    status = row["status"] or "unknown"
    final = status in MESSAGE_FINAL_STATUSES
    done = row["end_time"] if final and row["end_time"] else None
    delivered = status == "delivered"
    receipt = (
        f"id:{row['record_id'] or f'{seq:010d}'} sub:001 dlvrd:{'001' if delivered else '000'} "
        f"submit date:{_stamp(row['start_time'])} done date:{_stamp(done)} "
        f"stat:{_STAT_OF.get(status, 'UNKNOWN')} err:{'000' if delivered else '001'} "
        "text:synthetic messag"
    )
    record = {
        "route": row["route"],
        "source": row["source"],
        "destination": row["destination"],
        "receipt": receipt,
    }
    if row["tenant"]:
        record["tenant"] = row["tenant"]
    return record


def _stamp(value: dt.datetime | None) -> str:
    if value is None:
        return "0000000000"
    return value.astimezone(dt.timezone.utc).strftime("%y%m%d%H%M%S")


def sniff_smpp(head: bytes) -> bool:
    """A first JSON line or CSV header with a ``receipt`` field (and a receipt in it)."""
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if stripped.startswith(b"{"):
        line = stripped.split(b"\n", 1)[0]
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and any(
            k.lower() == "receipt" and isinstance(v, str) and _LABEL.search(v) is not None
            for k, v in obj.items()
        )
    fields = first_csv_record(head)
    return fields is not None and "receipt" in {f.strip().lower() for f in fields}


register(
    ReaderFormat(
        "smpp-dlr",
        read_smpp,
        (),
        sniff_smpp,
        "SMPP delivery receipts (SMPP 3.4 appendix B text) as JSON lines or CSV",
        write_smpp,
        settings={"timezone": check_timezone},
    )
)
