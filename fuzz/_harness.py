"""What every harness checks: a reader given any bytes either reads them — each record
in exactly one place, the canonical schema, rows unique — or raises a one-line
:class:`TelemetryError`. Anything else (a traceback) is a crash for libFuzzer."""

from __future__ import annotations

import os
import tempfile

from telemetry.errors import TelemetryError
from telemetry.readers import ReaderOptions, get_format
from telemetry.schema import CANONICAL

_DIR = tempfile.mkdtemp(prefix="telemetry-fuzz-")


def check_reader(
    fmt: str, data: bytes, options: ReaderOptions | None = None, suffix: str = ""
) -> None:
    path = os.path.join(_DIR, "input" + suffix)
    with open(path, "wb") as handle:
        handle.write(data)
    try:
        parts = list(get_format(fmt).read(path, 7, options or ReaderOptions()))
    except TelemetryError as exc:
        message = str(exc)
        assert "\n" not in message, "an error message must be one line"
        return
    seen: list[int] = []
    for part in parts:
        assert part.batch.schema.equals(CANONICAL), "batch not in the canonical schema"
        assert part.batch.num_rows == len(part.rows)
        seen.extend(int(r) for r in part.rows)
        for reject in part.rejects:
            assert "\n" not in reject.reason
            seen.append(int(reject.row))
    assert len(seen) == len(set(seen)), "a row counted twice"
    assert all(r >= 1 for r in seen)
