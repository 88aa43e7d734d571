"""The stream loop: list → read + aggregate (the batch engine) → windows →
release → commit. See the package docstring and docs/stream.md.

Every decision depends only on the sequence of files consumed, never on how
they were grouped into micro-batches or when a commit happened: the watermark
moves after each file, windows are released and evicted at file boundaries,
and a restart resumes at the last committed boundary. That is what makes a run
killed at any moment and restarted end with the same releases as one that ran
through.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry import __version__
from telemetry.config import Options, thread_count
from telemetry.errors import ConfigError, InputError
from telemetry.keys import Keyring
from telemetry.schema import TS
from telemetry.stream.files import BATCH_BYTES, BATCH_FILES, Found, Waker, first_files, listing
from telemetry.stream.store import Store, commit_tag

log = logging.getLogger("telemetry")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}
COUNTS = ("records_in", "records_ok", "records_quarantined", "records_opted_out", "records_late")
TOO_LATE = "too late: its window was already evicted"
TOO_LATE_DP = "too late: its window was already released under differential privacy"
_OWN_OUTPUT = re.compile(r"^(part-c\d{8}(-\d{6})?\.parquet|rejects-c\d{8}\.jsonl)$")


def parse_duration(name: str, text: str) -> int:
    """``10m``, ``24h``, ``7d`` → microseconds."""
    m = _DURATION.match(str(text).lower())
    if m is None:
        raise ConfigError(f"{name} must be a whole number followed by s, m, h, d or w (e.g. 10m, 24h); got {text!r}")
    return int(m[1]) * _UNIT_US[m[2]]


@dataclass(frozen=True)
class StreamOptions:
    watch: Path | None  # None: --stdin
    out: Path
    state: Path
    lateness_us: int
    retention_us: int
    once: bool = False
    poll_s: float = 2.0
    spool: bool = False  # the watched directory is the stream's own (--stdin): consumed files are removed
    batch_files: int = BATCH_FILES
    batch_bytes: int = BATCH_BYTES


@dataclass
class _Mark:
    """What the reading side tells the aggregating side, in input order: one read
    batch (with the watermark its records were judged by) or the end of a file."""

    end: Found | None = None
    watermark: int | None = None  # after this file (end) / before it (read)


class Stream:
    def __init__(self, sopts: StreamOptions, keyring: Keyring, opts: Options) -> None:
        from telemetry.engine import Job, get_engine

        self.s = sopts
        self.opts = opts
        self.keyring = keyring
        self.job = Job(keyring, opts)
        try:
            self.job.prepare_only()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.spec = self.job.spec
        self.dp = self.job.dp
        self.engine = get_engine(opts.engine, thread_count(opts), scheduler=opts.scheduler, workers=opts.workers)
        _check_out(sopts.out)
        self.store = Store(sopts.state, self.spec, None if self.dp is None else (self.dp, self.job._parts()["dp_salt"]))
        self.commit_n, meta, self.windows = self.store.committed()
        _remove_uncommitted(sopts.out, self.commit_n)
        self.counts = {name: int(meta.get(name, 0)) for name in COUNTS}
        self.evicted = {k: int(v) for k, v in meta.get("evicted", {}).items()}
        self.watermark: int | None = meta.get("watermark_us")
        self.max_start: int | None = meta.get("max_start_us")
        self.consumed: set[str] = set(meta.get("manifest", []))
        self.files_failed = int(meta.get("files_failed", 0))
        self.notes: list[str] = list(meta.get("notes", []))  # what the readers say of the files read
        self.rewritten: dict[str, int] = dict(meta.get("dimension_values_rewritten", {}))
        # DP: windows released (by --once) that the watermark has not evicted yet: their records are too late
        self.final: set[int] = set(meta.get("dp_final", []))
        self.started = time.perf_counter()
        self.stop = threading.Event()
        self.finish_when_idle = sopts.once
        self._due: list = []  # (window, state) whose revision 0 is decided, not yet computed
        self._added = 0  # batches of records added to the windows (see _file_done)
        self._decided: tuple[int, int, int] | None = None
        self._waker: Waker | None = None
        if self._drawn():
            self._commit([])  # noise stored by the last commit and not yet published: publish it, never redraw
        elif self.commit_n:
            self._write_run_json()

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        # --once never waits for files: no directory watcher
        waker = self._waker = Waker(None if self.s.once else self.s.watch)
        try:
            while not self.stop.is_set():
                todo = self._todo()
                if todo:
                    if self.micro_batch(first_files(todo, self.s.batch_files, self.s.batch_bytes)):
                        break
                    continue
                if self.finish_when_idle:
                    self.finish()
                    break
                waker.wait(self.s.poll_s)
        finally:
            waker.close()
            self.engine.close()
        return 1 if self.counts["records_quarantined"] else 0

    def wake(self) -> None:
        """End the current wait for new files early (end of standard input, a signal)."""
        if self._waker is not None:
            self._waker.event.set()

    def _todo(self) -> list[Found]:
        """Files ready and not consumed, in order."""
        return listing(self.s.watch, self.consumed)

    def micro_batch(self, files: list[Found]) -> bool:
        """Read, aggregate and release ``files`` in order, then commit. When the stream
        finishes once idle (``--once``, end of standard input) and nothing else is left
        to read, every window is released in the same commit: whether it finished."""
        from telemetry.quarantine import QuarantineWriter
        from telemetry.readers import rejected

        tag = commit_tag(self.commit_n + 1)
        outputs: list[pa.Table] = []
        quarantine = QuarantineWriter(self.s.out, name=f"rejects-{tag}.jsonl")
        marks: deque[_Mark] = deque()
        seq = 0
        gen = _Reader(self, files, marks)
        for partial in self.engine.run(self.job, iter(gen)):
            while marks[0].end is not None:
                outputs += self._file_done(marks.popleft())
            mark = marks.popleft()
            self._apply(partial.state, mark.watermark)
            self.counts["records_in"] += partial.records_in
            self.counts["records_ok"] += partial.records_ok
            self.counts["records_quarantined"] += rejected(partial.rejects)
            for name, n in partial.rewritten.items():
                self.rewritten[name] = self.rewritten.get(name, 0) + n
            self.counts["records_opted_out"] += partial.opted_out
            if partial.rejects:
                quarantine.write(partial.rejects)
            if partial.records is not None and partial.records.num_rows:
                from telemetry.sinks.parquet import write_partitioned

                write_partitioned(pa.Table.from_batches([partial.records]), self.s.out / "records",
                                  "start_time", f"part-{tag}-{seq:06d}")
                seq += 1
        while marks:
            outputs += self._file_done(marks.popleft())
        if gen.failed:
            quarantine.write(gen.failed)
            self.files_failed += len(gen.failed)
        quarantine.close()
        finished = self.finish_when_idle and not self.stop.is_set() and not self._todo()
        if finished:
            self._release_all()
        self._commit(outputs)
        return finished

    def finish(self) -> None:
        """``--once`` with nothing to read: release every window still open, and commit."""
        if self._release_all() or not self.commit_n:
            self._commit([])

    def _release_all(self) -> bool:
        """Release every window still open as if the watermark had passed it (under DP
        that makes it final: its later records are too late); whether there was one."""
        due = [book for _, book in sorted(self.windows.items()) if not book.released]
        if self.dp is not None:
            for book in due:
                book.release()
        else:
            self._due += [(book, book.begin_release()) for book in due]
        return bool(due)

    def _release_due(self) -> list[pa.Table]:
        """Revision 0 of the windows the watermark passed since the last time (one
        release for all of them)."""
        from telemetry.stream.book import first_release

        due, self._due = self._due, []
        return [first_release(due, self.opts.k)] if due else []

    # -- windows -------------------------------------------------------------------------------

    def _apply(self, state, watermark: int | None) -> None:
        from telemetry.stream.book import Window
        from telemetry.stream.dpwindow import DpWindow

        window_us = self.spec.window_us
        # a batch's state as one state per window (DP: each counting its own records, those
        # the bounding dropped too)
        for w, part in state.by_window().items():
            book = self.windows.get(w)
            if book is None:
                book = self.windows[w] = (Window if self.dp is None else DpWindow)(w, part)
            else:
                book.add(part)
            if watermark is not None and (w + 1) * window_us <= watermark:
                self.counts["records_late"] += part.records
        self._added += 1

    def _file_done(self, mark: _Mark) -> list[pa.Table]:
        """A file is in: move the watermark, release and evict at this boundary."""
        assert mark.end is not None
        self.consumed.add(mark.end.name)
        self.watermark = mark.watermark
        if self.watermark is None:
            return []
        window_us, k = self.spec.window_us, self.opts.k
        # what the decisions below depend on: the windows the watermark passed, those it evicts, the
        # records added. Unchanged since the last file (most small files move the watermark inside
        # a window), they were taken there: none is left to take (and a late release of a window whose
        # records did not change would release nothing), so the windows are not looked at again
        decided = (self.watermark // window_us, (self.watermark - self.s.retention_us) // window_us, self._added)
        if decided == self._decided:
            return []
        self._decided = decided
        if self.dp is not None:  # released when final: evicted (published by the commit, then dropped)
            gone = self.watermark - self.s.retention_us
            self.final = {w for w in self.final if (w + 1) * window_us > gone}
            for w, book in sorted(self.windows.items()):
                if not book.released and (w + 1) * window_us <= gone:
                    book.release()
            return []
        out = []
        passed = [book for w, book in sorted(self.windows.items()) if (w + 1) * window_us <= self.watermark]
        due = {id(book) for book, _ in self._due}  # a set: a day of windows is checked at every file
        if any(book.delta is not None and id(book) in due for book in passed):
            out += self._release_due()  # a window of this micro-batch's revision 0 has late records
            due.clear()
        for book in passed:
            if not book.released:
                self._due.append((book, book.begin_release()))
                due.add(id(book))
            elif book.delta is not None and id(book) not in due:
                table = book.late_release(k)
                if table is not None:
                    out.append(table)
        evicted = [w for w in self.windows if (w + 1) * window_us + self.s.retention_us <= self.watermark]
        if any(id(self.windows[w]) in due for w in evicted):
            out += self._release_due()
        for w in evicted:
            self._evict(w)
        return out

    def _evict(self, w: int) -> None:
        """Drop window ``w``'s state, keeping its counts."""
        acc = self.windows.pop(w).accounting()
        acc["withheld"] += acc["pending"]  # never released now: withheld for good
        for key in ("withheld", "withheld_rows", "rows_released", "records_dp_truncated"):
            self.evicted[key] = self.evicted.get(key, 0) + acc.get(key, 0)

    # -- commit ----------------------------------------------------------------------------------

    def _commit(self, outputs: list[pa.Table]) -> None:
        from telemetry.metrics.frame import sort_rows
        from telemetry.sinks.parquet import write_partitioned

        drawn = self._drawn()
        if any(self.windows[w].changed for w in drawn):
            # DP noise is committed to the state before any of it is published, in a commit of its own:
            # a crash after this one publishes the stored rows, never fresh noise
            self._checkpoint()
        tables = [t for t in outputs + self._release_due() + [self.windows[w].table for w in drawn] if t.num_rows]
        if tables:
            from telemetry.metrics.dp import COLUMNS, tagged

            table = sort_rows(pa.concat_tables(tables), self.spec.by)
            released_at = pa.array(np.full(table.num_rows, _now_us(), np.int64), pa.timestamp("us", tz="UTC"))
            table = table.append_column("released_at", released_at)
            if self.dp is not None:
                table = tagged(table, self.dp.metadata(COLUMNS))
            write_partitioned(table, self.s.out / "metrics", "window_start", f"part-{commit_tag(self.commit_n + 1)}")
        for w in drawn:  # published with this commit: the window is done
            if self.watermark is None or (w + 1) * self.spec.window_us + self.s.retention_us > self.watermark:
                self.final.add(w)  # released by --once before the watermark evicted it
            self._evict(w)
        self._checkpoint()
        if self.s.spool:
            for name in [name for name in self.consumed if (self.s.watch / name).exists()]:
                os.remove(self.s.watch / name)

    def _drawn(self) -> list[int]:
        """The DP windows whose noisy rows are drawn and not yet published."""
        if self.dp is None:
            return []
        return [w for w, book in sorted(self.windows.items()) if book.table is not None]

    def _checkpoint(self) -> None:
        """Commit the state, the counts and the manifest as they are now (outputs of the
        commit are written before)."""
        n = self.commit_n + 1
        meta = {
            **self.counts,
            "watermark_us": self.watermark,
            "max_start_us": self.max_start,
            "manifest": sorted(self.consumed),
            "evicted": self.evicted,
            "files_failed": self.files_failed,
            "notes": self.notes,
            "dimension_values_rewritten": self.rewritten,
            "dp_final": sorted(self.final),
        }
        self.store.commit(n, meta, self.windows)
        self.commit_n = n
        self._write_run_json()

    def summary(self) -> dict[str, Any]:
        acc = {"open": 0, "pending": 0, "withheld": 0, "withheld_rows": 0, "rows_released": 0,
               "records_dp_truncated": 0}
        for book in self.windows.values():
            for key, value in book.accounting().items():
                acc[key] += value
        rows = acc["rows_released"] + self.evicted.get("rows_released", 0)
        seconds = time.perf_counter() - self.started
        wm = self.watermark
        summary = {
            **self.counts,
            "records_pending": acc["pending"],
            "records_open": acc["open"],
            "records_withheld": acc["withheld"] + self.evicted.get("withheld", 0),
            "rows_released": rows,
            "rows_withheld": acc["withheld_rows"] + self.evicted.get("withheld_rows", 0),
            "watermark": None if wm is None else _iso(wm),
            "commits": self.commit_n,
            "files": len(self.consumed),
            "files_failed": self.files_failed,
            "notes": self.notes,
            "dimension_values_rewritten": dict(sorted(self.rewritten.items())),
            "windows_kept": len(self.windows),
            "key_id": self.keyring.current.key_id,
            "key_ids": self.keyring.key_ids(),
            "engine": self.engine.name,
            "mode": "stream",
            "seconds": round(seconds, 3),
            "records_per_second": None,
            "window": self.opts.window,
            "by": list(self.opts.by),
            "k": self.opts.k if self.dp is None else None,
            "lateness_s": self.s.lateness_us // 1_000_000,
            "retention_s": self.s.retention_us // 1_000_000,
            "region": self.opts.region,
            "version": __version__,
        }
        if self.dp is not None:
            from telemetry.metrics.dp import COLUMNS

            summary["records_dp_truncated"] = acc["records_dp_truncated"] + self.evicted.get("records_dp_truncated", 0)
            summary["dp"] = self.dp.metadata(COLUMNS)
        return summary

    def _write_run_json(self) -> None:
        from telemetry.sinks.runinfo import write_run_json

        write_run_json(self.s.out, self.summary())


