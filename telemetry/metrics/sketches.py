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
        return cls.concat(parts, sizes).regroup(gmap)

    @classmethod
    def concat(cls, parts: list["Histogram"], sizes: list[int]) -> "Histogram":
        """Histograms of several parts one after the other: part i's group g (of
        ``sizes[i]``) becomes ``sum(sizes[:i]) + g``."""
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        keys = np.concatenate([h.keys + (b << k.CODE_BITS) for h, b in zip(parts, base)])
        return cls(keys, np.concatenate([h.counts for h in parts]))

    def regroup(self, gmap: np.ndarray) -> "Histogram":
        """Group g → gmap[g] (many-to-one allowed, -1 drops)."""
        n_groups = int(gmap.max()) + 1 if len(gmap) else 0
        return Histogram(*k.regroup_histogram(self.keys, self.counts, gmap, n_groups))

    def take(self, groups: np.ndarray) -> "Histogram":
        """The buckets of ``groups`` (distinct, in any order), renumbered 0…len(groups)-1."""
        return Histogram(*k.histogram_take(self.keys, self.counts, np.ascontiguousarray(groups, dtype=np.int64)))

    def slice(self, a: int, b: int) -> "Histogram":
        """Groups ``a`` … ``b - 1``, renumbered from 0."""
        lo, hi = np.searchsorted(self.keys, [a << k.CODE_BITS, b << k.CODE_BITS])
        return Histogram(self.keys[lo:hi] - (a << k.CODE_BITS), self.counts[lo:hi])

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
        # the register rows are combined where they lie: HLL groups' rows are 16 KiB each
        hll = [(gmap[d.hll_groups + b], d.hll_regs) for d, b in zip(parts, base)]
        return _regrouped(off.astype(np.int64), np.concatenate([d.vals for d in parts]), hll, gmap, n_groups)

    @classmethod
    def concat(cls, parts: list["Distinct"]) -> "Distinct":
        """Sets of several parts one after the other: part i's group g becomes
        (groups of parts before i) + g."""
        base = np.cumsum([0] + [len(d.off) - 1 for d in parts])
        val_base = np.cumsum([0] + [len(d.vals) for d in parts])
        off = np.concatenate([d.off[:-1] + vb for d, vb in zip(parts, val_base)] + [val_base[-1:]])
        return cls(off.astype(np.int64), np.concatenate([d.vals for d in parts]),
                   np.concatenate([d.hll_groups + b for d, b in zip(parts, base)]),
                   np.concatenate([d.hll_regs for d in parts]))

    def regroup(self, gmap: np.ndarray, n_groups: int) -> "Distinct":
        """Group g → gmap[g] (many-to-one allowed, -1 drops)."""
        return _regrouped(self.off, self.vals, [(gmap[self.hll_groups], self.hll_regs)], gmap, n_groups)

    def take(self, groups: np.ndarray) -> "Distinct":
        """The sets of ``groups`` (distinct, in any order), renumbered 0…len(groups)-1."""
        off, vals = k.csr_take(self.off, self.vals, groups)
        pos = np.full(len(self.off) - 1, -1, np.int64)
        pos[groups] = np.arange(len(groups), dtype=np.int64)
        mapped = pos[self.hll_groups]
        hit = np.flatnonzero(mapped >= 0)
        hit = hit[np.argsort(mapped[hit], kind="stable")]  # HLL groups stay sorted
        return Distinct(off, vals, mapped[hit], self.hll_regs[hit])

    def slice(self, a: int, b: int) -> "Distinct":
        """The sets of groups ``a`` … ``b - 1``, renumbered from 0."""
        lo, hi = np.searchsorted(self.hll_groups, [a, b])
        return Distinct(self.off[a : b + 1] - self.off[a], self.vals[self.off[a] : self.off[b]],
                        self.hll_groups[lo:hi] - a, self.hll_regs[lo:hi])

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
        spilled = _regs(len(big))
        for t, g in enumerate(big):
            k.hll_add(spilled, t, self.vals[self.off[g] : self.off[g + 1]])
        groups, regs = _combine_hll([(self.hll_groups, self.hll_regs), (big.astype(np.int64), spilled)])
        keep = np.ones(len(self.off) - 1, dtype=bool)
        keep[big] = False
        _, vals = k.csr_take(self.off, self.vals, np.flatnonzero(keep).astype(np.int64))
        # csr_take drops the spilled groups' rows; give every group its (possibly empty) run back
        full = np.zeros(len(keep) + 1, np.int64)
        full[1:] = np.cumsum(np.where(keep, sizes, 0))
        return Distinct(full, vals, groups, regs)


def _regrouped(off, vals, hll, gmap, n_groups) -> Distinct:
    """Sets given as CSR ``off``/``vals`` and HLL parts ``hll`` (see :func:`_combine_hll`,
    groups already mapped), group g → gmap[g]."""
    off, vals = k.csr_regroup(off, vals, np.ascontiguousarray(gmap[: len(off) - 1]), n_groups)
    return Distinct(off, vals, *_combine_hll(hll))._spill()


def _combine_hll(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One register row per group, the maximum over the rows given for it, groups
    sorted. Each part is (groups, their register rows); group -1 drops its row. The
    rows are read where they lie: no copy is made but the result."""
    every = np.concatenate([groups for groups, _ in parts])
    uniq = np.unique(every[every >= 0]).astype(np.int64)
    out = _regs(len(uniq))
    for groups, regs in parts:
        kept = groups >= 0
        if kept.any():
            rows = np.searchsorted(uniq, groups[kept]).astype(np.int64)
            k.hll_max_rows(out, rows, np.ascontiguousarray(regs if kept.all() else regs[kept]))
    return uniq, out
