"""Vendor CSV files (Asterisk, FreeSWITCH, Kamailio) streamed as blocks of text columns.

The file is read in ranges, two side by side on worker threads. A range as CDR
writers write it — records of one width ending in ``\n``, fields bare or quoted
with quotes doubled, only ASCII in the fields a reader keeps — is split by
:func:`kernels.csvscan.scan` and its kept fields copied straight into ``string``
columns, a pass over its bytes or two. Any other range goes through pyarrow, as
follows, and reads exactly as it did before the scan existed.

pyarrow's CSV reader splits the file in C — ranges of it on two worker threads,
while the caller converts what came before — and builds only the columns a reader
maps, as ``string`` arrays: no Python runs per well-formed record. The records it
cannot put in a column — another width (an Asterisk file may mix them), blank
lines, a quote still open at the end of the file — reach ``invalid_row_handler``
with their text and are sorted out here, reparsed with the csv module or rejected
with the reasons of :func:`_convert.csv_records`. Whatever pyarrow cannot skip at
all (a record larger than a block) hands the rest of the file, from the first
record not yet accounted for, to csv_records.

Record numbers follow csv_records: 1-based over non-blank records, a quoted
newline does not start a record, a header is not a record. pyarrow counts every
record it sees, blank-looking ones included, so its numbers are mapped onto these.

Bytes that are not UTF-8 are replaced by U+FFFD on the way in (pyarrow decodes the
text of a record it skips and gives up on the file when that fails), and a record
with U+FFFD in a field the reader reads is rejected as ``not valid UTF-8`` (as in
the canonical CSV reader); the csv-module path rejects the same records. Free-text
fields a reader never maps are never decoded, so their bytes do not matter.

MySQL's own tab-separated text (``mysql -B``, ``SELECT … INTO OUTFILE``: never quoted,
backslash escapes, its NULL marker) is read by :func:`mysql_records`, in pieces that end at
a line feed no backslash escapes: pyarrow splits a piece with no backslash, quoting off;
:func:`mysql_text` reads any other piece record by record.

Known difference from the csv module: text after a closing quote (``"ab"cd``)
joins the field, as pyarrow reads it, where the csv module rejects the record
(``malformed CSV quoting``); only a broken file shows it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.arrowstr import bitmap
from telemetry.errors import InputError
from telemetry.readers import Reject, RejectRun, rejected
from telemetry.readers._convert import Refused, blocks, compact, csv_records, not_utf8
from telemetry.readers._stream import Utf8Stream

# Peak memory grows with the block and the range (a few ranges are in flight), not with
# the file. Blocks are joined up to _ROWS records before conversion, whose cost per call,
# not per record, favours long batches.
BLOCK_BYTES = 2 << 20
_RANGE_BLOCKS = 4  # blocks per range parsed by one worker
_ROWS = 16384
_SLOW_BLOCK = 16384  # records per block on the csv-module path
_REPLACEMENT = "\ufffd"
_EOF = "\x00telemetry: end of input\x00"  # told from the data by Utf8Stream.nul


@dataclass(frozen=True)
class Layout:
    """Where a reader's fields are. ``widths``: the record widths it accepts;
    ``fields(width)``: for a record of that width, each
    wanted key → its field index, or None when the width lacks it (read as
    empty); ``width_reason(found)``: the reject reason for any other width."""

    widths: tuple[int, ...]
    fields: Callable[[int], Mapping[str, int | None]]
    width_reason: Callable[[int], str]


@dataclass
class Records:
    """One block of a file: the wanted fields of its well-formed records as ``string``
    columns (by key; an empty field is null), their record numbers, and the records
    rejected on the way, in :func:`_convert.compact` form (a flood of one reason costs
    8 bytes a record)."""

    columns: dict[str, pa.Array]
    rows: np.ndarray
    rejects: list[Reject | RejectRun]


def read_records(
    path: str,
    layout: Layout,
    *,
    delimiter: str = ",",
    header: bool = False,
    block_bytes: int | None = None,
) -> Iterator[Records]:
    """The records of a vendor CSV file, in order. pyarrow parses ranges of the file
    (:func:`_parallel`) in blocks of ``block_bytes`` (default :data:`BLOCK_BYTES`; a
    record must fit in one). ``header``: the first record names the columns and is
    neither returned nor counted."""
    block = block_bytes or BLOCK_BYTES
    start = _data_start(path, delimiter) if header else 0
    width = _usual_width(path, layout, delimiter, header)
    done = 0  # the last record number accounted for
    if start is not None and width > 1:
        parts = _parallel(path, layout, width, delimiter, start, block)
        try:
            for records in _joined(parts, _ROWS):
                done = max(done, _last_number(records))
                yield records
            return
        except _GiveUp:
            pass  # the rest of the file, from the first record not yet returned, goes slowly
        finally:
            parts.close()
    yield from slow_records(path, layout, delimiter=delimiter, header=header, after=done)


def _joined(parts: Iterator[Records], rows: int) -> Iterator[Records]:
    """``parts`` joined into Records of at least ``rows`` records, good or rejected (the
    last may hold fewer)."""
    held: list[Records] = []
    count = 0
    for part in parts:
        held.append(part)
        count += len(part.rows) + rejected(part.rejects)
        if count >= rows:
            yield _join(held)
            held, count = [], 0
    if held:
        yield _join(held)


def _join(parts: list[Records]) -> Records:
    if len(parts) == 1:
        return parts[0]
    columns = {key: pa.concat_arrays([p.columns[key] for p in parts]) for key in parts[0].columns}
    rows = np.concatenate([p.rows for p in parts])
    return Records(columns, rows, [r for p in parts for r in p.rejects])


# -- the csv-module path -------------------------------------------------------------------------


def slow_records(
    path: str, layout: Layout, *, delimiter: str = ",", header: bool = False, after: int = 0
) -> Iterator[Records]:
    """What :func:`read_records` gives, from the csv module alone (one record at a time
    in Python; records numbered ``after`` or below are skipped): the reference for
    the pyarrow path, and the rest of a file pyarrow gives up on."""
    records = csv_records(path, delimiter, utf8=False)
    if header:
        next(records, None)
        records = ((number - 1, fields, why) for number, fields, why in records)
    wanted = ((number, fields, why) for number, fields, why in records if number > after)
    for chunk in blocks(wanted, _SLOW_BLOCK):
        yield records_of(path, layout, chunk)


def records_of(
    path: str, layout: Layout, chunk: list[tuple[int, list[str] | None, str | None]]
) -> Records:
    """Records from csv_records items ``(number, fields, reason)``: the wanted fields
    of a record of an accepted width become columns; the other records, and those
    with bytes that are not UTF-8 in a wanted field, rejects."""
    columns, rows, refused = _sorted_out(path, layout, chunk)
    return Records(columns, rows, refused.take())


def _sorted_out(
    path: str, layout: Layout, chunk: list[tuple[int, list[str] | None, str | None]]
) -> tuple[dict[str, pa.Array], np.ndarray, Refused]:
    """:func:`records_of`'s columns and record numbers, and its rejects as refused rows."""
    refused = Refused(path)
    rows: list[int] = []
    values: dict[str, list[str]] = {key: [] for key in layout.fields(layout.widths[0])}
    by_width: dict[int, list[tuple[list[str], int | None]]] = {}
    for number, fields, reason in chunk:
        if fields is None:
            refused.add(number, str(reason))
            continue
        if len(fields) not in layout.widths:
            refused.add(number, layout.width_reason(len(fields)))
            continue
        where = by_width.get(len(fields))
        if where is None:
            index = layout.fields(len(fields))
            where = by_width[len(fields)] = [(values[key], index.get(key)) for key in values]
        wanted = [fields[i] if i is not None else "" for _, i in where]  # empty: null
        if any(not_utf8(field) for field in wanted):
            refused.add(number, "not valid UTF-8")
            continue
        rows.append(number)
        for (column, _), field in zip(where, wanted):
            column.append(field or None)
    columns = {key: pa.array(column, pa.string()) for key, column in values.items()}
    return columns, np.asarray(rows, np.int64), refused


