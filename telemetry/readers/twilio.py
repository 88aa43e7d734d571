"""Twilio call and message records (formats ``twilio-calls``, ``twilio-messages``).

As the REST API (2010-04-01) returns them: a JSON page (``{"calls": [...],
"next_page_uri": ..., ...}``; ``messages`` for messages), JSON lines of records
or of pages, or CSV with the same field names. Field names match in any case
and with or without underscores (``date_created``, ``DateCreated``). Times are
RFC 2822 (``Tue, 01 Nov 2026 10:00:00 +0000``) or ISO 8601; durations and
numbers may be strings.

Calls (Call resource): ``sid`` → record_id, ``account_sid`` → tenant, ``from`` /
``to`` → source / destination (a ``from`` that is one of Twilio's placeholders for a
withheld caller, :data:`WITHHELD_CALLERS`, is withheld), ``start_time`` (else ``date_created``) →
start_time, ``end_time`` → end_time, ``duration`` (connected seconds) →
duration_ms for completed calls, answer_time = end_time − duration for completed
calls (Twilio reports no answer instant), ``direction`` (``outbound-api``,
``outbound-dial``, ``trunking-terminating`` → outbound; ``inbound``,
``trunking-originating`` → inbound, as the Call resource defines them: Elastic SIP
Trunking *terminates* the customer's calls on the PSTN and *originates* calls from
the PSTN to the customer), ``status`` per :data:`CALL_STATUSES`. A
call still ``queued``, ``ringing`` or ``in-progress`` has no outcome yet: it is
quarantined with that reason (export it once it has ended) rather than counted
as an attempt with a made-up result.

Messages (Message resource): ``sid`` → record_id, ``account_sid`` → tenant,
``from`` / ``to``, ``date_created`` (else ``date_sent``, or a console export's
``SentDate``) → start_time, ``date_updated`` → end_time for a final status (the time of the last status
change), channel ``mms`` when ``num_media`` > 0 or the sid starts with ``MM``,
else ``sms``; ``status`` per :data:`MESSAGE_STATUSES`. ``body``, prices, error
messages and every other field are never read.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.readers import ReadBatch, ReaderFormat, ReaderOptions, Reject, register
from telemetry.readers._convert import Verdict, milliseconds, split, to_canonical
from telemetry.readers.mapped import keyed_records, text_column, triaged
from telemetry.schema import MESSAGE_CHANNELS, MESSAGE_FINAL_STATUSES, TS, VOICE_CHANNELS

#: Twilio call status → SPEC 2.1 (None: not finished, quarantined).
CALL_STATUSES: dict[str, str | None] = {
    "completed": "answered",
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "cancelled",
    "queued": None,
    "initiated": None,
    "ringing": None,
    "in-progress": None,
}
#: Twilio message status → SPEC 2.1. ``failed`` means Twilio never handed the
#: message on (queue overflow, suspended account), so it is ``rejected``;
#: ``canceled`` (a scheduled message withdrawn) is ``deleted``; inbound
#: ``received`` and ``read`` receipts are ``delivered``.
MESSAGE_STATUSES: dict[str, str] = {
    "delivered": "delivered",
    "read": "delivered",
    "received": "delivered",
    "undelivered": "undelivered",
    "partially_delivered": "undelivered",
    "failed": "rejected",
    "canceled": "deleted",
    "queued": "accepted",
    "accepted": "accepted",
    "scheduled": "accepted",
    "sending": "enroute",
    "sent": "enroute",
    "receiving": "enroute",
}
#: What Twilio writes in a call's ``from`` when the caller's number is withheld or not
#: delivered: the keypad spelling of a word (Twilio Support, "Why am I getting calls from
#: these strange numbers?"), read as that word, which SPEC 3 treats as withheld. Only
#: in Twilio call records: elsewhere such digits are just a number.
WITHHELD_CALLERS: dict[str, str] = {
    "+266696687": "anonymous",
    "+86282452253": "unavailable",
    "+7378742833": "restricted",
    "+2562533": "withheld",  # BLOCKED
    "+8656696": "unknown",
}
DIRECTIONS: dict[str, str] = {
    "inbound": "inbound",
    "outbound-api": "outbound",
    "outbound-dial": "outbound",
    "outbound-call": "outbound",
    "outbound-reply": "outbound",
    # Call resource: "trunking-terminating for outgoing calls from your communications
    # infrastructure to the PSTN or trunking-originating for incoming calls to your
    # communications infrastructure from the PSTN"
    "trunking-terminating": "outbound",
    "trunking-originating": "inbound",
}

_RFC2822 = re.compile(
    r"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s+"
    r"(?:[+-]\d{4}|(?i:UTC?|GMT|Z|[AECMP][SD]T))$"  # the named zones email.utils knows (RFC 2822 obs-zone)
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$")


def parse_time(text: str | None) -> dt.datetime | None:
    """An RFC 2822 or ISO 8601 time as an aware UTC datetime (no zone: UTC); None for
    empty; ValueError when it is neither."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if _RFC2822.match(text):
        try:
            value = email.utils.parsedate_to_datetime(text)
        except (ValueError, TypeError, IndexError, OverflowError):
            raise ValueError("not a valid date") from None
    elif _ISO.match(text):
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    else:
        raise ValueError("not an RFC 2822 or ISO 8601 time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _times(values: list[str | None], name: str, verdict: Verdict) -> pa.Array:
    """:func:`parse_time` of every value: RFC 2822 times as Twilio writes them in one
    vectorized pass (:func:`_rfc2822`), the rest one by one."""
    micros, done, bad = _rfc2822(pa.array(values, pa.string()))
    valid = done & ~bad
    for i in np.flatnonzero(~done).tolist():
        try:
            value = parse_time(values[i])
        except (ValueError, OverflowError):
            bad[i] = True
            continue
        if value is not None:
            micros[i] = (value - _EPOCH) // _MICROSECOND
            valid[i] = True
    verdict.flag(bad, f"{name}: not an RFC 2822 or ISO 8601 time")
    return pa.array(micros, TS, mask=~valid)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)
