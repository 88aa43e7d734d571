"""Readers: input files → canonical Arrow record batches, plus the rows that did not fit.

A format is one module in this package that calls :func:`register` at import
with a :class:`ReaderFormat`; every public module here is imported when the
package is, so adding a format touches no other file. Modules whose name starts
with ``_`` hold shared helpers and are not formats.

Every input row ends up in exactly one place: a row of some
:attr:`ReadBatch.batch` (with its input row number in :attr:`ReadBatch.rows`), a
:class:`Reject`, or one row of a :class:`RejectRun` (a flood of one reason, counted
by :func:`rejected`). Readers stream: memory is bounded by ``batch_rows`` and the
reader's block size, never by the file, however many of its rows are bad.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.errors import ConfigError, InputError, printable


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that did not fit: where it was, why (one line, no values), and its
    canonical fields as text, masked (:func:`telemetry.quarantine.masked`)."""

    file: str
    row: int
    reason: str
    fields: dict[str, str | None]

    @property
    def count(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class RejectRun:
    """Rows of one batch that did not fit for the same reason, past the first
    :data:`~telemetry.quarantine.FULL_REJECTS` of it: counted (and summarized in
    the quarantine file), not described, so a flood costs 8 bytes a row."""

    file: str
    reason: str
    rows: np.ndarray  # int64 row numbers

    @property
    def count(self) -> int:
        return len(self.rows)


def rejected(rejects: Sequence[Reject | RejectRun]) -> int:
    """How many rows ``rejects`` stand for."""
    return sum(r.count for r in rejects)


def reject_runs(file: str, rows: np.ndarray, reasons: np.ndarray) -> list[RejectRun]:
    """One :class:`RejectRun` per distinct reason of ``reasons`` (an object array,
    one per row of ``rows``)."""
    return [RejectRun(file, reason, rows[reasons == reason]) for reason in dict.fromkeys(reasons.tolist())]


@dataclass
class ReadBatch:
    """Good rows of one file in the canonical schema, their 1-based input row numbers
    (data rows: a header does not count), and the rejects met on the way. A batch
    gathered from several small files (:class:`Coalescer`) names them in ``files``,
    with each row's file in ``file_ids``."""

    batch: pa.RecordBatch
    rows: np.ndarray
    rejects: list[Reject | RejectRun]
    file: str
    files: tuple[str, ...] = ()
    file_ids: np.ndarray | None = None

    def file_of(self, i: int) -> str:
        """The file row ``i`` came from."""
        return self.file if self.file_ids is None else self.files[int(self.file_ids[i])]


class Coalescer:
    """Gathers the batches of small files into batches of about ``batch_rows`` rows.

    Every batch costs a fixed amount of work besides its rows (kernel calls, a
    partial state, its merge); a stream of per-call or per-minute files of a few
    hundred records would pay it per file. Batches of at least a quarter of
    ``batch_rows`` pass through as they are (after what is held). Rejects do not wait
    for rows: once :data:`REJECTS_HELD` of them are held, what is held goes on, so a
    file of bad rows (batches of rejects only) streams through as :func:`rebatch` has it."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self._held: list[ReadBatch] = []
        self._rows = 0
        self._rejects = 0

    def passes(self, read: ReadBatch) -> bool:
        """Whether ``read`` is big enough to pass through as it is."""
        return read.batch.num_rows >= self.batch_rows // 4

    def add(self, read: ReadBatch) -> list[ReadBatch]:
        """``read`` taken in; the batches now ready, in order."""
        if self.passes(read):
            return [*self.flush(), read]
        ready = self.flush() if self._held and read.batch.schema != self._held[0].batch.schema else []
        self._held.append(read)
        self._rows += read.batch.num_rows
        self._rejects += self.rejects_of(read)
        full = self._rows >= self.batch_rows or self._rejects >= REJECTS_HELD
        return ready + self.flush() if full else ready

    @staticmethod
    def rejects_of(read: ReadBatch) -> int:
        """How many rejects ``read`` holds."""
        return rejected(read.rejects)

    @property
    def held(self) -> bool:
        """Whether batches are held."""
        return bool(self._held)

    def flush(self) -> list[ReadBatch]:
        """What is held, as one batch (none when nothing is)."""
        held, self._held, self._rows, self._rejects = self._held, [], 0, 0
        return held if len(held) <= 1 else [self.join(held)]

    @staticmethod
    def join(held: list[ReadBatch]) -> ReadBatch:
        """Batches of small files as one batch (the engines' planners call it too)."""
        files = tuple(dict.fromkeys(name for r in held for name in (r.files if r.file_ids is not None else (r.file,))))
        index = {name: i for i, name in enumerate(files)}
        ids = np.concatenate([
            np.full(r.batch.num_rows, index[r.file], np.int32) if r.file_ids is None
            else np.asarray([index[name] for name in r.files], np.int32)[r.file_ids]
            for r in held
        ])
        table = pa.Table.from_batches([r.batch for r in held]).combine_chunks()
        return ReadBatch(_one_batch(table), np.concatenate([r.rows for r in held]),
                         [x for r in held for x in r.rejects], held[0].file, files, ids)


@dataclass(frozen=True)
class ReaderOptions:
    """Settings a reader may need beyond the file itself.

    ``delimiter``: CSV field separator; None sniffs it from the header (``,``, ``;``,
    tab or ``|``). ``block_bytes``: CSV parse block (default 2 MiB);
    a row must fit in one block.
    ``extra``: format-specific settings for vendor readers (by format name).
    ``columns``: the canonical columns the caller will use (None: all). A reader
    that can skip columns (Parquet, canonical CSV) leaves the others unread and
    null: data a job does not need is never decoded nor checked (data
    minimization, and the speed that comes with it).
    """

    delimiter: str | None = None
    block_bytes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    columns: frozenset[str] | None = None


Reader = Callable[[str, int, ReaderOptions], Iterator[ReadBatch]]


@dataclass(frozen=True)
class Piece:
    """A part of one file that any thread may read, in any order with the others
    (a run of Parquet row groups): ``read()`` yields its batches, in order, with
    their row numbers in the file."""

    file: str
    read: Callable[[], Iterator[ReadBatch]]


class RawPart(NamedTuple):
    """Canonical columns of part of a file as the file holds them (not yet converted),
    and their 1-based row numbers."""

    batch: pa.RecordBatch
    rows: np.ndarray


@dataclass(frozen=True)
class Small:
    """A small file, decoded but not converted (:attr:`ReaderFormat.plan`), for
    :func:`read_files` to convert with the next small files' (``_convert.convert_together``)."""

    file: str
    parts: list[RawPart]

    @property
    def num_rows(self) -> int:
        return sum(part.batch.num_rows for part in self.parts)


@dataclass(frozen=True)
class ReaderFormat:
    """A registered input format.

    ``read(path, batch_rows, options)`` yields :class:`ReadBatch` objects and raises
    :class:`InputError` for a file that is not of this format at all.
    ``extensions``: lower-case file suffixes, with the dot (``.csv``).
    ``sniff(head)``: True when the first bytes of a file look like this format.
    ``write(batches, path) -> int``: writes canonical batches as a file of this
    format (used by ``telemetry generate --format``); returns the records written.
    ``settings``: the names the reader looks up with ``_convert.setting`` (in
    :attr:`ReaderOptions.extra`), each with a check raising :class:`ConfigError`
    for a bad value, so a run fails on a typo before it reads anything.
    ``plan(path, batch_rows, options)``: for a format whose files split into
    independent parts, what one look at a file tells: the file as :class:`Piece`
    objects, which together yield what ``read`` yields (batches of at most
    ``batch_rows`` rows); or, for a file under a quarter of ``batch_rows``, its
    columns decoded (:class:`Small`), to be converted with the next small files'; or
    None when this file is better read by ``read``; see :func:`read_files`.
    ``notes(options)``: one-line warnings an operator must see about what this format's
    records mean under these settings (a duration that includes ringing…); a run that
    reads the format logs them and lists them in ``run.json`` (:func:`notes`).
    """

    name: str
    read: Reader
    extensions: tuple[str, ...] = ()
    sniff: Callable[[bytes], bool] | None = None
    description: str = ""
    write: Callable[[Iterator[pa.RecordBatch], str], int] | None = None
    settings: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    plan: Callable[[str, int, ReaderOptions], list[Piece] | Small | None] | None = None
    notes: Callable[[ReaderOptions], list[str]] | None = None


_REGISTRY: dict[str, ReaderFormat] = {}
_SNIFF_BYTES = 65536
_GENERIC = ("parquet", "csv", "jsonl")  # the canonical formats (readers/canonical.py)


def register(fmt: ReaderFormat) -> None:
    """Add a format (called by each format module at import)."""
    if fmt.name in _REGISTRY or fmt.name == "auto":
        raise ValueError(f"reader format {fmt.name!r} is already registered")
    _REGISTRY[fmt.name] = fmt


def get_format(name: str) -> ReaderFormat:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown input format {name!r}; known: auto, {', '.join(_REGISTRY)}"
        ) from None


def writable_formats() -> tuple[str, ...]:
    """Registered formats that can also be written (``telemetry generate --format``)."""
    return tuple(name for name, fmt in _REGISTRY.items() if fmt.write is not None)


def is_setting(name: str) -> bool:
    """Whether ``name`` is a reader setting (``timezone``…) or a format's own section."""
    return name in _REGISTRY or any(name in fmt.settings for fmt in _REGISTRY.values())


def check_settings(extra: Mapping[str, Any]) -> None:
    """:class:`ConfigError` unless every reader setting in ``extra`` is valid: a name at
    the top level for every format that takes it, a ``[format]`` section's names for
    that format. Keys that are neither (other stages' sections) are left alone."""
    for key, value in extra.items():
        fmt = _REGISTRY.get(key)
        if fmt is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{key}] must be a table of reader settings")
            unknown = sorted(printable(name) for name in value if name not in fmt.settings)
            if unknown:
                known = ", ".join(fmt.settings) or "none"
                raise ConfigError(
                    f"unknown setting(s) {', '.join(unknown)} in [{key}]; known: {known}"
                )
            for name, setting in value.items():
                _check(fmt.settings[name], setting, f"[{key}] {name}")
        else:
            takers = [f.settings[key] for f in _REGISTRY.values() if key in f.settings]
            for check in dict.fromkeys(takers):  # one check per distinct rule
                _check(check, value, key)


