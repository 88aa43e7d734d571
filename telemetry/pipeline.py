"""The batch pipeline behind ``telemetry process`` and :func:`telemetry.process`.

read batches → kernels (normalize, pseudonymize, derive) → partial state per
batch → merge → finalize + release → sinks (metrics, run.json, quarantine,
records). Every input record is counted in exactly one of ``records_ok``,
``records_quarantined`` and ``records_opted_out``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from telemetry.engine import Job

from telemetry import __version__
from telemetry.config import DEFAULT_K, Options, load_config, make_options, thread_count
from telemetry.errors import ConfigError, InputError
from telemetry.keys import Keyring, as_keyring

log = logging.getLogger("telemetry")


@dataclass
class Result:
    """What a run produced: released metrics (``table``, Arrow; ``metrics``, the same
    rows as a polars frame) and the run summary."""

    table: pa.Table
    summary: dict[str, Any]
    out: Path | None = None

    @cached_property
    def metrics(self) -> pl.DataFrame:
        from telemetry.metrics.frame import as_frame

        return as_frame(self.table)

    @property
    def exit_code(self) -> int:
        return 1 if self.summary["records_quarantined"] else 0


def process(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    key: bytes | Keyring,
    out: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    progress: Any = None,
    client: Any = None,
    **options: Any,
) -> Result:
    """Run the pipeline over ``inputs``; see :class:`telemetry.config.Options` for options.

    ``out`` (optional) receives ``metrics/``, ``run.json``, ``quarantine/`` and,
    with ``emit_records=True``, ``records/``, replacing those of an earlier run only
    once this one has succeeded (:mod:`telemetry.sinks.outdir`). ``config`` names a
    ``telemetry.toml`` whose values the keyword options override. ``engine="dask"``
    runs on the cluster of ``client`` (a ``distributed.Client``), or at ``scheduler=``,
    or of ``workers=`` local processes (SPEC section 10).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [os.fspath(p) for p in inputs]
    if not paths:
        raise ValueError("inputs must name at least one file")
    opts = make_options(load_config(config) if config is not None else None, **options)
    return run(paths, as_keyring(key), opts, Path(out) if out is not None else None, progress, client)


def run(paths: list[str], keyring: Keyring, opts: Options, out: Path | None, progress=None,
        client: Any = None) -> Result:
    from telemetry.engine import Job

    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"input {path} does not exist or is not a file")
    job = Job(keyring, opts)
    try:
        job.prepare_only()
    except ValueError as exc:  # bad window / by / region: a configuration error for the CLI
        raise ConfigError(str(exc)) from None
    if opts.k < DEFAULT_K:
        log.warning("k = %d is below %d: a released row may cover fewer than %d distinct sources "
                    "or destinations and so single out a person", opts.k, DEFAULT_K, DEFAULT_K)
    if job._parts()["opt_out"] is not None:
        missing = job._parts()["opt_out"].uncovered(keyring.key_ids())
        if missing:
            log.warning("the opt-out list has no entries for key epoch(s) %s", ", ".join(missing))

    if out is None:
        return _execute(paths, keyring, job, opts, None, progress, client)
    from telemetry.sinks.outdir import staged

    with staged(out, paths) as stage:  # the outputs replace the previous ones only if the run succeeds
        for name in ("metrics", "records", "quarantine"):  # present, if empty, after every run
            (stage / name).mkdir()
        result = _execute(paths, keyring, job, opts, stage, progress, client)
    return Result(result.table, result.summary, out)


