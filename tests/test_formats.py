"""Every input format as a user meets it: reader settings from the command line,
``telemetry.toml`` and the Python API; ``--format auto`` on each fixture under a
generic name; and ``telemetry generate --format F`` → ``telemetry process`` for every
format with a writer, against the canonical records of the same seed.

Reference: times by the standard library's tz database, records by the per-format
projections (tests/projections.py) and libphonenumber, metrics by the slow twin
(tests/reference_metrics.py), never by another ``telemetry.process`` run."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import phonenumbers
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import telemetry
from telemetry.errors import ConfigError, InputError
from telemetry.readers import (
    FORMATS,
    ReaderOptions,
    detect_format,
    get_format,
    writable_formats,
)
from telemetry.readers.mapped import EXAMPLE_MAPPING
from telemetry.schema import CANONICAL
from tests.conftest import TEST_KEY, run_cli
from tests.projections import PROJECTIONS
from tests.reference_metrics import assert_matches, reference_release

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """Subprocess environment: the test key, no other TELEMETRY_ setting."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    return clean | {"TELEMETRY_KEY": base64.b64encode(TEST_KEY).decode()}


def records(out: Path) -> list[dict]:
    """The pseudonymized records a run wrote with ``--emit-records``, by start time."""
    return pl.read_parquet(out / "records" / "**" / "*.parquet").sort("start_time").to_dicts()


def metrics(out: Path) -> pl.DataFrame:
    frame = pl.read_parquet(out / "metrics" / "**" / "*.parquet")
    return frame.sort(frame.columns)


def one_line_error(done) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


# -- reader settings: --timezone, --template, telemetry.toml sections, the API -----------------

ASTERISK = FIXTURES / "voip" / "asterisk_master.csv"
FREESWITCH_CUSTOM = FIXTURES / "voip" / "freeswitch_custom.csv"
TEMPLATE = (FIXTURES / "voip" / "freeswitch_custom.template").read_text(encoding="utf-8")


def asterisk_starts(zone: str) -> list[dt.datetime]:
    """The fixture's start times (column 10, local wall-clock time) as instants in
    ``zone``, by the standard library's tz database rather than the reader's Arrow."""
    with open(ASTERISK, encoding="utf-8", newline="") as handle:
        walls = [dt.datetime.fromisoformat(row[9]) for row in csv.reader(handle) if row]
    return sorted(w.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC) for w in walls)


def test_asterisk_fixture_spans_summer_and_winter_time() -> None:
    london, utc = asterisk_starts("Europe/London"), asterisk_starts("UTC")
    offsets = {u - lo for lo, u in zip(london, utc, strict=True)}
    assert offsets == {dt.timedelta(0), dt.timedelta(hours=1)}  # the test below can fail


