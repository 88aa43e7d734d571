"""What to aggregate: window length, grouping dimensions, short-call threshold."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Grouping dimensions a user may choose (SPEC section 4), in no particular order.
DIMENSIONS = ("route", "tenant", "direction", "dst_cc", "dst_region", "dst_prefix", "mno", "roaming", "device_type")
DEFAULT_BY = ("route", "dst_region")
#: Canonical input columns every aggregation reads (status derivation included);
#: ``dst_*`` dimensions come from ``destination``, the others are read as they are.
MEASURED = (
    "start_time", "answer_time", "end_time", "channel", "status", "sip_code", "q850_cause",
    "duration_ms", "pdd_ms", "mos", "jitter_ms", "packet_loss_pct", "source", "destination",
)  # fmt: skip

MIN_WINDOW = dt.timedelta(minutes=1)
MAX_WINDOW = dt.timedelta(days=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def duration_us(value: dt.timedelta | str, name: str = "window") -> int:
    """A positive whole number of seconds from a timedelta or ``<int><s|m|h|d>``, in µs."""
    if isinstance(value, str):
        match = _WINDOW_RE.match(value.lower())
        if match is None:
            raise ValueError(
                f"{name} must be a whole number followed by s, m, h or d (e.g. '15m', '1h'), got {value!r}"
            )
        value = dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if not isinstance(value, dt.timedelta):
        raise TypeError(f"{name} must be a timedelta or a string like '15m', got {type(value).__name__}")
    if value <= dt.timedelta(0) or value % dt.timedelta(seconds=1):
        raise ValueError(f"{name} must be a positive whole number of seconds, got {value}")
    return value // dt.timedelta(microseconds=1)


def parse_window(window: dt.timedelta | str) -> int:
    """Window length in microseconds from a timedelta or ``<int><s|m|h|d>`` ("90s", "15m")."""
    us = duration_us(window)
    if not MIN_WINDOW <= dt.timedelta(microseconds=us) <= MAX_WINDOW:
        raise ValueError(f"window must be between 1 minute and 1 day, got {dt.timedelta(microseconds=us)}")
    return us


@dataclass(frozen=True)
class AggSpec:
    """Groups are window × channel × ``by``; windows are aligned to the UNIX epoch in UTC."""

    window: dt.timedelta | str = "15m"
    by: Sequence[str] = DEFAULT_BY
    short_call_s: float = 6.0
    window_us: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_us", parse_window(self.window))
        if isinstance(self.by, str):
            raise TypeError(f"by must be a sequence of column names, not a string; allowed: {', '.join(DIMENSIONS)}")
        by = tuple(self.by)
        unknown = [name for name in by if name not in DIMENSIONS]
        if unknown:
            raise ValueError(f"by has unknown column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(DIMENSIONS)}")
        if len(set(by)) != len(by):
            raise ValueError("by names a column twice; each dimension may appear once")
        object.__setattr__(self, "by", by)
        short = float(self.short_call_s)
        if not short >= 0 or short == float("inf"):
            raise ValueError(f"short_call_s must be a finite number of seconds >= 0, got {self.short_call_s!r}")
        object.__setattr__(self, "short_call_s", short)

    @property
    def short_call_ms(self) -> float:
        return self.short_call_s * 1000.0

    def input_columns(self) -> frozenset[str]:
        """The canonical columns aggregation with this spec reads: a reader may skip the rest."""
        return frozenset(MEASURED) | {name for name in self.by if not name.startswith("dst_")}

    def key(self) -> tuple:
        """What two states must share to be merged."""
        return (self.window_us, self.by, self.short_call_s)
