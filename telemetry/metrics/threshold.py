"""The k-threshold release rule (SPEC section 5) with the ``__other__`` roll-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from kernels import aggregate as agg
from telemetry.metrics.frame import Measures, as_frame, distinct_counts, measures, rows_of
from telemetry.metrics.spec import AggSpec
from telemetry.metrics.state import OTHER_CODE, State, merge, recoded, side_by_side

if TYPE_CHECKING:
    import polars as pl


@dataclass
class Released:
    """What may leave the processor, and what the rule held back.

    ``rows_withheld``/``records_withheld`` count groups (at the configured
    grouping) and their records that appear in no released row;
    ``rows_rolled_up`` counts groups below k that were published inside a
    released ``__other__`` row. The rows are ``table`` (Arrow, what the sinks
    write) and, as a polars frame, ``metrics``.
    """

    table: pa.Table
    rows_released: int
    rows_withheld: int
    records_withheld: int
    rows_rolled_up: int
    k: int

    @cached_property
    def metrics(self) -> pl.DataFrame:
        return as_frame(self.table)


def passes(distinct: tuple[np.ndarray, np.ndarray], k: int) -> np.ndarray:
    """Groups with at least k distinct sources and k distinct destinations, from a
    state's :func:`~telemetry.metrics.frame.distinct_counts`."""
    sources, destinations = distinct
    return (sources >= k) & (destinations >= k)


def release(state: State, spec: AggSpec | None = None, k: int = 5) -> Released:
    """Rows with ≥ k distinct sources and destinations as they are; the others
    merged (as states) per window, channel and coarser dimensions into a row whose
    last ``by`` column is ``__other__``, itself released only if it reaches k."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)
    if spec is not None and spec.key() != state.spec.key():
        raise ValueError("spec differs from the spec the state was accumulated with")
    # Rows come straight from the state's runs: no copy of the groups that pass, and no
    # consolidation of the runs; only groups that several runs hold are merged first.
    parts = state.apart()

    def rows_and_below(part: State, alone: np.ndarray) -> tuple[Rows, State]:
        distinct = distinct_counts(part)
        ok = passes(distinct, k) & alone
        return _rows(part, ok, distinct), part.take(np.flatnonzero(alone & ~ok))

    def with_shared(part: State, alone: np.ndarray) -> tuple[Rows, State, State | None]:
        """The part's rows and groups below k among those no other part holds, and a copy
        of those it shares (None: it shares none)."""
        return *rows_and_below(part, alone), (None if alone.all() else part.take(np.flatnonzero(~alone)))

    # the parts side by side on the cores (release runs after the workers are done); then the
    # groups several parts hold, merged here, where the merge spreads its sketches over the cores
    done = side_by_side(sum(len(alone) for _, alone in parts), *(partial(with_shared, *p) for p in parts))
    rows = [part_rows for part_rows, _, _ in done]
    below = [part_below for _, part_below, _ in done]
    shared = [copy for _, _, copy in done if copy is not None]
    if shared:
        merged = merge(shared)
        merged_rows, merged_below = rows_and_below(merged, np.ones(merged.n_groups, np.bool_))
        rows.insert(0, merged_rows)
        below.insert(0, merged_below)
    below = merge(below)
    records = below.counts[:, agg.RECORDS]
    rolled_up = 0
    withheld_rows = below.n_groups
    withheld_records = int(records.sum())
    if state.spec.by and below.n_groups:
        keys = below.keys.copy()
        keys[:, -1] = OTHER_CODE
        rollup = below.regroup(keys)
        # which below-k groups landed in a roll-up that reaches k
        gmap, _ = agg.group_rows(np.ascontiguousarray(keys))
        distinct = distinct_counts(rollup)
        rollup_ok = passes(distinct, k)
        published = rollup_ok[gmap]
        rolled_up = int(published.sum())
        withheld_rows = int((~published).sum())
        withheld_records = int(records[~published].sum())
        rows.append(_rows(rollup, rollup_ok, distinct))
    # one table of every part's rows: building columns costs about 2 ms a call whatever the rows
    dims, keys = recoded([(part_dims, part_keys) for part_dims, part_keys, _ in rows])
    table = rows_of(state.spec, np.vstack(keys), dims, Measures.stacked([m for _, _, m in rows]), ordered=True)
    return Released(table, table.num_rows, withheld_rows, withheld_records, rolled_up, k)


#: The rows a state's part releases: its value lists, and the key rows and measures of
#: the groups released.
Rows = tuple[list[list], np.ndarray, Measures]


def _rows(state: State, ok: np.ndarray, distinct: tuple[np.ndarray, np.ndarray]) -> Rows:
    """The rows of the groups where ``ok`` is True (``distinct``: the state's distinct counts)."""
    groups = np.flatnonzero(ok)
    return state.dims, state.keys[groups], measures(state, distinct).take(groups)
