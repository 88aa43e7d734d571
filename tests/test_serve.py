"""``telemetry serve``: the real HTTP exporter, scraped over loopback.

Reference: the metric rows on disk read with Polars, the guard's rule recomputed in DuckDB,
promtool."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

import telemetry
from telemetry.cli import main
from telemetry.generate import write as write_records
from telemetry.sinks import prometheus
from telemetry.sinks.metricsdir import METRIC_COLUMNS, OTHER
from tests import metricrows
from tests.conftest import promtool
from tests.reference_metrics import wilson_roots

KEY = bytes(range(32))
# SPEC section 4 fixes these column names; promtool's lint prefers base units
# (seconds) spelt out, which the contract does not allow us to follow.
SPEC_UNIT_NAMES = {f"telemetry_{c}" for c in METRIC_COLUMNS if c.endswith(("_ms", "_s"))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "out"
    data = out.parent / "cdrs.parquet"
    write_records(data, 30_000, fmt="parquet", seed=5)
    telemetry.process([str(data)], key=KEY, out=out, region="GB", window="1h")
    return out


class Server:
    """``telemetry serve`` as a child process on a free loopback port."""

    def __init__(self, out: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry", "serve", str(out), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("serving http://"), line + self.proc.stderr.read()
        self.url = line.split()[1]

    def get(self, accept: str | None = None) -> tuple[str, str]:
        req = urllib.request.Request(self.url, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.headers["Content-Type"], resp.read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0
        assert self.proc.stderr.read() == ""


@pytest.fixture
def server(dataset: Path):
    s = Server(dataset)
    yield s
    s.stop()


def _latest(out: Path) -> pl.DataFrame:
    df = pl.read_parquet(out / "metrics", hive_partitioning=True)
    return df.filter(pl.col("window_end") == df["window_end"].max())


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_exposition_matches_latest_window(server: Server, dataset: Path) -> None:
    ctype, text = server.get()
    assert ctype.startswith("text/plain")
    samples = _samples(text)
    latest = _latest(dataset)
    end = latest["window_end"][0]
    assert samples[("telemetry_window_end_seconds", frozenset())] == end.timestamp()
    checked = 0
    for row in latest.iter_rows(named=True):
        labels = frozenset({"channel": row["channel"], "route": row["route"] or "",
                            "dst_region": row["dst_region"] or ""}.items())
        for column in METRIC_COLUMNS:
            key = (f"telemetry_{column}", labels)
            if row[column] is None:
                assert key not in samples
            else:
                assert samples[key] == pytest.approx(row[column], rel=1e-15)
                checked += 1
    assert checked > 200
    gauge_rows = {k for k in samples if k[0] == "telemetry_asr"}
    assert len(gauge_rows) == latest.filter(pl.col("asr").is_not_null()).height
    run = json.loads((dataset / "run.json").read_text())
    for outcome in ("ok", "quarantined", "withheld"):  # not opted_out: docs/outputs.md
        value = samples[("telemetry_records_total", frozenset({"outcome": outcome}.items()))]
        assert value == run[f"records_{outcome}"]
    assert samples[("telemetry_series_merged", frozenset())] == 0


def test_promtool_accepts_the_exposition(server: Server) -> None:
    _, text = server.get()
    res = promtool("check", "metrics", input=text)
    # exit 1 is a parse error; 3 is lint findings, allowed only for the SPEC's unit suffixes
    assert res.returncode in (0, 3), res.stdout + res.stderr
    findings = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    for line in findings:
        name, _, problem = line.partition(" ")
        assert problem == "metric names should not contain abbreviated units", line
        assert name in SPEC_UNIT_NAMES, line


def test_openmetrics_when_asked(server: Server, dataset: Path) -> None:
    ctype, text = server.get("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert ctype.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["telemetry_records"].type == "counter"
    assert families["telemetry_asr"].type == "gauge"
    assert families["telemetry_window_end_seconds"].samples[0].value == _latest(dataset)["window_end"][0].timestamp()


def test_picks_up_new_metrics(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "live"
    shutil.copytree(dataset, out)
    s = Server(out)
    try:
        before = _samples(s.get()[1])[("telemetry_window_end_seconds", frozenset())]
        # the next day lands as a new partition, written the way the Parquet sink writes
        latest = pl.read_parquet(out / "metrics", hive_partitioning=False)
        later = latest.with_columns(pl.col("window_start") + dt.timedelta(days=1),
                                    pl.col("window_end") + dt.timedelta(days=1),
                                    pl.col("attempts") * 2)
        day = later["window_start"].min().date()
        folder = out / "metrics" / f"date={day}"
        folder.mkdir()
        later.write_parquet(folder / ".part-0.parquet.tmp")
        os.replace(folder / ".part-0.parquet.tmp", folder / "part-0.parquet")
        after = _samples(s.get()[1])
        assert after[("telemetry_window_end_seconds", frozenset())] == before + 86400
        newest = later.filter(pl.col("window_end") == later["window_end"].max())
        assert sum(v for (n, _), v in after.items() if n == "telemetry_attempts") == newest["attempts"].sum()
        (out / "run.json").write_text(json.dumps({"records_ok": 7, "records_quarantined": 1}))
        again = _samples(s.get()[1])
        assert again[("telemetry_records_total", frozenset({"outcome": "ok"}.items()))] == 7
    finally:
        s.stop()


def test_cardinality_guard_merges_into_other(dataset: Path) -> None:
    s = Server(dataset, "--max-series", "8")
    try:
        samples = _samples(s.get()[1])
    finally:
        s.stop()
    latest = _latest(dataset)
    assert latest.height > 8
    label_sets = {labels for name, labels in samples if name == "telemetry_attempts"}
    assert len(label_sets) <= 8 + 0  # max_series bounds every family
    for channel in latest["channel"].unique().to_list():
        rows = latest.filter(pl.col("channel") == channel)
        count = "submitted" if channel in ("sms", "mms") else "attempts"
        exposed = sum(v for (n, labels), v in samples.items()
                      if n == f"telemetry_{count}" and ("channel", channel) in labels)
        assert exposed == rows[count].sum()  # counts are conserved by the merge
    other = frozenset({"channel": "voice", "route": OTHER, "dst_region": OTHER}.items())
    kept = {labels for name, labels in samples if name == "telemetry_attempts"} - {other}
    voice = latest.filter(pl.col("channel") == "voice")
    merged = voice.filter(~pl.struct("route", "dst_region").is_in(
        [{"route": dict(k)["route"], "dst_region": dict(k)["dst_region"]} for k in kept
         if dict(k)["channel"] == "voice"]))
    assert samples[("telemetry_asr", other)] == pytest.approx(merged["answered"].sum() / merged["attempts"].sum())
    acd = (merged["acd_s"].fill_null(0) * merged["answered"]).sum() / merged["answered"].sum()
    assert samples[("telemetry_acd_s", other)] == pytest.approx(acd)
    assert ("telemetry_pdd_p95_ms", other) not in samples  # percentiles do not merge: left out
    assert samples[("telemetry_series_merged", frozenset())] == latest.height - len(label_sets) + \
        len({dict(k)["channel"] for k in label_sets if dict(k)["route"] == OTHER})


def test_latest_complete_window_follows_the_clock(dataset: Path) -> None:
    df = pl.read_parquet(dataset / "metrics", hive_partitioning=True)
    ends = df["window_end"].unique().sort()
    now = ends[3].timestamp() + 1800  # half way through the fifth window: it is still open
    collector = prometheus.MetricsCollector(dataset, clock=lambda: now)
    text = generate_latest(prometheus.make_registry(collector)).decode()
    assert _samples(text)[("telemetry_window_end_seconds", frozenset())] == ends[3].timestamp()
    early = prometheus.MetricsCollector(dataset, clock=lambda: ends[0].timestamp() - 1)
    text = generate_latest(prometheus.make_registry(early)).decode()
    assert "telemetry_window_end_seconds" not in text and "telemetry_records_total" in text


def test_binds_loopback_by_default(dataset: Path) -> None:
    server, thread = prometheus.serve(dataset, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30) as r:
            assert b"telemetry_asr" in r.read()
    finally:
        server.shutdown()
        server.server_close()


def test_configuration_errors_are_one_line(tmp_path: Path, dataset: Path, capsys) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 2
    cfg = tmp_path / "telemetry.toml"
    cfg.write_text("[serve]\nmax_sries = 10\n")
    assert main(["serve", str(dataset), "--config", str(cfg)]) == 2
    assert main(["serve", str(dataset), "--max-series", "2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("telemetry: error: ") for line in err)
    assert "max_sries" in err[1] and "max_series" in err[2]


def test_unreadable_file_is_a_warning_not_a_traceback(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "broken"
    shutil.copytree(dataset, out)
    next((out / "metrics").glob("*/*.parquet")).write_bytes(b"not parquet" * 20)
    s = Server(out)
    _, text = s.get()
    s.proc.terminate()
    assert s.proc.wait(timeout=30) == 0
    err = s.proc.stderr.read()
    assert "telemetry_asr" not in text and "telemetry_records_total" not in text
    assert "Traceback" not in err and "exposing no metrics this scrape" in err


# Recomputed in DuckDB from the rows the test wrote: the guard keeps the busiest rows
# (attempts + submitted) and merges the rest of each channel; ratios come from the summed
# counts (NER's numerator is every call that reached the user, dlr_rate's every final status).
_GUARD_SQL = """
WITH latest AS (SELECT * FROM rows WHERE window_end = (SELECT max(window_end) FROM rows)),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY rolled_up ORDER BY coalesce(attempts, 0) + coalesce(submitted, 0) DESC)
              AS rank
    FROM (SELECT *, coalesce(route = '__other__' AND dst_region = '__other__', false) AS rolled_up FROM latest)),