# -- MySQL's tab-separated text ------------------------------------------------------------------

#: What LOAD DATA reads after the escape character; any other character (a backslash, a
#: tab, a line feed) stands for itself. MySQL Reference Manual, "LOAD DATA Statement".
_MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_MYSQL_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def mysql_records(
    path: str, layout: Layout, nulls: frozenset[str], *, header: bool = False, fast: bool = True
) -> Iterator[Records]:
    """What :func:`slow_records` gives, for MySQL's tab-separated text (:func:`mysql_text`),
    records of ``layout.widths[0]`` fields. The file is read in pieces of about
    :data:`BLOCK_BYTES` that end at a line feed no backslash escapes. A piece with no
    backslash, no carriage return, valid UTF-8 and only records of that width (a ``mysql
    -B`` export without escapes: the usual case) is split by pyarrow with quoting off and
    ``nulls`` as its null values; any other piece record by record as :func:`mysql_text`
    reads it (``fast=False``: every piece)."""
    width = layout.widths[0]
    number = 0  # records so far, the header included
    for piece in _mysql_pieces(path, BLOCK_BYTES):
        if header and not number:
            head, _, rest = piece.partition(b"\n")
            if b"\\" not in head and (b"\t" in head or head.strip()):
                number, piece = 1, rest  # a plain header line: the rest may be plain too
        records = None
        if fast and (number or not header):
            records = _mysql_block(layout, width, nulls, piece, number + 1)
        if records is None:
            items = [_mysql_record(n, raw, nulls) for n, raw in _mysql_lines(piece, number)]
            records = records_of(path, layout, items)
            count = len(items)
        else:
            count = len(records.rows)
        number += count
        if header:
            records = _renumbered(_without(records, 1), -1)
        if len(records.rows) or records.rejects:
            yield records


