"""The canonical formats: Parquet, CSV with a header row, JSON lines.

Column names are the SPEC's (CSV headers are matched case-insensitively after
trimming); other columns are not read at all, so free text never enters the
process. Row numbers are 1-based data rows: for CSV the header does not count
and a quoted field may span lines; for JSON lines the row is the line number and
blank lines are not records; for Parquet it is the row's position in the file.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import threading
from collections import Counter
from collections.abc import Iterator
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.errors import InputError
from telemetry.readers import (
    Piece, RawPart, ReadBatch, ReaderFormat, ReaderOptions, Reject, RejectRun, Small, register,
)
from telemetry.readers._convert import (
    LONE_SURROGATE, Refused, Verdict, convert, converted, lone_surrogate, split, surrogate_escape, to_canonical,
)
from telemetry.readers._stream import Utf8Stream
from telemetry.schema import CANONICAL, DICTIONARY_TEXT, IDENTIFIER_COLUMNS

_NAMES = frozenset(CANONICAL.names)
_DELIMITERS = (",", ";", "\t", "|")
_HEAD_BYTES = 1 << 20
_CSV_BLOCK = 2 << 20  # ~230 MB peak RSS for a 1 M-row file; 12 MiB blocks took ~500 MB
_CSV_AHEAD = 4  # blocks read beyond the batches asked for (pyarrow needs 2 more for one)
_MAX_LINE = 16 << 20
_REPLACEMENT = "\ufffd"  # a JSON line longer than this is rejected, not held in memory


# -- Parquet -------------------------------------------------------------------------------------


def _wanted(name: str, options: ReaderOptions) -> bool:
    return options.columns is None or name in options.columns or name == "start_time"


def read_parquet(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    file = _ParquetInput.open(path, options)
    yield from file.decode(range(file.meta.num_row_groups), 0, batch_rows, threads=True)


def parquet_plan(path: str, batch_rows: int, options: ReaderOptions) -> list[Piece] | Small | None:
    """Runs of whole row groups, each of at least ``batch_rows`` rows (but the last),
    for any thread to decode (no thread pool of Arrow's: the thread that decodes a
    piece aggregates it while it is in its cache). None for a file with a row group
    over PIECE_MAX × ``batch_rows`` rows: a piece would hold many batches for one
    thread, so the file is read as :func:`read_parquet` reads it. A file under a
    quarter of ``batch_rows`` is decoded at once, its columns left for
    :func:`~telemetry.readers.read_files` to convert with the next files' (a piece per
    small file would cost its fixed work per file). The footer is read once."""
    file = _ParquetInput.open(path, options)
    sizes = [file.meta.row_group(i).num_rows for i in range(file.meta.num_row_groups)]
    if sum(sizes) < batch_rows // 4:
        return Small(path, list(file.raw(range(len(sizes)), 0, batch_rows, threads=False)))
    if any(size > PIECE_MAX * batch_rows for size in sizes):
        return None  # one piece too big for one thread
    pieces = []
    first = start = held = 0
    for i, size in enumerate(sizes):
        held += size
        if held >= batch_rows or i == len(sizes) - 1:
            # batches of equal size: 300 k rows are two of 150 k, not 262 k and 38 k
            batches = -(-held // batch_rows)  # ⌈held / batch_rows⌉
            rows = -(-held // batches) if held else batch_rows
            pieces.append(Piece(path, partial(file.decode, range(first, i + 1), start, rows, threads=False)))
            first, start, held = i + 1, start + held, 0
    return pieces


#: A row group over this many batches makes its file one piece (see parquet_plan).
PIECE_MAX = 4
#: The largest dictionary page Parquet writers keep before they fall back to plain pages
#: (pyarrow's, parquet-mr's and DuckDB's default).
DICTIONARY_PAGE_MAX = 1 << 20


#: The share of distinct values in a row group above which an identifier column whose
#: writer gave up its dictionary is read as text (see _read_as_text).
TEXT_SHARE = 0.4


def _read_as_text(parquet: Any, names: list[str], leaves: list[str]) -> set[str]:
    """The identifier columns among ``names`` better read as text than as dictionaries
    (``leaves``: the path of each column of the file, in order).

    Read as dictionaries, a column whose writer gave up its dictionary page (more bytes
    than the page and four-byte indices can take: the chunk then holds plain pages) has
    Arrow hash every value of every batch into a dictionary of its own, which the
    pseudonymizer then interns again: double work when most values are distinct
    (transit destinations, A2P recipients), cheap when a batch repeats its values
    (retail: a fifth distinct), where one probe of Arrow's small per-batch table beats
    one of the run's large one. Told by the distinct share of the first row group's
    values (those column chunks decoded, ~20 ms, only for files past a dictionary page),
    estimated from a value sample (``pseudonyms.value_sample``: 2^SAMPLE_BITS times its
    distinct values; Arrow's exact count over every row cost 25-35 ms a column, on the
    main thread before any batch starts)."""
    from telemetry.pseudonyms import SAMPLE_BITS, value_sample

    meta = parquet.metadata

    def gave_up(name: str) -> bool:
        column = leaves.index(name)
        chunks = (meta.row_group(g).column(column) for g in range(meta.num_row_groups))
        return any(chunk.total_uncompressed_size > DICTIONARY_PAGE_MAX + 4 * chunk.num_values for chunk in chunks)

    candidates = [name for name in names if name in IDENTIFIER_COLUMNS and name in leaves and gave_up(name)]
    if not candidates:
        return set()
    try:
        first = parquet.read_row_group(0, column_indices=[leaves.index(name) for name in candidates])
    except (pa.ArrowException, OSError):  # damaged: decode reports it, row by row or as one line
        return set()
    def distinct(name: str) -> int:
        values = first[name].combine_chunks()
        if not any(is_type(values.type) for is_type in (pa.types.is_string, pa.types.is_large_string,
                                                         pa.types.is_binary, pa.types.is_large_binary)):
            return pc.count_distinct(values).as_py()  # numbers stored as integers, say: counted
        return pc.count_distinct(values.take(value_sample(values))).as_py() << SAMPLE_BITS

    rows = first.num_rows
    return {name for name in candidates if rows and distinct(name) >= TEXT_SHARE * rows}


def _parquet_reader(source: str, **options: Any) -> Any:
    """pyarrow's reader of Parquet file ``source``: what ``pyarrow.parquet.ParquetFile``
    wraps, without the wrapper's Python work (~0.1 ms a file, a tenth of what a small
    file costs in all: issue 22's 400 files of 1,000 records). No pre-buffering, as the
    wrapper's default: it would hold every row group asked for at once (a whole large
    file where one is decoded in one call), and it saved nothing measurable on small files."""
    from pyarrow._parquet import ParquetReader

    reader = ParquetReader()
    reader.open(source, pre_buffer=False, **options)
    return reader


class _ParquetInput(NamedTuple):
    path: str
    meta: Any  # pyarrow.parquet.FileMetaData
    present: list[str]
    leaves: list[int]  # the Parquet columns of ``present`` (a nested column's several)
    dictionaries: list[str]

    @classmethod
    def open(cls, path: str, options: ReaderOptions) -> "_ParquetInput":
        try:
            parquet = _parquet_reader(path)
            schema, meta = parquet.schema_arrow, parquet.metadata
            names = set(schema.names)
            paths = parquet.column_paths  # each column's, a nested one's as several names
        except (pa.ArrowException, OSError, UnicodeDecodeError):  # a column name in the footer not UTF-8
            raise InputError(
                f"{path} is not a readable Parquet file; pass --format if it is another format"
            ) from None
        if "start_time" not in names:
            raise InputError(
                f"{path} has no start_time column; see the canonical schema (SPEC section 2)"
            )
        present = [name for name in CANONICAL.names if name in names and _wanted(name, options)]
        # identifiers and dimensions are read as their dictionary pages (schema.READ); a
        # nested column (list, struct) has none and its rows are quarantined by to_canonical
        nested = {name for name, kind in zip(schema.names, schema.types) if pa.types.is_nested(kind)}
        dictionaries = [name for name in DICTIONARY_TEXT if name in present and name not in nested]
        text = _read_as_text(parquet, dictionaries, [".".join(path) for path in paths])
        dictionaries = [name for name in dictionaries if name not in text]
        wanted = set(present)
        leaves = [i for i, path in enumerate(paths) if path[0] in wanted]
        return cls(path, meta, present, leaves, dictionaries)

    def decode(self, groups: range, start: int, batch_rows: int, *, threads: bool) -> Iterator[ReadBatch]:
        """Batches of ``batch_rows`` rows of row groups ``groups``, whose first row is
        row ``start + 1`` of the file; ``threads``: Arrow decodes columns on its pool."""
        for batch, rows in self.raw(groups, start, batch_rows, threads=threads):
            yield convert(self.path, batch, rows)

    def raw(self, groups: range, start: int, batch_rows: int, *, threads: bool) -> Iterator[RawPart]:
        """:meth:`decode`'s batches as the file holds them (canonical columns, not
        converted), with their row numbers."""
        path, done = self.path, start
        try:
            parquet = _parquet_reader(path, read_dictionary=self.dictionaries, metadata=self.meta)
        except OSError as exc:  # gone since it was opened
            raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
        if len(groups) == 1 and self.meta.row_group(groups[0]).num_rows <= batch_rows:
            # a row group that is one batch: read whole, as it decodes (a third of a
            # transit day's reads); iter_batches held twice the batch's bytes while it
            # made one, 73 MB for a 33 MB batch of 262,144 records
            batches = _whole(parquet, groups[0], self.leaves, threads)
        else:
            batches = parquet.iter_batches(batch_rows, groups, self.leaves, use_threads=threads)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError):
                raise InputError(f"{path}: Parquet data is damaged after row {done}") from None
            if not _indices_in_range(batch):
                raise InputError(f"{path}: Parquet data is damaged after row {done}")
            n = batch.num_rows
            yield RawPart(batch.select(self.present), np.arange(done + 1, done + n + 1, dtype=np.int64))
            done += n


def _whole(parquet: Any, group: int, leaves: list[int], threads: bool) -> Iterator[pa.RecordBatch]:
    """Row group ``group`` as one batch (none if it is empty)."""
    table = parquet.read_row_group(group, leaves, use_threads=threads)
    if table.num_rows:
        yield from table.combine_chunks().to_batches()


def _indices_in_range(batch: pa.RecordBatch) -> bool:
    """Whether every dictionary column's indices point into its dictionary: Arrow does
    not check a dictionary page's indices, and a damaged one would fail a ``take``
    later, far from the file (found by tests/test_fuzz.py)."""
    for column in batch.columns:
        if pa.types.is_dictionary(column.type) and len(column) > column.null_count:
            indices = column.indices
            # NumPy's min and max: a third of Arrow's min_max and its scalars, per small file
            indices = (indices.drop_null() if column.null_count else indices).to_numpy()
            if indices.min() < 0 or indices.max() >= len(column.dictionary):
                return False
    return True


# -- CSV -----------------------------------------------------------------------------------------


def read_csv(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    import pyarrow.csv as pcsv

    header = _csv_header(path, options.delimiter)
    if header is None:
        return  # an empty file holds no records
    names, delimiter = header
    positions = {name: i for i, name in enumerate(names) if name in _NAMES and _wanted(name, options)}
    wanted = [f"c{i}" for i in positions.values()]
    refused = Refused(path)
    numbers = _RowNumbers()
    lock = threading.Lock()  # pyarrow calls the handler on its reading thread, ahead of the batches

    def invalid(row: Any) -> str:
        number = row.number - 2  # our head row is -1, the header 0 (see below)
        with lock:
            numbers.skip(number)
        if number < 1:
            return "skip"  # the header, not a record
        text = row.text or ""
        if text.count('"') % 2:
            reason = "unterminated quoted field"
        else:
            reason = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        with lock:
            refused.add(number, reason)
        return "skip"

    # Peak memory grows with the block, not the file, even when converting is slower
    # than parsing (bad rows): pyarrow parses on, at open, until a block gives a good row,
    # and a head row of empty fields (dropped, as the header is) makes that the first
    # block; reads are paced to the batches asked for (issue 16, docs/formats.md)
    block = options.block_bytes or _CSV_BLOCK
    head = ('""' + delimiter * (len(names) - 1) + "\n").encode()  # quoted: no blank line
    try:
        stream = Utf8Stream(path, head=head, ahead=_CSV_AHEAD)  # UTF-8 repaired; no read ends in a CR
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(
                use_threads=False,
                block_size=block,
                column_names=[f"c{i}" for i in range(len(names))],
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=True,
                ignore_empty_lines=True,
                invalid_row_handler=invalid,
            ),
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError):
        stream.close()
        raise InputError(
            f"{path}: cannot parse as CSV; pass --format if it is another format"
        ) from None
    with stream:
        yield from _csv_batches(path, reader, stream, positions, numbers, refused, lock)


def _csv_batches(
    path: str,
    reader: Any,
    stream: Utf8Stream,
    positions: dict[str, int],
    numbers: _RowNumbers,
    refused: Refused,
    lock: threading.Lock,
) -> Iterator[ReadBatch]:
    """Batches with their row numbers and the rows pyarrow refused so far. pyarrow parses
    ahead and reports bad rows from its own thread, so rows skipped and refused are taken
    under ``lock``, all at once: a row refused meanwhile stays for the next batch. The
    head row (-1) and the header (0) are dropped from the first batch."""

    def parsed() -> Iterator[tuple[pa.RecordBatch, np.ndarray, list[Reject | RejectRun]]]:
        while True:
            stream.want()
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowException, OSError):
                # pyarrow's message may quote the row; say only where
                raise InputError(
                    f"{path}: CSV parse error after data row {max(numbers.next - 1, 0)} "
                    "(a row larger than the block size?)"
                ) from None
            with lock:
                rows, taken = numbers.take(batch.num_rows), refused.take()
            ours = int(np.searchsorted(rows, 1))
            batch, rows = batch.slice(ours), rows[ours:]
            if len(rows) or taken:
                yield batch, rows, taken

    yield from converted(parsed(), lambda block, seen: _csv_block(path, positions, seen, *block))
    with lock:
        taken = refused.take()
    if taken:
        yield ReadBatch(_empty(), np.zeros(0, np.int64), taken, path)


def _csv_block(
    path: str,
    positions: dict[str, int],
    seen: Counter[str],
    batch: pa.RecordBatch,
    rows: np.ndarray,
    refused: list[Reject | RejectRun],
) -> ReadBatch:
    n = batch.num_rows
    raw = {name: batch.column(f"c{i}") for name, i in positions.items()}
    verdict = Verdict(n)
    for name, column in raw.items():
        verdict.flag(pc.match_substring(column, _REPLACEMENT), f"{name}: not valid UTF-8")
    converted_batch, verdict = to_canonical(raw, n, verdict)
    return split(path, rows, converted_batch, verdict, raw, refused, seen=seen)


def _empty() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=CANONICAL)


class _RowNumbers:
    """Data row numbers of good CSV rows: consecutive from -1 (the head row), minus the rows
    pyarrow skipped. Skips come in order: ``next`` moves past a run of them as soon as
    it is known, so a flood of bad rows costs nothing here, however long."""

    def __init__(self) -> None:
        self.next = -1
        self.skipped: list[int] = []  # skipped numbers above next, ascending

    def skip(self, number: int) -> None:
        if number == self.next:
            self.next += 1
        else:
            self.skipped.append(number)

    def take(self, n: int) -> np.ndarray:
        pending = np.array(self.skipped, dtype=np.int64)
        candidates = np.arange(self.next, self.next + n + len(pending), dtype=np.int64)
        rows = candidates[~np.isin(candidates, pending)][:n]
        if n:
            self.next = int(rows[-1]) + 1
        pending = pending[pending >= self.next]
        gaps = np.flatnonzero(pending - np.arange(len(pending)) != self.next)
        run = int(gaps[0]) if len(gaps) else len(pending)  # skipped right after next
        self.next += run
        self.skipped = pending[run:].tolist()
        return rows


def _csv_header(path: str, delimiter: str | None) -> tuple[list[str], str] | None:
    """(column names, delimiter) from the first line, or None for an empty file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    if not head.strip():
        return None
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8) :]
    hint = f"{path} is not canonical CSV: the first line must be a header with a start_time column"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(hint + " (it is not UTF-8 text)") from None
    for candidate in (delimiter,) if delimiter else _DELIMITERS:
        names = _header_names(text, candidate)
        if names is not None and "start_time" in names:
            seen = [n for n in names if n in _NAMES]
            if len(seen) != len(set(seen)):
                raise InputError(f"{path}: the header names a canonical column twice")
            return names, candidate
    raise InputError(hint + "; pass --format for a vendor format")


