"""Longest-prefix match of E.164 numbers on a digit trie (rate decks).

Callers guarantee: ``offsets``/``data``/``valid`` are views of one Arrow string
chunk; ``children[node, digit]`` is the child node (0: none; node 0 is the
root and never a child); ``value[node]`` is the entry ending there (-1: none).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit


@njit
def longest_prefix(offsets, data, valid, children, value):
    """Entry index of the longest prefix of each ``+digits`` row (-1: none);
    rows other than ``+`` and digits match nothing."""
    n = len(valid)
    out = np.full(n, -1, dtype=np.int32)
    for i in range(n):
        if not valid[i]:
            continue
        s = np.int64(offsets[i])
        e = np.int64(offsets[i + 1])
        if e - s < 2 or data[s] != 43:
            continue
        digits = True
        for k in range(s + 1, e):
            if data[k] < 48 or data[k] > 57:
                digits = False
                break
        if not digits:
            continue
        node = 0
        best = value[0]
        for k in range(s + 1, e):
            d = np.int64(data[k]) - 48
            node = children[node, d]
            if node == 0:
                break
            if value[node] >= 0:
                best = value[node]
        out[i] = best
    return out
