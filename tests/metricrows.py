"""Metric rows written by a test, as ``process`` lays them out (``DIR/metrics/date=…/
part-0.parquet`` and ``DIR/run.json``), for the readers of an output directory
(tests/test_serve.py, tests/test_report.py): their numbers are then recomputed from
these rows in DuckDB by the test, never by the sink under test."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

from telemetry.metrics.frame import schema

BY = ("route", "dst_region")
VOICE_STATUSES = ("answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion")
MESSAGE_STATUSES = ("delivered", "undelivered", "expired", "rejected", "deleted", "pending")


def _percentiles(rng: np.random.Generator, low: float, high: float) -> list[float]:
    return sorted(float(v) for v in rng.uniform(low, high, 3))


def voice_row(rng: np.random.Generator, attempts: int) -> dict:
    """Counts drawn per status (every status, ``rejected`` included, present), and
    per-row ratios consistent with them."""
    counts = rng.multinomial(attempts, [0.45, 0.12, 0.12, 0.12, 0.07, 0.07, 0.05])
    row = dict(zip(VOICE_STATUSES, (int(c) for c in counts)), attempts=attempts)
    answered = row["answered"]
    reached = answered + row["busy"] + row["no_answer"] + row["rejected"]
    acd = float(rng.uniform(20, 300)) if answered else None
    p50, p95, p99 = _percentiles(rng, 400, 6000)
    return row | {
        "asr": answered / attempts, "ner": reached / attempts, "ser": float(rng.uniform(0.3, 0.9)),
        "seer": float(rng.uniform(0.5, 1)), "isa": float(rng.uniform(0, 0.2)), "acd_s": acd,
        "total_duration_s": acd * answered if answered else 0.0,
        "short_call_ratio": float(rng.uniform(0, 0.3)) if answered else None,
        "pdd_p50_ms": p50, "pdd_p95_ms": p95, "pdd_p99_ms": p99, "mos_mean": float(rng.uniform(3, 4.5)),
        "jitter_p95_ms": float(rng.uniform(1, 40)), "packet_loss_mean_pct": float(rng.uniform(0, 3)),
        "distinct_sources": int(attempts * 0.8), "distinct_destinations": int(attempts * 0.9),
    }  # fmt: skip


def message_row(rng: np.random.Generator, submitted: int) -> dict:
    """``pending`` is what has no final status, so it is a sixth of the messages here."""
    counts = rng.multinomial(submitted, [0.55, 0.1, 0.07, 0.06, 0.05, 0.17])
    row = dict(zip(MESSAGE_STATUSES, (int(c) for c in counts)), submitted=submitted)
    final = submitted - row["pending"]
    p50, p95, p99 = _percentiles(rng, 60, 900) if row["delivered"] else (None, None, None)
    return row | {
        "delivery_rate": row["delivered"] / submitted, "dlr_rate": final / submitted,
        "latency_p50_s": p50, "latency_p95_s": p95, "latency_p99_s": p99,
        "distinct_sources": int(submitted * 0.7), "distinct_destinations": int(submitted * 0.95),
    }  # fmt: skip


def write(out: Path, rows: list[dict], run: dict | None = None) -> pl.DataFrame:
    """Write ``rows`` (dicts with window_start, width ``window``, channel, the ``BY``
    columns and any metric columns; the rest null) as ``process`` would; returns them."""
    frame = pl.DataFrame(rows, schema=pl.Schema(pl.from_arrow(schema(BY).empty_table()).schema))
    day = frame["window_start"].dt.date()
    for date in day.unique().sort().to_list():
        folder = out / "metrics" / f"date={date:%Y-%m-%d}"
        folder.mkdir(parents=True)
        frame.filter(day == date).write_parquet(folder / "part-0.parquet")
    (out / "run.json").write_text(json.dumps(run or {}))
    return frame


def window(start: dt.datetime, width: dt.timedelta) -> dict:
    return {"window_start": start, "window_end": start + width}
