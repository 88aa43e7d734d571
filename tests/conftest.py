"""Shared fixtures: a fixed test key, and running the real CLI in a subprocess."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: A fixed key so golden values reproduce; never a production key.
TEST_KEY = bytes(range(1, 33))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def test_key() -> bytes:
    return TEST_KEY


@pytest.fixture
def key_env(monkeypatch) -> dict[str, str]:
    """Environment for subprocesses with TELEMETRY_KEY set to the test key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_KEY"] = base64.b64encode(TEST_KEY).decode()
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None, cwd=None):
    """Run ``python -m telemetry ARGS`` and return the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        cwd=cwd,
        timeout=600,
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``tool("promtool")`` needs that program: skipped, naming it, where it is
    missing; under CI=true, which installs every tool (make debian-tools), a failure instead."""
    for mark in item.iter_markers("tool"):
        if not any(shutil.which(name) for name in mark.args):
            reason = f"{' or '.join(mark.args)} not on PATH: make debian-tools installs it (as root)"
            if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
                pytest.fail(f"{reason}; CI=true runs every test", pytrace=False)
            pytest.skip(reason)
