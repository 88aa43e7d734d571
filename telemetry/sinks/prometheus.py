"""Prometheus / OpenMetrics exposition of the latest complete metrics window.

A custom ``prometheus_client`` collector reads ``DIR/metrics/`` and
``DIR/run.json`` at scrape time, re-reading a file only when its size or
modification time changed, so metrics written after the server started are
picked up by the next scrape. Exposed families (docs/outputs.md):

* ``telemetry_<column>`` gauges, one per metric column, labelled ``channel``
  and the dimension columns, for the latest window whose ``window_end`` has
  passed (an open window would show partial counts as if they were final);
* ``telemetry_window_end_seconds`` (and ``_start_``) of that window;
* ``telemetry_records_total{outcome=ok|quarantined|withheld}`` from run.json (not the
  opt-out count: with few objectors it is their activity, and the endpoint is open);
* ``telemetry_series_merged``: label sets folded into ``__other__`` by the cardinality guard.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from telemetry.errors import ConfigError, InputError
from telemetry.metrics.intervals import bounds, wilson
from telemetry.sinks.metricsdir import (
    METRIC_COLUMNS, OTHER, dimension_columns, latest_revisions, metric_columns, metric_files, read_run,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464  # the port OpenTelemetry's Prometheus exporter registered
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_SERIES = 2000
MIN_MAX_SERIES = 5  # one ``__other__`` row per channel must always fit
PREFIX = "telemetry_"
# records_opted_out stays in run.json only: when few people opted out it is exactly
# their activity, and the endpoint has no authentication (docs/outputs.md).
OUTCOMES = {"ok": "records_ok", "quarantined": "records_quarantined", "withheld": "records_withheld"}

# What a merged ``__other__`` row can honestly carry. Counts and sums add up;
# these ratios are recomputed from counts (exact); every other column (SIP
# ratios, means, percentiles, distinct counts) needs state the metrics do not
# keep, so the merged row leaves it out rather than publish a wrong number.
_RATIOS = {
    "asr": (("answered",), "attempts"),
    "ner": (("answered", "busy", "no_answer", "rejected"), "attempts"),
    "delivery_rate": (("delivered",), "submitted"),
    "dlr_rate": (("delivered", "undelivered", "expired", "rejected", "deleted"), "submitted"),
}
_WEIGHTED = {"acd_s": "answered", "short_call_ratio": "answered"}  # mean over answered calls
_SUMS = (
    "attempts", "answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion",
    "total_duration_s", "submitted", "delivered", "undelivered", "expired", "deleted", "pending",
)


def column_help(column: str) -> str:
    kind = "count" if column in _SUMS else "value"
    return f"{column} ({kind}) per channel and dimensions in the latest complete window; see docs/metrics.md"


@dataclass
class _Cached:
    stamp: tuple[int, int]
    frame: pl.DataFrame


class MetricsCollector(Collector):
    """Collector over one output directory. ``clock`` gives UNIX seconds (injected for tests)."""

    def __init__(self, out: str | Path, *, max_series: int = DEFAULT_MAX_SERIES,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(max_series, int) or max_series < MIN_MAX_SERIES:
            raise ConfigError(f"max_series must be a whole number >= {MIN_MAX_SERIES}; got {max_series!r}")
        self.out = Path(out)
        self.max_series = max_series
        self.clock = clock
        self._files: dict[Path, _Cached] = {}
        self._lock = threading.Lock()  # the HTTP server answers scrapes on several threads

    # -- reading -------------------------------------------------------------------------------

    def _frame(self, path: Path) -> pl.DataFrame | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._files.get(path)
        if hit is None or hit.stamp != stamp:
            try:
                frame = pl.read_parquet(path, hive_partitioning=False)
            except (OSError, pl.exceptions.PolarsError):
                raise InputError(f"cannot read metrics file {path.parent.name}/{path.name}") from None
            hit = self._files[path] = _Cached(stamp, frame)
        return hit.frame

    def latest_window(self) -> pl.DataFrame:
        """Rows of the latest window with ``window_end <= now``; empty if there is none."""
        now_us = int(self.clock() * 1_000_000)
        files = metric_files(self.out)
        with self._lock:
            for gone in set(self._files) - set(files):
                del self._files[gone]
            # A stream writes a file per commit: the latest window's rows (and their
            # revisions) can be spread over several files of its date partition.
            frames = [f for f in (self._frame(path) for path in files) if f is not None and not f.is_empty()]
        done = [f.filter(f["window_end"].cast(pl.Int64) <= now_us) for f in frames]
        done = [f for f in done if not f.is_empty()]
        if done:
            last = max(f["window_end"].max() for f in done)
            rows = pl.concat([f.filter(pl.col("window_end") == last) for f in done], how="diagonal_relaxed")
            return latest_revisions(rows)
        return pl.DataFrame()

    # -- exposition ----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        try:
            window = self.latest_window()
            run = read_run(self.out)
        except InputError as exc:
            log.warning("serve: %s; exposing no metrics this scrape", exc)
            return
        merged = 0
        if not window.is_empty():
            window, merged = guard_cardinality(window, self.max_series)
        yield from self._gauges(window)
        merged_family = GaugeMetricFamily(
            PREFIX + "series_merged",
            "label sets of the latest window folded into __other__ by the max_series guard",
            value=merged,
        )
        yield merged_family
        records = CounterMetricFamily(
            PREFIX + "records",
            "records of the last run by outcome (withheld is a subset of ok)",
            labels=["outcome"],
        )
        for outcome, key in OUTCOMES.items():
            value = run.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                records.add_metric([outcome], float(value))
        yield records

    def _gauges(self, window: pl.DataFrame) -> Iterator[Metric]:
        if window.is_empty():
            return
        start = window["window_start"].cast(pl.Int64)[0] / 1e6
        end = window["window_end"].cast(pl.Int64)[0] / 1e6
        yield GaugeMetricFamily(PREFIX + "window_start_seconds",
                                "start of the exposed window, UNIX seconds", value=start)
        yield GaugeMetricFamily(PREFIX + "window_end_seconds",
                                "end of the exposed window, UNIX seconds", value=end)
        dims = dimension_columns(window)
        label_names = ["channel", *dims]
        labels = [
            ["" if v is None else str(v) for v in row]
            for row in window.select(label_names).iter_rows()
        ]
        for column in metric_columns(window):
            family = GaugeMetricFamily(PREFIX + column, column_help(column), labels=label_names)
            for label_values, value in zip(labels, window[column].to_list()):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    family.add_metric(label_values, float(value))
            yield family


def guard_cardinality(window: pl.DataFrame, max_series: int) -> tuple[pl.DataFrame, int]:
    """At most ``max_series`` rows: the busiest kept, the rest merged per channel
    into a row whose every dimension is ``__other__``. Returns (rows, rows merged)."""
    if window.height <= max_series:
        return window, 0
    dims = dimension_columns(window)
    volume = pl.col("attempts").fill_null(0) + pl.col("submitted").fill_null(0)
    all_other = pl.all_horizontal([pl.col(d) == OTHER for d in dims]) if dims else pl.lit(False)
    ranked = window.with_columns(_volume=volume, _other=all_other.fill_null(False))
    # A row already labelled __other__ everywhere would collide with the merged row: merge it too.
    keep_n = max(0, max_series - window["channel"].n_unique())
    candidates = ranked.filter(~pl.col("_other")).sort(
        ["_volume", "channel", *dims], descending=[True, False, *([False] * len(dims))], nulls_last=True
    )
    kept = candidates.head(keep_n)
    rest = pl.concat([candidates.slice(keep_n), ranked.filter(pl.col("_other"))])
    merged = _merge_rows(rest, dims)
    out = pl.concat([kept.drop("_volume", "_other"), merged], how="diagonal_relaxed")
    return out.select(window.columns), rest.height


def _merge_rows(rest: pl.DataFrame, dims: list[str]) -> pl.DataFrame:
    present = set(rest.columns)
    aggs = [pl.col("window_start").first(), pl.col("window_end").first()]
    for c in _SUMS:
        if c in present:
            aggs.append(pl.when(pl.col(c).is_null().all()).then(None).otherwise(pl.col(c).sum()).alias(c))
    for c, weight in _WEIGHTED.items():
        if c in present and weight in present:
            w = pl.col(weight).fill_null(0)
            aggs.append(((pl.col(c).fill_null(0) * w).sum() / w.sum()).alias(c))
    grouped = rest.group_by("channel", maintain_order=True).agg(aggs)
    ratios = []
    for c, (nums, den) in _RATIOS.items():
        if c in present:
            num = grouped.select(pl.sum_horizontal([pl.col(n) for n in nums])).to_series()
            ratios += _ratio_columns(c, num.to_numpy(), grouped[den].fill_null(0).to_numpy())
    grouped = grouped.with_columns(*ratios, *[pl.lit(OTHER).alias(d) for d in dims])
    for c in _WEIGHTED:  # 0/0 gave NaN: no answered call, so no ACD
        if c in grouped.columns:
            grouped = grouped.with_columns(pl.col(c).fill_nan(None))
    missing = [c for c in METRIC_COLUMNS if c in present and c not in grouped.columns]
    return grouped.with_columns([pl.lit(None, dtype=rest.schema[c]).alias(c) for c in missing])


def _ratio_columns(name: str, num, den) -> list[pl.Series]:
    """A merged row's ratio and its Wilson bounds (section 4), null where ``den`` is 0."""
    import numpy as np

    num = np.nan_to_num(np.asarray(num, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(den > 0, num / den, np.nan)
    lo, hi = wilson(num, den)
    return [pl.Series(col, values).fill_nan(None) for col, values in zip((name, *bounds(name)), (value, lo, hi))]


def make_registry(collector: MetricsCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)  # no read of the dataset at registration
    registry.register(collector)
    return registry


def serve(out: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          max_series: int = DEFAULT_MAX_SERIES):
    """Start the HTTP exporter in a background thread; returns ``(server, thread)``.

    ``/metrics`` (any path) answers in the text format, or OpenMetrics when the
    ``Accept`` header asks for ``application/openmetrics-text``.
    """
    from prometheus_client import start_http_server

    registry = make_registry(MetricsCollector(out, max_series=max_series))
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
