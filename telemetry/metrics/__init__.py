"""Routing-quality metrics from mergeable state (SPEC sections 4 and 5).

``accumulate(batch, spec)`` → :class:`State`; ``State.merge`` / ``merge(states)``
in any order; ``finalize(state)`` → polars frame; ``release(state, k=5)`` →
:class:`Released` under the k-threshold rule. See docs/metrics.md.

Only :mod:`telemetry.metrics.spec` is imported eagerly: the rest compiles
Numba kernels and loads on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import Any

from telemetry.metrics.spec import DIMENSIONS, AggSpec, parse_window

_LAZY = {
    "State": "telemetry.metrics.state",
    "accumulate": "telemetry.metrics.state",
    "merge": "telemetry.metrics.state",
    "finalize": "telemetry.metrics.frame",
    "metric_columns": "telemetry.metrics.frame",
    "release": "telemetry.metrics.threshold",
    "Released": "telemetry.metrics.threshold",
}

__all__ = ["AggSpec", "DIMENSIONS", "parse_window", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
