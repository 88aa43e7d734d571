"""Retention end to end through the real CLI: ``keys shred --older-than`` against epochs laid
out by hand relative to now (which ended when is read off the layout), then ``erase --epoch``
on the pipeline's record output, checked row by row against the records before."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq

from tests.conftest import run_cli

from telemetry.keys import Keyring

NOW = datetime.now(UTC).replace(microsecond=0)
KEYS = [bytes([i]) * 32 for i in (1, 2, 3, 4)]
#: valid-from of four epochs: the first ended 120 days ago, the second 60, the third 1 day ago
STARTS = [NOW - timedelta(days=d) for d in (200, 120, 60, 1)]


def _keyring():
    ring = Keyring.from_key(KEYS[0], STARTS[0])
    for key, start in zip(KEYS[1:], STARTS[1:]):
        ring = ring.rotate(start, key=key)
    return ring


def test_ended_before_is_about_the_end_of_validity():
    ring = _keyring()
    ids = ring.key_ids()
    assert ring.ended_before(NOW - timedelta(days=90)) == ids[:1]  # ended 120 days ago; 2nd ended 60 days ago
    assert ring.ended_before(NOW - timedelta(days=60)) == ids[:2]
    assert ring.ended_before(NOW) == ids[:3]  # the newest epoch never ends
    assert ring.ended_before(NOW - timedelta(days=500)) == []
    assert ring.shred(ids[0]).ended_before(NOW) == ids[1:3]  # already shredded: not again


def _input(path, days):
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["record_id", "channel", "start_time", "source", "destination", "status", "duration_ms", "route"])
        for i, d in enumerate(days):
            when = (NOW - timedelta(days=d, hours=1)).isoformat().replace("+00:00", "Z")
            w.writerow([f"r{i}", "voice", when, f"+447700900{100 + i % 50}", f"+447700900{150 + i % 40}",
                        "answered", "1000", "carrier-a"])


def test_retention_policy_end_to_end(tmp_path, key_env):
    keyfile = tmp_path / "keys.json"
    ring = _keyring()
    ring.save(keyfile)
    ids = ring.key_ids()
    env = {k: v for k, v in key_env.items() if k != "TELEMETRY_KEY"}
    data = tmp_path / "in.csv"
    _input(data, [150, 130, 100, 70, 30, 10, 0] * 10)  # records in every epoch
    out = tmp_path / "out"
    res = run_cli("process", str(data), "--out", str(out), "--emit-records", "--k", "1",
                  "--key-file", str(keyfile), env=env)
    assert res.returncode == 0, res.stderr
    before = pq.read_table(out / "records").to_pylist()
    assert {r["key_id"] for r in before} == set(ids)

    res = run_cli("keys", "shred", "--key-file", str(keyfile), "--older-than", "90d", env=env)
    assert res.returncode == 0, res.stderr
    assert f"shredded key id {ids[0]}" in res.stdout and ids[1] not in res.stdout
    assert [e.key is None for e in Keyring.load(keyfile).epochs] == [True, False, False, False]
    listing = run_cli("keys", "list", "--key-file", str(keyfile), env=env).stdout
    assert f"{ids[0]}  " in listing and "shredded" in listing
    again = run_cli("keys", "shred", "--key-file", str(keyfile), "--older-than", "90d", env=env)
    assert again.returncode == 0 and "nothing shredded" in again.stdout

    res = run_cli("erase", str(out), "--epoch", ids[0], env=env)
    assert res.returncode == 0, res.stderr
    after = pq.read_table(out / "records").to_pylist()
    assert sorted(after, key=lambda r: r["record_id"]) == sorted(
        (r for r in before if r["key_id"] != ids[0]), key=lambda r: r["record_id"])
    assert json.loads((out / "erasures.jsonl").read_text())["records_removed"] == len(before) - len(after)

    # the shredded epoch's records cannot come back: reprocessing quarantines them
    res = run_cli("process", str(data), "--out", str(tmp_path / "again"), "--emit-records", "--k", "1",
                  "--key-file", str(keyfile), env=env)
    assert res.returncode == 1 and "no key epoch covers start_time" in (
        tmp_path / "again" / "quarantine" / "rejects.jsonl").read_text()


def test_shred_arguments(tmp_path, key_env):
    keyfile = tmp_path / "keys.json"
    _keyring().save(keyfile)
    for args, message in ((["--older-than", "90 days"], "whole number and h, d or w"),
                          (["--older-than", "90d", "--key-id", "00"], "not allowed with"),
                          ([], "one of the arguments")):
        res = run_cli("keys", "shred", "--key-file", str(keyfile), *args, env=key_env)
        assert res.returncode == 2 and message in res.stderr
