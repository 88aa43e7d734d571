"""``DIR/run.json``: the run summary (SPEC section 8)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_run_json(out: Path, summary: dict[str, Any]) -> Path:
    target = out / "run.json"
    tmp = out / ".run.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", "utf-8")
    os.replace(tmp, target)
    return target
