"""What every harness checks: a reader given any bytes either reads them — each record
in exactly one place, the canonical schema, rows unique — or raises a one-line
:class:`TelemetryError`; and ``--format auto`` on the same bytes names a registered
format or says, in one line, that it cannot tell. Anything else (a traceback) is a
crash for libFuzzer."""

from __future__ import annotations

import os
import tempfile

from telemetry.errors import InputError, TelemetryError
from telemetry.readers import FORMATS, ReaderOptions, detect_format, get_format
from telemetry.schema import CANONICAL

_DIR = tempfile.mkdtemp(prefix="telemetry-fuzz-")


def check_reader(
    fmt: str, data: bytes, options: ReaderOptions | None = None, suffix: str = ""
) -> None:
    path = os.path.join(_DIR, "input" + suffix)
    with open(path, "wb") as handle:
        handle.write(data)
    check_detect(path)
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


def check_detect(path: str) -> None:
    """Every sniffer runs on the bytes; detection ends in a name or a one-line error."""
    try:
        assert detect_format(path) in FORMATS
    except InputError as exc:
        assert "\n" not in str(exc), "an error message must be one line"


def fuzz(test_one) -> None:
    """Run ``test_one`` under libFuzzer with the command line's options."""
    import sys

    import atheris

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
