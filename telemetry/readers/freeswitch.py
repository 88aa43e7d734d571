"""FreeSWITCH ``mod_cdr_csv``: headerless CSV laid out by a template of channel variables.

The layout is the template's list of ``${variable}`` names, given as the
``template`` reader setting — the template text from ``cdr_csv.conf.xml``
(``"${a}","${b}"``) or the names separated by commas — and by default the vanilla
``example`` template of ``cdr_csv.conf.xml``: caller_id_name, caller_id_number,
destination_number, context, start_stamp, answer_stamp, end_stamp, duration,
billsec, hangup_cause, uuid, bleg_uuid, accountcode, read_codec, write_codec.

Understood variables (any others, and caller_id_name, are dropped):

- caller_id_number → source, destination_number → destination, uuid → record_id,
  accountcode → tenant, direction → direction, sip_gateway_name → route,
  sip_received_ip → source_ip, rtp_audio_in_mos → mos;
- start/answer/end as ``*_uepoch`` (µs), ``*_epoch`` (s) or ``*_stamp`` (local time,
  the ``timezone`` setting, default UTC), preferred in that order; an epoch of 0
  means "did not happen";
- billmsec, else billsec × 1000 → duration_ms; duration is checked but not kept;
- hangup_cause (names of ``switch_types.h``) and hangup_cause_q850 → q850_cause;
  sip_term_status → sip_code; the status follows from them by SPEC 2.1, and
  FreeSWITCH's own causes (ORIGINATOR_CANCEL, LOSE_RACE, …) by
  :data:`telemetry.status.HANGUP_CAUSE_STATUS` — answered when the call was, and
  the timers of :data:`telemetry.status.RING_TIMERS` no_answer after alerting;
- progressmsec / progress_mediamsec (ms from start to 180 / 183; 0 = none), the
  earlier one, else answermsec → pdd_ms; a pdd_ms shows the callee was alerted, which
  SPEC 2.1 asks of a 408 (or a ring timer) to be no_answer rather than failed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.errors import ConfigError
from telemetry.readers import ReadBatch, ReaderFormat, ReaderOptions, register
from telemetry.readers._convert import (
    EMPTY_TEXT,
    NO,
    NULL_INT,
    NULL_TEXT,
    PROGRESS,
    Verdict,
    as_mask,
    check_timezone,
    converted,
    first_csv_record,
    local_time,
    milliseconds,
    setting,
    split,
    to_canonical,
    wanted,
)
from telemetry.readers._vendorcsv import Layout, Records, read_records, write_voice_lines
from telemetry.status import HANGUP_CAUSE_STATUS, Q850_CAUSES, RING_TIMERS, shown

EXAMPLE = (
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
    "read_codec",
    "write_codec",
)
_TEXT = {
    "caller_id_number": "source",
    "destination_number": "destination",
    "uuid": "record_id",
    "accountcode": "tenant",
    "direction": "direction",
    "sip_gateway_name": "route",
    "sip_received_ip": "source_ip",
    "rtp_audio_in_mos": "mos",
    "sip_term_status": "sip_code",
    "hangup_cause_q850": "q850_cause",
}
_ZERO = pa.scalar(0, pa.int64())
_ANSWERED = pa.scalar("answered", pa.string())
_NO_ANSWER = pa.scalar("no_answer", pa.string())
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def template_names(template: str | Sequence[str] | None) -> tuple[str, ...]:
    """Variable names of a template: its text, comma-separated names or a sequence."""
    if template is None:
        return EXAMPLE
    if isinstance(template, str):
        names = _VARIABLE.findall(template) if "${" in template else template.split(",")
    else:
        names = list(template)
    names = [str(n).strip() for n in names]
    if not names or not all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names):
        raise ConfigError(
            "the FreeSWITCH template must list channel variable names, e.g. "
            "caller_id_number,destination_number,start_stamp,... or the template text"
        )
    return tuple(names)


# each understood variable → the canonical columns it feeds (duration: none, checked only)
_FEEDS: dict[str, tuple[str, ...]] = {
    **{variable: (canonical,) for variable, canonical in _TEXT.items()},
    **{
        f"{moment}{suffix}": (f"{moment}_time",)
        for moment in ("start", "answer", "end")
        for suffix in ("_uepoch", "_epoch", "_stamp")
    },
    "billmsec": ("duration_ms",),
    "billsec": ("duration_ms",),
    "duration": (),
    "progressmsec": ("pdd_ms",),
    "progress_mediamsec": ("pdd_ms",),
    "answermsec": ("pdd_ms",),
    "hangup_cause": ("q850_cause", "status"),
}


def layout(names: tuple[str, ...], options: ReaderOptions | None = None) -> Layout:
    """Where the understood variables of a template are (a repeated name: its last
    place), leaving out those feeding only canonical columns the caller does not use."""
    where = {
        name: i
        for i, name in enumerate(names)
        if name in _FEEDS
        and (not _FEEDS[name] or any(wanted(options, c) for c in _FEEDS[name]))
    }
    return Layout(
        (len(names),),
        lambda width: where,
        lambda found: f"expected {len(names)} columns (the template), found {found}",
    )


def read_freeswitch(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    names = template_names(setting(options, "freeswitch", "template"))
    timezone = check_timezone(setting(options, "freeswitch", "timezone", "UTC"))
    records = read_records(path, layout(names, options), block_bytes=options.block_bytes)
    yield from converted(records, lambda block, seen: _block(path, block, timezone, seen))


def _block(path: str, records: Records, timezone: str, seen: Counter[str]) -> ReadBatch:
    n = len(records.rows)
    column = records.columns.get
    verdict = Verdict(n)
    raw: dict[str, pa.Array] = {}
    shown: dict[str, pa.Array] = {}
    for variable, canonical in _TEXT.items():
        values = column(variable)
        if values is not None:
            raw[canonical] = shown[canonical] = values
    for moment in ("start", "answer", "end"):
        canonical = f"{moment}_time"
        value = _moment(column, moment, canonical, verdict, timezone)
        if value is not None:
            raw[canonical], shown[canonical] = value
    billmsec, billsec = column("billmsec"), column("billsec")
    if column("duration") is not None:
        milliseconds(column("duration"), "duration", verdict, 1000)
    if billmsec is not None:
        raw["duration_ms"] = milliseconds(billmsec, "billmsec", verdict, 1)
    elif billsec is not None:
        raw["duration_ms"] = milliseconds(billsec, "billsec", verdict, 1000)
    pdd = _pdd(column, verdict)
    if pdd is not None:
        raw["pdd_ms"] = pdd
    cause = column("hangup_cause")
    if cause is not None:
        _hangup(cause, raw, verdict, n)
    batch, verdict = to_canonical(raw, n, verdict)

    def fields_of(i: int) -> dict[str, str | None]:
        return {name: values[i].as_py() for name, values in shown.items()}

    return split(path, records.rows, batch, verdict, raw, records.rejects, fields_of, seen)


def _moment(column, moment: str, canonical: str, verdict: Verdict, timezone: str):
    """(time, text shown in rejects) from the most precise variable present, or None."""
    for suffix, scale in (("_uepoch", 6), ("_epoch", 0)):
        text = column(moment + suffix)
        if text is not None:
            text = pc.utf8_trim_whitespace(text)
            # an epoch of 0 is FreeSWITCH's "never", e.g. answer_epoch of an unanswered call
            never = pc.fill_null(pc.match_substring_regex(text, r"^0+$"), NO)
            text = pc.if_else(never, EMPTY_TEXT, text)
            if scale:
                text = pc.replace_substring_regex(text, r"^(\d+)(\d{6})$", r"\1.\2")
            return local_time(text, moment + suffix, verdict, timezone), text
    text = column(moment + "_stamp")
    if text is None:
        return None
    return local_time(text, moment + "_stamp", verdict, timezone), text


def _pdd(column, verdict: Verdict) -> pa.Array | None:
    candidates = []
    for name in ("progressmsec", "progress_mediamsec"):
        text = column(name)
        if text is not None:
            ms = milliseconds(text, name, verdict, 1)
            candidates.append(pc.if_else(pc.equal(ms, _ZERO), NULL_INT, ms))
    pdd = pc.min_element_wise(*candidates) if candidates else None
    answer = column("answermsec")
    if answer is not None:
        ms = milliseconds(answer, "answermsec", verdict, 1)
        ms = pc.if_else(pc.equal(ms, _ZERO), NULL_INT, ms)
        pdd = ms if pdd is None else pc.coalesce(pdd, ms)
    return pdd


def _hangup(cause: pa.Array, raw: dict[str, pa.Array], verdict: Verdict, n: int) -> None:
    """Q.850 value and, for FreeSWITCH's own causes, the status the name implies."""
    words = pc.dictionary_encode(pc.utf8_upper(pc.utf8_trim_whitespace(cause)))
    names = [name or None for name in words.dictionary.to_pylist()]  # looked up once each
    codes = [Q850_CAUSES.get(name) if name else None for name in names]
    status = [HANGUP_CAUSE_STATUS.get(name) if name else None for name in names]
    timer = pa.array([name in RING_TIMERS for name in names], pa.bool_())
    unknown = [bool(name) and c is None and s is None for name, c, s in zip(names, codes, status)]
    verdict.flag(
        as_mask(pa.array(unknown, pa.bool_()).take(words.indices)),
        "hangup_cause: not a FreeSWITCH hangup cause",
    )
    by_name = pa.array(codes, pa.int64()).take(words.indices)
    if "q850_cause" in raw:  # the numeric variable wins; the name fills its gaps
        text = pc.utf8_trim_whitespace(raw["q850_cause"])
        raw["q850_cause"] = pc.coalesce(
            pc.if_else(pc.equal(text, EMPTY_TEXT), NULL_TEXT, text),
            pc.cast(by_name, pa.string()),
        )
    else:
        raw["q850_cause"] = by_name
    timers = as_mask(timer.take(words.indices))
    raw["status"] = _settled(pa.array(status, pa.string()).take(words.indices), timers, raw, n)


