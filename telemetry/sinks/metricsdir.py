"""Reading an output directory back: ``DIR/metrics/`` and ``DIR/run.json``.

The exporter, the alert generator and the report read what ``process`` (or a
stream) wrote, never records. Files are written to a dot-prefixed temporary
name and renamed, so anything starting with a dot is a write in progress.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from telemetry.errors import ConfigError, InputError
from telemetry.metrics.frame import DISTINCT_COLUMNS, MESSAGE_COLUMNS, OTHER, VOICE_COLUMNS

__all__ = [
    "OTHER", "VOICE_CHANNELS", "MESSAGE_CHANNELS", "METRIC_COLUMNS", "metric_files", "signature",
    "read_metrics", "latest_revisions", "read_run", "dimension_columns", "metric_columns", "check_dir",
]

VOICE_CHANNELS = ("voice", "voicemail", "conference")
MESSAGE_CHANNELS = ("sms", "mms")
METRIC_COLUMNS = (*VOICE_COLUMNS, *MESSAGE_COLUMNS, *DISTINCT_COLUMNS)
_TIME_COLUMNS = ("window_start", "window_end")


def check_dir(out: str | Path) -> Path:
    """``out`` as a Path, or a one-line error if it is not a directory."""
    path = Path(out)
    if not path.is_dir():
        raise ConfigError(f"output directory {path} does not exist; pass the --out DIR of a process run")
    return path


def metric_files(out: Path) -> list[Path]:
    """Parquet files of ``out/metrics/date=*/``, oldest date first."""
    root = out / "metrics"
    if not root.is_dir():
        return []
    files = []
    for part in sorted(root.glob("date=*")):
        files.extend(p for p in sorted(part.glob("*.parquet")) if not p.name.startswith("."))
    return files


def signature(out: Path) -> tuple:
    """Changes whenever a metrics file or run.json is added, replaced or removed."""
    sig = []
    for path in [*metric_files(out), out / "run.json"]:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        sig.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(sig)


def read_metrics(out: str | Path, files: list[Path] | None = None) -> pl.DataFrame:
    """Every released metric row of ``out`` (or of ``files``), sorted by window; of a
    stream's output (rows with a ``revision``), the latest revision of each row."""
    out = Path(out)
    files = metric_files(out) if files is None else files
    if not files:
        return pl.DataFrame()
    try:
        frames = [pl.read_parquet(f, hive_partitioning=False) for f in files]
    except (OSError, pl.exceptions.PolarsError):
        raise InputError(f"cannot read the metrics under {out / 'metrics'}: a file is not readable Parquet") from None
    df = pl.concat(frames, how="diagonal_relaxed")
    missing = [c for c in (*_TIME_COLUMNS, "channel") if c not in df.columns]
    if missing:
        raise InputError(f"{out / 'metrics'} is not a telemetry metrics dataset (no {', '.join(missing)} column)")
    return latest_revisions(df).sort("window_start", "channel", maintain_order=True)


def latest_revisions(df: pl.DataFrame) -> pl.DataFrame:
    """The row of highest ``revision`` per window, channel and dimensions (as it is
    when there is no ``revision`` column: a batch run releases each row once)."""
    if "revision" not in df.columns or df.is_empty():
        return df
    key = [*_TIME_COLUMNS, "channel", *dimension_columns(df)]
    return df.sort("revision").unique(subset=key, keep="last", maintain_order=True)


#: Fields of run.json that the exporter and the report show, and the type each must have.
_RUN_TYPES: dict[str, type] = {
    **dict.fromkeys(("records_in", "records_ok", "records_quarantined", "records_opted_out", "records_late",
                     "records_withheld", "rows_released", "rows_withheld", "rows_rolled_up", "k"), int),
    "window": str, "key_id": str, "started_at": str, "by": list,
}


def read_run(out: Path) -> dict[str, Any]:
    """The run summary, or an empty dict when there is none (yet). A summary whose shown
    fields have the wrong type (an edited file) is an InputError naming the field."""
    path = out / "run.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError):
        raise InputError(f"{path} is not readable JSON") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a telemetry run summary (not a JSON object)")
    for name, kind in _RUN_TYPES.items():
        if name not in data:
            continue
        value = data[name]
        fits = type(value) is kind if kind is int else isinstance(value, kind)  # a bool is no count
        if not fits or (kind is list and not all(isinstance(v, str) for v in value)):
            raise InputError(f"{path} is not a telemetry run summary ({name} is not {_KIND_NAMES[kind]})")
    return data


_KIND_NAMES = {int: "a whole number", str: "text", list: "a list of column names"}


def dimension_columns(df: pl.DataFrame) -> list[str]:
    """The grouping columns of a metrics frame (``by``), in dataset order."""
    skip = {*_TIME_COLUMNS, "channel", "date", "revision", "released_at", *METRIC_COLUMNS}
    return [c for c in df.columns if c not in skip]


def metric_columns(df: pl.DataFrame) -> list[str]:
    """Metric columns present in ``df``, in SPEC order."""
    return [c for c in METRIC_COLUMNS if c in df.columns]
