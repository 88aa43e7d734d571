"""End to end: files in, pseudonymized records and metrics out, checked against
an independent derivation (phonenumbers + hmac + HKDF written from RFC 5869).

Reference: phonenumbers + hmac + HKDF written from RFC 5869, and the slow metrics twin."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json

import numpy as np
import phonenumbers
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telemetry
from tests.conftest import TEST_KEY, convert_small_files_alone, run_cli


def hkdf_sha256(key: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()  # RFC 5869: empty salt = HashLen zeros
    okm, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def reference_pseudonym(identifier: str, region: str | None, domain: str = "subscriber") -> bytes:
    subkey = hkdf_sha256(TEST_KEY, b"telemetry/v1/" + domain.encode())
    text = identifier.strip()
    if text.lower().startswith("tel:"):
        text = text[4:].split(";")[0]
    if text.lower().startswith("sip:"):
        user, host = text[4:].split(";")[0].split("@")
        text = user if user.startswith("+") else f"sip:{user}@{host.lower()}"
    if domain == "subscriber" and (text.startswith("+") or text[:1].isdigit()):
        text = phonenumbers.format_number(
            phonenumbers.parse(text, region), phonenumbers.PhoneNumberFormat.E164
        )
    return hmac.new(subkey, text.encode(), hashlib.sha256).digest()[:16]


HEADER = ["record_id", "channel", "start_time", "answer_time", "duration_ms", "pdd_ms",
          "source", "destination", "status", "sip_code", "route", "source_ip"]


def _rows(n: int = 60) -> list[list]:
    callers = ["+44 7700 900123", "07700 900124", "tel:+44-7700-900125", "anonymous",
               "sip:+447700900126@gw.example.net;user=phone", "+1 202 555 0143", "sip:Ops@PBX.Example.NET"]
    callees = ["+44 20 7946 0%03d" % i for i in range(12)] + ["+1 202 555 01%02d" % i for i in range(12)]
    rows = []
    for i in range(n):
        answered = i % 3 != 0
        rows.append([
            f"call-{i}", "voice", f"2026-11-01T10:{i % 60:02d}:00Z",
            f"2026-11-01T10:{i % 60:02d}:03Z" if answered else "",
            str(60000 + i) if answered else "0", str(1500 + 10 * i),
            callers[i % len(callers)], callees[i % len(callees)],
            "answered" if answered else "busy", "200" if answered else "486",
            "carrier-a" if i % 2 else "carrier-b", f"192.0.2.{i % 250}",
        ])
    return rows


@pytest.fixture
def cdr_csv(tmp_path):
    path = tmp_path / "cdrs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_rows())
    return path


def test_records_output_matches_independent_pseudonyms(cdr_csv, tmp_path):
    out = tmp_path / "out"
    result = telemetry.process([cdr_csv], key=TEST_KEY, out=out, region="GB", emit_records=True, k=1)
    records = pq.read_table(out / "records").sort_by("start_time")
    assert records.schema.field("source").type == pa.binary(16)
    assert records.schema.field("destination").type == pa.binary(16)
    assert records.schema.field("record_id").type == pa.binary(16)
    assert "location" not in records.schema.names
    key_id = hashlib.sha256(b"telemetry-key-id" + TEST_KEY).digest()[:8].hex()
    assert set(records.column("key_id").to_pylist()) == {key_id}
    assert result.summary["key_id"] == key_id

    expected = sorted(_rows(), key=lambda r: r[2])
    by_id = {r[0]: r for r in expected}
    record_ids = {reference_pseudonym(r[0], None, "record"): r for r in expected}
    assert len(record_ids) == len(expected)
    for rec in records.to_pylist():
        row = record_ids[rec["record_id"]]
        assert row is by_id[row[0]]
        src = row[6]
        if src == "anonymous":
            assert rec["source"] is None and rec["source_withheld"]
        else:
            assert rec["source"] == reference_pseudonym(src, "GB")
        assert rec["destination"] == reference_pseudonym(row[7], "GB")
        net = ".".join(row[11].split(".")[:3]) + ".0/24"
        assert rec["source_ip"] == reference_pseudonym(net, None, "ip")


def test_parquet_input_gives_the_records_and_metrics_csv_gives(cdr_csv, tmp_path):
    # Parquet text is read as dictionaries (schema.READ); nothing of that layout may
    # reach an output: records and metrics equal those of the same rows as CSV.
    import pyarrow.csv as pcsv

    # row groups of 7 rows, batches of 10: the two threads read pieces of two groups
    parquet = tmp_path / "cdrs.parquet"
    text = pcsv.ConvertOptions(column_types={name: pa.string() for name in HEADER})
    pq.write_table(pcsv.read_csv(cdr_csv, convert_options=text), parquet, row_group_size=7)
    outputs = {}
    for path in (cdr_csv, parquet):
        out = tmp_path / path.suffix[1:]
        result = telemetry.process([path], key=TEST_KEY, out=out, region="GB", emit_records=True, k=1,
                                   batch_rows=10, threads=2)  # fmt: skip
        outputs[path.suffix] = result.metrics, pq.read_table(out / "records").sort_by("record_id")
    (csv_metrics, csv_records), (pq_metrics, pq_records) = outputs[".csv"], outputs[".parquet"]
    assert pq_metrics.equals(csv_metrics) and len(csv_metrics)
    assert pq_records.schema.field("route").type == pa.string()
    assert pq_records.equals(csv_records)


@pytest.mark.parametrize(("shape", "text"), [("transit", ("destination",)), ("a2p", ("destination",)), ("retail", ())])
def test_parquet_identifiers_past_a_dictionary_page_read_as_text(tmp_path, shape, text):
    # Days with more distinct numbers than a writer's dictionary page holds: a column whose
    # first row group is mostly distinct (the destinations of transit and A2P days) is read
    # as text and most of its values are new to the run's table (the pseudonymizer goes
    # without it); columns that repeat their values (retail numbers, A2P senders, this
    # small transit day's callers) keep Arrow's dictionaries. Records and metrics equal
    # CSV's either way.
    import pyarrow.compute as pc

    from telemetry.generate import write
    from telemetry.readers import open_inputs
    from telemetry.readers.canonical import DICTIONARY_PAGE_MAX
    from telemetry.schema import read_schema

    paths = [tmp_path / f"{shape}.parquet", tmp_path / f"{shape}.csv"]
    for path in paths:
        write(path, 300_000, seed=4, shape=shape)
    first = pq.ParquetFile(paths[0]).read_row_group(0)  # the reference: Arrow's own count
    for name in ("source", "destination"):
        chunk = pq.ParquetFile(paths[0]).metadata.row_group(0).column(first.schema.get_field_index(name))
        gave_up = chunk.total_uncompressed_size > DICTIONARY_PAGE_MAX + 4 * chunk.num_values
        share = pc.count_distinct(first[name]).as_py() / first.num_rows
        assert (gave_up and share > 0.6) if name in text else (not gave_up or share < 0.3)
    assert shape != "retail" or gave_up  # retail gives up too (SIP URIs), yet repeats
    assert all(part.batch.schema == read_schema(text) for part in open_inputs([str(paths[0])], "parquet"))
    outputs = []
    for path in paths:
        out = tmp_path / path.suffix[1:]
        result = telemetry.process([path], key=TEST_KEY, out=out, region="GB", emit_records=True, k=1,
                                   batch_rows=8192, threads=2)  # fmt: skip
        outputs.append((result.metrics, pq.read_table(out / "records").sort_by("record_id")))
    (pq_metrics, pq_records), (csv_metrics, csv_records) = outputs
    assert pq_metrics.equals(csv_metrics) and len(csv_metrics)
    assert pq_records.equals(csv_records) and pq_records.num_rows == 300_000


def test_same_number_same_pseudonym_as_source_and_destination():
    a = telemetry.pseudonymize(["+44 7700 900123", "07700900123", "tel:+447700900123"], key=TEST_KEY, region="GB")
    assert len(set(a)) == 1
    assert a[0] == reference_pseudonym("+447700900123", None).hex()


def test_summary_accounting_and_outputs(cdr_csv, tmp_path):
    out = tmp_path / "out"
    result = telemetry.process(cdr_csv, key=TEST_KEY, out=out, region="GB", k=2)
    s = json.loads((out / "run.json").read_text())
    for name in ("records_in", "records_ok", "records_quarantined", "records_opted_out", "records_late",
                 "rows_released", "rows_withheld", "records_withheld", "key_id", "engine", "seconds",
                 "records_per_second"):
        assert name in s, name
    assert s == result.summary
    assert s["records_in"] == 60 == s["records_ok"] + s["records_quarantined"] + s["records_opted_out"]
    assert s["records_quarantined"] == 0
    dates = sorted(p.name for p in (out / "metrics").iterdir())
    assert dates == ["date=2026-11-01"]
    on_disk = pl.read_parquet(out / "metrics" / "**" / "*.parquet", hive_partitioning=True)
    assert on_disk.height == result.metrics.height
    assert int(result.metrics["attempts"].sum()) == 60 - s["records_withheld"]


def test_national_number_without_region_is_quarantined(cdr_csv, tmp_path):
    out = tmp_path / "out"
    result = telemetry.process(cdr_csv, key=TEST_KEY, out=out, k=1)
    s = result.summary
    # rows whose caller is written nationally ("07700 900124") cannot be normalized
    national = sum(1 for r in _rows() if r[6].startswith("0"))
    assert s["records_quarantined"] == national
    assert result.exit_code == 1
    lines = (out / "quarantine" / "rejects.jsonl").read_text().splitlines()
    assert len(lines) == national
    reject = json.loads(lines[0])
    assert reject["reason"] == "source: national number without a configured region"
    assert reject["row"] >= 1 and reject["file"].endswith("cdrs.csv")


def test_opt_out_of_caller_and_callee(cdr_csv, tmp_path):
    listing = tmp_path / "optout.json"
    from telemetry.keys import Keyring
    from telemetry.optout import OptOut

    keyring = Keyring.from_key(TEST_KEY)
    opt = OptOut()
    opt.add(keyring.current.key_id, telemetry.pseudonymize(["+447700900123", "+44 20 7946 0001"], key=TEST_KEY))
    opt.save(listing)
    result = telemetry.process(cdr_csv, key=TEST_KEY, region="GB", opt_out=str(listing), k=1)
    rows = _rows()
    expected = sum(1 for r in rows if r[6] == "+44 7700 900123" or r[7] == "+44 20 7946 0001")
    assert expected > 0
    assert result.summary["records_opted_out"] == expected
    assert int(result.metrics["attempts"].sum()) == len(rows) - expected


def test_cli_process_exit_codes(cdr_csv, tmp_path, key_env):
    ok = run_cli("process", str(cdr_csv), "--out", str(tmp_path / "a"), "--region", "GB", env=key_env)
    assert ok.returncode == 0, ok.stderr
    assert "60 records" in ok.stdout
    quarantined = run_cli("process", str(cdr_csv), "--out", str(tmp_path / "b"), env=key_env)
    assert quarantined.returncode == 1
    bad = run_cli("process", str(cdr_csv), "--out", str(tmp_path / "c"), "--window", "7x", env=key_env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "window" in bad.stderr
    missing = run_cli("process", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "d"), env=key_env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    env = {k: v for k, v in key_env.items() if k != "TELEMETRY_KEY"}
    nokey = run_cli("process", str(cdr_csv), "--out", str(tmp_path / "e"), env=env)
    assert nokey.returncode == 2 and nokey.stderr.count("\n") == 1


def test_cli_pseudonym_matches_api(key_env):
    ids = ["+44 7700 900123", "anonymous", "MyBank"]
    res = run_cli("pseudonym", "--region", "GB", *ids, env=key_env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines == telemetry.pseudonymize(ids, key=TEST_KEY, region="GB")
    assert lines[1] == "withheld" and len(lines[0]) == 32 and int(lines[0], 16) >= 0
    err = run_cli("pseudonym", "07700 900123", env=key_env)
    assert err.returncode == 2 and "identifier #1" in err.stderr and "7700" not in err.stderr


def test_pseudonymize_arrow_keeps_nulls_and_withheld_as_null():
    arr = pa.array(["+447700900123", None, "restricted"])
    out = telemetry.pseudonymize(arr, key=TEST_KEY)
    assert out.type == pa.binary(16)
    assert out.to_pylist() == [reference_pseudonym("+447700900123", None), None, None]


def test_records_without_identifiers_are_aggregated(tmp_path):
    # Regression: a run whose first batch held no identifier at all (here a file
    # without source and destination columns) crashed in the pseudonymizer
    path = tmp_path / "routes.csv"
    path.write_text("start_time,route,status\n2026-11-01T10:00:00Z,r1,answered\n2026-11-01T10:01:00Z,r1,busy\n")
    result = telemetry.process(path, key=TEST_KEY, k=1)
    # no subscriber to count: the row is below k and withheld (SPEC 5), but accounted for
    summary = {k: result.summary[k] for k in ("records_ok", "rows_released", "rows_withheld", "records_withheld")}
    assert summary == {"records_ok": 2, "rows_released": 0, "rows_withheld": 1, "records_withheld": 2}
    none = telemetry.pseudonymize(pa.array([None, None], pa.string()), key=TEST_KEY)
    assert none.to_pylist() == [None, None]


def test_split_invariance_across_batch_sizes_and_threads(cdr_csv):
    base = telemetry.process(cdr_csv, key=TEST_KEY, region="GB", k=1, threads=1)
    for rows, threads in ((7, 2), (1, 2), (13, 1)):
        other = telemetry.process(cdr_csv, key=TEST_KEY, region="GB", k=1, threads=threads, batch_rows=rows)
        assert other.metrics.equals(base.metrics)
    assert np.isclose(base.metrics["attempts"].sum(), 60)


def test_cli_optout_then_process(cdr_csv, tmp_path, key_env):
    listing = tmp_path / "optout.json"
    added = run_cli("optout", "add", "--list", str(listing), "--region", "GB", env=key_env,
                    input="07700 900124\n+44 20 7946 0003\n")
    assert added.returncode == 0, added.stderr
    assert "added 2 pseudonym(s)" in added.stdout
    text = listing.read_text()
    assert "7700" not in text and "7946" not in text
    res = run_cli("process", str(cdr_csv), "--out", str(tmp_path / "o"), "--region", "GB",
                  "--opt-out", str(listing), "--k", "1", env=key_env)
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "o" / "run.json").read_text())
    expected = sum(1 for r in _rows() if r[6] == "07700 900124" or r[7] == "+44 20 7946 0003")
    assert summary["records_opted_out"] == expected > 0
    removed = run_cli("optout", "remove", "--list", str(listing), "--region", "GB", "+447700900124",
                      env=key_env)
    assert removed.returncode == 0 and "removed 1 pseudonym(s)" in removed.stdout


def test_small_files_are_gathered_without_losing_where_a_row_came_from(tmp_path):
    """Forty small files (Parquet and CSV, one bad row each) give the metrics of one file
    holding them all, and every quarantined row names its own file and row number."""
    from telemetry.generate import generate

    table = pa.Table.from_batches(list(generate(4000, seed=5, hours=2)))
    expected_rejects = set()
    paths = []
    for i in range(40):
        part = table.slice(i * 100, 100)
        bad = 1 + (i * 7) % 100  # the bad row's 1-based number within its file
        dest = part.column("destination").to_pylist()
        dest[bad - 1] = "+999 555 0100"  # no such country calling code: quarantined
        part = part.set_column(part.schema.get_field_index("destination"), "destination", pa.array(dest))
        path = tmp_path / f"small-{i:02d}.{'parquet' if i % 2 else 'csv'}"
        if i % 2:
            pq.write_table(part, path)
        else:
            pl.from_arrow(part).with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).write_csv(path)
        paths.append(str(path))
        expected_rejects.add((str(path), bad))
    whole = pa.concat_tables([pq.read_table(p) if p.endswith("parquet") else None for p in paths if p.endswith("parquet")])
    assert whole.num_rows == 2000
    result = telemetry.process(paths, key=TEST_KEY, region="GB", out=tmp_path / "out", threads=2)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "quarantine" / "rejects.jsonl").read_text().splitlines()]
    assert {(r["file"], r["row"]) for r in rejects} == expected_rejects
    one_by_one = [telemetry.process([p], key=TEST_KEY, region="GB").summary for p in paths]
    assert result.summary["records_ok"] == sum(s["records_ok"] for s in one_by_one) == 4000 - 40
    single = tmp_path / "all.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in paths if p.endswith("parquet")]
                                    + [pl.read_csv(p, try_parse_dates=True).to_arrow().cast(pq.read_table(paths[1]).schema)
                                       for p in paths if p.endswith("csv")]), single)
    assert telemetry.process([str(single)], key=TEST_KEY, region="GB").metrics.equals(result.metrics)


def _small_parquet_files(root) -> tuple[list[str], set[tuple[str, int]]]:
    """Twenty-four small Parquet files of generated records: the twelfth has bad rows
    (rejected by the reader and by the pseudonymizer), the next other column types, the
    next two row groups, the sixth no rows. Returns the paths and the bad (file, row)."""
    from telemetry.generate import generate

    table = pa.Table.from_batches(list(generate(24 * 150, seed=11, hours=6)))
    table = table.cast(pa.schema([field.with_nullable(True) for field in table.schema]))  # the bad file's too
    paths, bad = [], set()
    for i in range(24):
        part = table.slice(i * 150, 150)
        path = str(root / f"f{i:02d}.parquet")
        if i == 11:
            columns = {name: part.column(name).to_pylist() for name in ("destination", "start_time", "sip_code")}
            for row in range(3, 150, 17):
                columns["destination"][row - 1] = "+999 555 0100"  # no such country calling code
                bad.add((path, row))
            for row in (5, 77):
                columns["start_time"][row - 1] = None
                bad.add((path, row))
            columns["sip_code"][99] = 999
            bad.add((path, 100))
            for name, values in columns.items():
                field = part.schema.field(name)
                part = part.set_column(part.schema.get_field_index(name), field, pa.array(values, field.type))
        if i == 12:
            part = part.set_column(part.schema.get_field_index("pdd_ms"), "pdd_ms", part.column("pdd_ms").cast(pa.int64()))
            part = part.set_column(part.schema.get_field_index("source"), "source", part.column("source").cast(pa.string()))
        pq.write_table(part.slice(0, 0) if i == 5 else part, path, row_group_size=100 if i == 13 else None)
        paths.append(path)
    return paths, bad


def test_small_files_converted_together_give_what_they_give_one_by_one(tmp_path, monkeypatch):
    """Small Parquet files are decoded at a look and converted several at once
    (readers.read_files); every output (metrics, record output, quarantine rows with
    their file and row, run.json) equals that of a run converting each file on its
    own, on files with a bad one in the middle, other column types, several row
    groups and none, over several gathered batches (batch_rows 1,024)."""
    paths, bad = _small_parquet_files(tmp_path)

    def run(out):
        result = telemetry.process(paths, key=TEST_KEY, region="GB", out=out, batch_rows=1024, emit_records=True,
                                   threads=2, by=("route", "dst_region", "mno"))
        return {k: v for k, v in result.summary.items() if k not in ("seconds", "records_per_second", "started_at")}

    together = run(tmp_path / "together")

    convert_small_files_alone(monkeypatch)
    alone = run(tmp_path / "alone")
    assert together == alone and together["records_quarantined"] == len(bad)
    rejects = [json.loads(line) for line in (tmp_path / "together" / "quarantine" / "rejects.jsonl").read_text().splitlines()]
    assert {(r["file"], r["row"]) for r in rejects} == bad
    outputs = sorted(p.relative_to(tmp_path / "together") for p in (tmp_path / "together").rglob("*") if p.is_file())
    assert any(p.parts[0] == "records" for p in outputs) and any(p.parts[0] == "metrics" for p in outputs)
    for name in outputs:
        if name.name != "run.json":
            assert (tmp_path / "together" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name


def test_parquet_identifiers_stored_as_integers_past_a_dictionary_page(tmp_path):
    # An identifier column of integers (numbers without their '+') whose writer gave up its
    # dictionary has its distinct share counted as it is (the value sample reads text only):
    # the run reads it, as the same numbers written as text give.
    n = 400_000
    start = pa.array(np.arange(n, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC"))
    numbers = 447_700_000_000 + np.arange(n, dtype=np.int64)
    outputs = []
    for source in (pa.array(numbers), pa.array(numbers.astype(str))):
        path = tmp_path / f"{source.type}.parquet"
        pq.write_table(pa.table({"start_time": start, "source": source, "destination": pa.array(numbers[::-1])}), path)
        outputs.append(telemetry.process([path], key=TEST_KEY, region="GB", k=1).metrics)
    assert outputs[0].equals(outputs[1]) and len(outputs[0])
