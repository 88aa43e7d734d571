"""``process --out DIR`` replaces only its own outputs, only after a run succeeded.

Checked against snapshots of the directory tree (every file's path and bytes) taken
before and after the real CLI runs in a subprocess, and against what ``serve``'s and
``report``'s reader (metricsdir) reads back.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from telemetry.generate import write as write_records
from telemetry.sinks.metricsdir import read_metrics, read_run
from tests.conftest import run_cli


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (dot-files included), by relative path, with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "in" / "cdrs.parquet"
    path.parent.mkdir()
    write_records(path, 300, fmt="parquet", seed=3)
    return path


def process(*args: str, env, cwd=None):
    done = run_cli("process", *args, "--region", "GB", env=env, cwd=cwd)
    assert "Traceback" not in done.stderr
    return done


def one_line_error(done) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("telemetry: error: "), done.stderr
    return lines[0]


def test_input_inside_an_output_directory_is_refused_and_kept(data, tmp_path, key_env):
    """`process --out . records/a.parquet` deleted the operator's records/ (issue 16.1)."""
    work = tmp_path / "work"
    (work / "records").mkdir(parents=True)
    (work / "records" / "a.parquet").write_bytes(data.read_bytes())
    (work / "records" / "notes.txt").write_text("the operator's own file\n")
    before = tree(work)
    done = process("records/a.parquet", "--out", ".", env=key_env, cwd=work)
    assert "records/a.parquet lies inside records" in one_line_error(done)
    assert tree(work) == before


def test_files_the_product_did_not_write_are_never_deleted(data, tmp_path, key_env):
    out = tmp_path / "out"
    (out / "records").mkdir(parents=True)
    (out / "records" / "mine.csv").write_text("kept\n")
    before = tree(out)
    done = process(str(data), "--out", str(out), env=key_env)
    assert "not written by telemetry" in one_line_error(done)
    assert tree(out) == before and not list(out.glob(".telemetry-run-*"))

    (out / "records" / "mine.csv").unlink()  # an operator's run.json where ours goes
    (out / "run.json").write_text('{"mine": true}\n')
    done = process(str(data), "--out", str(out), env=key_env)
    assert "run.json was not written by telemetry" in one_line_error(done)
    assert (out / "run.json").read_text() == '{"mine": true}\n'


def test_rerun_replaces_exactly_the_previous_outputs(data, tmp_path, key_env):
    out = tmp_path / "out"
    first = process(str(data), "--out", str(out), "--emit-records", "--window", "1h", env=key_env)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / ".telemetry-outputs.json").read_text())
    on_disk = {name for name in tree(out) if not name.startswith(".telemetry-outputs")}
    assert set(manifest["files"]) == on_disk and any(f.startswith("records/") for f in on_disk)
    (out / "report.html").write_text("the operator's report\n")  # beside the outputs: untouched

    second = process(str(data), "--out", str(out), "--window", "1d", env=key_env)
    assert second.returncode == 0, second.stderr
    files = tree(out)
    assert not any(name.startswith("records/") for name in files)  # not asked for this time
    assert files["report.html"] == b"the operator's report\n"
    assert read_run(out)["window"] == "1d"
    metrics = read_metrics(out)
    assert metrics.height and set((metrics["window_end"] - metrics["window_start"]).unique()) == {
        timedelta(days=1)
    }
    assert sorted(os.listdir(out)) == [".telemetry-outputs.json", "metrics", "quarantine", "records",
                                       "report.html", "run.json"]


def test_a_failed_rerun_leaves_the_previous_outputs_intact(data, tmp_path, key_env):
    """A failed rerun deleted the old metrics and left the old run.json (issue 16.1)."""
    out = tmp_path / "out"
    assert process(str(data), "--out", str(out), "--emit-records", "--window", "1d", env=key_env).returncode == 0
    before = tree(out)
    assert any(name.startswith("metrics/") for name in before)
    damaged = tmp_path / "in" / "late.bin"
    damaged.write_bytes(os.urandom(4096))  # the run stops when it reaches the second input
    done = process(str(data), str(damaged), "--out", str(out), "--emit-records", "--window", "1d", env=key_env)
    assert "cannot tell the format" in one_line_error(done)
    assert tree(out) == before
    assert not list(out.glob(".telemetry-run-*"))


def test_a_rerun_that_cannot_write_leaves_the_previous_outputs_intact(tmp_path, key_env):
    """Stopped midway through writing its outputs (a file size limit, as a full disk would):
    exit 2, one line, the previous outputs as they were and no staging directory left."""
    data, out = tmp_path / "big.parquet", tmp_path / "out"
    write_records(data, 20_000, fmt="parquet", seed=4)
    flags = ("--region", "GB", "--emit-records")
    assert run_cli("process", str(data), "--out", str(out), *flags, "--window", "1d", env=key_env).returncode == 0
    before = tree(out)
    assert max(len(content) for content in before.values()) > 200_000  # the limit below is met

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = subprocess.run(
        [sys.executable, "-m", "telemetry", "process", str(data), "--out", str(out), *flags, "--window", "1h"],
        env=key_env, capture_output=True, text=True, preexec_fn=limited, timeout=600,
    )
    assert "File too large" in one_line_error(done)
    assert tree(out) == before
    assert not list(out.glob(".telemetry-run-*"))


def test_out_naming_a_file_is_refused(data, tmp_path, key_env):
    target = tmp_path / "afile"
    target.write_text("not a directory\n")
    done = process(str(data), "--out", str(target), env=key_env)
    assert "is a file, not a directory" in one_line_error(done)
    assert target.read_text() == "not a directory\n"


def test_the_output_list_cannot_point_outside_the_outputs(data, tmp_path, key_env):
    """Only files found under the replaced outputs are deleted, not whatever the list names."""
    out = tmp_path / "out"
    assert process(str(data), "--out", str(out), env=key_env).returncode == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("kept\n")
    listing = out / ".telemetry-outputs.json"
    manifest = json.loads(listing.read_text())
    manifest["files"] += ["../precious.txt", "metrics/../../precious.txt"]
    listing.write_text(json.dumps(manifest))
    assert process(str(data), "--out", str(out), env=key_env).returncode == 0
    assert precious.read_text() == "kept\n"


def test_a_corrupt_output_list_stops_the_run(data, tmp_path, key_env):
    out = tmp_path / "out"
    assert process(str(data), "--out", str(out), env=key_env).returncode == 0
    (out / ".telemetry-outputs.json").write_text("[" * 100_000)
    before = tree(out)
    assert "is not a telemetry output list" in one_line_error(process(str(data), "--out", str(out), env=key_env))
    assert tree(out) == before


def test_a_staging_directory_left_behind_is_named_not_deleted(data, tmp_path, key_env):
    out = tmp_path / "out"
    left = out / ".telemetry-run-k1ll3d"  # as a run killed with SIGKILL leaves it
    left.mkdir(parents=True)
    (left / "run.json").write_text("{}\n")
    done = process(str(data), "--out", str(out), env=key_env)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"telemetry: WARNING: {left} is left by an interrupted run (or another run is writing here); delete it"
    ]
    assert (left / "run.json").read_text() == "{}\n"
