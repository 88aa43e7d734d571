"""Raw input columns → canonical columns, with a verdict for every row.

Shared by every reader: a reader hands over the canonical columns it found
(text, or already typed as in Parquet) and gets back the canonical batch plus,
per row, whether it fits and the first reason it does not. Conversion is
vectorized with Arrow compute; a cast that fails for some rows is retried on
halves so only the bad rows are lost (:func:`_cast`).

Accepted values (documented in docs/ as the input contract):

- times: ISO 8601 ``YYYY-MM-DD[T ]hh:mm:ss[.ffffff][Z|±hh[:mm]]`` — without a zone
  the time is UTC; more than 6 fraction digits are truncated to microseconds —
  or Unix epoch seconds (up to 11 integer digits, optional fraction);
- integers: optional sign and decimal digits (no hex, no exponent); ``pdd_ms`` and
  ``duration_ms`` must not be negative, ``sip_code`` is 100–699, ``q850_cause`` 0–127;
- floats: decimal or exponent notation, finite; ``mos`` 1–5, ``packet_loss_pct``
  0–100, ``jitter_ms`` and ``rtt_ms`` not negative; all within float32 (SPEC 2's
  type: a larger value would be stored as infinity);
- ``roaming``: true/false, yes/no, t/f, y/n, 1/0 in any case;
- ``channel``, ``direction``, ``status``: the SPEC 2.1 vocabulary in any case, with
  blanks, hyphens and underscores interchangeable, plus the spellings in
  :mod:`telemetry.status`; an empty ``channel`` is ``voice``; an empty ``status``
  is derived from ``sip_code`` / ``q850_cause`` when those are present, with what
  ``answer_time``, ``duration_ms`` and ``pdd_ms`` show (:func:`telemetry.status.shown`);
- empty text is null; ``answer_time`` and ``end_time`` must not precede ``start_time``.

Reasons name the column and the rule, never the value.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.arrowstr import StringViews, filled_values, fixed_width, numeric_values, string_views, validity
from telemetry.errors import InputError
from telemetry.quarantine import FULL_REJECTS, detailed, masked
from telemetry.readers import RawPart, ReadBatch, Reject, RejectRun, reject_runs
from telemetry.schema import (CANONICAL, CHANNELS, DICTIONARY_TEXT, DIRECTIONS, IDENTIFIER_COLUMNS,
                              STATUSES, TS, read_schema)  # fmt: skip
from telemetry.status import (
    CHANNEL_ALIASES,
    DIRECTION_ALIASES,
    STATUS_ALIASES,
    fold,
    shown,
    status_from_codes,
)

TEXT = (
    "record_id",
    "tenant",
    "source",
    "destination",
    "route",
    "source_ip",
    "location",
    "mno",
    "device_type",
)
TIMES = ("start_time", "answer_time", "end_time")
INTS: dict[str, tuple[pa.DataType, int, int | None]] = {
    "pdd_ms": (pa.int32(), 0, 2**31 - 1),
    "duration_ms": (pa.int64(), 0, None),
    "sip_code": (pa.int16(), 100, 699),
    "q850_cause": (pa.int16(), 0, 127),
}
#: Largest finite float32 (SPEC 2 types these columns float32): a larger value would be stored as inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOATS: dict[str, tuple[float, float]] = {
    "mos": (1.0, 5.0),
    "jitter_ms": (0.0, FLOAT32_MAX),
    "packet_loss_pct": (0.0, 100.0),
    "rtt_ms": (0.0, FLOAT32_MAX),
}
VOCABULARIES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "channel": (CHANNELS, CHANNEL_ALIASES),
    "direction": (DIRECTIONS, DIRECTION_ALIASES),
    "status": (STATUSES, STATUS_ALIASES),
}
# what shows how far a call got: answered, alerted (telemetry.status.shown)
PROGRESS = ("answer_time", "duration_ms", "pdd_ms")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}

# Arrow scalars built once: turning a Python value into one costs tens of microseconds
# (pyarrow tries an import each time), which per batch adds up to a cost per record.
NULL_TEXT = pa.scalar(None, pa.string())
EMPTY_TEXT = pa.scalar("", pa.string())
NO = pa.scalar(False)
YES = pa.scalar(True)
NULL_BOOL = pa.scalar(None, pa.bool_())
NULL_INT = pa.scalar(None, pa.int64())
NULL_FLOAT = pa.scalar(None, pa.float64())
_MICROS = pa.scalar(1e6)
_WORDS = {name: pa.array(vocabulary, pa.string()) for name, (vocabulary, _) in VOCABULARIES.items()}
_TRUE_WORDS = pa.array(sorted(_TRUE))
_FALSE_WORDS = pa.array(sorted(_FALSE))
_BOUNDS = {
    name: (pa.scalar(low, pa.int64()), None if high is None else pa.scalar(high, pa.int64()))
    for name, (_, low, high) in INTS.items()
}
_FLOAT_BOUNDS = {name: (pa.scalar(low), pa.scalar(high)) for name, (low, high) in FLOATS.items()}

_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
_ZONE = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"
_EPOCH = r"^\d{1,11}(\.\d{1,9})?$"
_INT = r"^[+-]?\d+$"
_FLOAT = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


class Verdict:
    """Per-row outcome: ``bad[i]`` and the first reason found for row ``i``."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=np.bool_)
        self._reasons: np.ndarray | None = None  # made at the first flag: most batches have none

    @property
    def reasons(self) -> np.ndarray:
        if self._reasons is None:
            self._reasons = np.empty(len(self.bad), dtype=object)
        return self._reasons

    def part(self, start: int, n: int) -> Verdict:
        """The verdict of rows ``start`` to ``start + n`` (views, not copies)."""
        out = Verdict(0)
        out.bad = self.bad[start : start + n]
        out._reasons = None if self._reasons is None else self._reasons[start : start + n]
        return out

    def flag(self, mask: Any, reason: str) -> None:
        if isinstance(mask, (pa.Array, pa.ChunkedArray)) and not pc.any(mask).as_py():
            return  # the common case, decided without materializing the mask
        mask = as_mask(mask)
        new = mask & ~self.bad
        if new.any():
            self.reasons[new] = reason
            self.bad |= new


