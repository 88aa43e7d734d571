"""The testable claims of docs/keys.md's threat model, each as the attacker would try it: a
dictionary of every number in +44 7700 900000-900999, hashed the ways an attacker would
guess (and, with the key file, the way SPEC 3 says, computed here with hmac/HKDF from the
standard library), run against the real CLI's outputs."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import ipaddress
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.test_pipeline import hkdf_sha256

from telemetry.keys import Keyring

BLOCK = [f"+447700900{i:03d}" for i in range(1000)]  # every number of the fictional block
KEYS = [bytes(range(7, 39)), bytes(range(90, 122))]
SUBNETS = {"192.0.2": 5, "198.51.100": 12, "203.0.113": 30}  # addresses per /24 in the input


def _subscribers(i: int) -> tuple[str, str]:
    return BLOCK[(i * 37) % 400], BLOCK[400 + (i * 91) % 300]


def _ips() -> list[str]:
    return [f"{net}.{10 + j * 3}" for net, n in SUBNETS.items() for j in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Record output, metrics and a key file of two epochs (the second from 2026-11-02)."""
    tmp = tmp_path_factory.mktemp("threat")
    keyfile = tmp / "keys.json"
    Keyring.from_key(KEYS[0]).rotate(datetime(2026, 11, 2, tzinfo=UTC), key=KEYS[1]).save(keyfile)
    data = tmp / "in.csv"
    ips = _ips()
    with data.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["record_id", "channel", "start_time", "source", "destination", "status",
                    "duration_ms", "route", "source_ip"])
        for i in range(800):
            src, dst = _subscribers(i)
            w.writerow([f"r{i}", "voice", f"2026-11-0{1 + i % 2}T{i % 24:02d}:{i % 60:02d}:00Z", src, dst,
                        "answered", "1000", "carrier-a", ips[i % len(ips)]])
    env = {"PATH": "/usr/bin:/bin"}
    out = {}
    for mode in ("truncate", "cryptopan"):
        out[mode] = tmp / mode
        res = run_cli("process", str(data), "--out", str(out[mode]), "--emit-records", "--k", "2",
                      "--ip-mode", mode, "--key-file", str(keyfile), env=env)
        assert res.returncode == 0, res.stderr
    return {"tmp": tmp, "keyfile": keyfile, "out": out, "env": env, "data": data,
            "people": {n for i in range(800) for n in _subscribers(i)}}


def _pseudonyms(out: Path) -> set[bytes]:
    table = pq.read_table(out / "records", columns=["source", "destination"])
    return {v for c in ("source", "destination") for v in table.column(c).to_pylist() if v is not None}


def _keyed(key: bytes, number: str) -> bytes:
    """SPEC 3 as an attacker holding the key file computes it."""
    return hmac.new(hkdf_sha256(key, b"telemetry/v1/subscriber"), number.encode(), hashlib.sha256).digest()[:16]


def _guesses(number: str) -> list[bytes]:
    """What an attacker without the key would try: plain hashes of the number in its usual
    notations, HMAC under empty or guessable keys, SPEC 3 under a key of their own."""
    forms = [number, number[1:], "0" + number[3:], number.replace("+44", "+44 ")]
    out = []
    for text in forms:
        raw = text.encode()
        out += [hashlib.sha256(raw).digest()[:16], hashlib.md5(raw).digest(), hashlib.sha1(raw).digest()[:16],
                hmac.new(b"", raw, hashlib.sha256).digest()[:16]]
    out.append(_keyed(bytes(32), number))
    out.append(_keyed(hashlib.sha256(b"telemetry").digest(), number))
    return out


def test_record_output_without_the_key_a_dictionary_finds_nothing(world):
    pseudonyms = _pseudonyms(world["out"]["truncate"])
    assert len(pseudonyms) > 500
    assert not [n for n in BLOCK if pseudonyms.intersection(_guesses(n))]
    key_ids = {e.key_id for e in Keyring.load(world["keyfile"]).epochs}
    for key_id in key_ids:  # the key id in every row does not help either
        assert not [n for n in BLOCK if _keyed(bytes.fromhex(key_id) * 4, n) in pseudonyms]


def test_record_output_with_the_key_file_a_dictionary_finds_everyone(world):
    document = json.loads(world["keyfile"].read_text())
    keys = [base64.b64decode(e["key"]) for e in document["epochs"]]
    pseudonyms = _pseudonyms(world["out"]["truncate"])
    found = {n for n in BLOCK if any(_keyed(k, n) in pseudonyms for k in keys)}
    assert found == world["people"]  # every subscriber, which is why the key file is guarded


def test_epochs_are_unlinkable(world):
    table = pq.read_table(world["out"]["truncate"] / "records", columns=["source", "key_id"]).to_pylist()
    by_epoch: dict[str, set[bytes]] = {}
    for row in table:
        by_epoch.setdefault(row["key_id"], set()).add(row["source"])
    first, second = by_epoch.values()
    assert len(first) > 100 and len(second) > 100
    assert not first & second  # the same callers, no shared pseudonym