def _header_names(text: str, delimiter: str) -> list[str] | None:
    try:
        row = next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:
        return None
    return [name.strip().lower() for name in row]


def _sniff_csv(head: bytes) -> bool:
    line = head.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(codecs.BOM_UTF8)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return any("start_time" in (_header_names(text, d) or []) for d in _DELIMITERS)


# -- JSON lines ----------------------------------------------------------------------------------


def read_jsonl(path: str, batch_rows: int, options: ReaderOptions) -> Iterator[ReadBatch]:
    block = max(1, min(batch_rows, 16384))  # lines parsed at once: bounds memory, not speed
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    with handle:
        lines = _lines(handle)

        def chunks() -> Iterator[list[tuple[int, bytes | None]]]:
            while chunk := [item for _, item in zip(range(block), lines, strict=False)]:
                yield chunk

        def parsed(
            numbered: tuple[int, list[tuple[int, bytes | None]]], seen: Counter[str]
        ) -> ReadBatch:
            index, chunk = numbered
            part = _json_block(path, chunk, seen)
            if index == 0 and part.objects == 0:
                raise InputError(
                    f"{path} is not JSON lines: none of its first {len(chunk)} records "
                    "is a JSON object; "
                    "pass --format if it is another format"
                )
            return part.read

        # lines are split here while pyarrow parses the blocks before on a second thread
        yield from converted(enumerate(chunks()), parsed)