def to_canonical(
    columns: Mapping[str, pa.Array], n: int, verdict: Verdict | None = None
) -> tuple[pa.RecordBatch, Verdict]:
    """The canonical batch of ``n`` rows from ``columns`` (canonical names only; others
    are ignored), and the verdict (``verdict`` may carry rows a reader already flagged).
    Identifier and dimension text given as dictionaries (Parquet pages) stays so: the
    batch then has the :data:`~telemetry.schema.READ` schema (with the identifiers that came
    as text as text: :func:`~telemetry.schema.read_schema`), else ``CANONICAL``."""
    verdict = verdict or Verdict(n)
    schema = CANONICAL
    if any(_is_dictionary(columns.get(name)) for name in DICTIONARY_TEXT):
        schema = read_schema(tuple(name for name in IDENTIFIER_COLUMNS
                                   if name in columns and not _is_dictionary(columns[name])))  # fmt: skip
    out: dict[str, pa.Array] = {}
    for field in schema:
        name = field.name
        raw = columns.get(name)
        if raw is None:
            if name in VOCABULARIES:  # every batch indexes the full vocabulary
                out[name] = pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), _WORDS[name])
            else:
                out[name] = pa.nulls(n, field.type)
            continue
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks()
        if pa.types.is_nested(raw.type):  # a list or struct column (Parquet): no row has a scalar
            verdict.flag(validity(raw), f"{name}: nested value where a scalar belongs")
            raw = pa.nulls(n, pa.string())
        if name in DICTIONARY_TEXT and pa.types.is_dictionary(field.type):
            out[name] = _dictionary_text(raw, name, verdict)
        elif name in TEXT:
            out[name] = _text(raw, name, verdict)
        elif name in TIMES:
            out[name] = _time(raw, name, verdict)
        elif name in INTS:
            out[name] = _int(raw, name, verdict)
        elif name in FLOATS:
            out[name] = _float(raw, name, verdict)
        elif name == "roaming":
            out[name] = _bool(raw, name, verdict)
        else:
            out[name] = _vocabulary(raw, name, verdict)

    if "channel" not in columns or out["channel"].null_count:
        out["channel"] = _fill_dictionary(out["channel"], CHANNELS.index("voice"))
    status = out["status"]
    if status.null_count and ("sip_code" in columns or "q850_cause" in columns):
        answered, alerted = shown(
            *(out[name] if name in columns else None for name in PROGRESS), n=n
        )
        derived = status_from_codes(out["sip_code"], out["q850_cause"], answered, alerted)
        # both index the full STATUSES dictionary, so rows combine by index
        out["status"] = pa.DictionaryArray.from_arrays(
            pc.coalesce(status.indices, derived.indices), status.dictionary
        )

    start = out["start_time"]
    verdict.flag(start.is_null(), "start_time: missing")
    for later in ("answer_time", "end_time"):
        if later in columns:
            verdict.flag(pc.less(out[later], start), f"{later}: before start_time")
    return pa.RecordBatch.from_arrays([out[f.name] for f in schema], schema=schema), verdict


def convert(file: str, batch: pa.RecordBatch, rows: np.ndarray) -> ReadBatch:
    """A batch of canonical columns as read (rows numbered ``rows``) as a
    :class:`ReadBatch`: :func:`to_canonical`, then :func:`split`."""
    raw = {name: batch.column(name) for name in batch.schema.names}
    canonical, verdict = to_canonical(raw, batch.num_rows)
    return split(file, rows, canonical, verdict, raw)