def test_cli_timezone_reads_local_times_and_overrides_the_file(tmp_path, env) -> None:
    config = tmp_path / "telemetry.toml"
    config.write_text('timezone = "Asia/Tokyo"\n[asterisk]\ntimezone = "America/New_York"\n')
    out = tmp_path / "out"
    done = run_cli("process", str(ASTERISK), "--out", str(out), "--config", str(config),
                   "--timezone", "Europe/London", "--emit-records", "--k", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert [r["start_time"] for r in records(out)] == asterisk_starts("Europe/London")


def test_api_timezone_from_argument_file_and_section(tmp_path) -> None:
    def starts(**options) -> list[dt.datetime]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        telemetry.process(ASTERISK, key=TEST_KEY, out=out, emit_records=True, k=1, **options)
        return [r["start_time"] for r in records(out)]

    assert starts() == asterisk_starts("UTC")
    assert starts(timezone="Europe/London") == asterisk_starts("Europe/London")
    top = tmp_path / "top.toml"
    top.write_text('timezone = "Europe/London"\n')
    assert starts(config=top) == asterisk_starts("Europe/London")
    section = tmp_path / "section.toml"  # a format's own section wins over the top level
    section.write_text('timezone = "Europe/London"\n[asterisk]\ntimezone = "America/New_York"\n')
    assert starts(config=section) == asterisk_starts("America/New_York")
    assert starts(config=section, timezone="UTC") == asterisk_starts("UTC")
    other = tmp_path / "other.toml"  # another format's section leaves Asterisk alone
    other.write_text('[kamailio]\ntimezone = "America/New_York"\n')
    assert starts(config=other) == asterisk_starts("UTC")


def test_cli_template(tmp_path, env) -> None:
    names = ",".join(n.strip('"${}') for n in TEMPLATE.strip().split(","))
    out = tmp_path / "out"
    done = run_cli("process", str(FREESWITCH_CUSTOM), "--out", str(out), "--template", names,
                   "--k", "1", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "run.json").read_text())
    assert summary["records_in"] == summary["records_ok"] > 0
    # without the template every row has the wrong width for the example one
    done = run_cli("process", str(FREESWITCH_CUSTOM), "--out", str(out), "--k", "1", env=env)
    assert done.returncode == 1, done.stderr
    rejects = (out / "quarantine" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == summary["records_in"]
    assert all("(the template)" in json.loads(line)["reason"] for line in rejects)


def test_api_template_and_kamailio_columns_from_sections(tmp_path) -> None:
    config = tmp_path / "telemetry.toml"
    config.write_text(
        f"[freeswitch]\ntemplate = '''{TEMPLATE.strip()}'''\n"
        '[kamailio]\ntimezone = "Europe/London"\ncolumns = { gw = "route" }\n'
    )
    result = telemetry.process(FREESWITCH_CUSTOM, key=TEST_KEY, config=config, k=1)
    assert result.summary["records_quarantined"] == 0 and result.summary["records_ok"] > 0
    result = telemetry.process(
        FIXTURES / "voip" / "kamailio_semicolon.csv", key=TEST_KEY, config=config, k=1,
        by=["route"],
    )
    assert set(result.metrics["route"]) == {"carrier-a", "carrier-b"}
    assert telemetry.process(
        FREESWITCH_CUSTOM, key=TEST_KEY, template=TEMPLATE, k=1
    ).summary["records_quarantined"] == 0


BAD_SETTINGS = [
    (["--timezone", "Mars/Olympus"], "", "time zone"),
    ([], 'timezone = "Mars/Olympus"\n', "time zone"),
    ([], '[smpp-dlr]\ntimezone = "Mars/Olympus"\n', "time zone"),
    (["--template", "a,b c"], "", "template"),
    ([], "[asterisk]\ntemplate = 'a,b'\n", "unknown setting(s) template in [asterisk]"),
    ([], "[excel]\ntimezone = 'UTC'\n", "unknown key(s) excel"),
    ([], "asterisk = 'UTC'\n", "[asterisk] must be a table"),
    ([], "[kamailio]\ncolumns = { gw = 'gateway' }\n", "not a canonical column"),
    ([], "[freeswitch]\ntemplate = 5\n", "[freeswitch] template has the wrong type"),
]


@pytest.mark.parametrize(("flags", "toml", "message"), BAD_SETTINGS)
def test_bad_reader_settings_are_one_line_config_errors(tmp_path, env, flags, toml, message):
    config = tmp_path / "telemetry.toml"
    config.write_text(toml)
    done = run_cli("process", str(ASTERISK), "--out", str(tmp_path / "out"),
                   "--config", str(config), *flags, env=env)
    assert message in one_line_error(done)
    assert not (tmp_path / "out").exists()  # refused before anything was read or written


def test_api_bad_timezone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="time zone"):
        telemetry.process(ASTERISK, key=TEST_KEY, timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="unknown setting"):
        telemetry.process(ASTERISK, key=TEST_KEY, asterisk={"zone": "UTC"})
    with pytest.raises(TypeError, match="unknown option"):
        telemetry.process(ASTERISK, key=TEST_KEY, time_zone="UTC")


# -- --format auto ---------------------------------------------------------------------------

