"""Erasure from record output (SPEC section 13) and retention by key epoch.

:func:`erase` removes every record whose ``source`` or ``destination`` is one of
the given pseudonyms; :func:`drop_epoch` every record of one ``key_id``. Both
work on ``DATASET/records/`` and touch only the Parquet files the product wrote
(record output carries :data:`telemetry.schema.RECORDS_METADATA` in its footer);
other files there are counted and left alone.

A file is looked at as cheaply as it allows: its footer's min/max statistics
rule most files out without reading data (for ``key_id`` almost always: a file
holds one or two epochs); otherwise only the one or two columns needed are read.
A file that holds matching rows is rewritten atomically: the remaining rows go
to a temporary file next to it (``.NAME.erase.tmp``, fsynced), which is renamed
over it, and the directory is fsynced; a file left with no rows is deleted. A
crash at any point leaves each file either as it was or as it will be; a
temporary file left by a crash is removed by the next run. Files without
matching rows are not opened for writing, so they stay byte-identical.

Nothing here prints or logs a pseudonym: callers get counts only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telemetry.errors import ConfigError
from telemetry.keys import fsync_dir
from telemetry.schema import RECORDS_METADATA
from telemetry.sinks.parquet import write_file

LOG_NAME = "erasures.jsonl"
_TMP_SUFFIX = ".erase.tmp"
_IDENTIFIERS = ("source", "destination")


@dataclass
class Erasure:
    """What one erasure did (also the line appended to ``erasures.jsonl``)."""

    action: str  # "erase" (subjects) or "drop-epoch"
    records_removed: int = 0
    files_rewritten: int = 0
    files_deleted: int = 0
    files_scanned: int = 0  # record files of the product looked at
    files_decided_by_statistics: int = 0  # of those, ruled out (or wholly matched) by their footer alone
    rows_scanned: int = 0
    files_foreign: int = 0  # Parquet files under records/ the product did not write: untouched
    extra: dict = field(default_factory=dict)  # identifiers asked for, key ids…


def erase(dataset: str | os.PathLike, pseudonyms: Iterable[bytes], *, now: datetime | None = None,
          **extra) -> Erasure:  # fmt: skip
    """Remove the records whose source or destination is one of ``pseudonyms``
    (16 bytes each) from ``dataset/records``; append the counts to the log."""
    targets = sorted({bytes(p) for p in pseudonyms})
    if any(len(p) != 16 for p in targets):
        raise ValueError("pseudonyms must be 16 bytes each")
    wanted = pa.array(targets, pa.binary(16))
    low, high = (targets[0], targets[-1]) if targets else (None, None)

    def may_hold(stats: dict[str, list[tuple[object, object] | None]]) -> bool:
        if not targets:
            return False
        for column in _IDENTIFIERS:
            for bounds in stats[column]:
                if bounds is None:  # no statistics: cannot rule the row group out
                    return True
                lo, hi = bounds
                if lo <= high and hi >= low and _any_between(targets, lo, hi):
                    return True
        return False

    def matching(table: pa.Table) -> np.ndarray:
        hit = np.zeros(table.num_rows, np.bool_)
        for column in _IDENTIFIERS:
            values = table.column(column).cast(pa.binary(16))
            hit |= pc.is_in(values, value_set=wanted).to_numpy(zero_copy_only=False)
        return hit

    return _apply(Path(dataset), "erase", _IDENTIFIERS, may_hold, matching, now, extra)


def drop_epoch(dataset: str | os.PathLike, key_id: str, *, now: datetime | None = None) -> Erasure:
    """Remove every record of epoch ``key_id`` from ``dataset/records`` (retention)."""

    def may_hold(stats: dict[str, list[tuple[object, object] | None]]) -> bool:
        return any(b is None or b[0] <= key_id <= b[1] for b in stats["key_id"])

    def only(stats: dict[str, list[tuple[object, object] | None]]) -> bool:
        return all(b is not None and b[0] == b[1] == key_id for b in stats["key_id"])

    def matching(table: pa.Table) -> np.ndarray:
        ids = table.column("key_id").cast(pa.string())
        return pc.fill_null(pc.equal(ids, key_id), False).to_numpy(zero_copy_only=False)

    return _apply(Path(dataset), "drop-epoch", ("key_id",), may_hold, matching, now, {"key_id": key_id}, only)


def _any_between(targets: list[bytes], lo, hi) -> bool:
    import bisect

    i = bisect.bisect_left(targets, lo)
    return i < len(targets) and targets[i] <= hi


def _apply(dataset: Path, action: str, columns: tuple[str, ...], may_hold: Callable, matching: Callable,
           now: datetime | None, extra: dict, only: Callable = lambda stats: False) -> Erasure:  # fmt: skip
    """Remove the rows ``matching`` finds in every record file whose footer statistics
    ``may_hold`` them; a file whose statistics say ``only`` such rows is deleted unread."""
    root = dataset / "records"
    if not root.is_dir():
        raise ConfigError(f"{dataset} has no records/ directory (record output of: telemetry process --emit-records)")
    result = Erasure(action, extra=extra)
    for path in sorted(root.rglob("*")):
        if path.name.endswith(_TMP_SUFFIX) and path.name.startswith("."):
            path.unlink()  # our own temporary file, left by a crash: the original is intact
            continue
        hidden = any(part.startswith((".", "_")) for part in path.relative_to(root).parts)
        if path.suffix != ".parquet" or hidden or not path.is_file():
            continue  # hidden files and folders (staging, temporary) are no output
        try:
            meta = pq.read_metadata(path)
        except (OSError, pa.ArrowException):
            result.files_foreign += 1
            continue
        if not _ours(meta):
            result.files_foreign += 1
            continue
        result.files_scanned += 1
        stats = _statistics(meta, columns)
        if not may_hold(stats):
            result.files_decided_by_statistics += 1
            continue
        if only(stats):
            result.files_decided_by_statistics += 1
            hit = np.ones(meta.num_rows, np.bool_)
        else:
            result.rows_scanned += meta.num_rows
            hit = matching(pq.read_table(path, columns=list(columns), use_threads=False))
        removed = int(hit.sum())
        if not removed:
            continue
        result.records_removed += removed
        if removed == meta.num_rows:
            path.unlink()
            fsync_dir(path.parent)
            result.files_deleted += 1
        else:
            table = pq.read_table(path)
            _replace(path, table.filter(pa.array(~hit)))
            result.files_rewritten += 1
    _log(dataset, result, now)
    return result


def _ours(meta: pq.FileMetaData) -> bool:
    metadata = meta.metadata or {}
    return all(metadata.get(k) == v for k, v in RECORDS_METADATA.items())


def _statistics(meta: pq.FileMetaData, columns: tuple[str, ...]) -> dict[str, list[tuple[object, object] | None]]:
    """Per column, per row group: (min, max), or None where the footer has none."""
    index = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
    out: dict[str, list[tuple[object, object] | None]] = {c: [] for c in columns}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        for column in columns:
            stats = group.column(index[column]).statistics if column in index else None
            ok = stats is not None and stats.has_min_max
            if ok and stats.null_count == group.num_rows:
                ok = False
            out[column].append((stats.min, stats.max) if ok else None)
    return out


def _replace(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}{_TMP_SUFFIX}")
    try:
        write_file(table, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _log(dataset: Path, result: Erasure, now: datetime | None) -> None:
    when = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    entry = {"at": when, **{k: v for k, v in asdict(result).items() if k != "extra"}, **result.extra}
    with open(dataset / LOG_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