def convert_together(parts: Sequence[tuple[str, RawPart]]) -> list[ReadBatch]:
    """:func:`convert` of each part (its file, its columns as read), in order, with one
    :func:`to_canonical` for each run of parts whose columns have the same types: its
    fixed cost (a few dozen Arrow calls) is paid once for many small files. Conversion
    is row by row (what a column holds elsewhere never changes a row's value or
    verdict), so each part comes out with the rows, values and rejects it has alone;
    the text dictionaries are those of the run, whose values its parts share."""
    out: list[ReadBatch] = []
    i = 0
    while i < len(parts):
        schema = parts[i][1].batch.schema
        j = i + 1
        while j < len(parts) and parts[j][1].batch.schema.equals(schema):
            j += 1
        if j == i + 1:
            out.append(convert(parts[i][0], *parts[i][1]))
        else:
            whole = pa.concat_batches([part.batch for _, part in parts[i:j]])
            raw = {name: whole.column(name) for name in whole.schema.names}
            canonical, verdict = to_canonical(raw, whole.num_rows)
            at = 0
            for file, (batch, rows) in parts[i:j]:
                n = batch.num_rows
                part = verdict.part(at, n)
                # split shows a bad row's fields as read: the columns sliced for a part with one
                mine = {name: column.slice(at, n) for name, column in raw.items()} if part.bad.any() else {}
                out.append(split(file, rows, canonical.slice(at, n), part, mine))
                at += n
        i = j
    return out


def _is_dictionary(raw: pa.Array | pa.ChunkedArray | None) -> bool:
    return raw is not None and pa.types.is_dictionary(raw.type)


def split(
    file: str,
    rows: np.ndarray,
    batch: pa.RecordBatch,
    verdict: Verdict,
    raw: Mapping[str, pa.Array],
    rejects: list[Reject | RejectRun] | None = None,
    fields_of: Callable[[int], Mapping[str, Any]] | None = None,
    seen: Counter[str] | None = None,
) -> ReadBatch:
    """Good rows as a :class:`ReadBatch`; bad rows as rejects with masked fields — those
    of ``raw``, or what ``fields_of(i)`` gives when the reader keeps the originals —
    and, past the first few of a reason, as a :class:`RejectRun`. ``rejects``: those met
    before (the parser's, in :func:`compact` form): its described ones are sorted in
    with the bad rows', its runs come after them, before the bad rows' runs. ``seen``:
    the file's count of each reason so far, as :func:`~telemetry.quarantine.detailed`
    takes it."""
    runs = [r for r in rejects or [] if not isinstance(r, Reject)]
    rejects = [r for r in rejects or [] if isinstance(r, Reject)]
    if not verdict.bad.any():
        return ReadBatch(batch, rows, rejects + runs, file)
    names = [name for name in CANONICAL.names if name in raw]
    bad = np.flatnonzero(verdict.bad)
    reasons = verdict.reasons[bad]
    full = np.array(detailed(reasons.tolist(), seen), dtype=np.bool_)
    for i, reason in zip(bad[full].tolist(), reasons[full].tolist(), strict=True):
        shown = fields_of(i) if fields_of is not None else {name: _cell(raw[name], i) for name in names}
        rejects.append(Reject(file, int(rows[i]), str(reason), masked(shown)))
    rejects.sort(key=lambda r: r.row)
    rejects += runs
    if not full.all():
        rejects += reject_runs(file, rows[bad[~full]], reasons[~full])
    keep = ~verdict.bad
    return ReadBatch(batch.filter(pa.array(keep)), rows[keep], rejects, file)


class Refused:
    """Rows a parser refused before their batch is handed on (pyarrow reports them
    from its own thread, a block ahead), kept compact: a row number and the code of
    a reason (an index in :attr:`reasons`) each, 12 bytes a row however many there
    are. :meth:`take` makes them rejects, past the first
    :data:`~telemetry.quarantine.FULL_REJECTS` of a reason a :class:`RejectRun`, as
    :func:`split` does."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.reasons: list[str] = []  # each distinct reason once, by code
        self._codes: dict[str, int] = {}
        self._rows = array("q")
        self._reason_codes = array("i")

    def code(self, reason: str) -> int:
        """The code of ``reason``."""
        code = self._codes.get(reason)
        if code is None:
            code = self._codes[reason] = len(self.reasons)
            self.reasons.append(reason)
        return code

    def add(self, row: int, reason: str) -> None:
        self._rows.append(row)
        self._reason_codes.append(self.code(reason))

    def take(self) -> list[Reject | RejectRun]:
        """The rows refused so far, in row order; forgotten here."""
        return compact(self.file, *self.pop(), self.reasons)

    def pop(self, below: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers and reason codes of the rows refused so far, as added, those
        numbered ``below`` or more (None: none) kept; forgotten here."""
        rows = np.array(self._rows, dtype=np.int64)
        codes = np.array(self._reason_codes, dtype=np.int32)
        early = rows < below if below is not None else np.ones(len(rows), np.bool_)
        self._rows = array("q", rows[~early].tobytes())
        self._reason_codes = array("i", codes[~early].tobytes())
        return rows[early], codes[early]


