"""The metrics dataset reads the same in DuckDB and Polars, and follows the
conventions Spark relies on (hive partitions, UTC-adjusted microsecond
timestamps, one stable schema across partitions).

Reference: DuckDB and Polars reading the same files, and the Python API's result.metrics."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import telemetry
from telemetry.generate import write as write_records
from telemetry.sinks.metricsdir import METRIC_COLUMNS

SORT = ["window_start", "channel", "route", "dst_region"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three UTC days of records, so the dataset has several partitions."""
    out = tmp_path_factory.mktemp("analysis") / "out"
    data = out.parent / "cdrs.parquet"
    write_records(data, 30_000, fmt="parquet", seed=11, start=dt.datetime(2026, 3, 28, 20), hours=54)
    result = telemetry.process([str(data)], key=bytes(range(1, 33)), out=out, region="GB", window="1h")
    return out, result


def _duck(out: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # DuckDB shows TIMESTAMPTZ in the session zone
    return con


def test_duckdb_and_polars_read_the_same(run) -> None:
    out, result = run
    glob = str(out / "metrics" / "*" / "*.parquet")
    con = _duck(out)
    duck = pl.from_arrow(con.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY {', '.join(SORT)}"
    ).to_arrow_table())
    polars_df = pl.read_parquet(out / "metrics", hive_partitioning=True).sort(SORT, nulls_last=True)
    duck = duck.sort(SORT, nulls_last=True)
    assert duck.height > 1000
    assert_frame_equal(duck, polars_df, check_column_order=True)
    # and both equal what the Python API returned for the run (SPEC section 7)
    assert_frame_equal(polars_df.drop("date"), result.metrics.sort(SORT, nulls_last=True))


def test_duckdb_types_are_stable(run) -> None:
    out, _ = run
    glob = str(out / "metrics" / "*" / "*.parquet")
    types = dict(_duck(out).execute(
        f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true))"
    ).fetchall())
    assert types["window_start"] == types["window_end"] == "TIMESTAMP WITH TIME ZONE"
    assert types["date"] == "DATE"
    assert types["channel"] == types["route"] == types["dst_region"] == "VARCHAR"
    for column in METRIC_COLUMNS:
        counts = column in ("attempts", "answered", "busy", "no_answer", "rejected", "cancelled", "failed",
                            "congestion", "submitted", "delivered", "undelivered", "expired", "deleted",
                            "pending", "distinct_sources", "distinct_destinations")
        assert types[column] == ("BIGINT" if counts else "DOUBLE"), column


def test_partitions_hold_their_utc_day(run) -> None:
    out, _ = run
    glob = str(out / "metrics" / "*" / "*.parquet")
    con = _duck(out)
    days = [r[0] for r in con.execute(
        f"SELECT DISTINCT date FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY 1").fetchall()]
    assert days == [dt.date(2026, 3, 28), dt.date(2026, 3, 29), dt.date(2026, 3, 30), dt.date(2026, 3, 31)]
    wrong = con.execute(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) "
        "WHERE CAST(window_start AS DATE) <> date"
    ).fetchone()[0]
    assert wrong == 0
    # the same question in UTC epoch arithmetic, independent of any session time zone
    df = pl.read_parquet(out / "metrics", hive_partitioning=True)
    epoch_day = (df["window_start"].cast(pl.Int64) // 86_400_000_000).cast(pl.Int32)
    assert (epoch_day == df["date"].cast(pl.Int32)).all()


def test_duckdb_aggregates_match_polars(run) -> None:
    out, _ = run
    glob = str(out / "metrics" / "*" / "*.parquet")
    duck = dict(_duck(out).execute(
        f"SELECT route, sum(attempts) FROM read_parquet('{glob}', hive_partitioning = true) "
        "WHERE channel = 'voice' GROUP BY route").fetchall())
    df = pl.read_parquet(out / "metrics", hive_partitioning=True).filter(pl.col("channel") == "voice")
    expected = dict(df.group_by("route").agg(pl.col("attempts").sum()).iter_rows())
    assert duck == expected and sum(duck.values()) > 1000


def test_spark_conventions(run) -> None:
    """What Spark's Parquet source needs: ``name=value`` directories, no partition
    column inside the files, INT64 microsecond timestamps adjusted to UTC (read as
    TimestampType, not TimestampNTZ), UTF-8 strings, no unsigned or nanosecond
    types, and the same schema in every file."""
    out, _ = run
    files = sorted((out / "metrics").glob("*/*.parquet"))
    assert len(files) == 4
    schemas = set()
    for f in files:
        assert re.fullmatch(r"date=\d{4}-\d{2}-\d{2}", f.parent.name)
        meta = pq.ParquetFile(f).metadata
        schema = meta.schema
        names = [schema.column(i).name for i in range(len(schema))]
        assert "date" not in names
        for i in range(len(schema)):
            col = schema.column(i)
            logical = str(col.logical_type)
            if col.name in ("window_start", "window_end"):
                assert col.physical_type == "INT64"
                assert "isAdjustedToUTC=true" in logical and "timeUnit=microseconds" in logical
            elif col.physical_type == "BYTE_ARRAY":
                assert logical == "String", col.name
            else:
                assert col.physical_type in ("INT64", "DOUBLE"), col.name
                assert "unsigned" not in logical.lower() and "NANOS" not in logical.upper()
        schemas.add(pq.read_schema(f).remove_metadata().to_string())
    assert len(schemas) == 1