def _check(check: Callable[[Any], Any], value: Any, where: str) -> None:
    try:
        check(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has the wrong type; see docs/formats.md") from None


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its content, with its name as the tie-breaker.

    A vendor format (anything but Parquet, CSV and JSON lines) whose sniffer alone
    recognizes the first bytes wins, whatever the extension: the canonical sniffers
    accept any header with ``start_time`` or any JSON object, so they decide only
    when no vendor does. A name that points at a vendor format (``Master.csv``)
    decides when its sniffer agrees, or when nothing else recognizes the content
    (its reader then says precisely what is wrong); so do ``.parquet`` and an empty
    file's extension. Otherwise :class:`InputError` asking for ``--format``.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    by_ext = format_by_name(path)
    if not head:
        if by_ext is not None:
            return by_ext.name
        raise _undetected(path, "it is empty")
    if by_ext is not None and by_ext.name not in _GENERIC and _recognizes(by_ext, head):
        return by_ext.name
    if _recognizes(_REGISTRY["parquet"], head):  # binary magic: no text sniffer needs to look
        return "parquet"
    vendors = [
        f.name for f in _REGISTRY.values() if f.name not in _GENERIC and _recognizes(f, head)
    ]
    if len(vendors) > 1:
        raise _undetected(path, f"it could be {' or '.join(vendors)}")
    if vendors:
        return vendors[0]
    generic = [name for name in _GENERIC if _recognizes(_REGISTRY[name], head)]
    if by_ext is not None and by_ext.name in generic:
        return by_ext.name
    if len(generic) == 1:
        return generic[0]
    if by_ext is None:
        raise _undetected(path, "no format recognizes its first bytes")
    if by_ext.name in _TEXT_CONTAINERS:
        why = f"its content fits neither its extension ({by_ext.description}) nor another format"
        raise _undetected(path, why)
    return by_ext.name


_TEXT_CONTAINERS = ("csv", "jsonl")  # .csv or .json says how a file is written, not what it is


def _recognizes(fmt: ReaderFormat, head: bytes) -> bool:
    return fmt.sniff is not None and fmt.sniff(head)


def _undetected(path: str, why: str) -> InputError:
    return InputError(
        f"cannot tell the format of {path}: {why}; pass --format, one of {', '.join(_REGISTRY)}"
    )


def format_by_name(path: str | os.PathLike) -> ReaderFormat | None:
    """The format a file name points at (the longest matching registered suffix), or None."""
    name = os.path.basename(os.fspath(path)).lower()
    best: tuple[int, ReaderFormat] | None = None
    for fmt in _REGISTRY.values():
        for ext in fmt.extensions:
            if name.endswith(ext) and (best is None or len(ext) > best[0]):
                best = (len(ext), fmt)
    return best[1] if best else None


def open_inputs(
    paths: Sequence[str | os.PathLike],
    fmt: str = "auto",
    *,
    batch_rows: int = 65536,
    options: ReaderOptions | None = None,
) -> Iterator[ReadBatch]:
    """Read ``paths`` in order, yielding batches of ``batch_rows`` good rows (the last
    of each file may be shorter) with the rejects met while reading them."""
    options = options or ReaderOptions()
    for path, reader in _readers(paths, fmt, batch_rows, "open_inputs"):
        yield from rebatch(reader.read(path, batch_rows, options), batch_rows)


def plan_inputs(
    paths: Sequence[str | os.PathLike],
    fmt: str = "auto",
    *,
    batch_rows: int = 65536,
    options: ReaderOptions | None = None,
    threads: int = 1,
) -> Iterator[ReadBatch | Piece]:
    """:func:`open_inputs` for a pool of threads: files of a format that splits them
    come as :class:`Piece` objects, for the threads to read side by side (each piece's
    batches hold at most ``batch_rows`` rows, not exactly that many); the others as
    their batches, read here (files looked at on ``threads`` threads, see
    :func:`read_files`), the batches of small files gathered (:class:`Coalescer`).
    In file order, each file's rows in order."""
    small = Coalescer(batch_rows)
    for file in read_files(paths, fmt, batch_rows=batch_rows, options=options, threads=threads):
        for item in file.items:
            if isinstance(item, Piece):
                yield from small.flush()
                yield item
            else:
                yield from small.add(item)
    yield from small.flush()


class FileItems(NamedTuple):
    """A file of :func:`read_files`: its path, its format (None: it could not be told)
    and its items, which raise the error its reading met when it is met."""

    path: str
    format: ReaderFormat | None
    items: Iterator[ReadBatch | Piece]


def read_files(
    paths: Sequence[str | os.PathLike],
    fmt: str = "auto",
    *,
    batch_rows: int = 65536,
    options: ReaderOptions | None = None,
    threads: int = 1,
) -> Iterator[FileItems]:
    """Each of ``paths``, in order, with its :class:`Piece` objects (a format that
    splits files) or its batches as :func:`open_inputs` yields them. Taking a file's
    items raises what reading it met (:class:`InputError`, :class:`OSError`), so a
    caller may go on with the next file.

    Files are looked at (:attr:`ReaderFormat.plan`) on ``threads`` threads, up to
    :data:`LOOK_AHEAD` files ahead: a small file is decoded then, and Arrow's decoding
    of one file runs while the next is opened. Small files (:class:`Small`), up to
    ``batch_rows`` rows of them, are converted together: to_canonical's fixed cost (a
    few dozen Arrow calls, a millisecond) is paid once for many files, not per file.
    Each still comes with its own batches, rows and rejects."""
    from telemetry.ordered import ordered_map
    from telemetry.readers._convert import convert_together

    options = options or ReaderOptions()
    held: list[tuple[str, ReaderFormat, Small]] = []
    rows = 0

    def look(path: str) -> tuple[str, ReaderFormat | None, list[Piece] | Small | Exception | None]:
        reader = None
        try:
            reader = get_format(detect_format(path) if fmt == "auto" else fmt)
            return path, reader, None if reader.plan is None else reader.plan(path, batch_rows, options)
        except (InputError, OSError) as exc:
            return path, reader, exc

    def release() -> Iterator[FileItems]:
        nonlocal held, rows
        reads = iter(convert_together([(small.file, part) for _, _, small in held for part in small.parts]))
        for path, reader, small in held:
            mine = [next(reads) for _ in small.parts]
            yield FileItems(path, reader, rebatch(iter(mine), batch_rows))
        held, rows = [], 0

    checked = _checked(paths, fmt, batch_rows, "read_files")
    looks = map(look, checked) if threads <= 1 else ordered_map(look, checked, threads=threads, ahead=LOOK_AHEAD)
    for path, reader, plan in looks:
        if isinstance(plan, Small):
            held.append((path, reader, plan))
            rows += plan.num_rows
            if rows >= batch_rows:
                yield from release()
            continue
        yield from release()
        if isinstance(plan, Exception):
            items = _failed(plan)
        elif plan is None:
            items = rebatch(reader.read(path, batch_rows, options), batch_rows)
        else:
            items = iter(plan)
        yield FileItems(path, reader, items)
    yield from release()


#: Files :func:`read_files` looks at ahead of the one handed out (a small file, under a
#: quarter of ``batch_rows`` rows, is decoded then: at most 4 × ``batch_rows`` rows).
LOOK_AHEAD = 16


def notes(
    paths: Sequence[str | os.PathLike], fmt: str = "auto", options: ReaderOptions | None = None
) -> list[str]:
    """The :attr:`ReaderFormat.notes` of the formats ``paths`` are read with, each once."""
    options = options or ReaderOptions()
    found: dict[str, None] = {}
    for _, reader in _readers(paths, fmt, 1, "notes"):
        if reader.notes is not None:
            found.update(dict.fromkeys(reader.notes(options)))
    return list(found)


def _readers(
    paths: Sequence[str | os.PathLike], fmt: str, batch_rows: int, caller: str
) -> Iterator[tuple[str, ReaderFormat]]:
    """Each path with its format, detected when its turn comes."""
    for path in _checked(paths, fmt, batch_rows, caller):
        yield path, get_format(detect_format(path) if fmt == "auto" else fmt)


def _failed(exc: BaseException) -> Iterator[Any]:
    """Items that raise ``exc`` when the first is taken."""
    yield from ()
    raise exc


def _checked(paths: Sequence[str | os.PathLike], fmt: str, batch_rows: int, caller: str) -> list[str]:
    """``paths`` as strings, once the arguments are known good (an unknown format
    fails before any file is opened)."""
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"{caller}: paths must be a sequence of paths, not one path")
    if batch_rows < 1:
        raise ValueError(f"{caller}: batch_rows must be at least 1")
    if fmt != "auto":
        get_format(fmt)
    return [os.fspath(path) for path in paths]


