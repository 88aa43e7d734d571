"""Quarantine: rejected rows with file, row number and reason, identifiers masked.

``DIR/quarantine/rejects.jsonl`` holds one JSON object per rejected row:
``{"file", "row", "reason", "fields"}``. ``fields`` keeps the canonical columns
the row had, as text, so an operator can see what was wrong; the columns that
can identify a subscriber (:data:`MASKED`) have every letter and digit replaced
by ``*`` and keep only their punctuation (``+** ****-******``), which is enough to
spot a notation problem and never enough to recover a number. Free text never
reaches a reject: readers only pass canonical columns.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

#: Canonical columns masked in quarantine.
MASKED = frozenset({"source", "destination", "record_id", "source_ip", "location"})

_ALNUM = re.compile(r"[^\W_]", re.UNICODE)  # letters and digits of any script


def mask(value: str | None) -> str | None:
    """``value`` with every letter and digit replaced by ``*``; punctuation kept."""
    if value is None:
        return None
    return _ALNUM.sub("*", value)


def masked(fields: Mapping[str, Any]) -> dict[str, str | None]:
    """Canonical text fields of a reject: values as text, identifier columns masked."""
    out: dict[str, str | None] = {}
    for name, value in fields.items():
        text = _text(value) or None  # an empty field is shown as null, as it is read
        out[name] = mask(text) if name in MASKED else text
    return out


def mask_fields(batch: pa.RecordBatch, i: int) -> dict[str, str | None]:
    """The masked fields of row ``i`` of a canonical batch (for rejects found after reading)."""
    return masked({name: batch.column(j)[i].as_py() for j, name in enumerate(batch.schema.names)})


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, default=str, ensure_ascii=False)


class QuarantineWriter:
    """Appends rejects to ``out_dir/quarantine/rejects.jsonl``; the file is created
    on the first reject, so a clean run leaves no quarantine file."""

    def __init__(self, out_dir: str | os.PathLike, name: str = "rejects.jsonl") -> None:
        self.path = Path(out_dir) / "quarantine" / name
        self.count = 0
        self._handle: IO[str] | None = None

    def write(self, rejects: Iterable[Any]) -> None:
        """Write :class:`telemetry.readers.Reject` objects (their fields already masked)."""
        lines = []
        for r in rejects:
            record = {
                "file": r.file,
                "row": int(r.row),
                "reason": r.reason,
                "fields": dict(r.fields),
            }
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if not lines:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.writelines(lines)
        self.count += len(lines)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
