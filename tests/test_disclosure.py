"""What leaves the processor besides identifier columns: rejects, dimension values, the
endpoint — the real CLI's outputs searched for the input's own digits and characters,
and the dimension rule checked against a slow pure-Python twin of its documented text."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.dimensions import NUMBER, published
from tests.conftest import run_cli
from tests.test_serve import Server

# Fictional numbers (Ofcom drama range); each appears in one kind of place.
NUMBERS = [f"4477009005{i:02d}" for i in range(20)]


def _digits_in(blob: str) -> list[str]:
    """The fictional numbers (any 7-digit tail of one) found in ``blob``."""
    return [n for n in NUMBERS if n[-7:] in re.sub(r"\D", "", blob) or n[-7:] in blob]


def _canonical_rejects(path: Path) -> None:
    n = iter(NUMBERS)
    cols = ["record_id", "channel", "direction", "start_time", "answer_time", "source", "destination",
            "status", "duration_ms", "pdd_ms", "mos", "route", "tenant", "mno", "device_type", "roaming"]  # fmt: skip
    good = dict(record_id="r1", channel="voice", direction="outbound", start_time="2026-11-01T09:00:00Z",
                answer_time="", source="+447700900001", destination="+447700900002", status="answered",
                duration_ms="1000", pdd_ms="", mos="", route="carrier-a", tenant="acme", mno="EE",
                device_type="smartphone", roaming="no")  # fmt: skip
    rows = [
        good | {"start_time": f"+{next(n)}"},  # start_time: not a time
        good | {"status": f"+44 {next(n)[2:]}"},  # status: not a status
        good | {"duration_ms": next(n)[2:], "pdd_ms": "-1"},  # duration_ms is valid, pdd_ms is not
        good | {"channel": next(n)},
        good | {"direction": next(n)},
        good | {"answer_time": next(n)},
        good | {"mos": next(n)},
        good | {"roaming": next(n)},
        good | {"route": f"+{next(n)}", "pdd_ms": "-1"},  # a valid route, a bad pdd
        good | {"tenant": f"0{next(n)[2:]}", "pdd_ms": "-1"},
        good | {"mno": f"({next(n)[2:5]}) {next(n)[5:]}", "pdd_ms": "-1"},
        good | {"device_type": f"{next(n)}", "pdd_ms": "-1"},
        good | {"pdd_ms": "-1"},  # the safe values of this row are all shown
    ]
    with path.open("w", newline="") as handle:
        w = csv.DictWriter(handle, cols)
        w.writeheader()
        w.writerows(rows)


def _asterisk_reject(path: Path) -> None:
    # Master.csv as cdr_csv.c writes it (tests/fixtures/voip/README.md): a disposition and an
    # accountcode holding numbers, a peer named by its number
    path.write_text(
        f'"{NUMBERS[14]}","+15550100","+447700900123","from-internal","","PJSIP/alice-00000010",'
        f'"SIP/+{NUMBERS[15]}-0000001b","Dial","","2026-07-01 12:00:00","2026-07-01 12:00:05",'
        f'"2026-07-01 12:01:05",65,60,"+{NUMBERS[16]}","DOCUMENTATION"\n'
    )


def _smpp_reject(path: Path) -> None:
    # smpp-dlr CSV (tests/fixtures/messaging/README.md) whose receipt has an unknown state
    path.write_text(
        "route,source,destination,tenant,receipt\n"
        f"carrier-a,+15555550120,+447700900120,+{NUMBERS[17]},id:0000000001 sub:001 dlvrd:001 "
        "submit date:2611011000 done date:2611011000 stat:BOGUS err:000 text:hi\n"
    )


def test_rejects_show_no_number_from_any_column_and_are_owner_only(tmp_path, key_env):
    inputs = {"canonical.csv": _canonical_rejects, "Master.csv": _asterisk_reject, "dlr.csv": _smpp_reject}
    for name, make in inputs.items():
        make(tmp_path / name)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "telemetry", "process", *(str(tmp_path / n) for n in inputs), "--out", str(out),
         "--region", "GB", "--emit-records"],  # records: every column is read
        capture_output=True, text=True, env=key_env, umask=0o022, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    path = out / "quarantine" / "rejects.jsonl"
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 15 and {x["file"].rsplit("/", 1)[1] for x in lines} == set(inputs)
    assert _digits_in(text) == []
    # what is known safe is still shown: the last canonical row is all safe values
    last = [x for x in lines if x["file"].endswith("canonical.csv") and x["row"] == 13][0]["fields"]
    assert last | {"pdd_ms": None, "source": None, "destination": None, "record_id": None} == {
        "record_id": None, "channel": "voice", "direction": "outbound", "start_time": "2026-11-01T09:00:00Z",
        "answer_time": None, "source": None, "destination": None, "status": "answered", "duration_ms": "1000",
        "pdd_ms": None, "mos": None, "route": "carrier-a", "tenant": "acme", "mno": "EE",
        "device_type": "smartphone", "roaming": "no",
    }  # fmt: skip
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def _asterisk_calls(path: Path, peers: dict[str, str], tenant_of: dict[str, str], calls: int) -> None:
    lines = []
    seq = 0
    for peer, channel in peers.items():
        for i in range(calls):
            seq += 1
            lines.append(
                f'"{tenant_of[peer]}","+1555010{i % 10}","+44770090{i:04d}","from-internal","",'
                f'"PJSIP/office-{seq:08x}","{channel}-{seq:08x}","Dial","","2026-07-01 12:00:{i % 60:02d}",'
                f'"2026-07-01 12:00:{i % 60:02d}","2026-07-01 12:01:{i % 60:02d}",60,60,"ANSWERED","DOCUMENTATION"'
            )
    path.write_text("\n".join(lines) + "\n")


def test_number_like_dimensions_are_not_published(tmp_path, key_env):
    """A peer named by its number and an account code that is a number reach no output."""
    data = tmp_path / "Master.csv"
    peers = {"number": f"SIP/+{NUMBERS[0]}", "trunk": "PJSIP/carrier-a"}
    tenants = {"number": f"0{NUMBERS[1][2:]}", "trunk": "acme"}
    _asterisk_calls(data, peers, tenants, calls=12)
    out = tmp_path / "out"
    res = run_cli("process", str(data), "--out", str(out), "--region", "GB", "--by", "route,tenant",
                  "--k", "1", env=key_env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "route: 12 record(s)" in res.stderr and "tenant: 12 record(s)" in res.stderr
    assert _digits_in(res.stdout + res.stderr) == []
    assert run_cli("report", str(out), env=key_env).returncode == 0
    metrics = pq.read_table(out / "metrics").to_pylist()
    assert {(r["route"], r["tenant"]) for r in metrics} == {(NUMBER, NUMBER), ("carrier-a", "acme")}
    for path in out.rglob("*"):
        if path.is_file():
            blob = path.read_bytes().decode("utf-8", "replace")
            if path.suffix == ".parquet":
                blob += json.dumps(pq.read_table(path).to_pylist(), default=str)
            assert _digits_in(blob) == [], path
    run = json.loads((out / "run.json").read_text())
    assert run["dimension_values_rewritten"] == {"route number": 12, "tenant number": 12}


def test_a_tenant_named_other_does_not_join_the_roll_up(tmp_path, key_env):
    data = tmp_path / "in.csv"
    with data.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["start_time", "source", "destination", "status", "tenant"])
        for i in range(6):  # a tenant literally named __other__, above k
            w.writerow([f"2026-11-01T09:0{i}:00Z", f"+1555010{i}", f"+44770090010{i}", "answered", "__other__"])
        for i in range(3):  # three small tenants, rolled up
            w.writerow([f"2026-11-01T09:0{i}:30Z", f"+1555011{i}", f"+44770090011{i}", "busy", f"shop-{i}"])
    out = tmp_path / "out"
    res = run_cli("process", str(data), "--out", str(out), "--by", "tenant", "--k", "2", env=key_env)
    assert res.returncode == 0, res.stderr
    rows = {r["tenant"]: r["attempts"] for r in pq.read_table(out / "metrics").to_pylist()}
    assert rows == {"~__other__": 6, "__other__": 3}


CONTROLS = "\x00\r\n\u202e\u200b\ufeff"


def test_control_and_bidi_characters_reach_no_sink(tmp_path, key_env):
    data = tmp_path / "in.csv"
    tenant = "acme\u202e" + "\x00evil\r\nlabel\u200b"
    with data.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["start_time", "source", "destination", "status", "tenant", "route"])
        for i in range(6):
            w.writerow([f"2026-11-01T09:0{i}:00Z", f"+1555010{i}", f"+44770090010{i}", "answered", tenant,
                        "carrier\u202ea"])  # fmt: skip
    out = tmp_path / "out"
    res = run_cli("process", str(data), "--out", str(out), "--by", "route,tenant", "--k", "1", env=key_env)
    assert res.returncode == 0, res.stderr
    assert "tenant: 6 record(s) with control or bidi" in res.stderr
    assert run_cli("report", str(out), env=key_env).returncode == 0
    html = (out / "report.html").read_text("utf-8")
    assert not any(c in html for c in "\x00\u202e\u200b") and "carrier\ufffda" in html
    server = Server(out)
    try:
        _, text = server.get()
    finally:
        server.stop()
    labels = re.findall(r'(?:tenant|route)="((?:[^"\\]|\\.)*)"', text)
    assert "acme\ufffd\ufffdevil\ufffd\ufffdlabel\ufffd" in labels and "carrier\ufffda" in labels
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for label in labels for c in label)


def test_opt_out_count_is_not_on_the_endpoint(tmp_path, key_env):
    data = tmp_path / "in.csv"
    with data.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["start_time", "source", "destination", "status"])
        for i in range(8):
            w.writerow([f"2026-11-01T09:0{i}:00Z", f"+1555010{i}", f"+44770090010{i}", "answered"])
    listing = tmp_path / "optout.json"
    assert run_cli("optout", "add", "--list", str(listing), "+15550103", env=key_env).returncode == 0
    out = tmp_path / "out"
    res = run_cli("process", str(data), "--out", str(out), "--opt-out", str(listing), "--k", "1", env=key_env)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "run.json").read_text())["records_opted_out"] == 1
    server = Server(out)
    try:
        _, text = server.get()
    finally:
        server.stop()
    assert 'telemetry_records_total{outcome="ok"} 7.0' in text
    assert "opted" not in text


# -- the dimension rule against its documented text (docs/design.md) ----------------------------


def _twin(value: str) -> str:
    """docs/design.md "Dimension values", one character at a time."""
    text = "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cf", "Co", "Zl", "Zp") else c for c in value)
    if "@" in text or (_has_number(text) and not _ipv4(text)):
        return NUMBER
    return "~" + text if text.startswith(("__", "~")) else text


def _has_number(text: str) -> bool:
    def word(i: int) -> bool:  # a letter or digit at i
        return 0 <= i < len(text) and unicodedata.category(text[i])[0] in "LN"

    for start, ch in enumerate(text):
        if not ch.isdecimal() or word(start - 1):
            continue
        digits = 0
        for end in range(start, len(text)):
            if text[end].isdecimal():
                digits += 1
                if digits >= 7 and not word(end + 1):
                    return True
            elif text[end] not in " ().-/":
                break
    return False


def _ipv4(text: str) -> bool:
    host, _, port = text.partition(":")
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return False
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isascii() and p.isdigit() and str(int(p)) == p and int(p) <= 255 for p in parts
    )


ALPHABET = st.sampled_from(list("0123456789+ ().-/_~@:ab") + ["\x00", "\u202e", "\u0663", "é", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(ALPHABET, max_size=20), min_size=1, max_size=12))
def test_published_equals_its_twin(values):
    for column in (pa.array(values, pa.string()), pa.array(values, pa.string()).dictionary_encode()):
        out, counts = published(column)
        assert out.to_pylist() == [_twin(v) for v in values]
        changed = sum(_twin(v) != v for v in values)
        assert (changed == 0) == (counts == {})


def test_published_examples():
    examples = {
        "+447700900555": NUMBER, "07700 900555": NUMBER, "(020) 7946-0018": NUMBER, "a 4477009005 b": NUMBER,
        "alice@example.com": NUMBER, "carrier-a": "carrier-a", "trunk-2026": "trunk-2026",
        "AC5f3e1234567b": "AC5f3e1234567b", "192.0.2.14:5060": "192.0.2.14:5060", "__other__": "~__other__",
        "~x": "~~x", "a\u202eb": "a\ufffdb",
    }  # fmt: skip
    out, _ = published(pa.array(list(examples)))
    assert dict(zip(examples, out.to_pylist(), strict=True)) == examples