def test_after_shredding_the_remaining_keys_find_nothing_of_that_epoch(world, tmp_path):
    keyfile = tmp_path / "keys.json"
    keyfile.write_bytes(world["keyfile"].read_bytes())
    keyfile.chmod(0o600)
    first = Keyring.load(keyfile).epochs[0].key_id
    assert run_cli("keys", "shred", "--key-file", str(keyfile), "--key-id", first, env=world["env"]).returncode == 0
    document = json.loads(keyfile.read_text())
    assert KEYS[0].hex() not in keyfile.read_text() and base64.b64encode(KEYS[0]).decode() not in keyfile.read_text()
    keys = [base64.b64decode(e["key"]) for e in document["epochs"] if e["key"]]
    rows = pq.read_table(world["out"]["truncate"] / "records", columns=["source", "destination", "key_id"])
    old = {v for r in rows.to_pylist() if r["key_id"] == first for v in (r["source"], r["destination"])}
    assert len(old) > 100
    assert not [n for n in BLOCK if any(_keyed(k, n) in old for k in keys)]


def test_after_erasure_the_key_finds_everyone_but_the_subject(world, tmp_path):
    out = tmp_path / "out"
    run_cli("process", str(world["data"]), "--out", str(out), "--emit-records", "--k", "2",
            "--key-file", str(world["keyfile"]), env=world["env"])
    subject = BLOCK[37]
    assert subject in world["people"]
    res = run_cli("erase", str(out), subject, "--key-file", str(world["keyfile"]), env=world["env"])
    assert res.returncode == 0, res.stderr
    keys = [base64.b64decode(e["key"]) for e in json.loads(world["keyfile"].read_text())["epochs"]]
    pseudonyms = _pseudonyms(out)
    found = {n for n in BLOCK if any(_keyed(k, n) in pseudonyms for k in keys)}
    assert found == world["people"] - {subject}
    # …and neither the log nor the dataset's other files keep a trace of the subject
    for path in out.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert not any(_keyed(k, subject) in blob or _keyed(k, subject).hex().encode() in blob for k in keys)


def test_metrics_hold_no_pseudonym(world):
    document = json.loads(world["keyfile"].read_text())
    keys = [base64.b64decode(e["key"]) for e in document["epochs"]]
    out = world["out"]["truncate"]
    blobs = [p.read_bytes() for p in (out / "metrics").rglob("*.parquet")] + [(out / "run.json").read_bytes()]
    blobs += [json.dumps(pq.read_table(p).to_pylist(), default=str).encode() for p in (out / "metrics").rglob("*.parquet")]
    for number in sorted(world["people"]):
        for k in keys:
            p = _keyed(k, number)
            assert not any(p in b or p.hex().encode() in b for b in blobs)


def test_cryptopan_leaks_subnet_structure_by_design(world):
    """What docs/keys.md says Crypto-PAn gives away: how addresses group into subnets (and
    so subnet sizes), never the addresses themselves."""
    rows = pq.read_table(world["out"]["cryptopan"] / "records", columns=["source_ip", "key_id"]).to_pylist()
    originals = {ipaddress.ip_address(a) for a in _ips()}
    per_epoch: dict[str, set] = {}
    for row in rows:
        per_epoch.setdefault(row["key_id"], set()).add(ipaddress.ip_address(row["source_ip"]))
    assert len(per_epoch) == 2
    for seen in per_epoch.values():
        sizes = Counter(int(a) >> 8 for a in seen)
        assert sorted(sizes.values()) == sorted(SUBNETS.values())  # the /24 sizes, exactly
        assert not seen & originals  # no original address
        assert not {int(a) >> 8 for a in seen} & {int(a) >> 8 for a in originals}  # nor network
    first, second = per_epoch.values()
    assert not first & second  # each epoch has its own Crypto-PAn key: no link across epochs


def test_two_releases_differing_by_one_subscriber_give_them_away(world, tmp_path):
    """The differencing attack the k-threshold does not stop (docs/keys.md): metrics of the
    same data with and without one subscriber differ by exactly that subscriber's records.
    This is why erasure does not re-release metrics, and why DP (SPEC 11) exists."""
    subject = BLOCK[37]
    without = tmp_path / "without.csv"
    lines = world["data"].read_text().splitlines(keepends=True)
    kept = [line for line in lines if subject not in line]
    without.write_text("".join(kept))
    mine = len(lines) - len(kept)
    assert mine > 0
    out = tmp_path / "m"
    run_cli("process", str(without), "--out", str(out), "--k", "2", "--by", "route",
            "--key-file", str(world["keyfile"]), env=world["env"])
    run_cli("process", str(world["data"]), "--out", str(tmp_path / "all"), "--k", "2", "--by", "route",
            "--key-file", str(world["keyfile"]), env=world["env"])

    def attempts(folder):
        table = pq.read_table(folder / "metrics", columns=["window_start", "route", "attempts"]).to_pylist()
        return Counter({(r["window_start"], r["route"]): r["attempts"] for r in table})

    difference = attempts(tmp_path / "all") - attempts(out)
    assert sum(difference.values()) == mine  # every one of the subject's calls, located in time