class _Reader:
    """The files of one micro-batch as read batches for the engine, each with the
    records that are too late for their window moved to its rejects; pushes a
    :class:`_Mark` per batch and per file end.

    Small files are gathered into larger batches (:class:`telemetry.readers.Coalescer`)
    until a file holds late records (for a window the watermark before that file has
    passed). Inside a gathered batch no record is late, so no record belongs to a
    window released or evicted at a boundary inside it: the decisions taken at those
    boundaries, after the whole batch is aggregated, see exactly the records of the
    files up to each boundary, as they would file by file. A file with late records
    starts a new batch, after the boundaries before it."""

    def __init__(self, stream: Stream, files: list[Found], marks: deque) -> None:
        self.stream = stream
        self.files = files
        self.marks = marks
        self.failed: list = []
        self.max_start = stream.max_start

    def watermark(self) -> int | None:
        return None if self.max_start is None else self.max_start - self.stream.s.lateness_us

    def __iter__(self) -> Iterator:
        from telemetry.readers import Coalescer, Piece, ReaderOptions, Reject, read_files

        st = self.stream
        options = ReaderOptions(extra=st.opts.extra, columns=st.job.columns)
        small = Coalescer(st.opts.batch_rows)
        ended: list[_Mark] = []  # files whose rows are all in batches handed out, or held
        group_watermark = self.watermark()

        def hand_out(ready):
            for batch in ready:
                self.marks.append(_Mark(watermark=group_watermark))
                yield batch
                self.marks.extend(ended)
                ended.clear()

        files = read_files([found.path for found in self.files], st.opts.fmt, batch_rows=st.opts.batch_rows,
                           options=options, threads=thread_count(st.opts))
        for found, file in zip(self.files, files, strict=True):
            before = self.watermark()
            if not small.held:
                group_watermark = before
            try:
                for item in file.items:
                    for read in item.read() if isinstance(item, Piece) else (item,):
                        read, late = self._too_late(read, before)
                        if late and small.held:  # late rows come after the decisions of the files before
                            yield from hand_out(small.flush())
                            self.marks.extend(ended)
                            ended.clear()
                            group_watermark = before
                        yield from hand_out(small.add(read))
                for note in file.format.notes(options) if file.format.notes is not None else ():
                    if note not in st.notes:
                        st.notes.append(note)
                        log.warning("%s", note)
            except (InputError, OSError) as exc:
                reason = str(exc) if isinstance(exc, InputError) else f"cannot read: {exc.strerror or exc}"
                self.failed.append(Reject(file=found.path, row=0, reason=f"file not read: {reason}", fields={}))
                log.warning("stream: %s was not read: %s", found.name, reason)
            st.max_start = self.max_start
            ended.append(_Mark(end=found, watermark=self.watermark()))
        yield from hand_out(small.flush())
        self.marks.extend(ended)

    def _too_late(self, read, watermark: int | None):
        """``read`` without the records whose window was evicted (they become rejects),
        and whether it had late records (for a window the watermark has passed); the
        largest start time seen moved forward."""
        from telemetry.quarantine import FULL_REJECTS, mask_fields
        from telemetry.readers import ReadBatch, Reject, reject_runs

        batch = read.batch
        if batch.num_rows == 0:
            return read, False
        start = batch.column("start_time")
        if start.type != TS:
            start = pc.cast(start, TS)
        # the microseconds as NumPy sees them, no copy: Arrow's cast to int64 cost five times more a small file
        start_us = start.to_numpy(zero_copy_only=False).view(np.int64)
        top = int(start_us.max())
        self.max_start = top if self.max_start is None else max(self.max_start, top)
        if watermark is None:
            return read, False
        window_us = self.stream.spec.window_us
        final = self.stream.final  # DP windows released before the watermark evicted them
        if not final and (int(start_us.min()) // window_us + 1) * window_us > watermark:
            return read, False  # the earliest record's window is still open: so are all the others'
        ends = (start_us // window_us + 1) * window_us
        passed = ends <= watermark
        released = np.isin(start_us // window_us, np.fromiter(final, np.int64, len(final))) if final else None
        if not passed.any() and released is None:
            return read, False
        late = ends + self.stream.s.retention_us <= watermark
        if released is not None:
            late |= released
        if not late.any():
            return read, bool(passed.any())
        late_rows = np.flatnonzero(late)
        reasons = np.where(released[late_rows], TOO_LATE_DP, TOO_LATE).astype(object) if released is not None else \
            np.full(len(late_rows), TOO_LATE, dtype=object)
        described = np.zeros(len(late_rows), np.bool_)  # past that many a reason is summarized, as in prepare
        for reason in dict.fromkeys(reasons.tolist()):
            described[np.flatnonzero(reasons == reason)[:FULL_REJECTS]] = True
        rejects = [Reject(read.file, int(read.rows[i]), reason, mask_fields(batch, i))
                   for i, reason in zip(late_rows[described].tolist(), reasons[described].tolist())]
        if not described.all():
            rejects += reject_runs(read.file, read.rows[late_rows[~described]], reasons[~described])
        keep = ~late
        return ReadBatch(batch.filter(pa.array(keep)), read.rows[keep], list(read.rejects) + rejects, read.file), \
            bool(passed.any())


def _check_out(out: Path) -> None:
    """OUT may be new, or a stream's own output; never a ``process`` output it would mix with."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a directory")
    for sub in ("metrics", "quarantine", "records"):
        root = out / sub
        if not root.is_dir():
            continue
        for _, _, names in os.walk(root):
            foreign = [n for n in names if not n.startswith(".") and not _OWN_OUTPUT.match(n)]
            if foreign:
                raise ConfigError(f"{root} holds files a stream did not write (a process run's output?); "
                                  "give the stream its own --out directory")
    out.mkdir(parents=True, exist_ok=True)


def _remove_uncommitted(out: Path, committed: int) -> None:
    """Outputs of a micro-batch that never committed (a crash between writing and committing)."""
    for sub in ("metrics", "quarantine", "records"):
        root = out / sub
        if not root.is_dir():
            continue
        for folder, _, names in os.walk(root):
            for name in names:
                m = re.match(r"^\.?(?:part|rejects)-c(\d{8})", name)
                if m and int(m[1]) > committed:
                    os.remove(os.path.join(folder, name))


def _now_us() -> int:
    return time.time_ns() // 1000


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).isoformat()
