"""Per-group sketches kept in the mergeable state.

:class:`Histogram` — log-bucket quantile histograms (≤ 0.5 % relative error per
bucket representative, inside SPEC's 1 % budget). :class:`Distinct` — exact
sets of 64-bit pseudonym prefixes up to :data:`EXACT_LIMIT` per group, then
HyperLogLog registers (p = 14). Both are plain NumPy arrays (picklable) and
their content depends only on the multiset of inserted values, never on how
they were split or in which order they were merged.

This module is imported lazily (it compiles kernels on first use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import sketch as k

#: Groups keep exact sets up to this many distinct pseudonyms (64-bit prefixes;
#: a prefix collision among n values has probability ≈ n²/2⁶⁵, negligible).
EXACT_LIMIT = 2048
PERCENTS = np.array([50, 95, 99], dtype=np.int64)


@dataclass
class Histogram:
    """Sorted unique ``keys`` (group << 23 | bucket code) and their counts."""

    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls) -> "Histogram":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def build(cls, gid: np.ndarray, values: np.ndarray, n_groups: int | None = None) -> "Histogram":
        """From per-row group ids and float64 values (NaN = absent)."""
        if n_groups is None:
            n_groups = int(gid.max()) + 1 if len(gid) else 0
        return cls(*k.histogram(gid, values, n_groups))

    @classmethod
    def union(cls, parts: list["Histogram"], sizes: list[int], gmap: np.ndarray) -> "Histogram":
        """Histograms of several parts together: part i's group g (of ``sizes[i]``)
        becomes ``gmap[sum(sizes[:i]) + g]``. One counting sort, whatever the number of parts."""
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        keys = np.concatenate([h.keys + (b << k.CODE_BITS) for h, b in zip(parts, base)])
        return cls(keys, np.concatenate([h.counts for h in parts])).regroup(gmap)

    def regroup(self, gmap: np.ndarray) -> "Histogram":
        """Group g → gmap[g] (many-to-one allowed, -1 drops)."""
        n_groups = int(gmap.max()) + 1 if len(gmap) else 0
        return Histogram(*k.regroup_histogram(self.keys, self.counts, gmap, n_groups))

    def quantiles(self, n_groups: int, percents: np.ndarray = PERCENTS) -> tuple[np.ndarray, np.ndarray]:
        """(n_groups × len(percents) values, NaN for empty groups; values per group)."""
        return k.quantiles(self.keys, self.counts, n_groups, percents)


def _regs(n: int) -> np.ndarray:
    return np.zeros((n, k.HLL_M), np.uint8)


@dataclass
class Distinct:
    """Exact sets (CSR ``off``/``vals``) for small groups; ``hll_groups`` (sorted)
    with register rows ``hll_regs`` for groups above EXACT_LIMIT (their CSR run is empty)."""

    off: np.ndarray
    vals: np.ndarray
    hll_groups: np.ndarray
    hll_regs: np.ndarray

    @classmethod
    def empty(cls, n_groups: int = 0) -> "Distinct":
        return cls(np.zeros(n_groups + 1, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64), _regs(0))

    @classmethod
    def build(cls, gid: np.ndarray, vals: np.ndarray, n_groups: int) -> "Distinct":
        off, vals = k.distinct_build(gid, vals, n_groups)
        return cls(off, vals, np.zeros(0, np.int64), _regs(0))._spill()

    @classmethod
    def union(cls, parts: list["Distinct"], gmap: np.ndarray, n_groups: int) -> "Distinct":
        """Sets of several parts together: part i's group g becomes
        ``gmap[(groups of parts before i) + g]`` (see :meth:`Histogram.union`)."""
        sizes = [len(d.off) - 1 for d in parts]
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        val_base = np.concatenate([[0], np.cumsum([len(d.vals) for d in parts])[:-1]]).astype(np.int64)
        off = np.concatenate([d.off[:-1] + vb for d, vb in zip(parts, val_base)] + [[sum(len(d.vals) for d in parts)]])
        whole = cls(
            off.astype(np.int64),
            np.concatenate([d.vals for d in parts]),
            np.concatenate([d.hll_groups + b for d, b in zip(parts, base)]).astype(np.int64),
            np.concatenate([d.hll_regs for d in parts]),
        )
        return whole.regroup(gmap, n_groups)

    def regroup(self, gmap: np.ndarray, n_groups: int) -> "Distinct":
        """Group g → gmap[g] (many-to-one allowed, -1 drops)."""
        off, vals = k.csr_regroup(self.off, self.vals, np.ascontiguousarray(gmap[: len(self.off) - 1]), n_groups)
        mapped = gmap[self.hll_groups]
        kept = mapped >= 0
        return Distinct(off, vals, *_combine_hll(mapped[kept], self.hll_regs[kept]))._spill()

    def take(self, groups: np.ndarray) -> "Distinct":
        """The sets of ``groups`` (increasing), renumbered 0…len(groups)-1."""
        off, vals = k.csr_take(self.off, self.vals, groups)
        pos = np.full(len(self.off) - 1, -1, np.int64)
        pos[groups] = np.arange(len(groups), dtype=np.int64)
        mapped = pos[self.hll_groups]
        hit = mapped >= 0
        return Distinct(off, vals, mapped[hit], self.hll_regs[hit])

    def counts(self) -> np.ndarray:
        """Distinct count per group: exact for exact groups, rounded HLL estimate otherwise."""
        out = np.diff(self.off).astype(np.int64)
        if len(self.hll_groups):
            out[self.hll_groups] = np.rint(k.hll_estimate(self.hll_regs)).astype(np.int64)
        return out

    def _spill(self) -> "Distinct":
        """Move the sets of groups above EXACT_LIMIT into HLL registers."""
        sizes = np.diff(self.off)
        spill = sizes > EXACT_LIMIT
        # a group already in HLL form absorbs whatever exact values a merge brought
        spill[self.hll_groups] |= sizes[self.hll_groups] > 0
        big = np.flatnonzero(spill)
        if len(big) == 0:
            return self
        groups = np.concatenate([self.hll_groups, big])
        regs = np.concatenate([self.hll_regs, _regs(len(big))])
        base = len(self.hll_groups)
        for t, g in enumerate(big):
            k.hll_add(regs, base + t, self.vals[self.off[g] : self.off[g + 1]])
        groups, regs = _combine_hll(groups, regs)
        keep = np.ones(len(self.off) - 1, dtype=bool)
        keep[big] = False
        _, vals = k.csr_take(self.off, self.vals, np.flatnonzero(keep).astype(np.int64))
        # csr_take drops the spilled groups' rows; give every group its (possibly empty) run back
        full = np.zeros(len(keep) + 1, np.int64)
        full[1:] = np.cumsum(np.where(keep, sizes, 0))
        return Distinct(full, vals, groups, regs)


def _combine_hll(groups: np.ndarray, regs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One register row per group (max over duplicates), groups sorted."""
    if len(groups) == 0:
        return np.zeros(0, np.int64), _regs(0)
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) == len(groups):
        return uniq.astype(np.int64), regs[np.argsort(groups, kind="stable")]
    out = _regs(len(uniq))
    k.hll_max_rows(out, inverse.astype(np.int64), regs)
    return uniq.astype(np.int64), out
