"""``DIR/run.json``: the run summary (SPEC section 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from telemetry.files import replace_file


def write_run_json(out: Path, summary: dict[str, Any]) -> Path:
    return replace_file(out / "run.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