#: Rejects :func:`rebatch` holds while it waits for good rows (a few MB of them).
REJECTS_HELD = 16384


def rebatch(parts: Iterator[ReadBatch], batch_rows: int) -> Iterator[ReadBatch]:
    """Regroup one file's batches into batches of exactly ``batch_rows`` good rows
    (the last may be shorter; one with only rejects is kept so none is lost).
    Rejects do not wait for good rows: once :data:`REJECTS_HELD` of them are held
    they leave in a batch of no rows, so a file of bad rows streams like any other."""
    pending: list[ReadBatch] = []
    held = waiting = 0
    for part in parts:
        pending.append(part)
        held += part.batch.num_rows
        waiting += rejected(part.rejects)
        if held >= batch_rows:
            yield from _emit(pending, batch_rows, final=False)
            held = pending[0].batch.num_rows if pending else 0
            waiting = rejected(pending[0].rejects) if pending else 0
        elif waiting >= REJECTS_HELD:
            yield _rejects_only(pending)
            waiting = 0
    if pending:
        yield from _emit(pending, batch_rows, final=True)


def _rejects_only(pending: list[ReadBatch]) -> ReadBatch:
    """A batch of no rows holding the rejects of ``pending`` (mutated: left without them)."""
    first = pending[0]
    rejects = [r for p in pending for r in p.rejects]
    pending[:] = [ReadBatch(p.batch, p.rows, [], p.file) for p in pending if p.batch.num_rows]
    # a new empty batch: a slice of one would keep its buffers alive as long as the rejects
    return ReadBatch(_empty(first.batch.schema), np.zeros(0, np.int64), rejects, first.file)


