"""Readers: input files → canonical Arrow record batches, plus the rows that did not fit.

A format is one module in this package that calls :func:`register` at import
with a :class:`ReaderFormat`; every public module here is imported when the
package is, so adding a format touches no other file. Modules whose name starts
with ``_`` hold shared helpers and are not formats.

Every input row ends up in exactly one place: a row of some
:attr:`ReadBatch.batch` (with its input row number in :attr:`ReadBatch.rows`) or
a :class:`Reject`. Readers stream: memory is bounded by ``batch_rows`` and the
reader's block size, never by the file.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from telemetry.errors import InputError


@dataclass(frozen=True)
class Reject:
    """A row that did not fit: where it was, why (one line, no values), and its
    canonical fields as text with identifiers masked (:func:`telemetry.quarantine.mask`)."""

    file: str
    row: int
    reason: str
    fields: dict[str, str | None]


@dataclass
class ReadBatch:
    """Good rows of one file in the canonical schema, their 1-based input row numbers
    (data rows: a header does not count), and the rejects met on the way."""

    batch: pa.RecordBatch
    rows: np.ndarray
    rejects: list[Reject]
    file: str


@dataclass(frozen=True)
class ReaderOptions:
    """Settings a reader may need beyond the file itself.

    ``delimiter``: CSV field separator; None sniffs it from the header (``,``, ``;``,
    tab or ``|``). ``block_bytes``: CSV parse block (default 2 MiB);
    a row must fit in one block.
    ``extra``: format-specific settings for vendor readers (by format name).
    """

    delimiter: str | None = None
    block_bytes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


Reader = Callable[[str, int, ReaderOptions], Iterator[ReadBatch]]


@dataclass(frozen=True)
class ReaderFormat:
    """A registered input format.

    ``read(path, batch_rows, options)`` yields :class:`ReadBatch` objects and raises
    :class:`InputError` for a file that is not of this format at all.
    ``extensions``: lower-case file suffixes, with the dot (``.csv``).
    ``sniff(head)``: True when the first bytes of a file look like this format.
    ``write(batches, path) -> int``: writes canonical batches as a file of this
    format (used by ``telemetry generate --format``); returns the records written.
    """

    name: str
    read: Reader
    extensions: tuple[str, ...] = ()
    sniff: Callable[[bytes], bool] | None = None
    description: str = ""
    write: Callable[[Iterator[pa.RecordBatch], str], int] | None = None


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


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its extension, checked against its first bytes.

    The extension decides when its format's sniffer agrees (or it has none); when
    it disagrees, or the extension is unknown, the content decides if exactly one
    format recognizes it. Otherwise :class:`InputError`. A vendor format that alone
    recognizes the content wins over a canonical extension (``.csv``, ``.jsonl``).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror or exc}") from None
    by_ext = _by_extension(path)
    # a vendor sniffer checks vendor fields; the canonical ones accept any header with
    # start_time or any JSON object, so a vendor match beats a generic extension
    vendor = [
        f.name
        for f in _REGISTRY.values()
        if f.name not in _GENERIC and f.sniff is not None and head and f.sniff(head)
    ]
    if len(vendor) == 1 and (by_ext is None or by_ext.name in _GENERIC):
        return vendor[0]
    if by_ext is not None and (by_ext.sniff is None or not head or by_ext.sniff(head)):
        return by_ext.name
    matches = [f.name for f in _REGISTRY.values() if f.sniff is not None and f.sniff(head)]
    if len(matches) == 1:
        return matches[0]
    if by_ext is not None and not matches:
        return by_ext.name  # let its reader say precisely what is wrong
    raise InputError(f"cannot tell the format of {path}; pass --format ({', '.join(_REGISTRY)})")


def _by_extension(path: str) -> ReaderFormat | None:
    name = os.path.basename(path).lower()
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
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("open_inputs: paths must be a sequence of paths, not one path")
    if batch_rows < 1:
        raise ValueError("open_inputs: batch_rows must be at least 1")
    options = options or ReaderOptions()
    if fmt != "auto":
        get_format(fmt)  # an unknown name fails before any file is opened
    for path in paths:
        path = os.fspath(path)
        name = detect_format(path) if fmt == "auto" else fmt
        yield from rebatch(get_format(name).read(path, batch_rows, options), batch_rows)


def rebatch(parts: Iterator[ReadBatch], batch_rows: int) -> Iterator[ReadBatch]:
    """Regroup one file's batches into batches of exactly ``batch_rows`` good rows
    (the last may be shorter; one with only rejects is kept so none is lost)."""
    pending: list[ReadBatch] = []
    held = 0
    for part in parts:
        pending.append(part)
        held += part.batch.num_rows
        if held >= batch_rows:
            yield from _emit(pending, batch_rows, final=False)
            held = pending[0].batch.num_rows if pending else 0
    if pending:
        yield from _emit(pending, batch_rows, final=True)


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