def _without(records: Records, row: int) -> Records:
    """``records`` without record number ``row`` (the header)."""
    keep = records.rows != row
    if keep.all():
        return Records(records.columns, records.rows, _dropped(records.rejects, row))
    mask = pa.array(keep)
    columns = {key: column.filter(mask) for key, column in records.columns.items()}
    return Records(columns, records.rows[keep], records.rejects)


def mysql_text(
    path: str, nulls: frozenset[str]
) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(record number, fields, None)`` per record of MySQL's tab-separated text, numbered
    as :func:`_convert.csv_records` numbers CSV records (``utf8=False``: bytes that are not
    UTF-8 become lone surrogates). Records end at a line feed and fields at a tab; nothing
    is quoted. A backslash escapes the next character: ``mysql -B`` writes a tab, line
    feed, NUL and backslash inside a value as ``\\t``, ``\\n``, ``\\0``, ``\\\\``
    (client/mysql.cc, ``safe_put_field``); ``SELECT … INTO OUTFILE`` puts a backslash
    before a tab, line feed or backslash and writes NUL as ``\\0``; both are read as LOAD
    DATA reads them. A field written exactly as one of ``nulls`` (``NULL`` from ``mysql
    -B``, ``\\N`` from INTO OUTFILE) is empty, i.e. null. A file ending inside an escaped
    line feed (still being written) rejects its last record."""
    number = 0
    for piece in _mysql_pieces(path, BLOCK_BYTES):
        for item in _mysql_lines(piece, number):
            number = item[0]
            yield _mysql_record(*item, nulls)


def _mysql_pieces(path: str, size: int) -> Iterator[bytes]:
    """The file in pieces of about ``size`` bytes, each ending just after a line feed that
    no backslash escapes; the last one at the end of the file."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    with handle:
        rest = b""
        while True:
            try:
                data = handle.read(size)
            except OSError as exc:
                raise InputError(f"{path}: read error: {exc.strerror}") from None
            if not data:
                if rest:
                    yield rest
                return
            data = rest + data
            cut = len(data)
            while (cut := data.rfind(b"\n", 0, cut)) >= 0:
                before = cut
                while before and data[before - 1] == 0x5C:  # backslashes before the line feed
                    before -= 1
                if (cut - before) % 2 == 0:
                    break
            rest = data[cut + 1 :]
            if cut >= 0:
                yield data[: cut + 1]


def _mysql_lines(piece: bytes, before: int) -> Iterator[tuple[int, bytes | None]]:
    """``(record number, the record's bytes without its line feed)`` of one piece, numbered
    after ``before``; None for a last record cut inside an escaped line feed (the file
    ends there). Blank lines are not records; the file's byte-order mark is dropped."""
    number = before
    pending: bytes | None = None
    lines = piece.split(b"\n")
    tail = lines.pop()  # after the last line feed: the file's unterminated last line, if any
    for line in lines:
        if pending is not None:
            line, pending = pending + b"\n" + line, None
        if line.endswith(b"\\") and (len(line) - len(line.rstrip(b"\\"))) % 2:
            pending = line  # an escaped line feed: the value goes on
            continue
        if b"\t" in line or line.strip():  # a blank line is not a record
            number += 1
            yield number, line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line
    if pending is not None:
        if not tail:
            yield number + 1, None
            return
        tail = pending + b"\n" + tail
    if b"\t" in tail or tail.strip():
        yield number + 1, tail.removeprefix(b"\xef\xbb\xbf") if number == 0 else tail


def _mysql_record(
    number: int, raw: bytes | None, nulls: frozenset[str]
) -> tuple[int, list[str] | None, str | None]:
    if raw is None:
        return number, None, "unterminated escaped line feed"
    return number, _mysql_fields(raw.decode("utf-8", "surrogateescape"), nulls), None