def _emit(pending: list[ReadBatch], batch_rows: int, *, final: bool) -> Iterator[ReadBatch]:
    """Emit full batches from ``pending`` (mutated: left holding the remainder)."""
    file = pending[0].file
    rejects = [r for p in pending for r in p.rejects]
    if len(pending) == 1:
        table = pa.Table.from_batches([pending[0].batch])
        rows = pending[0].rows
    else:
        table = pa.Table.from_batches([p.batch for p in pending]).combine_chunks()
        rows = np.concatenate([p.rows for p in pending])
    pending.clear()
    total = table.num_rows
    start = 0
    while total - start >= batch_rows or (final and (start < total or rejects)):
        n = min(batch_rows, total - start)
        yield ReadBatch(_one_batch(table.slice(start, n)), rows[start : start + n], rejects, file)
        rejects = []
        start += n
        if final and start >= total:
            break
    if start < total:
        pending.append(ReadBatch(_one_batch(table.slice(start)), rows[start:], rejects, file))
    elif rejects:
        pending.append(ReadBatch(_one_batch(table.slice(0, 0)), rows[:0], rejects, file))


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.to_batches()
    if len(batches) == 1:
        return batches[0]
    return table.combine_chunks().to_batches()[0] if table.num_rows else _empty(table.schema)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _discover() -> None:
    importlib.import_module(f"{__name__}.canonical")  # the SPEC's own formats come first
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def __getattr__(name: str) -> Any:
    if name == "FORMATS":  # registered names, in registration order
        return tuple(_REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_discover()
