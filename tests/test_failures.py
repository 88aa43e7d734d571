"""Bad input and misuse: a quarantined row with a reason, or one line on stderr with exit 2;
an internal error is exit 3; never a traceback, never a value from a key file.

Checked against the inputs' own contents (which line was altered, which key was planted),
the exit codes documented in README.md, and files compared byte for byte before and after.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from telemetry import cli
from telemetry.cli.serve import loopback
from telemetry.generate import write as write_records
from tests.conftest import run_cli

SURROGATE_REASON = "a string holds a lone surrogate escape (\\ud800-\\udfff), not text"


def one_line_error(done) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("telemetry: error: "), done.stderr
    return lines[0]


def rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "quarantine" / "rejects.jsonl").read_text().splitlines()]


# -- one bad line is one quarantined row -------------------------------------------------------


@pytest.mark.parametrize(("fmt", "plant"), [
    ("jsonl", lambda text: text.replace('"tenant-', '"\\ud800', 1)),  # a high surrogate alone
    ("smpp-dlr", lambda text: text.replace('"carrier-', '"\\udc00', 1)),  # a low one
    ("twilio-calls", lambda text: text.replace('"tenant-', '"\\udfff', 1)),  # in a whole JSON page
])
def test_lone_surrogate_quarantines_its_row(fmt, plant, tmp_path, key_env):
    path = tmp_path / f"in.{fmt}"
    write_records(path, 40, fmt=fmt, seed=5)
    text = path.read_text()
    path.write_text(plant(text))
    assert path.read_text() != text
    out = tmp_path / "out"
    done = run_cli("process", str(path), "--format", fmt, "--region", "GB", "--out", str(out), env=key_env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads((out / "run.json").read_text())
    assert summary["records_quarantined"] == 1
    assert summary["records_ok"] + summary["records_opted_out"] == summary["records_in"] - 1
    [reject] = rejects(out)
    assert reject["reason"] == SURROGATE_REASON and reject["fields"] == {}


def test_an_escaped_backslash_before_u_is_text(tmp_path, key_env):
    """`\\\\ud800` is a backslash and the letters ud800: valid text, not a surrogate."""
    path = tmp_path / "in.jsonl"
    write_records(path, 20, fmt="jsonl", seed=5)
    path.write_text(path.read_text().replace('"tenant-', '"\\\\ud800-', 1))
    out = tmp_path / "out"
    done = run_cli("process", str(path), "--region", "GB", "--out", str(out), env=key_env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("column", ["route", "sip_code", "start_time"])
@pytest.mark.parametrize("nested", ["list", "struct"])
def test_parquet_nested_column_quarantines_every_row(column, nested, tmp_path, key_env):
    path = tmp_path / "in.parquet"
    write_records(path, 50, fmt="parquet", seed=2)
    table = pq.read_table(path)
    value = [["x"]] if nested == "list" else [{"x": 1}]
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(value * table.num_rows))
    pq.write_table(table, path)
    out = tmp_path / "out"
    done = run_cli("process", str(path), "--region", "GB", "--out", str(out), env=key_env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    found = rejects(out)
    assert [r["row"] for r in found] == list(range(1, 51))
    assert {r["reason"] for r in found} == {f"{column}: nested value where a scalar belongs"}


# -- what stops a run: one line, exit 2 -------------------------------------------------------


def test_key_file_that_is_a_directory(tmp_path):
    data = tmp_path / "in.parquet"
    write_records(data, 10, fmt="parquet")
    done = run_cli("process", str(data), "--out", str(tmp_path / "out"), "--key-file", ".", cwd=tmp_path)
    assert "it is a directory" in one_line_error(done)


def test_key_file_nested_beyond_any_parser(tmp_path):
    key = tmp_path / "key.json"
    key.write_text("[" * 200_000)
    key.chmod(0o600)
    assert "not JSON" in one_line_error(run_cli("keys", "list", "--key-file", str(key)))


def test_configuration_nested_beyond_the_parser(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text("a = " + "[" * 200_000 + "\n")
    done = run_cli("alerts", "--out", str(tmp_path / "rules.yml"), "--config", str(config))
    assert "nests values too deeply" in one_line_error(done)


@pytest.mark.parametrize("field", ["valid_from", "key_id"])
def test_key_file_errors_never_echo_a_field(field, tmp_path):
    """A key file whose valid_from held key material echoed it in the error (issue 16.6)."""
    key = tmp_path / "key.json"
    assert run_cli("keys", "init", "--out", str(key)).returncode == 0
    document = json.loads(key.read_text())
    material = document["epochs"][0]["key"]
    document["epochs"][0][field] = material
    key.write_text(json.dumps(document))
    message = one_line_error(run_cli("keys", "list", "--key-file", str(key)))
    assert f"epoch 1: {field}" in message
    for start in range(len(material) - 8):  # not even a piece of it
        assert material[start:start + 8] not in message


@pytest.mark.parametrize("run_json", [
    '{"records_ok": "12", "records_withheld": 3}',
    '{"by": 5}',
    '{"records_in": true}',
    "[1, 2]",
    "[" * 200_000,
])
def test_report_on_a_tampered_run_json(run_json, tmp_path, key_env):
    data, out = tmp_path / "in.parquet", tmp_path / "out"
    write_records(data, 200, fmt="parquet")
    assert run_cli("process", str(data), "--region", "GB", "--out", str(out), env=key_env).returncode == 0
    (out / "run.json").write_text(run_json)
    message = one_line_error(run_cli("report", str(out)))
    assert "run.json is not" in message
    assert not (out / "report.html").exists()


def test_internal_error_is_exit_3_without_its_message(monkeypatch, capsys):
    """An unexpected exception (a bug) is neither 1, "completed with quarantined rows", nor a
    traceback; its message may quote data, so only its type is shown, with -v too."""
    import telemetry.cli.report

    number = "+44 7700 " + "900123"  # never in the source a traceback quotes

    def broken(args):
        raise RuntimeError(number)

    monkeypatch.setattr(telemetry.cli.report, "run", broken)
    assert cli.main(["report", "anywhere"]) == cli.INTERNAL_ERROR == 3
    err = capsys.readouterr().err
    assert err == "telemetry: internal error (RuntimeError); run again with -v for the traceback and report it\n"
    assert cli.main(["-v", "report", "anywhere"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken" in err and "RuntimeError (message withheld)" in err
    assert "900123" not in err


# -- sealed key headers: no derivation above what sealing writes ------------------------------


def _limited() -> None:
    limit = 1536 << 20  # far above the 128 MiB `keys init --seal` derives with, below 4 GiB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _keys_list(key: Path, passphrase: Path):
    return subprocess.run(
        [sys.executable, "-m", "telemetry", "keys", "list", "--key-file", str(key),
         "--passphrase-file", str(passphrase)],
        capture_output=True, text=True, preexec_fn=_limited, timeout=300,
    )


def test_sealed_header_asking_more_than_sealing_writes_is_refused_before_deriving(tmp_path):
    """n = 2^20, r = 32 (4 GiB) was within the accepted range and was derived (issue 16.5)."""
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    sealed = tmp_path / "sealed.json"
    created = run_cli("keys", "init", "--seal", "--out", str(sealed), "--passphrase-file", str(passphrase))
    assert created.returncode == 0, created.stderr
    assert _keys_list(sealed, passphrase).returncode == 0  # the limit leaves room for a real file
    document = json.loads(sealed.read_text())
    document["kdf"].update(n=2**20, r=32)
    costly = tmp_path / "costly.json"
    costly.write_text(json.dumps(document))
    costly.chmod(0o600)
    message = one_line_error(_keys_list(costly, passphrase))
    assert message.endswith("wrong passphrase or the file was altered")


# -- temporary files are never written through a link placed beforehand -----------------------


def test_outputs_are_not_written_through_a_planted_link(tmp_path, key_env):
    """`report` wrote through a symlinked `.report.html.tmp` (issue 16.6); so did `alerts` and
    `optout` with their temporary names."""
    data, out = tmp_path / "in.parquet", tmp_path / "out"
    write_records(data, 200, fmt="parquet")
    assert run_cli("process", str(data), "--region", "GB", "--out", str(out), env=key_env).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for planted in (out / ".report.html.tmp", tmp_path / ".rules.yml.tmp", tmp_path / "optout.json.tmp"):
        planted.symlink_to(victim)
    assert run_cli("report", str(out)).returncode == 0
    assert run_cli("alerts", "--out", str(tmp_path / "rules.yml"), cwd=tmp_path).returncode == 0
    added = run_cli("optout", "add", "--list", str(tmp_path / "optout.json"), "--region", "GB",
                    "+44 7700 900123", env=key_env)
    assert added.returncode == 0, added.stderr
    assert victim.read_text() == "precious\n"
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "groups:" in (tmp_path / "rules.yml").read_text()
    assert json.loads((tmp_path / "optout.json").read_text())["entries"]
    assert (tmp_path / "optout.json").stat().st_mode & 0o077 == 0


# -- say what was read, warn about what weakens the defaults ----------------------------------


def test_configuration_file_is_named_and_a_low_k_warned(tmp_path, key_env):
    data = tmp_path / "in.parquet"
    write_records(data, 100, fmt="parquet")
    done = run_cli("process", str(data), "--region", "GB", "--out", "out", env=key_env, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    (tmp_path / "telemetry.toml").write_text("k = 2\n")
    done = run_cli("process", str(data), "--region", "GB", "--out", "out", env=key_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "telemetry: configuration from telemetry.toml (found in the working directory)",
        "telemetry: WARNING: k = 2 is below 5: a released row may cover fewer than 5 distinct sources "
        "or destinations and so single out a person",
    ]
    other = tmp_path / "other.toml"
    other.write_text('window = "1h"\n')
    done = run_cli("process", str(data), "--region", "GB", "--out", "out", "--config", str(other),
                   env=key_env, cwd=tmp_path)
    assert done.stderr.splitlines() == [f"telemetry: configuration from {other}"]


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.7", False), ("2001:db8::1", False),
    ("metrics.example", False),
])
def test_loopback(host, expected):
    assert loopback(host) is expected


def test_serve_on_a_wildcard_address_warns(tmp_path):
    (tmp_path / "out").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry", "serve", str(tmp_path / "out"), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().startswith("serving http://0.0.0.0:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert err.splitlines() == [
        "telemetry: WARNING: serve: 0.0.0.0 is not a loopback address: anyone who can reach it reads the "
        "metrics (the endpoint has no authentication); bind 127.0.0.1 unless that is intended"
    ]