def _settled(status: pa.Array, timers: np.ndarray, raw: dict[str, pa.Array], n: int) -> pa.Array:
    """The status of FreeSWITCH's own causes against what the record shows: an
    answered call is answered however it ended; a ring timer after alerting is
    no_answer (SPEC 2.1, as a SIP 408)."""
    answered, alerted = shown(*(raw.get(name) for name in PROGRESS), n=n)
    status = pc.if_else(pa.array(timers & alerted), _NO_ANSWER, status)
    ended_answered = answered.filled(False) & as_mask(status.is_valid())
    return pc.if_else(pa.array(ended_answered), _ANSWERED, status)


# -- writing -------------------------------------------------------------------------------------

_CAUSE_OF = {
    "answered": "NORMAL_CLEARING",
    "busy": "USER_BUSY",
    "no_answer": "NO_ANSWER",
    "rejected": "CALL_REJECTED",
    "cancelled": "ORIGINATOR_CANCEL",
    "failed": "NORMAL_TEMPORARY_FAILURE",
    "congestion": "NORMAL_CIRCUIT_CONGESTION",
}
_NAME_OF = {code: name for name, code in Q850_CAUSES.items()}
_STATUS_OF_Q850 = {16: "answered", 17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected"}


def hangup_cause_for(status: str | None, q850: int | None) -> str:
    """The hangup_cause FreeSWITCH would log for a call of ``status`` and Q.850 cause."""
    name = _NAME_OF.get(q850) if q850 is not None else None
    if status == "cancelled" or name is None:
        return _CAUSE_OF.get(status or "failed", "NORMAL_TEMPORARY_FAILURE")
    if status in ("failed", "congestion") or _STATUS_OF_Q850.get(q850) == status:
        return name
    return _CAUSE_OF.get(status, "NORMAL_TEMPORARY_FAILURE")


def write_freeswitch(batches: Iterator[pa.RecordBatch], path: str) -> int:
    """Voice records of ``batches`` in the ``example`` template, times in UTC (what a
    switch running in UTC writes); message records are skipped."""
    return write_voice_lines(batches, path, _line)


def _line(row: dict, _: int) -> str:
    start, answer, end = row["start_time"], row["answer_time"], row["end_time"]
    end = end or answer or start
    duration = max(0, int(end.timestamp()) - int(start.timestamp()))
    billsec = ((row["duration_ms"] or 0) + 500) // 1000 if answer else 0
    values = {
        "caller_id_name": "",
        "caller_id_number": row["source"],
        "destination_number": row["destination"],
        "context": "public" if row["direction"] == "inbound" else "default",
        "start_stamp": _stamp(start),
        "answer_stamp": _stamp(answer),
        "end_stamp": _stamp(end),
        "duration": str(duration),
        "billsec": str(billsec),
        "hangup_cause": hangup_cause_for(row["status"], row["q850_cause"]),
        "uuid": row["record_id"],
        "bleg_uuid": "",
        "accountcode": row["tenant"],
        "read_codec": "PCMA",
        "write_codec": "PCMA",
    }
    return ",".join('"' + (values[n] or "").replace('"', '""') + '"' for n in EXAMPLE) + "\n"


def _stamp(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else ""


_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_EPOCH = re.compile(r"^\d{10}(\d{6})?$")  # *_epoch (s) or *_uepoch (µs)


def sniff_freeswitch(head: bytes) -> bool:
    """The first record fits the ``example`` template (15 fields, a start stamp and a
    hangup cause name), or — another template — holds a stamp or epoch and a hangup
    cause name with an underscore as FreeSWITCH writes it (``NORMAL_CLEARING``)."""
    fields = first_csv_record(head)
    if fields is None:
        return False
    if len(fields) == len(EXAMPLE):
        cause = fields[EXAMPLE.index("hangup_cause")].strip().upper()
        stamp = fields[EXAMPLE.index("start_stamp")].strip()
        if _STAMP.match(stamp) and (cause in Q850_CAUSES or cause in HANGUP_CAUSE_STATUS):
            return True
    causes = [f for f in fields if "_" in f and (f in Q850_CAUSES or f in HANGUP_CAUSE_STATUS)]
    return bool(causes) and any(_STAMP.match(f) or _EPOCH.match(f) for f in fields)


register(
    ReaderFormat(
        "freeswitch",
        read_freeswitch,
        (),
        sniff_freeswitch,
        "FreeSWITCH mod_cdr_csv (the example template, or the template setting)",
        write_freeswitch,
        settings={"timezone": check_timezone, "template": template_names},
    )
)
