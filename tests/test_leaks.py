"""Nothing clear leaves the processor: run the real commands with a known key
and known identifiers, then search every byte they produced — stdout, stderr,
logs at -v, error messages, quarantine, run.json, metrics, record outputs (raw
and decoded, both IP modes), the stream's state directory, erasure log, report, alert rules and the Prometheus
endpoint's responses — for the identifiers in every notation (E.164, national,
with spaces, URIs), the input's IP addresses and the key material.

Reference: the known identifiers in every notation, IP addresses and the key bytes, searched
in every byte produced."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import TEST_KEY, run_cli
from tests.test_pipeline import hkdf_sha256

# Fictional numbers (Ofcom drama range, NANP 555-01xx) and made-up SIP users.
NUMBERS = {
    "447700900461": ["+44 7700 900461", "07700 900461", "07700900461", "+447700900461",
                     "tel:+44-7700-900461", "sip:+447700900461@gw.example.net;user=phone",
                     "0044 7700 900461", "(07700) 900461"],
    "447700900987": ["+44 7700 900987", "07700-900-987", "+44.7700.900.987"],
    "12025550173": ["+1 202 555 0173", "+1 (202) 555-0173", "001 202 555 0173"],
}
SIP_USERS = ["sip:night.shift@pbx.example.net", "sip:J.Random@Example.ORG"]
SENDERS = ["AcmeAlerts"]
NATIONAL_ONLY = "07700 900555"  # quarantined when no region is configured
IPS = ["198.51.100.77", "2001:db8:77::15"]


def _needles() -> list[bytes]:
    needles: set[str] = set()
    for digits, notations in NUMBERS.items():
        needles.add(digits)
        needles.add(digits[-10:])  # national significant number
        needles.add(digits[-7:])
        needles.update(notations)
    needles.update(SIP_USERS)
    needles.update(u.split(":")[1].split("@")[0] for u in SIP_USERS)
    needles.update(SENDERS)
    needles.update([NATIONAL_ONLY, "7700900555", "900555"])
    needles.update(IPS)
    out = [n.encode() for n in needles]
    out.append(TEST_KEY)
    out.append(TEST_KEY.hex().encode())
    out.append(base64.b64encode(TEST_KEY))
    for domain in (b"subscriber", b"ip", b"record", b"cryptopan"):
        sub = hkdf_sha256(TEST_KEY, b"telemetry/v1/" + domain)
        out += [sub, sub.hex().encode(), base64.b64encode(sub)]
    return out


def _input(tmp_path: Path) -> Path:
    ids = [n for v in NUMBERS.values() for n in v] + SIP_USERS + SENDERS
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["record_id", "channel", "start_time", "source", "destination", "status",
                    "duration_ms", "route", "source_ip", "location"])
        for i, a in enumerate(ids):
            b = ids[(i + 5) % len(ids)]
            w.writerow([f"id-{a}", "voice", f"2026-11-01T09:{i % 60:02d}:00Z", a, b, "answered",
                        "1000", "carrier-a", IPS[i % 2], f"cell near {a}"])
        # quarantined rows still carrying identifiers
        w.writerow(["x1", "voice", "not a time", ids[0], ids[1], "answered", "1", "r", "", ""])
        w.writerow(["x2", "voice", "2026-11-01T09:00:00Z", NATIONAL_ONLY, ids[2], "answered", "-5", "r", "", ""])
        w.writerow(["x3", "voice", "2026-11-01T09:00:00Z", ids[3], ids[4], "answered", "1", "r",
                    "198.51.100.999", ""])
    return path


def _watched(data: Path) -> Path:
    """A directory holding the input, for ``telemetry stream --watch``."""
    folder = data.parent / "watched"
    folder.mkdir()
    (folder / data.name).write_bytes(data.read_bytes())
    return folder


def _scan(blob: bytes, where: str, needles: list[bytes]) -> None:
    for needle in needles:
        assert needle not in blob, f"{where} contains a clear identifier or key material"


def test_no_identifier_or_key_anywhere(tmp_path, key_env):
    needles = _needles()
    data = _input(tmp_path)
    out = tmp_path / "out"
    keyfile = tmp_path / "keyring.json"
    runs = [
        run_cli("-v", "process", str(data), "--out", str(out), "--emit-records", "--k", "1", env=key_env),
        run_cli("-v", "process", str(data), "--out", str(tmp_path / "out2"), "--region", "GB",
                "--emit-records", "--k", "1", env=key_env),
        run_cli("pseudonym", "--region", "GB", *NUMBERS["447700900461"], env=key_env),
        run_cli("pseudonym", NATIONAL_ONLY, env=key_env),
        run_cli("optout", "add", "--list", str(tmp_path / "optout.json"), "--region", "GB",
                *NUMBERS["447700900987"], env=key_env),
        run_cli("keys", "init", "--out", str(keyfile), env=key_env),
        run_cli("keys", "list", "--key-file", str(keyfile), env=key_env),
        run_cli("keys", "list", env=key_env),
        # continuous mode: its state directory holds pseudonyms (distinct sets), never a clear identifier
        run_cli("-v", "stream", "--watch", str(_watched(data)), "--out", str(tmp_path / "out3"), "--region", "GB",
                "--once", "--k", "1", env=key_env),
    ]
    assert runs[0].returncode == 1 and runs[1].returncode == 1  # quarantined rows
    assert runs[-1].returncode == 1 and any((tmp_path / "out3" / "_state").glob("seg-*.npz"))
    assert runs[2].returncode == 0 and runs[3].returncode == 2
    for i, res in enumerate(runs):
        _scan(res.stdout.encode(), f"stdout of run {i}", needles)
        _scan(res.stderr.encode(), f"stderr of run {i}", needles)

    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != data.name and p != keyfile]
    assert any(p.suffix == ".parquet" for p in files)
    assert any(p.name == "rejects.jsonl" for p in files)
    for path in files:
        _scan(path.read_bytes(), str(path.relative_to(tmp_path)), needles)
        if path.suffix == ".parquet":
            decoded = json.dumps(pq.read_table(path).to_pylist(), default=repr).encode()
            _scan(decoded, f"decoded {path.relative_to(tmp_path)}", needles)
    # the quarantine still says what went wrong and where
    rejects = [json.loads(line) for line in (out / "quarantine" / "rejects.jsonl").read_text().splitlines()]
    n_ids = sum(len(v) for v in NUMBERS.values()) + len(SIP_USERS) + len(SENDERS)
    assert {n_ids + 1, n_ids + 2, n_ids + 3} <= {r["row"] for r in rejects}
    assert all(r["reason"] and r["file"] for r in rejects)


def test_no_identifier_in_any_command_or_output(tmp_path, key_env):
    """Every other command, over a record output of both IP modes: erase (arguments, standard
    input, bad input, --epoch) and its log, keys shred --older-than, report, alerts, serve
    (scraped over HTTP in both formats), error messages of bad input and configuration."""
    from tests.test_serve import Server

    needles = _needles()
    data = _input(tmp_path)
    outs = {mode: tmp_path / f"out-{mode}" for mode in ("truncate", "cryptopan")}
    runs = [
        run_cli("-v", "process", str(data), "--out", str(out), "--emit-records", "--k", "1", "--region", "GB",
                "--ip-mode", mode, env=key_env)
        for mode, out in outs.items()
    ]
    out = outs["cryptopan"]
    every = [n for v in NUMBERS.values() for n in v]
    runs += [
        run_cli("-v", "erase", str(out), "--region", "GB", env=key_env, input="\n".join(every[:4]) + "\n"),
        run_cli("-v", "erase", "--region", "GB", str(out), *NUMBERS["12025550173"], *SIP_USERS, env=key_env),
        run_cli("-v", "erase", str(out), NATIONAL_ONLY, env=key_env),  # no region: one-line error
        run_cli("-v", "erase", str(out), "+999 7700 900461", "--region", "GB", env=key_env),
        run_cli("-v", "erase", str(outs["truncate"]), "--epoch", "0" * 16, env=key_env),
        run_cli("-v", "optout", "add", "--list", str(tmp_path / "o.json"), "+999 7700 900987", env=key_env),
        run_cli("-v", "pseudonym", "--domain", "ip", *IPS, env=key_env),
        run_cli("-v", "pseudonym", "--domain", "ip", "198.51.100.777", env=key_env),
        run_cli("-v", "report", str(out), env=key_env),
        run_cli("-v", "alerts", "--out", "-", env=key_env),
        run_cli("-v", "process", str(data), "--out", str(tmp_path / "x"), "--ip-mode", "hash", env=key_env),
        run_cli("-v", "process", str(data), "--out", str(tmp_path / "y"), "--key-file", str(data), env=key_env),
    ]
    keyfile = tmp_path / "k.json"
    runs.append(run_cli("keys", "init", "--out", str(keyfile), "--valid-from", "2020-01-01", env=key_env))
    runs.append(run_cli("keys", "rotate", "--key-file", str(keyfile), "--valid-from", "2021-01-01", env=key_env))
    runs.append(run_cli("-v", "keys", "shred", "--key-file", str(keyfile), "--older-than", "90d", env=key_env))
    assert [r.returncode for r in runs] == [1, 1, 0, 0, 2, 2, 0, 2, 0, 2, 0, 0, 2, 2, 0, 0, 0], [r.stderr[-300:] for r in runs]
    assert "shredded key id" in runs[-1].stdout
    erased = [json.loads(line) for line in (out / "erasures.jsonl").read_text().splitlines()]
    assert erased[0]["records_removed"] > 0 and erased[1]["records_removed"] > 0

    server = Server(out)
    try:
        bodies = [server.get()[1], server.get("application/openmetrics-text")[1]]
    finally:
        server.stop()
    assert all("telemetry_" in b for b in bodies)
    for i, res in enumerate(runs):
        _scan(res.stdout.encode(), f"stdout of run {i}", needles)
        _scan(res.stderr.encode(), f"stderr of run {i}", needles)
    for i, body in enumerate(bodies):
        _scan(body.encode(), f"endpoint response {i}", needles)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p not in (data, keyfile)]
    assert {"erasures.jsonl", "report.html", "rejects.jsonl"} <= {p.name for p in files}
    for path in files:
        _scan(path.read_bytes(), str(path.relative_to(tmp_path)), needles)
        if path.suffix == ".parquet":
            decoded = json.dumps(pq.read_table(path).to_pylist(), default=repr).encode()
            _scan(decoded, f"decoded {path.relative_to(tmp_path)}", needles)
