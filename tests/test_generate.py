"""The synthetic data generator: deterministic, canonical, internally consistent,
fictional or random-valid numbers, and a bad route that looks bad.

Reference: libphonenumber validity and the fictional ranges, the canonical schema, recomputed
per-row consistency."""

from __future__ import annotations

import datetime as dt
import ipaddress

import numpy as np
import phonenumbers
import polars as pl
import pyarrow as pa
import pytest

from telemetry.generate import HOME_REGION, SENDERS, WITHHELD, generate, write
from telemetry.schema import CANONICAL, MESSAGE_FINAL_STATUSES, MESSAGE_PENDING_STATUSES
from telemetry.status import status_from_codes
from tests.conftest import run_cli

N = 40_000
START = dt.datetime(2026, 11, 2, 6, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pa.Table.from_batches(
        list(generate(N, seed=5, start=START, hours=12, batch_rows=15_000))
    )


@pytest.fixture(scope="module")
def df(table) -> pl.DataFrame:
    return pl.from_arrow(table).with_columns(
        pl.col(c).cast(pl.String) for c in ("channel", "direction", "status")
    )


def test_schema_batches_and_determinism(table):
    batches = list(generate(N, seed=5, start=START, hours=12, batch_rows=15_000))
    assert [b.num_rows for b in batches] == [15_000, 15_000, 10_000]
    assert all(b.schema == CANONICAL for b in batches)
    assert pa.Table.from_batches(batches).equals(table)
    other = pa.Table.from_batches(
        list(generate(N, seed=6, start=START, hours=12, batch_rows=15_000))
    )
    assert not other.equals(table)
    assert list(generate(0)) == []
    with pytest.raises(ValueError, match="records"):
        list(generate(-1))


def test_start_times_sorted_within_span(table):
    start = table.column("start_time").to_numpy().astype("datetime64[us]").astype(np.int64)
    assert np.all(np.diff(start) >= 0)
    first = int(START.timestamp() * 1e6)
    assert start.min() >= first and start.max() < first + 12 * 3600 * 10**6


def test_numbers_valid_fictional_notations(df):
    """Every phone-number-like identifier parses as a valid number (GB for national
    notation); US numbers are 555-01xx; notations vary; senders only send messages."""
    ids = pl.concat([df["source"], df["destination"]]).drop_nulls().unique().to_list()
    numbers = [i for i in ids if i not in WITHHELD and i not in SENDERS]
    kinds = {"+": 0, "0": 0, "sip:": 0, "tel:": 0}
    regions = set()
    for text in numbers:
        kinds[next(k for k in kinds if text.startswith(k))] += 1
        raw = text.split(";")[0].removeprefix("sip:").removeprefix("tel:").split("@")[0]
        number = phonenumbers.parse(raw, HOME_REGION)
        assert phonenumbers.is_valid_number(number), "generated number is not valid"
        region = phonenumbers.region_code_for_number(number)
        regions.add(region)
        if region == "US":
            assert str(number.national_number)[3:8] == "55501"
    assert all(kinds.values()) and sum(kinds.values()) == len(numbers)
    assert {"GB", "US", "DE", "FR", "IN", "BR", "NG"} <= regions
    withheld = df.filter(pl.col("source").is_in(WITHHELD))
    assert 0.01 < withheld.height / df.filter(pl.col("channel") == "voice").height < 0.06
    senders = df.filter(pl.col("source").is_in(SENDERS))
    assert senders.height > 0 and set(senders["channel"].unique()) <= {"sms", "mms"}


def test_zipf_callers(df):
    counts = df["source"].value_counts(sort=True)["count"].to_numpy()
    # a few heavy callers and a long tail
    assert counts[0] > 20 * np.median(counts)
    assert (counts == 1).sum() > 100


def test_voice_records_consistent(df):
    voice = df.filter(pl.col("channel").is_in(["voice", "voicemail", "conference"]))
    answered = voice["status"] == "answered"
    assert (voice["answer_time"].is_not_null() == answered).all()
    assert (voice.filter(~answered)["duration_ms"] == 0).all()
    assert (voice.filter(answered)["duration_ms"] > 0).all()
    assert (voice["answer_time"].drop_nulls() >= voice.filter(answered)["start_time"]).all()
    assert (voice["end_time"] >= voice["start_time"]).all()
    media = voice.filter(pl.col("mos").is_not_null())
    assert (media["status"] == "answered").all() and media["mos"].is_between(1, 5).all()
    # SIP code and Q.850 cause agree with the status, through the SPEC 2.1 mapping
    table = voice.to_arrow()
    derived = status_from_codes(
        table.column("sip_code").combine_chunks(),
        table.column("q850_cause").combine_chunks(),
        answered.to_numpy(),
        voice["pdd_ms"].is_not_null().to_numpy(),  # post-dial delay: a 180/183 came
    )
    coded = (voice["sip_code"].is_not_null() | voice["q850_cause"].is_not_null()).to_numpy()
    assert (
        np.array(derived.to_pylist(), dtype=object)[coded].tolist()
        == voice["status"].to_numpy()[coded].tolist()
    )
    # a 408 comes after ringing (no_answer) or as a network timeout before any 180/183
    timeouts = voice.filter(pl.col("sip_code") == 408)
    assert set(timeouts["status"].unique()) == {"no_answer", "failed"}
    assert timeouts.filter(pl.col("status") == "failed")["pdd_ms"].is_null().all()
    assert set(voice["status"].unique()) == {
        "answered",
        "busy",
        "no_answer",
        "rejected",
        "cancelled",
        "failed",
        "congestion",
    }


def test_messages_consistent(df):
    msgs = df.filter(pl.col("channel").is_in(["sms", "mms"]))
    assert set(msgs["status"].unique()) <= set(MESSAGE_FINAL_STATUSES + MESSAGE_PENDING_STATUSES)
    assert {"delivered", "undelivered", "expired", "rejected"} <= set(msgs["status"].unique())
    pending = msgs["status"].is_in(MESSAGE_PENDING_STATUSES)
    assert msgs.filter(pending)["end_time"].is_null().all()
    final = msgs.filter(~pending)
    assert (final["end_time"] >= final["start_time"]).all()
    assert msgs["sip_code"].is_null().all() and msgs["duration_ms"].is_null().all()


def test_bad_route_is_worst(df):
    voice = df.filter(pl.col("channel") == "voice")
    routes = (
        voice.group_by("route")
        .agg(
            (pl.col("status") == "answered").mean().alias("asr"),
            pl.col("pdd_ms").median().alias("pdd"),
            pl.col("mos").mean().alias("mos"),
        )
        .sort("route")
    )
    assert 6 <= routes.height <= 10
    worst = routes.sort("asr").row(0, named=True)
    assert worst["route"] == "carrier-f"
    assert worst["pdd"] == routes["pdd"].max() and worst["mos"] == routes["mos"].min()
    sms = (
        df.filter(pl.col("channel") == "sms")
        .group_by("route")
        .agg((pl.col("status") == "delivered").mean().alias("rate"))
        .sort("rate")
    )
    assert sms["route"][0] == "carrier-f"


def test_other_columns(df):
    for ip in df["source_ip"].drop_nulls().unique().to_list():
        address = ipaddress.ip_address(ip)
        docs = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
        assert any(address in ipaddress.ip_network(n) for n in docs)
    assert df["source_ip"].drop_nulls().str.contains(":").any()
    assert df["tenant"].n_unique() > 5 and df["direction"].n_unique() == 3
    assert df["record_id"].n_unique() == df.height
    assert 0.01 < df["roaming"].mean() < 0.1


def test_write_formats_and_cli(tmp_path):
    for name in ("g.parquet", "g.csv", "g.jsonl"):
        assert write(tmp_path / name, 100, seed=1) == 100
    with pytest.raises(ValueError, match="format"):
        write(tmp_path / "g.xlsx", 10)
    out = tmp_path / "cli.csv"
    res = run_cli("generate", "--records", "250", "--out", str(out), "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and "250" in res.stdout and str(out) in res.stdout
    assert len(out.read_text().splitlines()) == 251
    res = run_cli("generate", "--records", "5", "--out", str(tmp_path / "x.dat"))
    assert res.returncode == 2 and "--format" in res.stderr
    res = run_cli(
        "generate", "--records", "5", "--out", str(tmp_path / "x.dat"), "--format", "jsonl"
    )
    assert res.returncode == 0 and len((tmp_path / "x.dat").read_text().splitlines()) == 5


@pytest.mark.parametrize("name", ["transit", "a2p"])
def test_shapes_give_their_distinct_shares_of_valid_numbers(name):
    """A shape's share of distinct sources and destinations (distinct ÷ records, counted
    by polars), every made number valid for its region per phonenumbers."""
    from telemetry.generate import SHAPES

    shape, n = SHAPES[name], 30_000
    df = pl.from_arrow(pa.Table.from_batches(list(generate(n, seed=2, shape=name, batch_rows=7_000))))
    made = {c: df[c].filter(~df[c].is_in(WITHHELD + SENDERS)) for c in ("source", "destination")}
    assert made["destination"].n_unique() == round(shape.destinations * n)
    # sources are overridden by withheld callers and senders: what is left of each number stays
    assert round(shape.sources * n) * 0.9 <= made["source"].n_unique() <= round(shape.sources * n)
    numbers = pl.concat(list(made.values())).unique().sort().to_list()[::25]
    regions = set()
    for text in numbers:
        raw = text.removeprefix("sip:").split("@")[0]
        number = phonenumbers.parse(raw)
        assert phonenumbers.is_valid_number(number) and text.startswith(("+", "sip:+"))
        regions.add(phonenumbers.region_code_for_number(number))
    assert {"GB", "US", "DE", "FR", "IN", "BR", "NG"} <= regions
    if name == "a2p":
        assert set(df["channel"].unique().to_list()) <= {"sms", "mms"}
        assert df["source"].is_in(SENDERS).mean() > 0.6  # outbound messages; inbound ones are replies


def test_shape_knob_from_the_cli(tmp_path):
    out = tmp_path / "t.parquet"
    res = run_cli("generate", "--records", "4000", "--out", str(out), "--shape", "transit",
                  "--distinct-destinations", "0.5")  # fmt: skip
    assert res.returncode == 0, res.stderr
    df = pl.read_parquet(out)
    assert df["destination"].n_unique() == 2000
    assert df["source"].n_unique() < 400  # transit's 4.5 %, with withheld callers and senders
    for bad in ("0", "1.5", "nan"):
        res = run_cli("generate", "--records", "5", "--out", str(out), "--distinct-sources", bad)
        assert res.returncode == 2 and "share" in res.stderr and res.stderr.count("\n") == 1