_RFC2822_PARTS = (
    r"^\s*(?:[A-Za-z]{3},\s*)?(?P<d>\d{1,2})\s+(?P<mon>[A-Za-z]{3})\s+(?P<y>\d{4})\s+"
    r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s+"
    r"(?:(?P<sign>[+-])(?P<zh>\d{2})(?P<zm>\d{2})|UT|GMT|Z)\s*$"
)
_MONTHS = pa.array("jan feb mar apr may jun jul aug sep oct nov dec".split())


def _rfc2822(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch microseconds of the values in RFC 2822 form (``[Day,] d Mon yyyy h:mm[:ss]
    zone``), which rows are in that form, and which of those are impossible, all as
    ``email.utils.parsedate_to_datetime`` reads them: the weekday is ignored; years
    below 100 are 19xx above 68 and 20xx otherwise; a zone ``±hhmm`` is hh hours plus
    mm minutes and must stay within a day."""
    import pyarrow.compute as pc

    n = len(text)
    parts = pc.extract_regex(text, _RFC2822_PARTS)
    done = np.asarray(parts.is_valid(), np.bool_)
    if not done.any():
        return np.zeros(n, np.int64), done, np.zeros(n, np.bool_)

    def number(key: str) -> np.ndarray:  # an absent part (seconds, a named zone) is 0
        digits = pc.struct_field(parts, key)
        digits = pc.if_else(pc.equal(digits, ""), "0", digits)
        return np.asarray(pc.fill_null(pc.cast(digits, pa.int64()), 0), np.int64)

    month = pc.index_in(pc.utf8_lower(pc.struct_field(parts, "mon")), value_set=_MONTHS)
    month = np.asarray(pc.fill_null(month, -1), np.int64) + 1
    day, year, hour, minute, second = (number(k) for k in ("d", "y", "H", "M", "S"))
    year = np.where(year < 100, year + np.where(year > 68, 1900, 2000), year)  # as email.utils
    west = np.asarray(pc.fill_null(pc.equal(pc.struct_field(parts, "sign"), "-"), False), np.bool_)
    offset = np.where(west, -1, 1) * (number("zh") * 3600 + number("zm") * 60)
    # the first day of the month and of the next, as days since 1970 (NumPy's calendar)
    months = (year - 1970) * 12 + month - 1
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    after = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    bad = done & (
        (month < 1) | (year < 1) | (day < 1) | (day > after - first) | (hour > 23)
        | (minute > 59) | (second > 59) | (np.abs(offset) >= 86400)
    )  # fmt: skip
    seconds = (first + day - 1) * 86400 + hour * 3600 + minute * 60 + second
    return np.where(done & ~bad, (seconds - offset) * 1_000_000, 0), done, bad


def _lookup(values: list[str | None], table: dict[str, Any]) -> tuple[list[Any], np.ndarray]:
    """Mapped values, and which rows held a word the table lacks."""
    out: list[Any] = []
    unknown = np.zeros(len(values), dtype=np.bool_)
    for i, value in enumerate(values):
        key = value.strip().lower().replace(" ", "-") if value else ""
        if not key:
            out.append(None)
        elif key in table or key.replace("-", "_") in table:
            out.append(table.get(key, table.get(key.replace("-", "_"))))
        else:
            out.append(None)
            unknown[i] = True
    return out, unknown


def _common(objects: list[dict[str, Any]], verdict: Verdict) -> dict[str, pa.Array]:
    direction, odd = _lookup(text_column(objects, "direction", verdict).to_pylist(), DIRECTIONS)
    verdict.flag(odd, "direction: not a Twilio direction")
    return {
        "record_id": text_column(objects, "sid", verdict),
        "tenant": text_column(objects, "accountsid", verdict),
        "source": text_column(objects, "from", verdict),
        "destination": text_column(objects, "to", verdict),
        "direction": pa.array(direction, pa.string()),
    }


def _first(objects: list[dict[str, Any]], keys: tuple[str, ...], verdict: Verdict) -> list:
    columns = [text_column(objects, k, verdict).to_pylist() for k in keys]
    return [
        next((c[i] for c in columns if c[i] not in (None, "")), None) for i in range(len(objects))
    ]


_PLACEHOLDERS = pa.array(list(WITHHELD_CALLERS))
_WORDS = pa.array(list(WITHHELD_CALLERS.values()))


def _withheld(source: pa.Array) -> pa.Array:
    """``from`` with Twilio's placeholders for a withheld caller (:data:`WITHHELD_CALLERS`,
    surrounding blanks allowed) replaced by the word they spell."""
    at = pc.index_in(pc.utf8_trim_whitespace(source), value_set=_PLACEHOLDERS)
    return pc.if_else(pc.is_valid(at), pc.take(_WORDS, at), source)


def _calls(objects: list[dict[str, Any]], verdict: Verdict) -> dict[str, pa.Array]:
    n = len(objects)
    raw = _common(objects, verdict)
    raw["source"] = _withheld(raw["source"])
    words = text_column(objects, "status", verdict).to_pylist()
    status, unknown = _lookup(words, CALL_STATUSES)
    verdict.flag(unknown, "status: not a Twilio call status")
    pending = np.array(
        [bool(w and w.strip()) and s is None for w, s in zip(words, status, strict=True)],
        dtype=np.bool_,
    )
    verdict.flag(pending & ~unknown, "status: call not finished (queued, ringing or in progress)")
    answered = np.array([s == "answered" for s in status], dtype=np.bool_)
    start = _times(_first(objects, ("starttime", "datecreated"), verdict), "start_time", verdict)
    end = _times(text_column(objects, "endtime", verdict).to_pylist(), "end_time", verdict)
    seconds = milliseconds(text_column(objects, "duration", verdict), "duration", verdict, 1000)
    talk = pc.if_else(pa.array(answered), pc.fill_null(seconds, 0), 0)
    answer = pc.cast(
        pc.subtract(pc.cast(pc.cast(end, pa.timestamp("us")), pa.int64()), pc.multiply(talk, 1000)),
        pa.timestamp("us"),
    )
    answer = pc.if_else(pa.array(answered), pc.cast(answer, TS), pa.scalar(None, TS))
    # a clock skew between Twilio's fields must not put the answer before the seizure
    answer = pc.if_else(pc.fill_null(pc.less(answer, start), False), start, answer)
    raw.update(
        channel=pa.array(["voice"] * n, pa.string()),
        status=pa.array(status, pa.string()),
        start_time=start,
        answer_time=answer,
        end_time=end,
        duration_ms=pc.cast(talk, pa.int64()),
    )
    return raw


def _messages(objects: list[dict[str, Any]], verdict: Verdict) -> dict[str, pa.Array]:
    raw = _common(objects, verdict)
    status, unknown = _lookup(text_column(objects, "status", verdict).to_pylist(), MESSAGE_STATUSES)
    verdict.flag(unknown, "status: not a Twilio message status")
    created = _first(objects, ("datecreated", "datesent", "sentdate"), verdict)
    start = _times(created, "start_time", verdict)
    updated = _times(text_column(objects, "dateupdated", verdict).to_pylist(), "end_time", verdict)
    final = pa.array([s in MESSAGE_FINAL_STATUSES for s in status], pa.bool_())
    sids = raw["record_id"].to_pylist()
    media = text_column(objects, "nummedia", verdict).to_pylist()
    channel = [
        "mms" if (sid or "").startswith("MM") or (m or "0").strip() not in ("", "0") else "sms"
        for sid, m in zip(sids, media, strict=True)
    ]
    raw.update(
        channel=pa.array(channel, pa.string()),
        status=pa.array(status, pa.string()),
        start_time=start,
        end_time=pc.if_else(final, updated, pa.scalar(None, TS)),
    )
    return raw


def _reader(page: str, convert: Callable) -> Callable[..., Iterator[ReadBatch]]:
    def read(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
        yield from triaged(path, keyed_records(path, pages=(page,), fold=True), batch_rows,
                           lambda rows, objects, rejects, seen: _block(path, rows, objects, rejects, convert, seen))

    return read


def _block(
    path: str,
    rows: list[int],
    objects: list[dict[str, Any]],
    rejects: list[Reject],
    convert: Callable,
    seen: Counter[str],
) -> ReadBatch:
    n = len(objects)
    verdict = Verdict(n)
    raw = convert(objects, verdict)
    batch, verdict = to_canonical(raw, n, verdict)
    shown = ("record_id", "tenant", "source", "destination", "direction", "status")

    def fields_of(i: int) -> dict[str, Any]:
        return {name: raw[name][i].as_py() for name in shown} | {
            "start_time": raw["start_time"][i].as_py()
        }

    return split(path, np.asarray(rows, np.int64), batch, verdict, raw, rejects, fields_of, seen)


# -- writing -------------------------------------------------------------------------------------

_CALL_STATUS_OF = {
    "answered": "completed",
    "busy": "busy",
    "no_answer": "no-answer",
    "cancelled": "canceled",
    "rejected": "busy",  # a declined call shows as busy on Twilio
    "failed": "failed",
    "congestion": "failed",
}
_MESSAGE_STATUS_OF = {
    "delivered": "delivered",
    "undelivered": "undelivered",
    "expired": "undelivered",
    "rejected": "failed",
    "deleted": "canceled",
    "accepted": "queued",
    "enroute": "sent",
    "unknown": "sent",
}
_ACCOUNT = "AC" + "0" * 32


def _rfc(value: dt.datetime | None) -> str | None:
    return email.utils.format_datetime(value.astimezone(dt.timezone.utc)) if value else None


def _sid(prefix: str, row: dict[str, Any], seq: int) -> str:
    return row["record_id"] or f"{prefix}{seq:032x}"


def _call(row: dict[str, Any], seq: int) -> dict[str, Any]:
    status = _CALL_STATUS_OF.get(row["status"] or "failed", "failed")
    answered = status == "completed"
    seconds = ((row["duration_ms"] or 0) + 500) // 1000 if answered else 0
    end = row["end_time"] or row["start_time"]
    return {
        "sid": _sid("CA", row, seq),
        "account_sid": row["tenant"] or _ACCOUNT,
        "date_created": _rfc(row["start_time"]),
        "date_updated": _rfc(end),
        "start_time": _rfc(row["start_time"]),
        "end_time": _rfc(end),
        "duration": str(seconds),
        "from": row["source"],
        "from_formatted": row["source"],
        "to": row["destination"],
        "to_formatted": row["destination"],
        "status": status,
        "direction": "inbound" if row["direction"] == "inbound" else "outbound-api",
        "answered_by": None,
        "price": "-0.01300" if answered else None,
        "price_unit": "USD",
        "caller_name": None,
        "api_version": "2010-04-01",
    }


def _message(row: dict[str, Any], seq: int) -> dict[str, Any]:
    status = _MESSAGE_STATUS_OF.get(row["status"] or "unknown", "sent")
    final = status in ("delivered", "undelivered", "failed", "canceled")
    mms = row["channel"] == "mms"
    updated = row["end_time"] if final and row["end_time"] else row["start_time"]
    return {
        "sid": _sid("MM" if mms else "SM", row, seq),
        "account_sid": row["tenant"] or _ACCOUNT,
        "date_created": _rfc(row["start_time"]),
        "date_sent": _rfc(row["start_time"]),
        "date_updated": _rfc(updated),
        "from": row["source"],
        "to": row["destination"],
        "body": "Your code is 000000",  # realistic free text the reader must drop
        "num_segments": "1",
        "num_media": "1" if mms else "0",
        "status": status,
        "direction": "inbound" if row["direction"] == "inbound" else "outbound-api",
        "error_code": None if status == "delivered" else 30003,
        "price": "-0.00790",
        "price_unit": "USD",
        "api_version": "2010-04-01",
    }


def _writer(page: str, channels: tuple[str, ...], record: Callable) -> Callable:
    def write(batches: Iterator[pa.RecordBatch], path: str) -> int:
        """Records of ``channels`` as Twilio returns them: CSV for ``.csv``, JSON lines
        for ``.jsonl``/``.ndjson``, else one JSON page; others are skipped."""
        lower = path.lower()
        kind = "csv" if lower.endswith(".csv") else "page"
        if lower.endswith((".jsonl", ".ndjson")):
            kind = "lines"
        written = 0
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = None
            if kind == "page":
                out.write(f'{{"{page}": [')
            for batch in batches:
                for row in batch.to_pylist():
                    if row["channel"] not in channels:
                        continue
                    written += 1
                    item = record(row, written)
                    if kind == "csv":
                        if writer is None:
                            import csv

                            writer = csv.DictWriter(out, fieldnames=list(item))
                            writer.writeheader()
                        writer.writerow({k: "" if v is None else v for k, v in item.items()})
                    elif kind == "lines":
                        out.write(json.dumps(item) + "\n")
                    else:
                        out.write(("," if written > 1 else "") + "\n  " + json.dumps(item))
            if kind == "page":
                name = os.path.basename(path)
                out.write(
                    f'\n], "end": {max(written - 1, 0)}, "first_page_uri": "/{name}?Page=0", '
                    f'"next_page_uri": null, "page": 0, "page_size": {written}, '
                    f'"previous_page_uri": null, "start": 0, "uri": "/{name}?Page=0"}}\n'
                )
        return written

    return write


def _sniffer(page: str, marker: tuple[str, ...]) -> Callable[[bytes], bool]:
    """Twilio's own fields (``sid``, ``account_sid``, ``from``, ``to``, ``status``) plus
    those of the resource: a ``CA`` sid or ``start_time`` and ``duration`` for calls,
    an ``SM``/``MM`` sid or ``date_sent`` / ``num_segments`` / ``num_media`` for messages."""
    common = {"sid", "accountsid", "from", "to", "status"}

    def specific(names: set[str], sid: Any) -> bool:
        if isinstance(sid, str) and sid.startswith(marker):
            return True
        if page == "calls":
            return {"starttime", "duration"} <= names
        return bool({"datesent", "numsegments", "nummedia"} & names)

    def sniff(head: bytes) -> bool:
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        if text.startswith(b"{"):
            if re.search(rb'"' + page.encode() + rb'"\s*:\s*\[', text):
                return True
            line = text.split(b"\n", 1)[0]
            try:
                obj = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                return False
            if not isinstance(obj, dict):
                return False
            names = {k.lower().replace("_", "") for k in obj}
            return common <= names and specific(names, obj.get("sid"))
        line = text.split(b"\n", 1)[0].decode("utf-8", "replace")
        names = {k.strip().strip('"').lower().replace("_", "") for k in line.split(",")}
        return common <= names and specific(names, None)

    return sniff


register(
    ReaderFormat(
        "twilio-calls",
        _reader("calls", _calls),
        (),
        _sniffer("calls", ("CA",)),
        "Twilio Call records (REST API JSON page, JSON lines or CSV)",
        _writer("calls", VOICE_CHANNELS, _call),
    )
)
register(
    ReaderFormat(
        "twilio-messages",
        _reader("messages", _messages),
        (),
        _sniffer("messages", ("SM", "MM")),
        "Twilio Message records (REST API JSON page, JSON lines or CSV)",
        _writer("messages", MESSAGE_CHANNELS, _message),
    )
)