#: every input fixture and the format it is in (None: only --format can say: mapped)
DETECTED = {
    "voip/asterisk_master.csv": "asterisk",
    "voip/freeswitch_example.csv": "freeswitch",
    "voip/freeswitch_custom.csv": "freeswitch",
    "voip/freeswitch_timeouts.csv": "freeswitch",
    "voip/kamailio_acc_cdrs.csv": "kamailio",
    "voip/kamailio_semicolon.csv": "kamailio",
    "voip/kamailio_mysql_batch.tsv": "kamailio",
    "voip/kamailio_mysql_outfile.txt": "kamailio",
    "voip/kamailio_psql.csv": "kamailio",
    "voip/kamailio_psql_confirmed.csv": "kamailio",
    "messaging/cloudhopper-receipts.jsonl": "smpp-dlr",
    "messaging/smpp-dlr.csv": "smpp-dlr",
    "messaging/smpp-dlr.jsonl": "smpp-dlr",
    "messaging/twilio-calls-page.json": "twilio-calls",
    "messaging/twilio-calls.csv": "twilio-calls",
    "messaging/twilio-calls-trunking.json": "twilio-calls",
    "messaging/twilio-calls-withheld.csv": "twilio-calls",
    "messaging/twilio-messages.csv": "twilio-messages",
    "messaging/twilio-messages.ndjson": "twilio-messages",
    "messaging/mapped.csv": None,
}
GENERIC_NAMES = ("data.csv", "data.jsonl", "data.json", "data.txt", "data")


def test_every_input_fixture_is_listed() -> None:
    inputs = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.glob("*/*")
        if p.name != "README.md" and not p.name.endswith((".expected.jsonl", ".template"))
    }
    assert inputs == set(DETECTED)


@pytest.mark.parametrize("fixture", [f for f, fmt in DETECTED.items() if fmt])
def test_fixture_detected_under_generic_names(tmp_path, fixture) -> None:
    for name in GENERIC_NAMES:
        path = tmp_path / name
        shutil.copyfile(FIXTURES / fixture, path)
        assert detect_format(path) == DETECTED[fixture], name
    head = (FIXTURES / fixture).read_bytes()[:65536]
    vendors = [f for f in FORMATS if f not in ("parquet", "csv", "jsonl")]
    recognized = [f for f in vendors if get_format(f).sniff and get_format(f).sniff(head)]
    assert recognized == [DETECTED[fixture]]  # no other vendor sniffer claims it


@pytest.mark.parametrize("name", GENERIC_NAMES)
def test_unrecognized_file_asks_for_format(tmp_path, name) -> None:
    path = tmp_path / name
    shutil.copyfile(FIXTURES / "messaging" / "mapped.csv", path)
    with pytest.raises(InputError) as caught:
        detect_format(path)
    message = str(caught.value)
    assert "\n" not in message and "pass --format" in message
    assert all(fmt in message for fmt in FORMATS)
    assert "555" not in message and "Caller" not in message


def test_unrecognized_file_through_the_cli(tmp_path, env) -> None:
    path = tmp_path / "export.csv"
    shutil.copyfile(FIXTURES / "messaging" / "mapped.csv", path)
    done = run_cli("process", str(path), "--out", str(tmp_path / "out"), env=env)
    assert "pass --format" in one_line_error(done)


def test_ambiguous_content_asks_for_format_unless_the_name_says(tmp_path) -> None:
    header = "start_time,end_time,duration,receipt\n"  # Kamailio's times, SMPP's receipt
    path = tmp_path / "data.csv"
    path.write_text(header)
    with pytest.raises(InputError, match="could be kamailio or smpp-dlr; pass --format"):
        detect_format(path)
    named = tmp_path / "acc_cdrs.csv"
    named.write_text(header)
    assert detect_format(named) == "kamailio"


def test_canonical_csv_under_a_vendor_name_is_canonical(tmp_path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("start_time,source,status\n2026-11-01T10:00:00Z,+15550100,answered\n")
    assert detect_format(path) == "csv"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="it is empty; pass --format"):
        detect_format(empty)


def test_twilio_calls_csv_reads_as_the_api_page(tmp_path) -> None:
    def read(path: Path) -> list[dict]:
        parts = get_format(detect_format(path)).read(str(path), 100, ReaderOptions())
        return [row for part in parts for row in part.batch.to_pylist()]

    page = read(FIXTURES / "messaging" / "twilio-calls-page.json")
    assert read(FIXTURES / "messaging" / "twilio-calls.csv") == page and len(page) > 3


# -- generate --format F → process, against the canonical records of the same seed -----------

