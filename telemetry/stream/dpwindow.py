"""A stream window under differential privacy (SPEC section 11, docs/stream.md).

A DP window is released once, when it is final: when the watermark passes its end
plus ``--retention`` (it can take no more records), or at the end of a ``--once``
run. Until then it keeps the records' contributions
(:class:`telemetry.metrics.dp.Contributions`); its release is
:func:`telemetry.metrics.dp.release` over them, the release of ``process``. The
noisy rows replace the contributions in the window and are committed to the
state before they are published (the driver's two-step commit), so a restart
publishes the stored rows and never draws noise for a window twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from telemetry.stream.book import with_revisions

if TYPE_CHECKING:
    from telemetry.metrics.dp import Contributions

@dataclass
class DpWindow:
    """One window's contributions until its release; then only its noisy rows
    (``table``, revision 0) and their accounting (``outcome``) until they are published."""

    index: int
    total: Contributions | None
    table: pa.Table | None = None
    outcome: dict[str, int] | None = None
    changed: bool = True  # since the last checkpoint

    @property
    def released(self) -> bool:
        return self.outcome is not None

    def add(self, part: Contributions) -> None:
        assert self.total is not None, "records for a released DP window are too late"
        self.total = self.total.merge(part)
        self.changed = True

    def release(self) -> None:
        """Draw the noise, once: the rows as ``process --dp-epsilon`` releases them."""
        from telemetry.metrics.dp import release

        assert self.total is not None and self.outcome is None
        out = release(self.total)
        self.table = with_revisions(out.table, [0] * out.table.num_rows)
        self.outcome = {"rows_released": out.rows_released, "rows_withheld": out.rows_withheld,
                        "records_withheld": out.records_withheld, "records_dp_truncated": out.records_dp_truncated}
        self.total = None  # the contributions (pseudonyms) are not needed any more
        self.changed = True

    def accounting(self) -> dict[str, int]:
        """As :meth:`telemetry.stream.book.Window.accounting`; nothing is ever pending."""
        if self.outcome is None:
            assert self.total is not None
            return {"open": self.total.records, "pending": 0, "withheld": 0, "withheld_rows": 0, "rows_released": 0,
                    "records_dp_truncated": 0}  # fmt: skip
        o = self.outcome
        return {"open": 0, "pending": 0, "withheld": o["records_withheld"], "withheld_rows": o["rows_withheld"],
                "rows_released": o["rows_released"], "records_dp_truncated": o["records_dp_truncated"]}
