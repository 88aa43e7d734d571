"""Event-time windows of a stream, their revisions and the rule that keeps
revisions from being differenced (SPEC section 9).

Each window keeps its ``total`` state (every record aggregated into it) until it
is evicted. When the watermark passes its end, the window is released as
revision 0 exactly as ``process`` releases it (:func:`telemetry.metrics.release`:
rows at k, the rest rolled up into ``__other__`` rows or withheld), and which
groups were published as their own rows is frozen: a group rolled up at
revision 0 stays in its ``__other__`` row, so no later release can be the old
roll-up minus one group. Records arriving afterwards (late) go to ``total`` and
to ``delta``. A released row is released again, as a full row with the next
revision number, only when the records of ``delta`` that fall into it reach k
distinct sources and k distinct destinations on their own; a row never
released so far (a withheld roll-up, or a row new to the window) is released,
as its revision 0, when all its records reach k. Until then late records wait
and are counted as pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kernels import aggregate as agg
from telemetry.metrics.frame import OTHER, dimension_text, distinct_counts, metric_rows
from telemetry.metrics.state import OTHER_CODE, State, concat
from telemetry.metrics.threshold import passes, release
from telemetry.schema import CHANNELS

RowKey = tuple  # (channel, *dimension texts as the output writes them; None for null)


def row_keys(state: State) -> list[RowKey]:
    """Each group's row key: the channel and its dimension values as output text.
    Each distinct value is written once, then taken per group (a day of windows holds
    hundreds of thousands of groups, and every commit's accounting asks)."""
    keys, dims = state.keys, state.dims
    columns = [_CHANNEL_TEXT[keys[:, 1]]]
    for j, values in enumerate(dims):
        text = np.empty(len(values) + 2, dtype=object)  # codes -2 (OTHER_CODE) and -1 (null) index the end
        text[: len(values)] = [dimension_text(value) for value in values]
        text[OTHER_CODE] = OTHER
        columns.append(text[keys[:, 2 + j]])
    return list(zip(*(column.tolist() for column in columns)))


_CHANNEL_TEXT = np.array(CHANNELS, dtype=object)


def table_keys(table: pa.Table, by: tuple[str, ...]) -> list[RowKey]:
    """The row keys of released metric rows."""
    columns = [table.column(name).to_pylist() for name in ("channel", *by)]
    return list(zip(*columns))


def records_of(table: pa.Table) -> list[int]:
    """Records behind each metric row (attempts of voice rows, submitted of message rows)."""
    attempts, submitted = table.column("attempts").to_pylist(), table.column("submitted").to_pylist()
    return [a if a is not None else s or 0 for a, s in zip(attempts, submitted)]


def with_revisions(table: pa.Table, revisions: list[int]) -> pa.Table:
    return table.append_column("revision", pa.array(revisions, pa.int32()))


def first_release(due: list[tuple[Window, State]], k: int) -> pa.Table:
    """Revision 0 of each window, from the state it had when the watermark passed
    its end (:meth:`Window.begin_release`), as ``process`` releases them: one release
    over all of them (a window's rows depend only on its own state), each window's
    rows then registered as its revision 0."""
    released = release(concat([state for _, state in due]), k=k)
    table = released.table
    starts = table.column("window_start").cast(pa.int64()).to_numpy()
    window_us = due[0][1].spec.window_us
    edges = [[w.index * window_us, (w.index + 1) * window_us] for w, _ in due]
    bounds = np.searchsorted(starts, edges)
    for (window, _), (a, b) in zip(due, bounds.tolist()):  # the rows come sorted by window_start
        window.register(table.slice(a, b - a))
    return with_revisions(table, [0] * table.num_rows)


@dataclass
class Window:
    """One event-time window's state and what has been released of it."""

    index: int
    total: State
    delta: State | None = None
    released: bool = False
    rows: dict[RowKey, list[int]] = field(default_factory=dict)  # released row -> [revision, records]
    own: set[RowKey] = field(default_factory=set)  # groups published as their own rows at revision 0
    changed: bool = True  # since the last checkpoint
    _accounting: dict[str, int] | None = field(default=None, repr=False)

    def add(self, state: State) -> None:
        self.total = self.total.merge(state)
        if self.released:
            self.delta = state if self.delta is None else self.delta.merge(state)
        self._touch()

    def begin_release(self) -> State:
        """The watermark passed the window's end: what revision 0 is made of. Records
        added from now on are late (``delta``); :func:`first_release` publishes it."""
        self.released = True
        self._touch()
        return self.total

    def register(self, table: pa.Table) -> None:
        """Revision 0's rows (this window's part of :func:`first_release`'s table)."""
        by = self.total.spec.by
        keys = table_keys(table, by)
        self.rows = {key: [0, n] for key, n in zip(keys, records_of(table))}
        self.own = {key for key in keys if not by or key[-1] != OTHER}
        self._touch()

    def _rows_of(self, state: State) -> tuple[State, list[RowKey]]:
        """``state`` regrouped into the rows its groups are published in."""
        keys = state.keys.copy()
        if state.spec.by and state.n_groups:
            rolled = np.fromiter((key not in self.own for key in row_keys(state)), np.bool_, state.n_groups)
            keys[rolled, -1] = OTHER_CODE  # the published keys of _published_keys, as codes
        rows = state.regroup(keys)
        return rows, row_keys(rows)

    def late_release(self, k: int) -> pa.Table | None:
        """The rows whose late records reach k on their own (or, for a row never
        released, whose records all together do), as their next revisions."""
        if self.delta is None:
            return None
        delta, delta_keys = self._rows_of(self.delta)
        total, total_keys = self._rows_of(self.total)
        index = {key: i for i, key in enumerate(total_keys)}
        total_distinct = distinct_counts(total)
        delta_ok, total_ok = passes(distinct_counts(delta), k), passes(total_distinct, k)
        ready = sorted(
            index[key] for i, key in enumerate(delta_keys)
            if (delta_ok[i] if key in self.rows else total_ok[index[key]])
        )
        if not ready:
            return None
        keep = np.zeros(total.n_groups, np.bool_)
        keep[ready] = True
        table = metric_rows(total, keep, total_distinct)
        revisions = []
        for key, n in zip(table_keys(table, self.total.spec.by), records_of(table)):
            revision = self.rows[key][0] + 1 if key in self.rows else 0
            self.rows[key] = [revision, n]
            revisions.append(revision)
        done = {total_keys[i] for i in ready}
        waiting = np.flatnonzero([key not in done for key in self._published_keys(self.delta)])
        self.delta = self.delta.take(waiting) if len(waiting) else None
        self._touch()
        return with_revisions(table, revisions)

    def _published_keys(self, state: State) -> list[RowKey]:
        """For each group of ``state`` (not regrouped), the key of the row it is published in."""
        keys = row_keys(state)
        if state.spec.by:
            keys = [key if key in self.own else (*key[:-1], OTHER) for key in keys]
        return keys

    def _touch(self) -> None:
        self.changed = True
        self._accounting = None

    def accounting(self) -> dict[str, int]:
        """Records and groups of this window by where they stand (open: not released
        yet; pending: late records waiting for their row's next revision; withheld:
        in no released row), and the rows released."""
        if self._accounting is None:
            self._accounting = self._count()
        return self._accounting

    def _count(self) -> dict[str, int]:
        records = self.total.records
        if not self.released:
            return {"open": records, "pending": 0, "withheld": 0, "withheld_rows": 0, "rows_released": 0}
        pending = 0
        if self.delta is not None:
            keys = self._published_keys(self.delta)
            counts = self.delta.counts[:, agg.RECORDS]
            pending = int(sum(n for key, n in zip(keys, counts.tolist()) if key in self.rows))
        covered = sum(n for _, n in self.rows.values())
        keys = self._published_keys(self.total)
        withheld_rows = sum(1 for key in keys if key not in self.rows)
        return {"open": 0, "pending": pending, "withheld": records - covered - pending,
                "withheld_rows": withheld_rows, "rows_released": len(self.rows)}
