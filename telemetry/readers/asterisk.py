"""Asterisk ``cdr_csv`` (``Master.csv``): headerless CSV, one record per call.

Column order as ``cdr/cdr_csv.c`` (``build_csv_record``) writes it: accountcode,
src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer,
end, duration, billsec, disposition, amaflags — 16 columns; then ``uniqueid``
(``loguniqueid``, 17), ``userfield`` (``loguserfield``, 18) and peeraccount,
linkedid, sequence (``newcdrcolumns``, 21; 19 when uniqueid and userfield are
off). A 17-column file is read as 16 + uniqueid, the common setting.

Strings are quoted with ``"`` doubled inside, integers bare (quoted ones are
accepted). Times are ``YYYY-MM-DD hh:mm:ss`` in the PBX's local time unless
``usegmtime``: the ``timezone`` reader setting says which (default UTC).

Mapping: accountcode → tenant, src → source, dst → destination, uniqueid →
record_id, disposition → status, billsec × 1000 → duration_ms, the peer of
``dstchannel`` → route (``PJSIP/carrier-a-0000001b`` → ``carrier-a``). ``clid``
(caller name), ``lastdata`` (dial strings) and ``userfield`` are free text and are
never read into a column; dcontext, channel, lastapp, amaflags, peeraccount,
linkedid and sequence are dropped too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.arrowstr import string_views
from telemetry.readers import ReadBatch, ReaderFormat, ReaderOptions, register
from telemetry.readers._convert import (
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

WIDTHS = (16, 17, 18, 19, 21)
(ACCOUNTCODE, SRC, DST, DCONTEXT, CLID, CHANNEL, DSTCHANNEL, LASTAPP, LASTDATA) = range(9)
(START, ANSWER, END, DURATION, BILLSEC, DISPOSITION, AMAFLAGS, UNIQUEID) = range(9, 17)
DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION")

# tech/peer-suffix: a SIP/PJSIP/IAX2 channel is the peer plus a hex or decimal counter;
# DAHDI channels name a span or channel (``DAHDI/i1/<number>-1`` holds a dialled
# number, so only the span is kept); Local/ channels are not trunks.
_PEER = re.compile(
    r"^(?:PJSIP|SIP|IAX2|IAX|H323|OOH323|MGCP|SKINNY|UNISTIM|MOTIF)/(.+)-[0-9a-fA-F]+$"
)
_DAHDI = re.compile(r"^(?:DAHDI|Zap)/(i?\d+)[-/]")
_COUNTER = r"^[0-9a-fA-F]+$"
_DISPOSITIONS = pa.array(DISPOSITIONS)
_ZERO = pa.scalar(0, pa.int32())


def route_of(channel: str | None) -> str | None:
    """The trunk or peer a destination channel name points at, or None."""
    if not channel:
        return None
    name = channel.split(";", 1)[0].split("<", 1)[0].strip()  # ;1 of Local, <ZOMBIE>
    match = _PEER.match(name)
    if match:
        return match.group(1)
    match = _DAHDI.match(name)
    if match:
        return f"DAHDI/{match.group(1)}"
    return None


def routes_of(channels: pa.Array) -> pa.Array:
    """:func:`route_of` of every channel name (a ``string`` array), once per distinct peer.

    A channel ends in a per-call counter, so names are all distinct but few peers
    stand before the last ``-``. When what follows it is hex digits, the route
    depends only on what precedes it: ``route_of(head + "-0")``. PJSIP and SIP
    counters (8 hex digits) are found straight from the bytes and their heads
    grouped by :func:`kernels.fields.channel_heads`; other counters (and all rows of
    a batch naming more than :data:`_HEADS` trunks) by splitting at the last ``-``;
    the names left (``Local/…;1``) go one by one."""
    n = len(channels)
    if channels.type != pa.string():
        channels = channels.cast(pa.string())
    out, counted = _counted_routes(channels)
    rest = ~counted & as_mask(pc.greater(pc.binary_length(channels), _ZERO))
    if rest.any():
        others = channels.filter(pa.array(rest))
        parts = pc.split_pattern(others, "-", max_splits=1, reverse=True)
        offsets = parts.offsets.to_numpy()
        split = np.diff(offsets) == 2
        if split.any():
            heads = parts.values.take(pa.array(np.where(split, offsets[:-1], 0)))
            tails = parts.values.take(pa.array(np.where(split, offsets[:-1] + 1, 0)))
            split &= as_mask(pc.match_substring_regex(tails, _COUNTER))
            found = _by_head(heads, split)
        else:
            found = pa.nulls(len(others), pa.string())
        if not split.all():
            names = others.filter(pa.array(~split)).to_pylist()
            found = pc.replace_with_mask(
                found, pa.array(~split), pa.array([route_of(c) for c in names], pa.string())
            )
        out = pc.replace_with_mask(out, pa.array(rest), found) if n else out
    return out


_HEADS = 256  # distinct heads per batch the kernel groups; past that, every row goes the general way


def _counted_routes(channels: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The routes of the channels ending in ``-`` and 8 hex digits (null elsewhere),
    and which rows those are."""
    from kernels.fields import channel_heads

    views = string_views(channels)
    firsts = np.empty(_HEADS, np.int64)
    codes = np.empty(len(channels), np.int64)
    heads = channel_heads(views.offsets, views.data, views.valid, firsts, codes)
    if heads < 0:  # more trunks in a batch than it groups: the general way for every row
        return pa.nulls(len(channels), pa.string()), np.zeros(len(channels), np.bool_)
    counted = codes >= 0
    texts = [
        bytes(views.data[views.offsets[r] : views.offsets[r + 1] - 9]).decode("utf-8") for r in firsts[:heads]
    ]
    routes = pa.array([route_of(t + "-0") for t in texts], pa.string())
    return routes.take(pa.array(codes, mask=~counted)), counted


