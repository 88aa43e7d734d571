"""Shared fixtures: a fixed test key, and running the real CLI in a subprocess."""

from __future__ import annotations

import base64
import os
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


@pytest.fixture(scope="session")
def dask_client():
    """A real Dask cluster for the session: two worker processes of one thread each."""
    distributed = pytest.importorskip("distributed")
    from telemetry.engine.dask import local_cluster

    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        yield client
