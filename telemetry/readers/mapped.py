"""Mapped CSV / JSON lines: any headed CSV or JSON-lines file, with a column mapping.

The ``[mapping]`` table of ``telemetry.toml`` names, for each canonical column
(SPEC section 2), the source column that holds it; unmapped source columns are
never read, so free text stays out. Two optional keys say how to read times:
``time_format`` (a ``strptime`` format such as ``%d/%m/%Y %H:%M:%S``; without it
times are ISO 8601 or epoch seconds) and ``timezone`` (IANA name for times
without a zone; default the shared ``timezone`` setting — ``--timezone`` — else UTC)::

    format = "mapped"
    [mapping]
    start_time = "CallStart"
    source = "Caller"
    destination = "Callee"
    status = "Outcome"
    time_format = "%d/%m/%Y %H:%M:%S"
    timezone = "Europe/London"

Values then follow the canonical rules of :mod:`telemetry.readers._convert`
(status spellings, integer and float ranges, answer before start, …).

The file is JSON lines when its first non-blank byte is ``{``, otherwise CSV
whose first record is the header. Row numbers count records from 1 (the CSV
header and blank lines do not count). This module also holds the record
sources the other keyed formats (Twilio, SMPP receipts) share:
:func:`keyed_records` and :func:`text_column`.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.errors import ConfigError, InputError
from telemetry.readers import ReadBatch, ReaderFormat, ReaderOptions, Reject, register
from telemetry.readers._convert import (
    LONE_SURROGATE,
    Verdict,
    blocks,
    check_timezone,
    csv_records,
    local_time,
    lone_surrogate,
    setting,
    split,
    surrogate_escape,
    to_canonical,
)
from telemetry.schema import CANONICAL, TS

_BLOCK = 16384
_MAX_LINE = 16 << 20  # a longer JSON line is rejected, not held
_MAX_DOCUMENT = 256 << 20  # a single JSON document (a Twilio page) is parsed whole
_TIMES = ("start_time", "answer_time", "end_time")
_SETTINGS = ("time_format", "timezone")

Record = tuple[int, "dict[str, Any] | None", "str | None"]


# -- record sources shared by the keyed formats --------------------------------------------------


def keyed_records(path: str, pages: Sequence[str] = (), fold: bool = False) -> Iterator[Record]:
    """``(row, object, None)`` per record of a JSON-lines, JSON-document or headed CSV
    file, or ``(row, None, reason)`` for one that cannot be read. Rows count records
    from 1. A JSON object holding a list under one of ``pages`` (an API page) stands
    for the records of that list. ``fold``: keys lower case without ``_`` (so
    ``DateCreated`` and ``date_created`` match)."""
    kind = _kind(path)
    if kind == "json":
        source = _json_records(path, pages)
    else:
        source = _csv_dicts(path)
    for row, obj, reason in source:
        if obj is not None and fold:
            obj = {_fold(k): v for k, v in obj.items()}
        yield row, obj, reason


@functools.lru_cache(maxsize=1024)  # field names repeat in every record
def _fold(key: str) -> str:
    return key.strip().lower().replace("_", "").replace(" ", "")


def _kind(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    head = head.removeprefix(codecs.BOM_UTF8).lstrip()
    return "json" if head[:1] in (b"{", b"[") else "csv"


def _csv_dicts(path: str) -> Iterator[Record]:
    header: list[str] | None = None
    for number, fields, reason in csv_records(path):
        if header is None:
            if fields is None:
                raise InputError(f"{path}: the header row cannot be read ({reason})")
            header = [name.strip() for name in fields]
            continue
        row = number - 1
        if fields is None:
            yield row, None, str(reason)
        elif len(fields) != len(header):
            yield row, None, f"expected {len(header)} columns, found {len(fields)}"
        else:
            yield row, dict(zip(header, fields, strict=True)), None


def _json_records(path: str, pages: Sequence[str]) -> Iterator[Record]:
    with open(path, "rb") as handle:
        first = _first_line(handle)
        handle.seek(0)
        if first is not None and _is_json(first, pages):
            yield from _json_lines(handle, pages)
        else:
            yield from _json_document(path, handle, pages)


def _first_line(handle: Any) -> bytes | None:
    while True:
        line = handle.readline(_MAX_LINE)
        if not line:
            return None
        if line.strip():
            return line.removeprefix(codecs.BOM_UTF8)


def _is_json(line: bytes, pages: Sequence[str]) -> bool:
    try:
        next(_values(line.decode("utf-8"), pages), None)  # checks the whole line, keeps one item
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False
    return True


def _json_lines(handle: Any, pages: Sequence[str]) -> Iterator[Record]:
    row = 0
    while True:
        line = handle.readline(_MAX_LINE)
        if not line:
            return
        if len(line) == _MAX_LINE and not line.endswith(b"\n"):
            while True:  # skip the rest without holding it
                rest = handle.readline(_MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
            row += 1
            yield row, None, f"line longer than {_MAX_LINE >> 20} MiB"
            continue
        line = line.removeprefix(codecs.BOM_UTF8)
        if not line.strip():
            continue
        try:
            items = _values(line.decode("utf-8"), pages)
            first = next(items, None)  # the whole line is checked before the first item comes
        except UnicodeDecodeError:
            row += 1
            yield row, None, "not valid UTF-8"
            continue
        except (ValueError, RecursionError):
            row += 1
            yield row, None, "not valid JSON"
            continue
        suspect = surrogate_escape(line)
        for item in itertools.chain(() if first is None else (first,), items):
            row += 1
            yield _record(row, item, suspect)


def _json_document(path: str, handle: Any, pages: Sequence[str]) -> Iterator[Record]:
    data = handle.read(_MAX_DOCUMENT + 1)
    if len(data) > _MAX_DOCUMENT:
        raise InputError(
            f"{path}: a JSON document larger than {_MAX_DOCUMENT >> 20} MiB; "
            "write one record per line (JSON lines) instead"
        )
    try:
        items = _values(data.removeprefix(codecs.BOM_UTF8).decode("utf-8"), pages, document=True)
        first = next(items, None)
    except (ValueError, RecursionError):
        raise InputError(f"{path} is neither JSON lines nor one JSON document") from None
    suspect = surrogate_escape(data)
    del data
    items = itertools.chain(() if first is None else (first,), items)
    for row, item in enumerate(items, 1):
        yield _record(row, item, suspect)


def _record(row: int, item: Any, suspect: bool) -> Record:
    """Row ``row``: the item, or the reason it is rejected; ``suspect``: its JSON text
    has a surrogate escape (:func:`surrogate_escape`)."""
    if not isinstance(item, dict):
        return row, None, "not a JSON object"
    if suspect and lone_surrogate(item):
        return row, None, LONE_SURROGATE
    return row, item, None


_DECODER = json.JSONDecoder()
_BLANK = re.compile(r"[ \t\n\r]*")


def _values(text: str, pages: Sequence[str], *, document: bool = False) -> Iterator[Any]:
    """The records of the JSON value ``text``, decoded one at a time: the items of
    a top-level array (a ``document``'s), or of an array under one of ``pages``
    (the first of them that holds one) in a top-level object; else the value
    itself (decoded at once when the text names no page key). The whole text is
    checked (ValueError) before the first item comes, and no item is kept: an API
    page of millions of records costs one record at a time, not all of them as
    Python objects at once."""
    start = _BLANK.match(text).end()
    if document and text.startswith("[", start):
        _end(text, _skip_array(text, start))
        return _array_items(text, start)
    if text.startswith("{", start) and any(f'"{key}"' in text for key in pages):
        obj, lists, end = _object(text, start, pages)
        _end(text, end)
        for key in pages:
            if key in lists:
                return _array_items(text, lists[key])
        return iter((obj,))
    value, end = _DECODER.raw_decode(text, start)
    _end(text, end)
    return iter((value,))


def _end(text: str, end: int) -> None:
    if _BLANK.match(text, end).end() != len(text):
        raise ValueError("extra data after the JSON value")


def _object(text: str, at: int, pages: Sequence[str]) -> tuple[dict[str, Any], dict[str, int], int]:
    """The object at ``text[at]``: its members but the arrays under ``pages`` (their
    offsets instead, checked but not decoded), and the offset after it."""
    obj: dict[str, Any] = {}
    lists: dict[str, int] = {}
    pos = _BLANK.match(text, at + 1).end()
    if text.startswith("}", pos):
        return obj, lists, pos + 1
    while True:
        if not text.startswith('"', pos):
            raise ValueError("an object key must be a string")
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _BLANK.match(text, pos).end()
        if not text.startswith(":", pos):
            raise ValueError("expected ':' after an object key")
        pos = _BLANK.match(text, pos + 1).end()
        lists.pop(key, None)  # a repeated key: the last value counts, as json.loads has it
        obj.pop(key, None)
        if key in pages and text.startswith("[", pos):
            lists[key] = pos
            pos = _skip_array(text, pos)
        else:
            obj[key], pos = _DECODER.raw_decode(text, pos)
        pos = _BLANK.match(text, pos).end()
        if text.startswith("}", pos):
            return obj, lists, pos + 1
        if not text.startswith(",", pos):
            raise ValueError("expected ',' or '}' in an object")
        pos = _BLANK.match(text, pos + 1).end()


def _skip_array(text: str, at: int) -> int:
    """The offset after the array at ``text[at]``, its items checked one by one."""
    end: list[int] = []
    for _ in _array_items(text, at, end):
        pass
    return end[0]


def _array_items(text: str, at: int, end: list[int] | None = None) -> Iterator[Any]:
    """The items of the array at ``text[at]`` (checked as they come); the offset
    after the array is appended to ``end``."""
    pos = _BLANK.match(text, at + 1).end()
    if not text.startswith("]", pos):
        while True:
            item, pos = _DECODER.raw_decode(text, pos)
            yield item
            pos = _BLANK.match(text, pos).end()
            if text.startswith("]", pos):
                break
            if not text.startswith(",", pos):
                raise ValueError("expected ',' or ']' in an array")
            pos = _BLANK.match(text, pos + 1).end()
    if end is not None:
        end.append(pos + 1)


def text_column(objects: Sequence[Mapping[str, Any]], key: str, verdict: Verdict) -> pa.Array:
    """``objects[i][key]`` as text (numbers and booleans spelled as JSON does, missing →
    null); a nested value is flagged in ``verdict`` under ``key``."""
    out: list[str | None] = []
    nested = np.zeros(len(objects), dtype=np.bool_)
    for i, obj in enumerate(objects):
        value = obj.get(key)
        if value is None or isinstance(value, str):
            out.append(value)
        elif isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, int):
            out.append(str(value))
        elif isinstance(value, float):
            whole = math.isfinite(value) and value.is_integer() and abs(value) < 2**63
            out.append(str(int(value)) if whole else repr(value))
        else:
            out.append(None)
            nested[i] = True
    verdict.flag(nested, f"{key}: nested value where a scalar belongs")
    return pa.array(out, pa.string())


def triaged(
    path: str, records: Iterator[Record], batch_rows: int,
    convert: Callable[[list[int], list[dict[str, Any]], list[Reject], Counter[str]], ReadBatch],
) -> Iterator[ReadBatch]:
    """A file's keyed records in blocks (up to ``batch_rows`` and _BLOCK), each triaged
    and given to ``convert(rows, objects, rejects, seen)``; ``seen``: the file's rejects
    per reason so far, one count for all its blocks (they are converted in order), for
    :func:`_convert.split`: only the file's first FULL_REJECTS of a reason are described."""
    seen: Counter[str] = Counter()
    for block in blocks(records, max(1, min(batch_rows, _BLOCK))):
        yield convert(*triage(path, block), seen)


def triage(path: str, block: list[Record]) -> tuple[list[int], list[dict[str, Any]], list[Reject]]:
    """Split a block of records into (rows, objects) that parsed and rejects that did not."""
    rows: list[int] = []
    objects: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for row, obj, reason in block:
        if obj is None:
            rejects.append(Reject(path, row, str(reason), {}))
        else:
            rows.append(row)
            objects.append(obj)
    return rows, objects, rejects


# -- the mapped format ---------------------------------------------------------------------------


def mapping_of(options: ReaderOptions) -> dict[str, str]:
    """The validated ``[mapping]`` table, or :class:`ConfigError` saying what is wrong."""
    table = (getattr(options, "extra", None) or {}).get("mapping")
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(
            "--format mapped needs a [mapping] table in telemetry.toml naming the source "
            "column of each canonical column (at least start_time)"
        )
    known = set(CANONICAL.names) | set(_SETTINGS)
    unknown = sorted(str(k) for k in table if k not in known)
    if unknown:
        raise ConfigError(
            f"[mapping] has unknown key(s) {', '.join(unknown)}; keys are canonical column "
            f"names (SPEC section 2) or {', '.join(_SETTINGS)}"
        )
    bad = sorted(str(k) for k, v in table.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise ConfigError(f"[mapping] values must be non-empty text; check {', '.join(bad)}")
    if "start_time" not in table:
        raise ConfigError("[mapping] must name the source column of start_time")
    mapping = dict(table)
    # the table's own zone, else the one every format shares (--timezone, [mapped])
    zone = mapping.get("timezone") or setting(options, "mapped", "timezone")
    if zone is not None:
        mapping["timezone"] = check_timezone(zone)
    return mapping


def read_mapped(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    mapping = mapping_of(options)
    columns = {k: v for k, v in mapping.items() if k not in _SETTINGS}
    checked = False

    def convert(rows: list[int], objects: list[dict[str, Any]], rejects: list[Reject],
                seen: Counter[str]) -> ReadBatch:
        nonlocal checked
        if not checked and objects:
            _check_columns(path, objects[0], columns)
            checked = True
        return _mapped_block(path, rows, objects, rejects, columns, mapping, seen)

    yield from triaged(path, keyed_records(path), batch_rows, convert)


def _check_columns(path: str, first: Mapping[str, Any], columns: Mapping[str, str]) -> None:
    """A CSV header must hold every mapped column (a JSON object may just omit a key)."""
    if _kind(path) != "csv":
        return
    missing = sorted(k for k, source in columns.items() if source not in first)
    if missing:
        raise InputError(
            f"{path}: the header lacks the source column [mapping] names for "
            f"{', '.join(missing)}"
        )


def _mapped_block(
    path: str,
    rows: list[int],
    objects: list[dict[str, Any]],
    rejects: list[Reject],
    columns: Mapping[str, str],
    mapping: Mapping[str, str],
    seen: Counter[str],
) -> ReadBatch:
    n = len(objects)
    verdict = Verdict(n)
    text = {name: text_column(objects, source, verdict) for name, source in columns.items()}
    raw: dict[str, pa.Array] = dict(text)
    timezone = mapping.get("timezone", "UTC")
    fmt = mapping.get("time_format")
    for name in _TIMES:
        if name in text:
            raw[name] = _mapped_time(text[name], name, verdict, fmt, timezone)
    batch, verdict = to_canonical(raw, n, verdict)

    def fields_of(i: int) -> dict[str, Any]:
        return {name: column[i].as_py() for name, column in text.items()}

    return split(path, np.asarray(rows, np.int64), batch, verdict, raw, rejects, fields_of, seen)


def _mapped_time(
    text: pa.Array, name: str, verdict: Verdict, fmt: str | None, timezone: str
) -> pa.Array:
    if fmt is None:
        return local_time(text, name, verdict, timezone)
    # Python's strptime, not Arrow's: Arrow rolls 31/11 over to 1/12 instead of failing
    wall: list[dt.datetime | None] = []
    zoned = np.zeros(len(text), dtype=np.bool_)
    failed = np.zeros(len(text), dtype=np.bool_)
    for i, value in enumerate(text.to_pylist()):
        value = value.strip() if value else ""
        if not value:
            wall.append(None)
            continue
        try:
            parsed = dt.datetime.strptime(value, fmt)
        except ValueError:
            wall.append(None)
            failed[i] = True
            continue
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
            zoned[i] = True
        wall.append(parsed)
    verdict.flag(failed, f"{name}: does not match [mapping] time_format")
    naive = pa.array(wall, pa.timestamp("us"))
    local = pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest", nonexistent="latest")
    utc = pc.assume_timezone(naive, timezone="UTC")
    return pc.if_else(pa.array(zoned), pc.cast(utc, TS), pc.cast(local, TS))


# -- writing -------------------------------------------------------------------------------------

#: The mapping of files ``write_mapped`` produces (``telemetry generate --format mapped``):
#: a vendor-style export with its own column names, day-first local times and extra
#: columns the mapping leaves out.
EXAMPLE_MAPPING: dict[str, str] = {
    "record_id": "CallRef",
    "channel": "Service",
    "direction": "Dir",
    "tenant": "Customer",
    "start_time": "Started",
    "answer_time": "Answered",
    "end_time": "Ended",
    "duration_ms": "TalkMs",
    "pdd_ms": "PddMs",
    "source": "A-Number",
    "destination": "B-Number",
    "status": "Outcome",
    "sip_code": "SipCode",
    "q850_cause": "Cause",
    "route": "Trunk",
    "mos": "MOS",
    "time_format": "%d/%m/%Y %H:%M:%S",
    "timezone": "UTC",
}
_UNMAPPED = ("Notes",)  # free text a real export carries and the mapping never reads


def write_mapped(batches: Iterator[pa.RecordBatch], path: str) -> int:
    """Canonical batches as a CSV readable with :data:`EXAMPLE_MAPPING`; times are
    written to the second. Returns the records written."""
    columns = [(k, v) for k, v in EXAMPLE_MAPPING.items() if k not in _SETTINGS]
    fmt = EXAMPLE_MAPPING["time_format"]
    written = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([source for _, source in columns] + list(_UNMAPPED))
        for batch in batches:
            for record in batch.to_pylist():
                written += 1
                writer.writerow([_cell(record[k], fmt) for k, _ in columns] + ["see ticket"])
    return written


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime(fmt)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


register(
    ReaderFormat(
        "mapped",
        read_mapped,
        (),
        None,  # only the configuration can say a file is mapped: --format mapped
        "headed CSV or JSON lines with a [mapping] table in telemetry.toml",
        write_mapped,
        settings={"timezone": check_timezone},
    )
)
