"""``telemetry erase`` and ``erase --epoch`` through the real CLI on record output the real
pipeline wrote, against the records before erasure filtered by reference pseudonyms (HMAC of
the E.164 number under each epoch's HKDF subkey, computed here); a SIGKILL in the middle of
the rewrites leaves every file old or new."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_KEY, run_cli
from tests.test_pipeline import hkdf_sha256

from telemetry.keys import Keyring

SECOND_KEY = bytes(range(40, 72))
SUBJECT = "+447700900123"  # fictional (Ofcom drama range)
NOTATIONS = ["+44 7700 900123", "07700 900123", "07700900123", "447700900123", "7700900123", "900123"]
CONFIG = "batch_rows = 40\n"  # many record files: one per batch and date


def ref_pseudonym(key: bytes, e164: str) -> bytes:
    return hmac.new(hkdf_sha256(key, b"telemetry/v1/subscriber"), e164.encode(), hashlib.sha256).digest()[:16]


def _write_input(path: Path, rows: int = 600, subject_every: int = 7) -> None:
    """Three days of calls among +44 7700 900100-139; SUBJECT calls or is called every
    ``subject_every``-th record (sometimes in national notation)."""
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["record_id", "channel", "start_time", "source", "destination", "status",
                    "duration_ms", "route"])
        for i in range(rows):
            src, dst = f"+447700900{100 + i % 40}", f"+447700900{100 + (i * 7 + 3) % 40}"
            if src == SUBJECT or dst == SUBJECT:
                src, dst = "+447700900199", "+447700900198"
            if i % subject_every == 0:
                if i % 2:
                    src = "07700 900123"
                else:
                    dst = SUBJECT
            day, minute = 1 + i * 3 // rows, i % 1440
            w.writerow([f"r{i}", "voice", f"2026-11-0{day}T{minute // 60:02d}:{minute % 60:02d}:00Z",
                        src, dst, "answered", "1000", "carrier-a"])


@pytest.fixture
def keyfile(tmp_path) -> Path:
    """Two epochs: TEST_KEY since the beginning, SECOND_KEY from 2026-11-02."""
    ring = Keyring.from_key(TEST_KEY).rotate(datetime(2026, 11, 2, tzinfo=UTC), key=SECOND_KEY)
    path = tmp_path / "keys.json"
    ring.save(path)
    return path


def _dataset(tmp_path: Path, keyfile: Path, env, name: str = "out", **input_args) -> Path:
    data = tmp_path / f"{name}.csv"
    _write_input(data, **input_args)
    config = tmp_path / "telemetry.toml"
    config.write_text(CONFIG)
    out = tmp_path / name
    res = run_cli("process", str(data), "--out", str(out), "--emit-records", "--region", "GB", "--k", "1",
                  "--key-file", str(keyfile), "--config", str(config), env=env)
    assert res.returncode == 0, res.stderr
    return out


def _files(out: Path) -> dict[Path, bytes]:
    """The record files the pipeline wrote (``part-*``, not in a hidden folder), with their bytes."""
    files = (out / "records").rglob("part-*.parquet")
    return {p: p.read_bytes() for p in sorted(files) if ".staging" not in p.parts}


def _rows(out: Path) -> list[dict]:
    rows = []
    for path in _files(out):
        rows += pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda r: (r["start_time"], r["record_id"]))


def _subject_pseudonyms() -> set[bytes]:
    return {ref_pseudonym(TEST_KEY, SUBJECT), ref_pseudonym(SECOND_KEY, SUBJECT)}


def test_erase_removes_the_subject_under_every_epoch_and_nothing_else(tmp_path, keyfile, key_env):
    out = _dataset(tmp_path, keyfile, key_env, subject_every=97)
    before_files, before_rows = _files(out), _rows(out)
    subject = _subject_pseudonyms()
    held = [r for r in before_rows if r["source"] in subject or r["destination"] in subject]
    assert len({r["key_id"] for r in held}) == 2 and len(held) == 7  # both epochs, both roles
    holding = set()
    for path in before_files:
        columns = pq.read_table(path, columns=["source", "destination"]).to_pydict()
        if subject & set(columns["source"] + columns["destination"]):
            holding.add(path)
    foreign = out / "records" / "date=2026-11-01" / "mine.parquet"  # the operator's own file
    pq.write_table(pa.table({"source": pa.array(sorted(subject), pa.binary(16))}), foreign)
    staged = out / "records" / ".staging" / "part-000000.parquet"  # a hidden folder is no output
    staged.parent.mkdir()
    shutil.copy(next(iter(before_files)), staged)
    foreign_bytes, staged_bytes = foreign.read_bytes(), staged.read_bytes()

    res = run_cli("erase", str(out), "--region", "GB", "--key-file", str(keyfile), env=key_env,
                  input="07700 900123\n\n")
    assert res.returncode == 0, res.stderr
    after_files = _files(out)
    assert _rows(out) == [r for r in before_rows if r not in held]
    changed = {p for p in before_files if after_files.get(p) != before_files[p]}
    assert changed == holding and 0 < len(holding) < len(before_files)  # the others byte-identical
    assert foreign.read_bytes() == foreign_bytes and staged.read_bytes() == staged_bytes
    assert "did not write" in res.stderr
    assert f"erased {len(held)} records of 1 identifier" in res.stdout

    log = [json.loads(line) for line in (out / "erasures.jsonl").read_text().splitlines()]
    assert log[0]["records_removed"] == len(held) and log[0]["identifiers"] == 1
    assert log[0]["files_rewritten"] + log[0]["files_deleted"] == len(holding)
    assert datetime.fromisoformat(log[0]["at"]) <= datetime.now(UTC)

    # twice: nothing more to remove, nothing rewritten, one more log line
    again = run_cli("erase", str(out), "+44 7700 900123", "--key-file", str(keyfile), env=key_env)
    assert again.returncode == 0 and "erased 0 records" in again.stdout
    assert _files(out) == after_files
    log = [json.loads(line) for line in (out / "erasures.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[1]["records_removed"] == 0 and log[1]["files_rewritten"] == 0

    # nothing printed or logged names the subject or a pseudonym
    said = res.stdout + res.stderr + again.stdout + again.stderr + (out / "erasures.jsonl").read_text()
    for needle in NOTATIONS + [p.hex() for p in subject]:
        assert needle not in said


def test_erase_errors_are_one_line_without_identifiers(tmp_path, keyfile, key_env):
    out = _dataset(tmp_path, keyfile, key_env)
    res = run_cli("erase", str(out), "07700 900123", "--key-file", str(keyfile), env=key_env)  # no region
    assert res.returncode == 2 and "identifier #1" in res.stderr and "900123" not in res.stderr
    res = run_cli("erase", str(tmp_path / "nowhere"), "+447700900123", "--key-file", str(keyfile), env=key_env)
    assert res.returncode == 2 and "no records/ directory" in res.stderr
    res = run_cli("erase", str(out), "--key-file", str(keyfile), env=key_env, input="")
    assert res.returncode == 2 and "no identifiers" in res.stderr
    res = run_cli("erase", str(out), "--epoch", "xyz", env=key_env)
    assert res.returncode == 2 and "16 hex digits" in res.stderr
    assert not (out / "erasures.jsonl").exists()


def test_erase_epoch_drops_that_epochs_records(tmp_path, keyfile, key_env):
    out = _dataset(tmp_path, keyfile, key_env)
    ring = Keyring.load(keyfile)
    first = ring.epochs[0].key_id
    before, _files_before = _rows(out), _files(out)
    assert {r["key_id"] for r in before} == set(ring.key_ids())
    res = run_cli("erase", str(out), "--epoch", first.upper(), env={"PATH": os.environ["PATH"]})  # no key needed
    assert res.returncode == 0, res.stderr
    assert _rows(out) == [r for r in before if r["key_id"] != first]
    log = json.loads((out / "erasures.jsonl").read_text())
    day_one = [p for p in _files_before if "date=2026-11-01" in str(p)]
    # one epoch per file here (the second begins at midnight): every file decided unread
    assert log["key_id"] == first and log["rows_scanned"] == 0
    assert log["files_deleted"] == len(day_one) and log["files_decided_by_statistics"] == len(_files_before)
    files = _files(out)
    assert run_cli("erase", str(out), "--epoch", first, env=key_env).returncode == 0
    assert _files(out) == files


def test_a_stale_temporary_file_of_a_crash_is_removed(tmp_path, keyfile, key_env):
    out = _dataset(tmp_path, keyfile, key_env)
    some = next(iter(_files(out)))
    stale = some.with_name(f".{some.name}.erase.tmp")
    stale.write_bytes(b"half a file")
    res = run_cli("erase", str(out), SUBJECT, "--key-file", str(keyfile), env=key_env)
    assert res.returncode == 0 and not stale.exists()


def test_sigkill_while_rewriting_leaves_every_file_old_or_new(tmp_path, keyfile, key_env):
    pristine = _dataset(tmp_path, keyfile, key_env, name="pristine", rows=4000, subject_every=5)
    old = {p.relative_to(pristine): pq.read_metadata(p).num_rows for p in _files(pristine)}
    done = tmp_path / "done"
    shutil.copytree(pristine, done)
    command = [sys.executable, "-m", "telemetry", "erase", "", SUBJECT, "--key-file", str(keyfile)]
    start = time.perf_counter()
    subprocess.run([*command[:4], str(done), *command[5:]], env=key_env, check=True, capture_output=True)
    full = time.perf_counter() - start
    new = {p.relative_to(done): pq.read_metadata(p).num_rows for p in _files(done)}
    assert len(new) == len(old) > 50 and all(new[p] < old[p] for p in old)  # every file is rewritten

    mixed = 0
    for i in range(6):
        work = tmp_path / f"kill{i}"
        shutil.copytree(pristine, work)
        proc = subprocess.Popen([*command[:4], str(work), *command[5:]], env=key_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * (0.5 + 0.08 * i))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        states = []
        for rel, rows in old.items():
            table = pq.read_table(work / rel)  # readable: never half a file
            assert table.num_rows in (rows, new[rel])
            states.append(table.num_rows == new[rel])
            if table.num_rows == new[rel]:
                assert table.equals(pq.read_table(done / rel))
        mixed += 0 < sum(states) < len(states)
        finish = subprocess.run([*command[:4], str(work), *command[5:]], env=key_env, capture_output=True)
        assert finish.returncode == 0
        assert {p.relative_to(work): pq.read_metadata(p).num_rows for p in _files(work)} == new
        assert not list(work.rglob("*.tmp"))
    assert mixed  # at least one kill landed between two rewrites