def _by_head(heads: pa.Array, keyed: np.ndarray) -> pa.Array:
    """``route_of(head + "-0")`` for the keyed rows (null elsewhere), once per distinct head."""
    if not keyed.any():
        return pa.nulls(len(heads), pa.string())
    keys = pc.dictionary_encode(pc.if_else(pa.array(keyed), heads, pa.nulls(1, heads.type)[0]))
    words = keys.dictionary.to_pylist()
    texts = [w.decode("utf-8") if isinstance(w, bytes) else w for w in words]
    return pa.array([route_of(t + "-0") for t in texts], pa.string()).take(keys.indices)


# key of a field in Records → the canonical column it feeds (duration feeds none: checked only)
_FEEDS = {"dstchannel": "route", "billsec": "duration_ms", "duration": None}


def _fields(width: int) -> dict[str, int | None]:
    return {
        "tenant": ACCOUNTCODE,
        "source": SRC,
        "destination": DST,
        "dstchannel": DSTCHANNEL,
        "start_time": START,
        "answer_time": ANSWER,
        "end_time": END,
        "duration": DURATION,
        "billsec": BILLSEC,
        "status": DISPOSITION,
        "record_id": UNIQUEID if width in (17, 18, 21) else None,
    }


def _reason(found: int) -> str:
    return f"expected 16, 17, 18, 19 or 21 columns, found {found}"


LAYOUT = Layout(WIDTHS, _fields, _reason)


def layout(options: ReaderOptions) -> Layout:
    """:data:`LAYOUT` without the fields of canonical columns the caller does not use."""
    unused = {k for k in _fields(21) if _FEEDS.get(k, k) and not wanted(options, _FEEDS.get(k, k))}
    if not unused:
        return LAYOUT
    return Layout(
        WIDTHS, lambda width: {k: i for k, i in _fields(width).items() if k not in unused}, _reason
    )