SEED, RECORDS = 5, 1200
RUN = ("--k", "1", "--region", "GB", "--window", "1h", "--threads", "1")


def test_every_writable_format_has_a_projection() -> None:
    assert set(writable_formats()) == set(PROJECTIONS)
    assert set(writable_formats()) == set(FORMATS)  # every input format can be generated


@pytest.fixture(scope="module")
def canonical_records(tmp_path_factory, env) -> list[dict]:
    path = tmp_path_factory.mktemp("canonical") / "generated.parquet"
    done = run_cli("generate", "--records", str(RECORDS), "--seed", str(SEED),
                   "--out", str(path), env=env)
    assert done.returncode == 0, done.stderr
    return pq.read_table(path).to_pylist()


#: Record columns a run emits as read (identifiers come out as pseudonyms, checked in test_hmac).
READ_AS_IS = ("channel", "direction", "tenant", "start_time", "answer_time", "end_time", "pdd_ms", "duration_ms",
              "status", "sip_code", "q850_cause", "route", "mos", "jitter_ms", "packet_loss_pct", "rtt_ms",
              "roaming", "mno", "device_type")  # fmt: skip
BY = ("route", "dst_region")


def _read_as_is(record: dict) -> tuple:
    """The columns of READ_AS_IS, floats as the float32 the canonical schema holds."""
    return tuple(float(np.float32(v)) if isinstance(v, float) else v for v in (record[c] for c in READ_AS_IS))


def _sortable(row: tuple) -> tuple:
    return tuple((v is None, str(v)) for v in row)


def _reference_input(record: dict) -> dict:
    """An emitted record as the slow twin takes it: times in epoch microseconds."""
    times = {k: int(record[k].timestamp() * 1_000_000) for k in ("start_time", "end_time") if record[k]}
    return record | times


@pytest.mark.parametrize("fmt", writable_formats())
def test_generate_then_process_round_trip(tmp_path, env, canonical_records, fmt) -> None:
    """The vendor file a generator wrote reads back as the projection of the canonical
    records (every column but the identifiers, whose destination region is checked
    against libphonenumber), and the metrics are the slow twin's (tests/reference_metrics.py)
    over the records the run emitted."""
    generated = tmp_path / "generated.out"  # a name that says nothing: content decides
    done = run_cli("generate", "--records", str(RECORDS), "--seed", str(SEED),
                   "--format", fmt, "--out", str(generated), env=env)
    assert done.returncode == 0, done.stderr
    flags: tuple[str, ...] = ()
    if fmt == "mapped":  # only the configuration can say a file is mapped
        config = tmp_path / "telemetry.toml"
        table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in EXAMPLE_MAPPING.items())
        config.write_text(f'format = "mapped"\n[mapping]\n{table}\n')
        flags = ("--config", str(config))
    else:
        assert detect_format(generated) == fmt
    out = tmp_path / "out"
    done = run_cli("process", str(generated), "--out", str(out), *RUN, "--emit-records", *flags, env=env)
    assert done.returncode == 0, done.stderr

    channels, project = PROJECTIONS[fmt]
    kept = [project(r) for r in canonical_records if channels is None or r["channel"] in channels]
    run = json.loads((out / "run.json").read_text())
    assert run["records_in"] == len(kept) > 100
    emitted = records(out)
    assert sorted(map(_read_as_is, emitted), key=_sortable) == sorted(map(_read_as_is, kept), key=_sortable)
    regions = {}
    for r in kept:
        try:
            number = phonenumbers.parse(r["destination"] or "", "GB")
        except phonenumbers.NumberParseException:
            continue
        regions.setdefault(r["start_time"], set()).add(phonenumbers.region_code_for_number(number))
    checked = [r for r in emitted if len(regions.get(r["start_time"], ())) == 1]
    assert len(checked) > len(emitted) // 2
    assert all(r["dst_region"] in regions[r["start_time"]] for r in checked)

    want, rows_withheld, records_withheld, _ = reference_release(
        [_reference_input(r) for r in emitted], 3_600_000_000, BY, k=1)
    assert_matches(pl.read_parquet(out / "metrics" / "**" / "*.parquet"), want, BY)
    assert (run["rows_withheld"], run["records_withheld"]) == (rows_withheld, records_withheld)