def compact(file: str, rows: np.ndarray, codes: np.ndarray, reasons: Sequence[str]) -> list[Reject | RejectRun]:
    """Rejects without fields for ``rows`` (ascending) refused for ``reasons[codes]``:
    the first :data:`~telemetry.quarantine.FULL_REJECTS` of a reason as a
    :class:`Reject` (as :func:`~telemetry.quarantine.detailed` has it), the others as
    one :class:`RejectRun` per reason (as :func:`reject_runs` has it), after them."""
    full = np.zeros(len(rows), np.bool_)
    for code in np.unique(codes).tolist():
        full[np.flatnonzero(codes == code)[:FULL_REJECTS]] = True
    out: list[Reject | RejectRun] = [
        Reject(file, row, reasons[code], {}) for row, code in zip(rows[full].tolist(), codes[full].tolist())
    ]
    late, late_codes = rows[~full], codes[~full]
    found, first = np.unique(late_codes, return_index=True)
    for code in found[np.argsort(first)].tolist():  # in order of first appearance
        out.append(RejectRun(file, reasons[code], late[late_codes == code]))
    return out


# -- per kind ---------------------------------------------------------------------------------


def _text(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    """Text as ``string``, empty → null. Binary input is checked for UTF-8 here."""
    if pa.types.is_dictionary(raw.type):
        raw = raw.dictionary_decode()
    text = pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)
    if text or pa.types.is_binary(raw.type) or pa.types.is_large_binary(raw.type):
        # Arrow does not check that string data it reads (Parquet pages, JSON) is
        # UTF-8: check it as bytes — ASCII at a glance, else one vectorized cast
        # unless a row is bad
        large = pa.types.is_large_string(raw.type) or pa.types.is_large_binary(raw.type)
        views = string_views(raw)
        if _ascii(views):
            raw = raw.view(pa.large_string() if large else pa.string())
        else:
            raw = _utf8(raw.view(pa.large_binary() if large else pa.binary()), name, verdict)
            views = string_views(raw)
        empty = (views.offsets[1:] == views.offsets[:-1]) & views.valid
    else:
        try:
            raw = pc.cast(raw, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            verdict.flag(raw.is_valid(), f"{name}: wrong type")
            return pa.nulls(len(raw), pa.string())
        empty = as_mask(pc.equal(raw, EMPTY_TEXT))
    if empty.any():
        raw = pc.if_else(pa.array(empty), NULL_TEXT, raw)
    return raw


def _ascii(views: StringViews) -> bool:
    """Whether a string array's bytes are all ASCII (and so UTF-8)."""
    from kernels.fields import ascii_only

    if not len(views.offsets) or views.offsets[0] == views.offsets[-1]:
        return True
    return bool(ascii_only(views.data, int(views.offsets[0]), int(views.offsets[-1])))


def _dictionary_text(raw: pa.Array, name: str, verdict: Verdict) -> pa.DictionaryArray:
    """:func:`_text`, dictionary-encoded. A dictionary as read (Parquet's dictionary
    pages) is checked once per distinct value and kept, not decoded per row; other
    input (a column of another type beside dictionary ones) is encoded."""
    if not pa.types.is_dictionary(raw.type):
        return pc.dictionary_encode(_text(raw, name, verdict))
    words = Verdict(len(raw.dictionary))
    dictionary = _text(raw.dictionary, name, words)
    indices = raw.indices
    if dictionary.null_count:  # empty or unreadable values: their rows become null
        rows = validity(indices)
        entries = filled_values(indices, np.int64, 0)
        for reason in set(words.reasons[words.bad].tolist()):
            verdict.flag(rows & (words.bad & (words.reasons == reason))[entries], reason)
        gone = rows & ~validity(dictionary)[entries]
        indices = pc.if_else(pa.array(gone), pa.nulls(1, indices.type)[0], indices)
        dictionary = dictionary.fill_null(EMPTY_TEXT)  # no row points at these any more
    return pa.DictionaryArray.from_arrays(indices, dictionary.cast(pa.string()))


def _utf8(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    try:
        return pc.cast(raw, pa.string())
    except pa.ArrowInvalid:
        pass
    bad = np.zeros(len(raw), dtype=np.bool_)
    for i, value in enumerate(raw.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
    verdict.flag(bad, f"{name}: not valid UTF-8")
    return pc.cast(pc.if_else(pa.array(bad), pa.nulls(1, raw.type)[0], raw), pa.string())


def _is_utf8(words: pa.Array) -> bool:
    """False when text (string or binary) holds bytes that are not UTF-8."""
    if not (pa.types.is_string(words.type) or pa.types.is_large_string(words.type)
            or pa.types.is_binary(words.type) or pa.types.is_large_binary(words.type)):
        return True
    try:
        pc.cast(words.view(pa.large_binary() if pa.types.is_large_string(words.type) or
                           pa.types.is_large_binary(words.type) else pa.binary()), pa.string())
    except pa.ArrowInvalid:
        return False
    return True


def _cell(column: pa.Array, i: int) -> Any:
    """Row ``i`` of ``column`` as Python; text that is not UTF-8 with replacement characters."""
    try:
        return column[i].as_py()
    except UnicodeDecodeError:
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        text = column.view(pa.binary() if pa.types.is_string(column.type) else pa.large_binary())
        return text[i].as_py().decode("utf-8", "replace")


def _trimmed(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    return pc.utf8_trim_whitespace(_text(raw, name, verdict))


def _time(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    if pa.types.is_timestamp(raw.type):
        if raw.type.tz is None:  # a naive time is UTC
            raw = pc.cast(raw, pa.timestamp("us"), safe=False)
        return pc.cast(raw, TS, safe=False)
    text = _trimmed(raw, name, verdict)
    if _with_seconds(text):
        try:  # every time zoned ISO 8601 (the common case): one vectorized cast
            return pc.cast(text, TS)
        except pa.ArrowInvalid:
            pass  # a naive, impossible or odd time: the general path finds the rows
    reason = f"{name}: not an ISO 8601 time or epoch seconds"
    epoch = pc.fill_null(pc.match_substring_regex(text, _EPOCH), NO)
    iso = pc.fill_null(pc.match_substring_regex(text, _ISO), NO)
    verdict.flag(as_mask(text.is_valid()) & ~as_mask(epoch) & ~as_mask(iso), reason)

    iso_text = pc.if_else(iso, text, NULL_TEXT)
    iso_text = pc.replace_substring_regex(iso_text, r"^(\d{4}-\d{2}-\d{2}) ", r"\1T")
    iso_text = pc.replace_substring_regex(iso_text, r"(\.\d{6})\d+", r"\1")
    iso_text = pc.replace_substring_regex(iso_text, r"z$", "Z")
    zoned = pc.fill_null(pc.match_substring_regex(iso_text, _ZONE), NO)
    with_zone, bad_z = _cast(pc.if_else(zoned, iso_text, NULL_TEXT), TS)
    naive, bad_n = _cast(
        pc.if_else(zoned, NULL_TEXT, iso_text), pa.timestamp("us")
    )
    verdict.flag(bad_z | bad_n, reason)
    result = pc.if_else(zoned, with_zone, pc.cast(naive, TS))

    if pc.any(epoch).as_py():
        seconds = pc.cast(pc.if_else(epoch, text, NULL_TEXT), pa.float64())
        micros = pc.cast(pc.round(pc.multiply(seconds, _MICROS)), pa.int64())
        result = pc.if_else(epoch, pc.cast(micros, TS), result)
    return result


def _int(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    target, low, high = INTS[name]
    if pa.types.is_integer(raw.type):
        lo, hi = _bounds(raw, low)
        if lo >= low and (high is None or hi <= high):
            return pc.cast(raw, target)  # typed input within range: nothing to check per row
        values, failed = _cast(raw, pa.int64())
        verdict.flag(failed, f"{name}: out of range")
    elif pa.types.is_floating(raw.type):
        whole = pc.fill_null(pc.equal(pc.floor(raw), raw), YES)
        verdict.flag(~as_mask(whole), f"{name}: not an integer")
        values, failed = _cast(pc.if_else(whole, raw, pa.nulls(1, raw.type)[0]), pa.int64())
        verdict.flag(failed, f"{name}: out of range")
    else:
        text = _trimmed(raw, name, verdict)
        plain = _digits(text)
        if plain is not None:
            values = plain
        else:
            ok = pc.fill_null(pc.match_substring_regex(text, _INT), YES)
            verdict.flag(~as_mask(ok), f"{name}: not an integer")
            values, failed = _cast(pc.if_else(ok, text, NULL_TEXT), pa.int64())
            verdict.flag(failed, f"{name}: out of range")
    too_low = pc.fill_null(pc.less(values, _BOUNDS[name][0]), NO)
    verdict.flag(too_low, f"{name}: negative" if low == 0 else f"{name}: out of range")
    out_of_range = too_low
    if high is not None:
        too_high = pc.fill_null(pc.greater(values, _BOUNDS[name][1]), NO)
        verdict.flag(too_high, f"{name}: out of range")
        out_of_range = pc.or_(too_low, too_high)
    return pc.cast(pc.if_else(out_of_range, NULL_INT, values), target)


def _float(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    low, high = FLOATS[name]
    if pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type):
        lo, hi = _bounds(raw, low)
        # NaN and ±inf show in the minimum or maximum: finite bounds mean finite values
        if math.isfinite(lo) and math.isfinite(hi) and lo >= low and hi <= high:
            # typed input within range: nothing to check per row (integers beyond 2^24 round)
            return pc.cast(raw, pa.float32(), safe=False)
        values = pc.cast(raw, pa.float64(), safe=False)
    else:
        text = _trimmed(raw, name, verdict)
        values = _decimals(text)
        if values is None:
            ok = pc.fill_null(pc.match_substring_regex(text, _FLOAT), YES)
            verdict.flag(~as_mask(ok), f"{name}: not a number")
            values, failed = _cast(pc.if_else(ok, text, NULL_TEXT), pa.float64())
            verdict.flag(failed, f"{name}: not a number")
    bad = pc.invert(pc.is_finite(values))
    bad = pc.or_(bad, pc.less(values, _FLOAT_BOUNDS[name][0]))
    bad = pc.or_(bad, pc.greater(values, _FLOAT_BOUNDS[name][1]))
    bad = pc.fill_null(bad, NO)
    verdict.flag(bad, f"{name}: out of range")
    return pc.cast(pc.if_else(bad, NULL_FLOAT, values), pa.float32())


def _bounds(raw: pa.Array, low: float) -> tuple[Any, Any]:
    """Minimum and maximum of a typed numeric column whose nulls read as ``low`` (in
    range; ``(low, low)`` when there are no rows), from the buffers: Arrow's min_max
    and fill_null each walk the validity bitmap (0.8 ms per 262,144 rows)."""
    if len(raw) == 0:
        return low, low
    values = numeric_values(raw)
    if raw.null_count:  # in NumPy, in the column's own type (half floats included, which kernels lack)
        valid = validity(raw)
        values = values * valid + ~valid * values.dtype.type(low)  # np.where is 10x slower
    return values.min(), values.max()


def _bool(raw: pa.Array, name: str, verdict: Verdict) -> pa.Array:
    if pa.types.is_boolean(raw.type):
        return raw
    text = pc.utf8_lower(_trimmed(raw, name, verdict))
    true = pc.is_in(text, _TRUE_WORDS)
    false = pc.is_in(text, _FALSE_WORDS)
    verdict.flag(
        as_mask(text.is_valid()) & ~as_mask(true) & ~as_mask(false), f"{name}: not true or false"
    )
    return pc.if_else(true, YES, pc.if_else(false, NO, NULL_BOOL))


def _vocabulary(raw: pa.Array, name: str, verdict: Verdict) -> pa.DictionaryArray:
    vocabulary, aliases = VOCABULARIES[name]
    dictionary = pa.types.is_dictionary(raw.type)
    if dictionary and not _is_utf8(raw.dictionary):
        dictionary, raw = False, raw.dictionary_decode()  # find the rows holding a bad word
    encoded = raw if dictionary else pc.dictionary_encode(_text(raw, name, verdict))
    words = encoded.dictionary
    if not (pa.types.is_string(words.type) or pa.types.is_large_string(words.type)):
        words = _text(words, name, Verdict(len(words)))  # non-text words simply do not match
    lookup = np.array(
        [_word_index(w, vocabulary, aliases) for w in words.to_pylist()], dtype=np.int32
    )
    # per row through Arrow's take (a null row stays null): NumPy would need the indices'
    # nulls filled first, which costs more than the rest together
    unknown = lookup == -1
    if unknown.any():
        verdict.flag(pa.array(unknown).take(encoded.indices), f"{name}: not a known {name} value")
    codes = pa.array(lookup, mask=lookup < 0, type=pa.int32())  # empty and unknown words: null
    return pa.DictionaryArray.from_arrays(codes.take(encoded.indices), _WORDS[name])


def _word_index(word: str | None, vocabulary: tuple[str, ...], aliases: dict[str, str]) -> int:
    """Index in ``vocabulary``; -2 for an empty word (null), -1 for an unknown one."""
    if word is None:
        return -2
    key = fold(word)
    if not key:
        return -2
    canonical = aliases.get(key)
    return vocabulary.index(canonical) if canonical is not None else -1


def _fill_dictionary(array: pa.DictionaryArray, index: int) -> pa.DictionaryArray:
    indices = array.indices.fill_null(index)
    return pa.DictionaryArray.from_arrays(indices, array.dictionary)


# -- helpers ----------------------------------------------------------------------------------


def _cast(array: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """``array`` cast to ``target``; rows that fail become null and are marked."""
    try:
        return pc.cast(array, target), np.zeros(len(array), dtype=np.bool_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(array) == 1:
            return pa.nulls(1, target), np.ones(1, dtype=np.bool_)
    half = len(array) // 2
    left, bad_left = _cast(array.slice(0, half), target)
    right, bad_right = _cast(array.slice(half), target)
    return pa.concat_arrays([left, right]), np.concatenate([bad_left, bad_right])


def _plain(text: pa.Array, kernel: Callable, target: pa.DataType) -> pa.Array | None:
    """``text`` (``string``) read by a :mod:`kernels.fields` kernel into int64 values of
    ``target``, nulls kept; None when a row is not in the kernel's form."""
    views = string_views(text)
    values = np.zeros(len(text), np.int64)
    if not kernel(views.offsets, views.data, views.valid, values):
        return None
    return fixed_width(target, values, views.valid)


def _digits(text: pa.Array) -> pa.Array | None:
    """``text`` as int64 when every value is plain ASCII digits (the common case,
    read without a regex), else None."""
    from kernels.fields import plain_uints

    if pa.types.is_string(text.type):
        read = _plain(text, plain_uints, pa.int64())
        if read is not None:
            return read  # 1 to 18 digits each: what the cast below reads alike
    if pc.all(pc.ascii_is_decimal(text)).as_py() is False:
        return None
    try:
        return pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # beyond int64


def _with_seconds(text: pa.Array) -> bool:
    """Whether every value has ``:`` at offsets 13 and 16 and 20 bytes or more: what
    Arrow's zoned ISO 8601 cast then accepts, the general path reads alike (Arrow
    also takes ``hh:mm`` without seconds, which that path rejects). Byte checks, no
    regex."""
    views = string_views(text)
    starts = views.offsets[:-1][views.valid].astype(np.int64)
    lengths = np.diff(views.offsets)[views.valid]
    if len(starts) == 0 or lengths.min() < 20:
        return len(starts) == 0
    colon = ord(":")
    at = views.data
    return bool((at[starts + 13] == colon).all() and (at[starts + 16] == colon).all())


def _decimals(text: pa.Array) -> pa.Array | None:
    """``text`` as float64 when Arrow's parser reads every value as a finite number
    (the common case, read without a regex), else None: Arrow reads no finite number
    that :data:`_FLOAT` does not describe, and ``nan`` or ``inf`` go the regex's way."""
    try:
        values = pc.cast(text, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return values if pc.all(pc.is_finite(values)).as_py() is not False else None


@functools.lru_cache(maxsize=None)
def _scale(factor: int) -> pa.Scalar:
    return pa.scalar(factor, pa.int64())


@functools.lru_cache(maxsize=None)
def _real(value: float) -> pa.Scalar:
    return pa.scalar(float(value))


def as_mask(mask: Any) -> np.ndarray:
    """A boolean mask (NumPy, Arrow, chunked; null is False) as a NumPy bool array."""
    if isinstance(mask, np.ndarray):
        return mask.astype(np.bool_, copy=False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if isinstance(mask, pa.Array):
        return np.asarray(mask.fill_null(NO).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.asarray(mask, dtype=np.bool_)


# -- vendor text formats (headerless or vendor-headed CSV, local times) -------------------------

_NAIVE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$"
_SURROGATE = re.compile("[\udc80-\udcff]")
_REPLACEMENT = "\ufffd"
_UNSIGNED = r"^\+?\d+$"
_DECIMAL = r"^\+?(\d+(\.\d*)?|\.\d+)$"


# a missing status is derived from these (SPEC 2.1), so a job using status needs them read
_STATUS_FROM = ("sip_code", "q850_cause", *PROGRESS)


def wanted(options: Any, name: str) -> bool:
    """Whether the caller needs canonical column ``name`` (:attr:`ReaderOptions.columns`,
    ``start_time``, and what a status is derived from): a vendor reader neither reads
    nor checks the others."""
    columns = getattr(options, "columns", None)
    return (
        columns is None
        or name in columns
        or name == "start_time"
        or (name in _STATUS_FROM and "status" in columns)
    )


def setting(options: Any, fmt: str, name: str, default: Any = None) -> Any:
    """A vendor reader's setting: ``options.extra[fmt][name]``, else ``options.extra[name]``
    (one ``--timezone`` serves every format), else ``default``."""
    extra = getattr(options, "extra", None) or {}
    own = extra.get(fmt)
    if isinstance(own, Mapping) and own.get(name) is not None:
        return own[name]
    value = extra.get(name)
    return default if value is None else value


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA zone Arrow knows, else :class:`ConfigError`."""
    from telemetry.errors import ConfigError

    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone=str(name))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        raise ConfigError(
            f"unknown time zone {name!r}; pass an IANA name such as Europe/London or UTC"
        ) from None
    return str(name)


def local_time(raw: pa.Array, name: str, verdict: Verdict, timezone: str) -> pa.Array:
    """Times without a zone (``YYYY-MM-DD hh:mm:ss[.ffffff]``) read as wall-clock time in
    ``timezone`` (in a DST fold the earlier instant; a time in a DST gap becomes
    the instant the gap ends); zoned ISO times and epoch seconds as :func:`to_canonical` reads them.
    Returns ``timestamp[us, UTC]``; unreadable or impossible times are flagged."""
    wall = _wall_clock(_text(raw, name, verdict))
    if wall is not None:
        return _in_zone(wall, timezone)
    text = _trimmed(raw, name, verdict)
    naive = pc.fill_null(pc.match_substring_regex(text, _NAIVE), NO)
    other = _time(pc.if_else(naive, NULL_TEXT, text), name, verdict)
    if not pc.any(naive).as_py():
        return other
    iso = pc.replace_substring_regex(
        pc.if_else(naive, text, NULL_TEXT), r"^(\d{4}-\d{2}-\d{2}) ", r"\1T"
    )
    wall, bad = _cast(iso, pa.timestamp("us"))
    verdict.flag(bad, f"{name}: not a valid date and time")
    return pc.if_else(naive, _in_zone(wall, timezone), other)


def _wall_clock(text: pa.Array) -> pa.Array | None:
    """``text`` as naive ``timestamp[us]`` when every value is a valid
    ``YYYY-MM-DD[T ]hh:mm:ss[.ffffff]`` (the common case, read without a regex: Arrow's
    ISO 8601 cast takes no other form of 19 characters or more into a naive time), else None."""
    from kernels.fields import wall_clock

    if len(text) == text.null_count:
        return pa.nulls(len(text), pa.timestamp("us"))
    if pa.types.is_string(text.type):
        read = _plain(text, wall_clock, pa.timestamp("us"))
        if read is not None:
            return read  # every value ``YYYY-MM-DD hh:mm:ss``: what the cast below reads alike
    if pc.min(pc.binary_length(text)).as_py() < 19:
        return None
    try:
        return pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _in_zone(wall: pa.Array, timezone: str) -> pa.Array:
    if timezone == "UTC":
        return pc.cast(wall, TS)
    zoned = pc.assume_timezone(wall, timezone=timezone, ambiguous="earliest", nonexistent="latest")
    return pc.cast(zoned, TS)


def milliseconds(raw: pa.Array, name: str, verdict: Verdict, scale: int) -> pa.Array:
    """A non-negative count (``scale`` 1000 for whole or decimal seconds, 1 for
    milliseconds) as int64 milliseconds; ``name`` is the vendor column in reasons."""
    plain = _digits(_text(raw, name, verdict))
    if plain is not None:
        top = pc.max(plain).as_py()
        if top is None or top <= 2**53 / scale:
            return plain if scale == 1 else pc.multiply(plain, _scale(scale))
    text = _trimmed(raw, name, verdict)
    pattern = _DECIMAL if scale > 1 else _UNSIGNED
    ok = pc.fill_null(pc.match_substring_regex(text, pattern), YES)
    negative = pc.fill_null(pc.match_substring_regex(text, r"^-\s*(\d+(\.\d*)?|\.\d+)$"), NO)
    verdict.flag(negative, f"{name}: negative")
    verdict.flag(~as_mask(ok), f"{name}: not a number")
    values, failed = _cast(pc.if_else(ok, text, NULL_TEXT), pa.float64())
    verdict.flag(failed, f"{name}: not a number")
    huge = pc.fill_null(pc.greater(values, _real(2**53 / scale)), NO)
    verdict.flag(huge, f"{name}: out of range")
    values = pc.if_else(huge, NULL_FLOAT, values)
    return pc.cast(pc.round(pc.multiply(values, _real(scale))), pa.int64())


def csv_records(
    path: str, delimiter: str = ",", *, utf8: bool = True
) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(record number, fields, None)`` per CSV record of a vendor file, or
    ``(record number, None, reason)`` for one that cannot be parsed. Numbers are
    1-based over non-blank records, so every record is counted once; a quoted
    field may span lines. Invalid UTF-8 and broken quoting reject that record
    only; an unterminated quote at the end (a file still being written) rejects
    the last record. Memory is bounded by the csv module's field size limit.
    ``utf8=False`` leaves invalid UTF-8 to the caller (as lone surrogates, see
    :func:`not_utf8`), which may look only at the fields it reads."""
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        number = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                text = str(exc)
                if "unexpected end of data" in text:
                    reason = "unterminated quoted field"
                elif "field larger" in text:
                    reason = "field longer than the CSV field size limit"
                else:
                    reason = "malformed CSV quoting"
                yield number, None, reason
                continue
            except OSError as exc:
                raise InputError(f"{path}: read error after record {number}: {exc.strerror}")
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line is not a record
            number += 1
            if number == 1 and fields[0].startswith("\ufeff"):
                fields[0] = fields[0][1:]
            if utf8 and any(not f.isascii() and _SURROGATE.search(f) for f in fields):
                yield number, None, "not valid UTF-8"
                continue
            yield number, fields, None


def not_utf8(field: str) -> bool:
    """Whether a field read by :func:`csv_records` (``utf8=False``) or from a stream
    repaired with U+FFFD held bytes that are not UTF-8."""
    return not field.isascii() and (_REPLACEMENT in field or _SURROGATE.search(field) is not None)


#: The reject reason of a JSON record with a string that is not Unicode text.
LONE_SURROGATE = "a string holds a lone surrogate escape (\\ud800-\\udfff), not text"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def surrogate_escape(raw: bytes) -> bool:
    """Whether JSON text ``raw`` has a ``\\uD800``-``\\uDFFF`` escape: the only way a
    parsed value can hold a lone surrogate (check it with :func:`lone_surrogate`)."""
    return _SURROGATE_ESCAPE.search(raw) is not None


def lone_surrogate(value: Any) -> bool:
    """Whether parsed JSON ``value`` holds a string (or key) with a lone UTF-16 surrogate:
    valid JSON syntax (RFC 8259 section 8.2) that Python accepts and no UTF-8 encoder
    takes. The walk keeps its own stack (json.loads nests deeper than recursion may)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def converted(items: Iterator[Any], convert: Callable[[Any, Counter[str]], Any]) -> Iterator[Any]:
    """``convert(item, seen)`` for each parsed block of one file, in order, on a second
    thread while the next blocks are parsed (:func:`telemetry.ordered.ordered_map`).
    ``seen``: the file's rejects per reason so far, one count for all its blocks (they
    are converted one after another), for :func:`split`: only the file's first
    FULL_REJECTS of a reason are described."""
    from telemetry.ordered import ordered_map

    seen: Counter[str] = Counter()
    return ordered_map(lambda item: convert(item, seen), items, name="telemetry-convert")


def blocks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size``."""
    block: list[Any] = []
    for item in items:
        block.append(item)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


def first_csv_record(head: bytes) -> list[str] | None:
    """The first CSV record of a file's first bytes (for sniffers), or None."""
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").lstrip("\r\n")
    try:
        return next(csv.reader(text.splitlines()[:1]), None)
    except csv.Error:
        return None