def read_asterisk(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    timezone = check_timezone(setting(options, "asterisk", "timezone", "UTC"))
    records = read_records(path, layout(options), block_bytes=options.block_bytes)
    yield from converted(records, lambda block, seen: _block(path, block, timezone, seen))


_SHOWN = ("tenant", "source", "destination", "record_id")
_SHOWN += ("start_time", "answer_time", "end_time", "status")
_TIMES = {"start_time": "start", "answer_time": "answer", "end_time": "end"}


def _block(path: str, records: Records, timezone: str, seen: Counter[str]) -> ReadBatch:
    text = records.columns
    n = len(records.rows)
    verdict = Verdict(n)
    shown = {name: text[name] for name in _SHOWN if name in text}
    raw = dict(shown)
    for name, column in _TIMES.items():
        if name in text:
            raw[name] = local_time(text[name], column, verdict, timezone)
    milliseconds(text["duration"], "duration", verdict, 1000)  # checked, not kept
    if "billsec" in text:
        raw["duration_ms"] = milliseconds(text["billsec"], "billsec", verdict, 1000)
    if "dstchannel" in text:
        raw["route"] = shown["route"] = routes_of(text["dstchannel"])
    if "status" in text:  # a handful of distinct words: each is looked at once
        words = pc.dictionary_encode(text["status"])
        upper = pc.utf8_upper(pc.utf8_trim_whitespace(words.dictionary))
        raw["status"] = pa.DictionaryArray.from_arrays(words.indices, upper)
        known = pc.is_in(upper, _DISPOSITIONS).take(words.indices)
        verdict.flag(~as_mask(known), "disposition: not an Asterisk disposition")
    batch, verdict = to_canonical(raw, n, verdict)

    def fields_of(i: int) -> dict[str, str | None]:
        return {name: values[i].as_py() for name, values in shown.items()}

    return split(path, records.rows, batch, verdict, raw, records.rejects, fields_of, seen)


# -- writing -------------------------------------------------------------------------------------

_DISPOSITION_OF = {
    "answered": "ANSWERED",
    "busy": "BUSY",
    "no_answer": "NO ANSWER",
    "cancelled": "NO ANSWER",  # Asterisk records a caller who gives up as NO ANSWER
    "rejected": "FAILED",
    "failed": "FAILED",
    "congestion": "CONGESTION",
}


def write_asterisk(batches: Iterator[pa.RecordBatch], path: str) -> int:
    """Voice records of ``batches`` as a 21-column Master.csv (``usegmtime=yes``,
    ``loguniqueid``, ``loguserfield``, ``newcdrcolumns``); message records have no
    Asterisk form and are skipped. Returns the records written."""
    return write_voice_lines(batches, path, _line)


def _line(row: dict, seq: int) -> str:
    start, answer, end = row["start_time"], row["answer_time"], row["end_time"]
    end = end or answer or start
    duration = max(0, int(end.timestamp()) - int(start.timestamp()))
    billsec = ((row["duration_ms"] or 0) + 500) // 1000 if answer else 0
    uniqueid = row["record_id"] or f"{int(start.timestamp())}.{seq}"
    route = row["route"]
    inbound = row["direction"] == "inbound"
    dst = row["destination"] or ""
    fields = [
        _q(row["tenant"]),
        _q(row["source"]),
        _q(dst),
        _q("from-trunk" if inbound else "from-internal"),
        _q(f'"" <{row["source"] or ""}>'),
        _q(f"PJSIP/{route or 'office'}-{seq:08x}" if inbound else f"PJSIP/office-{seq:08x}"),
        _q(f"PJSIP/{route}-{seq + 1:08x}" if route and not inbound else ""),
        _q("Dial"),
        _q(f"PJSIP/{dst}@{route},60,tT" if route else ""),
        _q(_stamp(start)),
        _q(_stamp(answer)),
        _q(_stamp(end)),
        str(duration),
        str(billsec),
        _q(_DISPOSITION_OF.get(row["status"], "FAILED")),
        _q("DOCUMENTATION"),
        _q(uniqueid),
        _q(""),
        _q(""),
        _q(uniqueid),
        str(seq),
    ]
    return ",".join(fields) + "\n"


def _q(value: str | None) -> str:
    return '"' + (value or "").replace('"', '""') + '"'


def _stamp(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def sniff_asterisk(head: bytes) -> bool:
    """The first record has an Asterisk width, a time in column 10 and a disposition."""
    fields = first_csv_record(head)
    return (
        fields is not None
        and len(fields) in WIDTHS
        and re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", fields[START].strip()) is not None
        and fields[DISPOSITION].strip().upper() in DISPOSITIONS
    )


register(
    ReaderFormat(
        "asterisk",
        read_asterisk,
        ("master.csv",),
        sniff_asterisk,
        "Asterisk cdr_csv Master.csv (16, 17, 18, 19 or 21 columns, no header)",
        write_asterisk,
        settings={"timezone": check_timezone},
    )
)