def _lines(handle) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of non-blank lines; bytes None for an over-long line."""
    number = 0
    while True:
        line = handle.readline(_MAX_LINE)
        if not line:
            return
        number += 1
        if len(line) == _MAX_LINE and not line.endswith(b"\n"):
            while True:  # drop the rest of the line without holding it
                rest = handle.readline(_MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        if number == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]
        if line.strip():
            yield number, line


class _JsonPart(NamedTuple):
    read: ReadBatch
    objects: int  # lines that were JSON objects


def _json_block(
    path: str, chunk: list[tuple[int, bytes | None]], seen: Counter[str] | None = None
) -> _JsonPart:
    """A block of lines converted. ``seen``: the file's count of rejects per reason so
    far, as :func:`_convert.split` takes it (updated)."""
    return _json_block_arrow(path, chunk, seen) or _json_block_python(path, chunk, seen)


def _json_block_arrow(
    path: str, chunk: list[tuple[int, bytes | None]], seen: Counter[str] | None = None
) -> _JsonPart | None:
    """The fast path: pyarrow parses the whole block. It gives up (None) on anything
    unusual — a bad line, a type that changes between rows, a nested canonical value —
    and the line-by-line path then says which rows are at fault. A block whose first
    value is not an object never reaches pyarrow: one starting with a top-level
    ``null`` crashes its parser (segmentation fault; apache/arrow#47409, pyarrow 26)."""
    import io

    import pyarrow.json as pjson

    if any(line is None for _, line in chunk):
        return None
    data = b"".join(line if line.endswith(b"\n") else line + b"\n" for _, line in chunk)
    if not data.lstrip(b" \t\r").startswith(b"{"):  # see the docstring: never a leading null
        return None
    try:
        table = pjson.read_json(
            io.BytesIO(data),
            read_options=pjson.ReadOptions(use_threads=False, block_size=len(data) + 1),
        )
    except (pa.ArrowException, OSError):
        return None
    if table.num_rows != len(chunk):
        return None
    try:
        names = set(table.column_names)
    except UnicodeDecodeError:  # a key that is not UTF-8: its line is rejected line by line
        return None
    raw: dict[str, pa.Array] = {}
    for name in CANONICAL.names:
        if name not in names:
            continue
        column = table.column(name).combine_chunks()
        if pa.types.is_nested(column.type):
            return None
        # a key given only as null is still given: a null answer_time says "not answered"
        raw[name] = column.cast(pa.string()) if pa.types.is_null(column.type) else column
    n = table.num_rows
    converted, verdict = to_canonical(raw, n)
    rows = np.fromiter((number for number, _ in chunk), dtype=np.int64, count=n)
    return _JsonPart(split(path, rows, converted, verdict, raw, seen=seen), n)


def _json_block_python(
    path: str, chunk: list[tuple[int, bytes | None]], seen: Counter[str] | None = None
) -> _JsonPart:
    rejects: list[Reject] = []
    rows: list[int] = []
    objects: list[dict] = []
    size = len(chunk)
    values: dict[str, list[Any]] = {name: [None] * size for name in CANONICAL.names}
    nested: list[tuple[int, str]] = []
    keys: set[str] = set()  # canonical keys given in the block
    for number, line in chunk:
        if line is None:
            rejects.append(Reject(path, number, f"line longer than {_MAX_LINE >> 20} MiB", {}))
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            rejects.append(Reject(path, number, "not valid UTF-8", {}))
            continue
        except (ValueError, RecursionError):
            rejects.append(Reject(path, number, "not valid JSON", {}))
            continue
        if not isinstance(obj, dict):
            rejects.append(Reject(path, number, "not a JSON object", {}))
            continue
        if surrogate_escape(line) and lone_surrogate(obj):
            rejects.append(Reject(path, number, LONE_SURROGATE, {}))
            continue
        index = len(rows)
        rows.append(number)
        objects.append(obj)
        for key, value in obj.items():
            column = values.get(key)
            if column is None:
                continue
            keys.add(key)  # a null value still gives the key (see _json_block_arrow)
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                column[index] = value
            elif kind is int:
                column[index] = str(value)
            elif kind is dict or kind is list:
                nested.append((index, key))
            else:
                column[index] = _json_text(value)
    n = len(rows)
    present = [name for name in CANONICAL.names if name in keys]
    raw = {name: pa.array(values[name][:n], type=pa.string()) for name in present}
    verdict = Verdict(n)
    for index, name in nested:
        flags = np.zeros(n, dtype=np.bool_)
        flags[index] = True
        verdict.flag(flags, f"{name}: nested value where a scalar belongs")
    converted, verdict = to_canonical(raw, n, verdict)

    def fields(i: int) -> dict[str, Any]:
        return {name: _shown(objects[i].get(name)) for name in present}

    read = split(
        path, np.asarray(rows, dtype=np.int64), converted, verdict, raw, rejects, fields, seen
    )
    return _JsonPart(read, n)


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    return None


def _shown(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _sniff_jsonl(head: bytes) -> bool:
    line = head.removeprefix(codecs.BOM_UTF8).lstrip().split(b"\n", 1)[0]
    if not line.startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False


# -- writing (telemetry generate) ----------------------------------------------------------------


def write_parquet(batches: Iterator[pa.RecordBatch], path: str) -> int:
    import pyarrow.parquet as pq

    written = 0
    with pq.ParquetWriter(path, CANONICAL, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            written += batch.num_rows
    return written


def write_csv(batches: Iterator[pa.RecordBatch], path: str) -> int:
    import pyarrow.csv as pcsv

    written = 0
    with pcsv.CSVWriter(path, _TEXT_SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(_as_text(batch))
            written += batch.num_rows
    return written


def write_jsonl(batches: Iterator[pa.RecordBatch], path: str) -> int:
    import polars as pl

    written = 0
    with open(path, "wb") as handle:
        for batch in batches:
            pl.from_arrow(_as_text(batch)).write_ndjson(handle)
            written += batch.num_rows
    return written


_TEXT_SCHEMA = pa.schema(
    pa.field(f.name, pa.string())
    if pa.types.is_dictionary(f.type) or pa.types.is_timestamp(f.type)
    else f
    for f in CANONICAL
)


def _as_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionaries decoded and times as ISO 8601 with ``Z``, for the text formats."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            column = column.dictionary_decode()
        elif pa.types.is_timestamp(field.type):
            column = pc.strftime(column, "%Y-%m-%dT%H:%M:%SZ")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=_TEXT_SCHEMA)


register(
    ReaderFormat(
        "parquet",
        read_parquet,
        (".parquet", ".pq"),
        lambda head: head.startswith(b"PAR1"),
        "Apache Parquet in the canonical schema",
        write_parquet,
        plan=parquet_plan,
    )
)
register(
    ReaderFormat(
        "csv",
        read_csv,
        (".csv",),
        _sniff_csv,
        "CSV with a header row of canonical column names, start_time among them",
        write_csv,
    )
)
register(
    ReaderFormat(
        "jsonl",
        read_jsonl,
        (".jsonl", ".ndjson", ".json"),
        _sniff_jsonl,
        "JSON lines: one object per line with canonical keys",
        write_jsonl,
    )
)
