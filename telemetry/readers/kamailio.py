"""Kamailio ``acc`` dialog-based CDRs: a CSV export of the ``acc_cdrs`` table.

With ``modparam("acc", "cdr_enable", 1)`` the acc module writes one CDR per
dialog into ``acc_cdrs``: ``id``, ``start_time``, ``end_time``, ``duration``
(names set by ``cdr_start_id``, ``cdr_end_id``, ``cdr_duration_id``) plus the
columns named in ``cdr_extra`` (``name=$pv;…``). This reader takes that table
exported with the column names on the first line, by any of these routes
(``export`` setting, default ``auto``: a tab-separated file is MySQL text, any
other CSV; each route's own NULL marker is null, see :data:`EXPORTS`):

- ``mysql -B``: tab-separated, ``NULL`` for NULL, ``\\t`` ``\\n`` ``\\0`` ``\\\\``
  escapes (``mysql-batch``);
- ``SELECT … INTO OUTFILE`` with its defaults (tab, ``\\N`` for NULL, a backslash before
  a tab, line feed or backslash in a value; ``mysql-outfile``), its header from
  ``SELECT 'id', 'start_time', … UNION ALL SELECT …``;
- ``psql --csv``, ``COPY … TO … CSV HEADER`` or any CSV, comma, semicolon, tab or ``|``
  separated (``csv``): NULL is an empty field.

Expected columns (matched case-insensitively):

- ``start_time``, ``end_time``: ``YYYY-MM-DD hh:mm:ss[.fff]`` in the ``timezone``
  setting (default UTC; the database stores the proxy's local time), or epoch seconds;
- ``duration``: seconds, decimals allowed (``float(10,3)``), → duration_ms;
- extra columns, by their usual names from the acc documentation and
  ``kamailio.cfg`` examples: ``callid``/``call_id`` → record_id;
  ``src_user``/``from_user``/``caller`` → source; ``dst_user``/``to_user``/
  ``dst_ouser``/``ruri_user``/``callee`` → destination; ``sip_code``/``code`` →
  sip_code; ``src_ip``/``source_ip`` → source_ip; ``route``/``gateway``/
  ``dst_gw``/``carrier``/``trunk`` → route; ``tenant``/``accountcode``/
  ``account`` → tenant; ``direction``, ``pdd_ms``, ``mos`` by their own names.
  The ``columns`` setting (``{"my_column": "canonical_name"}``) maps other names.
  Every other column (``id``, ``sip_reason``, domains, user agents…) is dropped.

What ``start_time`` is depends on the proxy's ``cdr_start_on_confirmed`` (acc_cdr.c),
which the file cannot show (``duration`` = end − start either way), so the ``start``
setting says it: ``invite`` (Kamailio's default 0) — the dialog's creation, the INVITE:
start_time is the seizure, the answer instant is unknown (null) and ``duration`` runs
from the INVITE to the BYE, ringing included, which every run then says
(:func:`kamailio_notes`); ``confirmed`` (1) — the dialog's confirmation: for an answered
call start_time is also its answer_time and ``duration`` is talk time. A failed dialog
(``cdr_on_failed``) starts at its INVITE and has end = start, duration 0 either way. A
row is answered when its SIP code is 2xx, or, without one, when its duration is
positive. The status follows from the SIP code (SPEC 2.1); without one, answered rows
are answered and the others failed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.errors import ConfigError, InputError
from telemetry.readers import ReadBatch, ReaderFormat, ReaderOptions, register
from telemetry.readers._convert import (
    EMPTY_TEXT,
    NO,
    NULL_TEXT,
    Verdict,
    check_timezone,
    converted,
    csv_records,
    local_time,
    milliseconds,
    setting,
    split,
    to_canonical,
    wanted,
)
from telemetry.readers._vendorcsv import (
    Layout,
    Records,
    mysql_records,
    mysql_text,
    read_records,
    write_voice_lines,
)
from telemetry.schema import CANONICAL

COLUMNS: dict[str, str] = {
    "callid": "record_id",
    "call_id": "record_id",
    "src_user": "source",
    "from_user": "source",
    "caller": "source",
    "dst_user": "destination",
    "to_user": "destination",
    "dst_ouser": "destination",
    "ruri_user": "destination",
    "callee": "destination",
    "sip_code": "sip_code",
    "code": "sip_code",
    "src_ip": "source_ip",
    "source_ip": "source_ip",
    "route": "route",
    "gateway": "route",
    "dst_gw": "route",
    "carrier": "route",
    "trunk": "route",
    "tenant": "tenant",
    "accountcode": "tenant",
    "account": "tenant",
    "direction": "direction",
    "pdd_ms": "pdd_ms",
    "mos": "mos",
}
_TIMES = ("start_time", "end_time", "duration")
_DELIMITERS = (",", ";", "\t", "|")
_ZERO = pa.scalar(0, pa.int64())
_ANSWERED = pa.scalar("answered", pa.string())
_FAILED = pa.scalar("failed", pa.string())


#: Export routes (``export`` setting) and the NULL markers each writes; CSV (``psql
#: --csv``, ``COPY … CSV``, any other CSV) writes NULL as an empty field, which is null anyway.
EXPORTS: dict[str, frozenset[str]] = {
    "csv": frozenset(),
    "mysql-batch": frozenset({"NULL"}),  # mysql -B (client/mysql.cc, safe_put_field)
    "mysql-outfile": frozenset({"\\N"}),  # SELECT … INTO OUTFILE, default FIELDS ESCAPED BY '\\'
    "mysql": frozenset({"NULL", "\\N"}),  # a tab-separated file of either (export = "auto")
}
#: ``start`` setting: Kamailio's ``cdr_start_on_confirmed`` 0 (default: the dialog's creation,
#: i.e. the INVITE) or 1 (its confirmation, i.e. the answer).
STARTS = ("invite", "confirmed")


def read_kamailio(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    timezone = check_timezone(setting(options, "kamailio", "timezone", "UTC"))
    mapping = _mapping(setting(options, "kamailio", "columns", {}))
    confirmed = _start(setting(options, "kamailio", "start", "invite")) == "confirmed"
    export = _export(setting(options, "kamailio", "export", "auto"))
    delimiter = "\t" if export.startswith("mysql") else _delimiter(path)
    if export == "auto":
        export = "mysql" if delimiter == "\t" else "csv"
    nulls = EXPORTS[export]
    if export == "csv":
        records = csv_records(path, delimiter=delimiter)
    else:
        records = mysql_text(path, nulls)
    header = next(records, None)
    if header is None:
        return
    _, names, reason = header
    if names is None:
        raise InputError(f"{path}: the header row of the acc_cdrs export cannot be read ({reason})")
    names = [n.strip().lower() for n in names]
    missing = [c for c in _TIMES if c not in names]
    if missing:
        raise InputError(
            f"{path} is not an acc_cdrs export: the header lacks {', '.join(missing)}; export "
            "it with its column names first (docs/formats.md) or pass --format for another format"
        )
    where = {c: names.index(c) for c in _TIMES if c != "end_time" or wanted(options, c)}
    for i, name in enumerate(names):
        canonical = mapping.get(name)
        if canonical is not None and canonical not in where and wanted(options, canonical):
            where[canonical] = i
    records.close()
    width = len(names)
    layout = Layout(
        (width,), lambda _: where, lambda found: f"expected {width} columns, found {found}"
    )
    # record numbers count data rows: the header is not a record
    if export == "csv":
        records = read_records(
            path, layout, delimiter=delimiter, header=True, block_bytes=options.block_bytes
        )
    else:
        records = mysql_records(path, layout, nulls, header=True)
    yield from converted(
        records, lambda block, seen: _block(path, block, timezone, confirmed, seen)
    )


def _mapping(extra: Mapping[str, str] | None) -> dict[str, str]:
    mapping = dict(COLUMNS)
    for name, canonical in dict(extra or {}).items():
        if canonical not in CANONICAL.names:
            raise ConfigError(
                f"kamailio column mapping: {canonical!r} is not a canonical column (SPEC section 2)"
            )
        mapping[str(name).strip().lower()] = canonical
    return mapping


def kamailio_notes(options: ReaderOptions) -> list[str]:
    """The warning a run over acc_cdrs read with ``start = "invite"`` must carry: the file
    cannot say which ``cdr_start_on_confirmed`` wrote it (duration = end − start under both)."""
    if _start(setting(options, "kamailio", "start", "invite")) == "confirmed":
        return []
    return [
        "kamailio: read with start = \"invite\" (Kamailio's default cdr_start_on_confirmed = 0): "
        "start_time is the INVITE, the answer time is unknown, and duration_ms, acd_s and "
        "total_duration_s include the ringing; set [kamailio] start = \"confirmed\" if the "
        "proxy runs with cdr_start_on_confirmed = 1"
    ]


def _export(value: str) -> str:
    if value != "auto" and value not in EXPORTS:
        raise ConfigError(
            f"kamailio export: {value!r} is not one of auto, {', '.join(EXPORTS)}"
        )
    return value


def _start(value: str) -> str:
    if value not in STARTS:
        raise ConfigError(f"kamailio start: {value!r} is not one of {', '.join(STARTS)}")
    return value


def _delimiter(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            line = handle.readline(1 << 16)
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    counts = {d: line.count(d.encode()) for d in _DELIMITERS}
    return max(_DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","


def _block(
    path: str, records: Records, timezone: str, confirmed: bool, seen: Counter[str]
) -> ReadBatch:
    n = len(records.rows)
    text = records.columns
    verdict = Verdict(n)
    raw = {k: v for k, v in text.items() if k not in _TIMES}
    start = local_time(text["start_time"], "start_time", verdict, timezone)
    raw["start_time"] = start
    if "end_time" in text:
        raw["end_time"] = local_time(text["end_time"], "end_time", verdict, timezone)
    duration = milliseconds(text["duration"], "duration", verdict, 1000)
    positive = pc.fill_null(pc.greater(duration, _ZERO), NO)
    if "sip_code" in text:
        code = pc.utf8_trim_whitespace(text["sip_code"])
        known = pc.fill_null(pc.not_equal(code, EMPTY_TEXT), NO)
        success = pc.fill_null(pc.match_substring_regex(code, r"^2\d\d$"), NO)
        answered = pc.if_else(known, success, positive)
    else:
        known = pa.array(np.zeros(n, dtype=np.bool_))
        answered = positive
    # without a SIP code the dialog's confirmation (a positive duration) is the only evidence
    raw["status"] = pc.if_else(known, NULL_TEXT, pc.if_else(answered, _ANSWERED, _FAILED))
    # start_time is the answer only when the dialog's start is its confirmation; from the
    # INVITE (Kamailio's default) the answer instant is in no column: unknown
    answer = start if confirmed else pa.nulls(1, start.type)[0]
    raw["answer_time"] = pc.if_else(answered, answer, pa.nulls(1, start.type)[0])
    raw["duration_ms"] = pc.if_else(answered, duration, _ZERO)
    batch, verdict = to_canonical(raw, n, verdict)

    def fields_of(i: int) -> dict[str, str | None]:
        return {name: values[i].as_py() for name, values in text.items() if name != "duration"}

    return split(path, records.rows, batch, verdict, raw, records.rejects, fields_of, seen)


# -- writing -------------------------------------------------------------------------------------

HEADER = (
    "id",
    "start_time",
    "end_time",
    "duration",
    "callid",
    "src_user",
    "src_domain",
    "src_ip",
    "dst_user",
    "dst_domain",
    "sip_code",
    "sip_reason",
    "route",
)
DEFAULT_SIP = {
    "answered": 200,
    "busy": 486,
    "no_answer": 480,
    "rejected": 603,
    "cancelled": 487,
    "failed": 500,
    "congestion": 503,
}
_REASONS = {200: "OK", 486: "Busy Here", 480: "Temporarily Unavailable", 487: "Request Terminated"}


def write_kamailio(batches: Iterator[pa.RecordBatch], path: str) -> int:
    """Voice records of ``batches`` as an ``acc_cdrs`` CSV export with ``cdr_on_failed``
    and the extra columns of :data:`HEADER`, times in UTC, as the acc module writes with
    its default ``cdr_start_on_confirmed`` 0 (acc_cdr.c): the start is the dialog's
    creation (the INVITE); an answered dialog ends at its BYE, its duration end − start;
    a failed one has end = start and duration 0. Message records are skipped."""
    return write_voice_lines(batches, path, _line, ",".join(HEADER) + "\n")


def _line(row: dict, number: int) -> str:
    answer = row["answer_time"]
    begin = row["start_time"]
    end = (row["end_time"] or begin) if answer else begin
    sip = row["sip_code"] or DEFAULT_SIP.get(row["status"], 500)
    duration = (end - begin).total_seconds()
    values = [
        str(number),
        _stamp(begin),
        _stamp(end),
        f"{duration:.3f}",
        row["record_id"] or "",
        row["source"] or "",
        "pbx.example.org",
        row["source_ip"] or "",
        row["destination"] or "",
        "sip.example.net",
        str(sip),
        _REASONS.get(sip, "Failure"),
        row["route"] or "",
    ]
    return ",".join(_q(v) for v in values) + "\n"


def _q(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# Twilio's Call resource also has start_time, end_time and duration; its sid and
# account_sid never name an acc_cdrs column
_NOT_ACC = frozenset({"answer_time", "sid", "account_sid", "accountsid"})


def sniff_kamailio(head: bytes) -> bool:
    """A header naming start_time, end_time and duration, and neither another canonical
    time nor a Twilio resource's identity columns."""
    line = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8").lower()
    except UnicodeDecodeError:
        return False
    for d in _DELIMITERS:
        names = {n.strip().strip('"') for n in text.split(d)}
        if {"start_time", "end_time", "duration"} <= names and not names & _NOT_ACC:
            return True
    return False


register(
    ReaderFormat(
        "kamailio",
        read_kamailio,
        ("acc_cdrs.csv",),
        sniff_kamailio,
        "Kamailio acc dialog CDRs: CSV export of acc_cdrs with a header row",
        write_kamailio,
        settings={
            "timezone": check_timezone,
            "columns": _mapping,
            "export": _export,
            "start": _start,
        },
        notes=kamailio_notes,
    )
)