def _mysql_block(
    layout: Layout, width: int, nulls: frozenset[str], piece: bytes, first: int
) -> Records | None:
    """``piece`` split by pyarrow, its records numbered from ``first``, or None when it is
    not plain (see :func:`mysql_records`)."""
    import pyarrow.csv as pcsv

    if b"\\" in piece or b"\r" in piece or not piece.endswith(b"\n"):
        return None
    if piece.startswith(b"\n") or b"\n\n" in piece:
        return None  # pyarrow makes a blank line a row of nulls; it is no record
    try:
        piece.decode("utf-8")  # pyarrow's handler of an irregular row would decode it
    except UnicodeDecodeError:
        return None  # the csv-module path says which records are not UTF-8
    index = layout.fields(width)
    names = [f"f{i}" for i in range(width)]
    used = sorted({i for i in index.values() if i is not None})
    irregular: list[Any] = []
    try:
        table = pcsv.read_csv(
            io.BytesIO(piece),
            read_options=pcsv.ReadOptions(
                use_threads=False, block_size=len(piece) + 1, column_names=names
            ),
            parse_options=pcsv.ParseOptions(
                delimiter="\t",
                quote_char=False,
                escape_char=False,
                ignore_empty_lines=False,
                invalid_row_handler=lambda row: irregular.append(row) or "skip",
            ),
            convert_options=pcsv.ConvertOptions(
                include_columns=[names[i] for i in used],
                column_types={names[i]: pa.string() for i in used},
                strings_can_be_null=True,
                null_values=["", *sorted(nulls)],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if irregular:
        return None
    n = table.num_rows
    columns = {  # a field this width lacks is empty
        key: pa.nulls(n, pa.string()) if i is None else table[names[i]].combine_chunks()
        for key, i in index.items()
    }
    return Records(columns, np.arange(first, first + n, dtype=np.int64), [])


def _mysql_fields(body: str, nulls: frozenset[str]) -> list[str]:
    if "\\" not in body:
        fields = body.split("\t")
        if any(marker in body for marker in nulls):
            fields = ["" if field in nulls else field for field in fields]
        return fields
    fields, start, i = [], 0, 0
    while True:  # split at the tabs no backslash escapes
        tab = body.find("\t", i)
        slash = body.find("\\", i)
        if slash != -1 and (tab == -1 or slash < tab):
            i = slash + 2
            continue
        end = len(body) if tab == -1 else tab
        field = body[start:end]
        if field in nulls:
            fields.append("")
        elif "\\" in field:
            fields.append(_MYSQL_ESCAPE.sub(lambda m: _MYSQL_ESCAPES.get(m[1], m[1]), field))
        else:
            fields.append(field)
        if tab == -1:
            return fields
        start = i = tab + 1


# -- the pyarrow path ----------------------------------------------------------------------------


class _GiveUp(Exception):
    """pyarrow cannot go on with this file; the csv module takes over."""


class _Fast:
    """One range of a file through pyarrow: records of ``width`` fields become columns,
    the rest is sorted out from the text pyarrow hands to its invalid-row handler.
    Record numbers count from 1 in the range.

    Before the range, the stream puts a head row of empty fields, pyarrow's first
    good row (dropped here): pyarrow's streaming reader parses on, at open, until a
    block gives a good row, so a range of bad records would otherwise be parsed
    whole before the first batch; with it, each block comes back as a batch, and
    the records pyarrow skipped are sorted out block by block.

    After the range, the stream appends a line of its own (:data:`_EOF`, a quote and
    more delimiters than any width): outside a quote it is one more skipped record,
    recognized and dropped; inside a quote left open by the last record it closes
    the quote and joins that record, which is then rejected as unterminated (a file
    holding NUL bytes, as the sentinel does, goes to the csv module instead) — and
    :attr:`open_end` says the range ended inside a quoted field, :attr:`open_bytes`
    where that record began (bytes before the end)."""

    def __init__(
        self,
        path: str,
        layout: Layout,
        width: int,
        delimiter: str,
        span: tuple[int, int | None],
        block: int,
    ) -> None:
        import pyarrow.csv as pcsv

        self.path, self.layout, self.delimiter = path, layout, delimiter
        self.end_row = _EOF + '"' + delimiter * (width + 1)
        self.uncounted = False  # pyarrow skipped a record without its number
        self.numbers = _Numbers()
        self.refused = Refused(path)  # records rejected as pyarrow skipped them: its numbers
        self.extra: list[tuple[int, list[str], None]] = []  # records of another width, likewise
        self.open_end = False
        self.open_bytes: int | None = None  # the open last record's length, when known
        index = layout.fields(width)
        names = [f"f{i}" for i in range(width)]
        used = sorted({i for i in index.values() if i is not None})
        self.names = {key: (names[i] if i is not None else None) for key, i in index.items()}
        try:
            self.stream = Utf8Stream(
                path, span, ("\n" + self.end_row + "\n").encode(), head=(delimiter * (width - 1) + "\n").encode()
            )
            self.numbers.not_a_record(1)  # the head row
            self.head = True  # the head row is still to be dropped from the first batch
        except OSError as exc:
            raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
        self.reader: Any = None
        try:
            self.reader = pcsv.open_csv(
                self.stream,
                read_options=pcsv.ReadOptions(
                    use_threads=False, block_size=block, column_names=names
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=delimiter,
                    newlines_in_values=True,
                    ignore_empty_lines=True,
                    invalid_row_handler=self._skip,
                ),
                convert_options=pcsv.ConvertOptions(
                    include_columns=[names[i] for i in used],
                    column_types={names[i]: pa.string() for i in used},
                    strings_can_be_null=True,  # an empty field is null, quoted or not
                    null_values=[""],
                    check_utf8=False,  # the stream is valid UTF-8 by construction
                ),
            )
        except (pa.ArrowException, OSError):
            self.reader = None

    def _skip(self, row: Any) -> str:
        """pyarrow's handler of a record it skips: sorted out at once (pyarrow may parse
        the whole range before the first batch), a reject kept as its number and reason:
        not records at all, rejects with the csv_records reason, or records of another
        width to read in Python."""
        number, text = row.number, row.text
        if number is None or self.uncounted:
            self.uncounted = True  # numbering would be guesswork: _records gives up
            return "skip"
        self.numbers.skip(number)
        if text == self.end_row:
            self.numbers.not_a_record(number)
        elif _EOF in text:  # the last record, open at the end of the range
            opened = text[: text.index("\n" + _EOF)]
            self.open_bytes = None if self.stream.repaired else len(opened.encode())
            self.open_end = True
            self.refused.add(number, "unterminated quoted field")
        else:
            fields, reason = _parse(text, self.delimiter)
            if fields is None:
                self.refused.add(number, str(reason))
            elif not fields or (len(fields) == 1 and not fields[0].strip()):
                self.numbers.not_a_record(number)  # a blank line
            elif len(fields) not in self.layout.widths:
                self.refused.add(number, self.layout.width_reason(len(fields)))
            else:
                self.extra.append((number, fields, None))
        return "skip"

    def close(self) -> None:
        self.stream.close()
        self.reader = None  # it holds the handler, so this: no cycle left for the collector

    def blocks(self) -> Iterator[Records]:
        if self.reader is None:
            raise _GiveUp
        while True:
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowException, OSError):
                raise _GiveUp from None
            records = self._records(batch, final=False)
            if len(records.rows) or records.rejects:
                yield records
        records = self._records(None, final=True)
        if len(records.rows) or records.rejects:
            yield records

    def _records(self, batch: pa.RecordBatch | None, final: bool) -> Records:
        if self.stream.nul or self.uncounted:
            raise _GiveUp  # the data could hold the sentinel's text, or numbers are missing
        numbers = self.numbers
        if batch is not None and self.head:
            numbers.take(1)
            batch, self.head = batch.slice(1), False
        n = 0 if batch is None else batch.num_rows
        taken = numbers.take(n)
        frontier = numbers.frontier()
        if final:
            frontier = np.iinfo(np.int64).max
        extra = [e for e in self.extra if e[0] < frontier]
        self.extra = [e for e in self.extra if e[0] >= frontier]
        refused, refused_codes = self.refused.pop(frontier)

        columns: dict[str, pa.Array] = {}
        for key, name in self.names.items():
            if batch is None or name is None:
                columns[key] = pa.nulls(n, pa.string())  # a field this width lacks is empty
            else:
                columns[key] = batch.column(name)
        rows = numbers.ours(taken)
        bad, codes = [numbers.ours(refused)], [refused_codes]  # the block's rejects, in our numbers
        if n and not self.stream.ascii:
            columns, rows, replaced = _drop_replaced(columns, rows)
            bad.append(replaced)
            codes.append(np.full(len(replaced), self.refused.code("not valid UTF-8"), np.int32))
        if extra:
            ours = numbers.ours(np.array([number for number, _, _ in extra], np.int64)).tolist()
            extra = [(mine, f, none) for mine, (_, f, none) in zip(ours, extra)]
            side, side_rows, side_refused = _sorted_out(self.path, self.layout, extra)
            more, more_codes = side_refused.pop()
            ours_of = np.array([self.refused.code(r) for r in side_refused.reasons] or [0], np.int32)
            bad.append(more)
            codes.append(ours_of[more_codes])
            if len(side_rows):
                columns, rows = _merge(columns, rows, side, side_rows)
        numbers.prune(frontier)
        bad_rows = np.concatenate(bad)
        order = np.argsort(bad_rows, kind="stable")
        rejects = compact(self.path, bad_rows[order], np.concatenate(codes)[order], self.refused.reasons)
        return Records(columns, rows, rejects)


@dataclass
class _Range:
    """A parsed range: its records (numbered from 1) and how many; ``open_end`` when
    it ended inside a quoted field (so its end was no record boundary), with
    ``open_bytes`` the length of that last, open record (None: not known)."""

    parts: list[Records]
    count: int
    open_end: bool
    open_bytes: int | None

    def without_last(self) -> _Range:
        """The range without its last record (the open one, a reject)."""
        parts = [Records(p.columns, p.rows, _dropped(p.rejects, self.count)) for p in self.parts]
        return _Range(parts, self.count - 1, False, None)


def _parse_range(
    path: str, layout: Layout, width: int, delimiter: str, span: tuple[int, int | None], block: int
) -> _Range:
    regular = _scan_range(path, layout, width, delimiter, span, 2 * block * _RANGE_BLOCKS)
    if regular is not None:
        return regular
    fast = _Fast(path, layout, width, delimiter, span, block)
    try:
        parts = list(fast.blocks())
    finally:
        fast.close()
    count = max((_last_number(part) for part in parts), default=0)
    return _Range(parts, count, fast.open_end, fast.open_bytes)


_buffers = threading.local()  # each worker's bytes and field spans of its last range, reused


def _scan_range(
    path: str, layout: Layout, width: int, delimiter: str, span: tuple[int, int | None], limit: int
) -> _Range | None:
    """A range read by :func:`kernels.csvscan.scan`, or None when it is not regular
    or longer than ``limit`` bytes (pyarrow then reads it). Its fields are copied
    out, so the worker's buffer is reused for its next range: no fresh pages per range."""
    from kernels.csvscan import gather, scan

    data = _read_span(path, span, min(limit, (1 << 31) - 1))  # positions are int32
    if data is None:
        return None  # a range ending in an overlong record: pyarrow's blocks bound memory
    index = layout.fields(width)
    kept = sorted({i for i in index.values() if i is not None})
    column = np.full(width, -1, np.int64)
    column[kept] = np.arange(len(kept))
    spans = getattr(_buffers, "spans", None)
    if spans is None or spans[0].shape[0] != len(kept):
        spans = tuple(np.empty((len(kept), 1 << 14), np.int32) for _ in range(3))
    records, *spans = scan(data, ord(delimiter), column, width, *spans)
    _buffers.spans = starts, ends, sizes = spans
    if records < 0:
        return None
    lengths = sizes[:, :records].sum(axis=1, dtype=np.int64)
    bases = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    # in Arrow's memory pool, which keeps freed pages for the next range's columns
    offsets_buffer = pa.allocate_buffer(len(kept) * (records + 1) * 4)
    out_buffer = pa.allocate_buffer(int(lengths.sum()) + 8)
    offsets = np.frombuffer(offsets_buffer, np.int32).reshape(len(kept), records + 1)
    gather(data, starts, ends, sizes, records, bases, offsets, np.frombuffer(out_buffer, np.uint8))
    columns: dict[str, pa.Array] = {}
    for key, i in index.items():
        if i is None:
            columns[key] = pa.nulls(records, pa.string())  # a field this width lacks is empty
            continue
        c = int(column[i])
        present, nulls = bitmap(sizes[c, :records] != 0)  # an empty field is null, quoted or not
        size = (records + 1) * 4
        buffers = [present, offsets_buffer.slice(c * size, size), out_buffer.slice(bases[c], lengths[c])]
        columns[key] = pa.Array.from_buffers(pa.string(), records, buffers, null_count=nulls)
    rows = np.arange(1, records + 1, dtype=np.int64)
    return _Range([Records(columns, rows, [])], records, False, None)


def _read_span(path: str, span: tuple[int, int | None], limit: int) -> np.ndarray | None:
    """Bytes ``start`` to ``end`` (None: the end of the file) of the file, in this
    thread's reused buffer; None when they are more than ``limit``."""
    start, end = span
    try:
        with open(path, "rb", buffering=0) as handle:
            size = (os.fstat(handle.fileno()).st_size if end is None else end) - start
            if size > limit:
                return None
            buffer = getattr(_buffers, "data", None)
            if buffer is None or len(buffer) < size:
                buffer = _buffers.data = np.empty(max(size, 1 << 20), np.uint8)
            handle.seek(start)
            got = 0
            while got < size:
                count = handle.readinto(memoryview(buffer)[got:size])
                if not count:
                    break  # the file is shorter than it was
                got += count
            return buffer[:got]
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None


def _parallel(
    path: str, layout: Layout, width: int, delimiter: str, start: int, block: int
) -> Iterator[Records]:
    """The file's records in order, its ranges parsed side by side on worker threads
    (pyarrow parses without the GIL) while the caller converts what came before.

    Ranges end just after a line feed, which is a record boundary unless a quoted
    field runs across it; pyarrow then reports the range's last record open, with its
    text: that record is dropped and the next range parsed again from where it
    began. Each range numbers its records from 1; they are renumbered here, after
    the ranges before."""
    workers = min(2, os.cpu_count() or 1)
    spans = _spans(path, start, block * _RANGE_BLOCKS)
    args = (path, layout, width, delimiter)
    with ThreadPoolExecutor(workers, thread_name_prefix="telemetry-csv") as pool:
        pending: deque[tuple[tuple[int, int | None], Future[_Range]]] = deque()

        def ahead() -> None:
            span = next(spans, None)
            if span is not None:
                pending.append((span, pool.submit(_parse_range, *args, span, block)))

        for _ in range(workers + 1):
            ahead()
        before = 0
        try:
            while pending:
                (low, high), future = pending.popleft()
                got = future.result()
                if got.open_end and high is not None:
                    if got.open_bytes is None or high - got.open_bytes <= low:
                        raise _GiveUp  # not known where the record began, or it fills the range
                    if not pending:
                        ahead()
                    (_, after), later = pending.popleft()
                    later.cancel()  # it began inside that record
                    span = (high - got.open_bytes, after)
                    pending.appendleft((span, pool.submit(_parse_range, *args, span, block)))
                    got = got.without_last()
                ahead()
                for part in got.parts:
                    yield _renumbered(part, before)
                before += got.count
        finally:
            for _, future in pending:
                future.cancel()


def _spans(path: str, start: int, size: int) -> Iterator[tuple[int, int | None]]:
    """``(start, end)`` byte ranges of about ``size`` bytes, each ending just after a
    line feed; the last ends at the end of the file (None)."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    with handle:
        low = start
        while True:
            handle.seek(low + size)
            skipped = low + size
            while True:
                window = handle.read(1 << 16)
                if not window:
                    yield low, None
                    return
                cut = window.find(b"\n")
                if cut >= 0:
                    break
                skipped += len(window)
            high = skipped + cut + 1
            yield low, high
            low = high


def _renumbered(part: Records, before: int) -> Records:
    if not before:
        return part
    rejects = [
        replace(r, row=r.row + before) if isinstance(r, Reject) else replace(r, rows=r.rows + before)
        for r in part.rejects
    ]
    return Records(part.columns, part.rows + before, rejects)


def _dropped(rejects: list[Reject | RejectRun], row: int) -> list[Reject | RejectRun]:
    """``rejects`` without record number ``row``."""
    out: list[Reject | RejectRun] = []
    for r in rejects:
        if isinstance(r, Reject):
            if r.row != row:
                out.append(r)
        elif row in r.rows:
            if len(r.rows) > 1:
                out.append(replace(r, rows=r.rows[r.rows != row]))
        else:
            out.append(r)
    return out


def _parse(text: str, delimiter: str) -> tuple[list[str] | None, str | None]:
    """The fields of one record's text, or the csv_records reason it cannot be read."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "field larger" in str(exc):
            return None, "field longer than the CSV field size limit"
        return None, "malformed CSV quoting"
    if len(rows) > 1:
        return None, "malformed CSV quoting"  # the csv module splits it where pyarrow did not
    return (rows[0] if rows else []), None


def _drop_replaced(
    columns: dict[str, pa.Array], rows: np.ndarray
) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
    """The records without U+FFFD in a column, and the numbers of those with one."""
    bad = np.zeros(len(rows), dtype=np.bool_)
    for column in columns.values():
        bad |= np.asarray(pc.match_substring(column, _REPLACEMENT), dtype=np.bool_)
    if not bad.any():
        return columns, rows, rows[:0]
    keep = pa.array(~bad)
    return {k: c.filter(keep) for k, c in columns.items()}, rows[~bad], rows[bad]


def _merge(
    columns: dict[str, pa.Array], rows: np.ndarray, more: dict[str, pa.Array], more_rows: np.ndarray
) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Both sets of records, in record order."""
    all_rows = np.concatenate([rows, more_rows])
    order = np.argsort(all_rows, kind="stable")
    indices = pa.array(order)
    merged = {
        key: pa.concat_arrays([column, more[key]]).take(indices) for key, column in columns.items()
    }
    return merged, all_rows[order]


def _last_number(records: Records) -> int:
    last = int(records.rows[-1]) if len(records.rows) else 0
    return max([last] + [r.row if isinstance(r, Reject) else int(r.rows.max()) for r in records.rejects])


class _Numbers:
    """pyarrow's record numbers → csv_records numbers.

    pyarrow numbers every record it parses from 1; the good rows of a batch carry
    no number, so they are the numbers not skipped. pyarrow parses one block ahead,
    so skips may be known before the batch they precede is delivered: its reading
    thread calls :meth:`skip` and :meth:`not_a_record` while this thread takes
    numbers, hence the lock (without it a skip appended between a snapshot and its
    replacement was lost, and a NumPy view of the array refused the append)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = 1  # pyarrow number of the next good row, at the earliest
        self.skipped = array("q")  # skipped pyarrow numbers ≥ next, ascending
        self.blank: list[int] = []  # of those and earlier, the ones that are not records
        self.blank_before = 0  # pruned blank numbers (all below any number still to map)

    def skip(self, number: int) -> None:
        with self.lock:
            self.skipped.append(number)

    def not_a_record(self, number: int) -> None:
        with self.lock:
            self.blank.append(number)

    def take(self, n: int) -> np.ndarray:
        """pyarrow numbers of the next ``n`` good rows."""
        if not n:
            return np.zeros(0, np.int64)
        with self.lock:
            skipped = np.array(self.skipped, np.int64)
            if not len(skipped):
                taken = np.arange(self.next, self.next + n, dtype=np.int64)
            else:
                candidates = np.arange(self.next, self.next + n + len(skipped), dtype=np.int64)
                taken = candidates[~np.isin(candidates, skipped)][:n]
            self.next = int(taken[-1]) + 1
            self.skipped = array("q", skipped[skipped >= self.next].tobytes())
        return taken

    def frontier(self) -> int:
        """The pyarrow number of the next good row, given the skips known now: every
        skipped record below it can be returned without breaking record order."""
        with self.lock:
            skipped = np.array(self.skipped, np.int64)
        if not len(skipped):
            return self.next
        gaps = np.flatnonzero(skipped - np.arange(len(skipped)) != self.next)
        return self.next + (int(gaps[0]) if len(gaps) else len(skipped))

    def ours(self, numbers: np.ndarray) -> np.ndarray:
        with self.lock:
            blank = np.array(self.blank, np.int64)
        if not len(blank):
            return numbers - self.blank_before
        return numbers - self.blank_before - np.searchsorted(blank, numbers)

    def prune(self, frontier: int) -> None:
        """Forget what only numbers below ``frontier`` (all returned) needed: the next
        good row is at or past it (a run of skipped records no good row ends yet)."""
        with self.lock:
            if self.skipped and self.skipped[0] < frontier:
                skipped = np.array(self.skipped, np.int64)
                self.skipped = array("q", skipped[skipped >= frontier].tobytes())
            self.next = max(self.next, frontier)
            below = [b for b in self.blank if b < frontier]
            if below:
                self.blank_before += len(below)
                self.blank = self.blank[len(below) :]


# -- where the data starts, and its usual width ----------------------------------------------------


def _data_start(path: str, delimiter: str) -> int | None:
    """Byte offset just past the header (the first record csv_records does not take
    for blank), or None when that record is not one whole line — the csv module then
    reads the file."""
    try:
        with open(path, "rb") as handle:
            offset = 0
            while True:
                line = handle.readline(1 << 20)
                if not line.endswith(b"\n"):
                    return None
                offset += len(line)
                text = line.decode("utf-8", "surrogateescape")
                fields, reason = _parse(text, delimiter)
                if reason is not None or "\r" in text[:-2] or text.count('"') % 2:
                    return None
                if fields and (len(fields) > 1 or fields[0].strip()):
                    return offset
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None


def _usual_width(path: str, layout: Layout, delimiter: str, header: bool) -> int:
    """The most common accepted width among the first hundred records: the one pyarrow
    splits into columns (records of the other widths go through Python)."""
    if len(layout.widths) == 1:
        return layout.widths[0]
    records = csv_records(path, delimiter)
    try:
        if header:
            next(records, None)
        widths = Counter(
            len(fields)
            for _, (_, fields, _) in zip(range(100), records, strict=False)
            if fields is not None and len(fields) in layout.widths
        )
    finally:
        records.close()
    return widths.most_common(1)[0][0] if widths else layout.widths[0]


def write_voice_lines(
    batches: Iterator[pa.RecordBatch], path: str, line: Callable[[dict, int], str], header: str = ""
) -> int:
    """Write the voice records of ``batches`` as ``line(row, n)`` (n counts from 1)
    after ``header``; message records have no form in a call-only format and are
    skipped. Returns the records written."""
    from telemetry.schema import VOICE_CHANNELS

    written = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(header)
        for batch in batches:
            for row in batch.to_pylist():
                if row["channel"] in VOICE_CHANNELS:
                    written += 1
                    out.write(line(row, written))
    return written