rest AS (SELECT * FROM ranked WHERE rolled_up OR rank > $keep)
"""
_KEPT_SQL = _GUARD_SQL + "SELECT * EXCLUDE (rank, rolled_up) FROM ranked WHERE NOT rolled_up AND rank <= $keep"
_MERGED_SQL = _GUARD_SQL + """
SELECT channel, '__other__' AS route, '__other__' AS dst_region, count(*) AS merged,
       sum(attempts) AS attempts, sum(answered) AS answered, sum(busy) AS busy, sum(no_answer) AS no_answer,
       sum(rejected) AS rejected, sum(cancelled) AS cancelled, sum(failed) AS failed,
       sum(congestion) AS congestion, sum(total_duration_s) AS total_duration_s,
       sum(submitted) AS submitted, sum(delivered) AS delivered, sum(undelivered) AS undelivered,
       sum(expired) AS expired, sum(deleted) AS deleted, sum(pending) AS pending,
       sum(answered) / nullif(sum(attempts), 0) AS asr,
       (sum(answered) + sum(busy) + sum(no_answer) + sum(rejected)) / nullif(sum(attempts), 0) AS ner,
       sum(acd_s * answered) / nullif(sum(answered) FILTER (WHERE acd_s IS NOT NULL), 0) AS acd_s,
       sum(short_call_ratio * answered)
           / nullif(sum(answered) FILTER (WHERE short_call_ratio IS NOT NULL), 0) AS short_call_ratio,
       sum(delivered) / nullif(sum(submitted), 0) AS delivery_rate,
       (sum(delivered) + sum(undelivered) + sum(expired) + sum(rejected) + sum(deleted))
           / nullif(sum(submitted), 0) AS dlr_rate
