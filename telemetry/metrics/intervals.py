"""Confidence intervals of the ratio columns (SPEC section 4).

Every ratio ``r`` = successes / trials is published with ``r_lo`` and ``r_hi``,
its 95% Wilson score interval. Wilson rather than the textbook normal
approximation (p ± z·√(p(1−p)/n)) because routing ratios sit near 0 and 1 on
small volumes, where the normal interval collapses to a point (0 of 3 answered:
[0, 0]) or leaves [0, 1]; the Wilson interval stays inside [0, 1] and is honest
at n = 1 (Wilson 1927; Brown, Cai and DasGupta 2001 recommend it for small n).
"""

from __future__ import annotations

import numpy as np

#: The 0.975 quantile of the standard normal distribution, as SPEC section 4 fixes it.
Z95 = 1.959964

#: Ratio columns that carry ``_lo`` / ``_hi`` bounds, in output order.
RATIOS = ("asr", "ner", "ser", "seer", "isa", "short_call_ratio", "delivery_rate", "dlr_rate")


def bounds(ratio: str) -> tuple[str, str]:
    """The names of a ratio column's interval bounds."""
    return f"{ratio}_lo", f"{ratio}_hi"


def wilson(successes: np.ndarray, trials: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the Wilson score interval of ``successes / trials``,
    element-wise; NaN where ``trials`` is 0 (the ratio is null there too)."""
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        z2n = z * z / n
        centre = (p + z2n / 2) / (1 + z2n)
        half = z / (1 + z2n) * np.sqrt(np.maximum(p * (1 - p) / n + z2n / (4 * n), 0.0))
    lo = np.where(x <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))  # exact at the edges, no -1e-17
    hi = np.where(x >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)