def _execute(
    paths: list[str], keyring: Keyring, job: Job, opts: Options, out: Path | None, progress, client=None
) -> Result:
    """The run proper, writing its outputs (if any) into ``out``."""
    from telemetry.engine import get_engine
    from telemetry.readers import ReaderOptions, notes

    engine = get_engine(opts.engine, thread_count(opts), scheduler=opts.scheduler, workers=opts.workers,
                        client=client)
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc)
    reader_options = ReaderOptions(extra=opts.extra, columns=job.columns)
    release = partial(_release, opts=opts)
    try:
        if hasattr(engine, "process"):  # it reads the inputs where it works (Dask: on the workers)
            released, totals, rewritten = engine.process(
                job, paths, opts.fmt, opts.batch_rows, reader_options, out, progress, release
            )
        else:
            state, totals, rewritten = _run_here(engine, job, paths, opts, reader_options, out, progress)
            released = release(state, job)
    finally:
        engine.close()
    _warn_rewritten(rewritten)
    assert totals["records_in"] == (
        totals["records_ok"] + totals["records_quarantined"] + totals["records_opted_out"]
    ), "record accounting does not add up"

    seconds = time.perf_counter() - started
    run_notes = notes(paths, opts.fmt, reader_options)
    for note in run_notes:
        log.warning("%s", note)
    summary = {
        **totals,
        "records_late": 0,
        "dimension_values_rewritten": dict(sorted(rewritten.items())),
        "rows_released": released.rows_released,
        "rows_withheld": released.rows_withheld,
        "records_withheld": released.records_withheld,
        "rows_rolled_up": released.rows_rolled_up,
        "key_id": keyring.current.key_id,
        "key_ids": keyring.key_ids(),
        "engine": engine.name,
        "threads": getattr(engine, "threads", None),
        "seconds": round(seconds, 3),
        "records_per_second": round(totals["records_in"] / seconds, 1) if seconds > 0 else None,
        "started_at": started_at.isoformat(timespec="seconds"),
        "inputs": len(paths),
        "window": opts.window,
        "by": list(opts.by),
        "k": opts.k if job.dp is None else None,
        "region": opts.region,
        "rate_deck": bool(opts.rate_deck),
        "opt_out": bool(opts.opt_out),
        "version": __version__,
        "notes": run_notes,
    }
    if job.dp is not None:
        summary["records_dp_truncated"] = released.records_dp_truncated
        summary["dp"] = released.dp
    if out is not None:
        from telemetry.sinks.parquet import write_partitioned
        from telemetry.sinks.runinfo import write_run_json

        write_partitioned(released.table, out / "metrics", "window_start", "part-0")
        write_run_json(out, summary)
    return Result(released.table, summary, out)


def _release(state, job, opts: Options):
    """The k-threshold release of the merged ``state`` (None: no batch was read), or the
    DP release when the run has ``dp_epsilon`` (SPEC 11: no roll-up rows; the Parquet
    metadata carries ``dp``)."""
    if state is None:
        state = job.work(_empty_read()).state
    if job.dp is None:
        from telemetry.metrics import release

        return release(state, job.spec, k=opts.k)
    from telemetry.metrics.dp import release as dp_release
    from telemetry.metrics.dp import tagged

    released = dp_release(state)
    released.table = tagged(released.table, released.dp)
    return released


def _warn_rewritten(rewritten: dict[str, int]) -> None:
    """One warning per dimension column and kind of rewrite: the count, never a value."""
    from telemetry.dimensions import KINDS

    for name, n in sorted(rewritten.items()):
        column, kind = name.split(" ")
        log.warning("%s: %s record(s) with %s", column, f"{n:,}", KINDS[kind])


def _run_here(engine, job, paths: list[str], opts: Options, reader_options, out: Path | None, progress):
    """Batches read on this machine, Partials merged and written here as they come."""
    from telemetry.quarantine import QuarantineWriter
    from telemetry.readers import plan_inputs, rejected

    quarantine = QuarantineWriter(out) if out is not None else None
    totals = dict(records_in=0, records_ok=0, records_quarantined=0, records_opted_out=0)
    rewritten: dict[str, int] = {}
    state = None
    reads = plan_inputs(paths, opts.fmt, batch_rows=opts.batch_rows, options=reader_options)
    for seq, part in enumerate(engine.run(job, reads)):
        state = part.state if state is None else state.merge(part.state)
        totals["records_in"] += part.records_in
        totals["records_ok"] += part.records_ok
        totals["records_quarantined"] += rejected(part.rejects)
        totals["records_opted_out"] += part.opted_out
        for name, n in part.rewritten.items():
            rewritten[name] = rewritten.get(name, 0) + n
        if quarantine is not None and part.rejects:
            quarantine.write(part.rejects)
        if out is not None and part.records is not None and part.records.num_rows:
            write_records(out, part.records, f"part-{seq:06d}")
        if progress is not None:
            progress(totals)
    if quarantine is not None:
        quarantine.close()
    return state, totals, rewritten


def write_records(out: Path, records, name: str) -> None:
    """A batch of record output as ``out/records/date=…/name.parquet``."""
    import pyarrow as pa

    from telemetry.sinks.parquet import write_partitioned

    write_partitioned(pa.Table.from_batches([records]), out / "records", "start_time", name)


def _empty_read():
    import pyarrow as pa

    from telemetry.readers import ReadBatch
    from telemetry.schema import CANONICAL

    empty = pa.RecordBatch.from_pylist([], schema=CANONICAL)
    return ReadBatch(batch=empty, rows=np.zeros(0, dtype=np.int64), rejects=[], file="")