FROM rest GROUP BY channel
"""


def test_merged_other_row_matches_duckdb(tmp_path: Path) -> None:
    """Every column of the exposition under the cardinality guard, the merged
    ``__other__`` rows included, against the guard's documented rule run in DuckDB."""
    rng = np.random.default_rng(20)
    hour = dt.timedelta(hours=1)
    start = dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone.utc)
    volumes = iter(rng.permutation(np.arange(60, 60 + 13 * 40, 13)).tolist())  # all distinct: one ranking
    rows = []
    for t in (start - hour, start):  # the older window must not leak into the latest one
        w = metricrows.window(t, hour)
        for channel, make in (("voice", metricrows.voice_row), ("voicemail", metricrows.voice_row),
                              ("sms", metricrows.message_row)):
            for route in ("trunk-a", "trunk-b", "trunk-c", "trunk-d"):
                for region in ("GB-ENG", "GB-SCT", None):
                    volume = next(volumes) if t == start else 100
                    rows.append(w | {"channel": channel, "route": route, "dst_region": region} | make(rng, volume))
            rows.append(w | {"channel": channel, "route": OTHER, "dst_region": OTHER} | make(rng, 7))  # a roll-up
    quiet = next(r for r in rows if r["window_start"] == start and r["channel"] == "voicemail")
    quiet |= {"answered": 0, "no_answer": quiet["no_answer"] + quiet["answered"], "acd_s": None,
              "short_call_ratio": None}  # no answered call: no ACD
    metricrows.write(tmp_path, rows)

    max_series = 20
    s = Server(tmp_path, "--max-series", str(max_series))
    try:
        samples = _samples(s.get()[1])
    finally:
        s.stop()

    channels = 3
    con = duckdb.connect()
    con.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet('{tmp_path}/metrics/*/*.parquet')")
    kept, merged = (pl.from_arrow(con.sql(sql, params={"keep": max_series - channels}).to_arrow_table())
                    for sql in (_KEPT_SQL, _MERGED_SQL))
    assert kept.height == max_series - channels and merged.height == channels
    assert samples[("telemetry_series_merged", frozenset())] == merged["merged"].sum() > channels

    def labels(row: dict) -> frozenset:
        return frozenset({"channel": row["channel"], "route": row["route"] or "",
                          "dst_region": row["dst_region"] or ""}.items())

    merged_rows = []
    for row in merged.iter_rows(named=True):  # the merged rows' 95% intervals, from their summed counts
        parts = {"asr": (("answered",), "attempts"), "ner": (("answered", "busy", "no_answer", "rejected"), "attempts"),
                 "delivery_rate": (("delivered",), "submitted"),
                 "dlr_rate": (("delivered", "undelivered", "expired", "rejected", "deleted"), "submitted")}
        for ratio, (nums, den) in parts.items():
            if row[den]:
                row[f"{ratio}_lo"], row[f"{ratio}_hi"] = wilson_roots(int(sum(row[n] or 0 for n in nums)), int(row[den]))
        merged_rows.append(row)
    expected = {}
    for row in [*kept.iter_rows(named=True), *merged_rows]:
        for column in METRIC_COLUMNS:  # a column the merged rows do not carry is left out
            expected[(f"telemetry_{column}", labels(row))] = row.get(column)
    checked = 0
    for key, value in expected.items():
        if value is None:
            assert key not in samples, key
        else:
            assert samples[key] == pytest.approx(float(value), rel=1e-12), key
            checked += 1
    assert checked == sum(1 for name, _ in samples if name.removeprefix("telemetry_") in METRIC_COLUMNS)
