"""Quarantine: rejected rows with file, row number and reason, values masked.

``DIR/quarantine/rejects.jsonl`` holds one JSON object per rejected row:
``{"file", "row", "reason", "fields"}``. ``fields`` keeps the canonical columns
the row had, as text, so an operator can see what was wrong. A value is shown
only when it has the strict form its column expects and that form cannot carry
a subscriber number (:func:`shown`): a word of the status, channel or direction
vocabulary, a valid ISO 8601 time, a short number, a dimension value published
as it is. Every other value has each letter and digit replaced by ``*`` and
keeps only its punctuation (``+** ****-******``): enough to spot a notation
problem, never enough to recover a number. Free text never reaches a reject:
readers only pass canonical columns.

A flood of one kind of reject is summarized: of each file, the first
:data:`FULL_REJECTS` rejects with the same reason are written in full, the rest
counted in one line ``{"file", "reason", "summarized", "first_row",
"last_row"}`` (every one of them still counts in ``records_quarantined``). The
file and its folder are created owner-only (0600 / 0700) whatever the umask.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from telemetry.dimensions import TEXT_DIMENSIONS, is_published_as_is
from telemetry.status import (
    CHANNEL_ALIASES,
    DIRECTION_ALIASES,
    HANGUP_CAUSE_STATUS,
    Q850_CAUSES,
    STATUS_ALIASES,
    fold,
)

#: Rejects written in full per file and reason; the rest of them are counted in one line.
FULL_REJECTS = 1000

_ALNUM = re.compile(r"[^\W_]", re.UNICODE)  # letters and digits of any script
_WORDS = {
    "channel": frozenset(CHANNEL_ALIASES),
    "direction": frozenset(DIRECTION_ALIASES),
    "status": frozenset(STATUS_ALIASES) | {fold(w) for w in (*HANGUP_CAUSE_STATUS, *Q850_CAUSES)},
}
_TIMES = ("start_time", "answer_time", "end_time")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}(:?\d{2})?)?", re.ASCII
)
_NUMBERS = (
    "pdd_ms", "duration_ms", "sip_code", "q850_cause", "mos", "jitter_ms", "packet_loss_pct", "rtt_ms",
)  # fmt: skip
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?", re.ASCII)
_MAX_DIGITS = 6  # a subscriber number has 7 or more (telemetry.dimensions.SUBSCRIBER_LIKE)
_BOOLEAN = frozenset({"true", "false", "t", "f", "yes", "no", "y", "n", "1", "0"})
_LABEL = re.compile(r"[\w .:/-]{1,64}")  # what a dimension value shown in a reject may look like


def mask(value: str | None) -> str | None:
    """``value`` with every letter and digit replaced by ``*``; punctuation kept."""
    if value is None:
        return None
    return _ALNUM.sub("*", value)


def shown(name: str, value: Any, text: str) -> bool:
    """Whether canonical column ``name``'s value (as read, and as ``text``) may be
    shown in a reject: only the forms that cannot carry a subscriber number."""
    if name in _WORDS:
        return fold(text) in _WORDS[name]
    if name in _TIMES:
        return isinstance(value, dt.datetime) or _valid_time(text)
    if name in _NUMBERS:
        digits = sum(ch.isdigit() for ch in text)
        return digits <= _MAX_DIGITS and _NUMBER.fullmatch(text.strip()) is not None
    if name == "roaming":
        return text.strip().lower() in _BOOLEAN
    if name in TEXT_DIMENSIONS:
        return _LABEL.fullmatch(text) is not None and is_published_as_is(text)
    return False  # identifiers, location, and any column not known


def _valid_time(text: str) -> bool:
    match = _ISO.fullmatch(text)
    if match is None:
        return False
    try:
        dt.datetime(*(int(part) for part in match.groups()[:6]))
    except ValueError:  # month 13, 25 o'clock: digits in the shape of a time, not one
        return False
    return True


def masked(fields: Mapping[str, Any]) -> dict[str, str | None]:
    """Canonical fields of a reject as text: a value :func:`shown` allows as it is,
    every other masked."""
    out: dict[str, str | None] = {}
    for name, value in fields.items():
        text = _text(value) or None  # an empty field is shown as null, as it is read
        out[name] = text if text is None or shown(name, value, text) else mask(text)
    return out


def mask_fields(batch: pa.RecordBatch, i: int) -> dict[str, str | None]:
    """The masked fields of row ``i`` of a canonical batch (for rejects found after reading)."""
    return masked({name: batch.column(j)[i].as_py() for j, name in enumerate(batch.schema.names)})


def detailed(reasons: Iterable[str], seen: Counter[str] | None = None) -> list[bool]:
    """Which of a batch's rejects (their reasons, in row order) are described: the
    first :data:`FULL_REJECTS` of each reason; the others become a
    :class:`~telemetry.readers.RejectRun`. No later one could be written in full,
    since a file's count of a reason is at least its count in one batch. ``seen``:
    the count of each reason in the file's batches before this one (updated), for a
    reader that converts a file's batches in order: the batches after its first
    FULL_REJECTS of a reason then describe none (masking a reject's fields costs
    ~1 ms; the writer would drop them all)."""
    seen = Counter() if seen is None else seen
    out = []
    for reason in reasons:
        seen[reason] += 1
        out.append(seen[reason] <= FULL_REJECTS)
    return out


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
    """Appends rejects to ``out_dir/quarantine/rejects.jsonl`` as they come; the file
    is created on the first reject, so a clean run leaves no quarantine file.
    Rejects arrive file by file: a file's summary lines are written when the next
    file's rejects start, and at :meth:`close`."""

    def __init__(self, out_dir: str | os.PathLike, name: str = "rejects.jsonl") -> None:
        self.path = Path(out_dir) / "quarantine" / name
        self.count = 0  # rejects written or summarized
        self.summarized = 0  # rejects counted in a summary line only
        self._handle: IO[str] | None = None
        self._file: str | None = None
        self._seen: Counter[str] = Counter()  # the current file's rejects per reason
        self._rows: dict[str, list[int]] = {}  # reason → [first, last] summarized row

    def write(self, rejects: Iterable[Any]) -> None:
        """Write :class:`telemetry.readers.Reject` objects (their fields already masked)
        and count :class:`telemetry.readers.RejectRun` ones."""
        lines = []
        for r in rejects:
            if r.file != self._file:
                lines += self._summaries()
                self._file = r.file
            self.count += r.count
            self._seen[r.reason] += r.count
            if self._seen[r.reason] <= FULL_REJECTS:  # a run only comes past that many
                record = {"file": r.file, "row": int(r.row), "reason": r.reason, "fields": dict(r.fields)}
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                rows = getattr(r, "rows", None)
                first, last = (int(rows.min()), int(rows.max())) if rows is not None else (r.row, r.row)
                self.summarized += r.count
                span = self._rows.setdefault(r.reason, [first, last])
                span[0], span[1] = min(span[0], first), max(span[1], last)
        self._append(lines)

    def _summaries(self) -> list[str]:
        lines = [
            json.dumps(
                {"file": self._file, "reason": reason, "summarized": self._seen[reason] - FULL_REJECTS,
                 "first_row": int(first), "last_row": int(last)},
                ensure_ascii=False,
            ) + "\n"
            for reason, (first, last) in self._rows.items()
        ]  # fmt: skip
        self._seen.clear()
        self._rows.clear()
        return lines

    def _append(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._handle is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.path.parent, 0o700)  # mkdir's mode is cut by the umask
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8")
        self._handle.writelines(lines)

    def close(self) -> None:
        self._append(self._summaries())
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
