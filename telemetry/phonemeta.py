"""Kernel tables built from the metadata of the ``phonenumbers`` package.

Everything ``phonenumbers.parse`` and ``region_code_for_number`` consult is
turned into arrays here, once per process (:func:`tables`, thread-safe):

* per metadata entry (every region, plus one per non-geographic calling
  code): calling code, full-match DFA of ``general_desc``, the result of
  ``_test_number_length`` for every length (it depends on nothing else — so it
  is taken from ``phonenumbers`` itself), programs for
  ``national_prefix_for_parsing`` and ``international_prefix``, and the
  ``national_prefix_transform_rule`` as a template;
* per calling code: the metadata entry of its main region, and either its one
  region or a combined DFA whose end state and length give the region
  ``region_code_for_number`` picks (leading digits or number type, in the
  order of ``COUNTRY_CODE_TO_REGION_CODE``; ``None`` where it finds none).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from telemetry import regexdfa

#: Lengths the length table covers; every longer national number is TOO_LONG.
MAX_LEN = 64  # kernels/e164.py LEN_SLOTS - 1
#: Regions ``_region_code_for_number_from_list`` is asked about only for
#: national significant numbers of at most 17 digits (parse rejects longer).
MAX_NSN = 17
TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
TEMPLATE_SLOTS = 8


class Tables(NamedTuple):
    """``kernel`` is what kernels/e164.py runs on (layout documented there):
    ``(meta, ccinfo, gtrans, rtrans, prog)``, all int32 2-D arrays."""

    kernel: tuple
    region_names: list  # region index -> ISO code ("001" for non-geographic codes)
    region_meta: dict  # ISO code -> metadata entry, for the configured default region
    min_length: dict  # ISO code -> shortest general possible length


_lock = threading.Lock()
_tables: Tables | None = None


def tables() -> Tables:
    """The tables, built on first use and shared afterwards. Building takes a few
    hundred milliseconds, so the result is kept beside the compiled kernels (see
    kernels/_jit.py), keyed on the phonenumbers version and on the code that builds
    and reads it: a stale copy can never be loaded."""
    global _tables
    if _tables is None:
        with _lock:
            if _tables is None:
                path = _cache_path()
                _tables = _load(path) if path else None
                if _tables is None:
                    _tables = _build()
                    if path:
                        _save(_tables, path)
    return _tables


def _cache_path() -> str:
    import hashlib
    import importlib.util
    import os

    from kernels import e164
    from kernels._jit import CACHE_DIR

    if not CACHE_DIR:
        return ""
    # phonenumbers' __init__.py holds its __version__: found, not imported (~15 ms)
    digest = hashlib.sha256()
    for module in (importlib.util.find_spec("phonenumbers").origin, __file__, regexdfa.__file__, e164.__file__):
        with open(module, "rb") as handle:
            digest.update(handle.read())
    return os.path.join(CACHE_DIR, f"phonemeta-{digest.hexdigest()[:24]}.npz")


_KERNEL_NAMES = ("meta", "ccinfo", "gtrans", "rtrans", "prog")


def _load(path: str) -> Tables | None:
    import json

    try:
        with np.load(path, allow_pickle=False) as data:
            kernel = tuple(np.ascontiguousarray(data[name]) for name in _KERNEL_NAMES)
            rest = json.loads(bytes(data["rest"]).decode())
    except Exception:  # noqa: BLE001 — absent, partial or damaged (zip, header, JSON): build instead
        return None
    return Tables(kernel, rest["region_names"], rest["region_meta"], rest["min_length"])


def _save(t: Tables, path: str) -> None:
    import json
    import os

    rest = json.dumps({"region_names": t.region_names, "region_meta": t.region_meta, "min_length": t.min_length})
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **dict(zip(_KERNEL_NAMES, t.kernel)), rest=np.frombuffer(rest.encode(), np.uint8))
        os.replace(tmp, path)
    except OSError:  # an unwritable cache only costs the build next time
        if os.path.exists(tmp):
            os.remove(tmp)


def _pattern(desc) -> str | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return desc.national_number_pattern


def _length_table(metadata) -> np.ndarray:
    from phonenumbers.phonenumberutil import _test_number_length

    return np.array([int(_test_number_length("1" * n, metadata)) for n in range(MAX_LEN + 1)], dtype=np.int8)


class _Concat:
    """Appends DFAs into one transition table sharing the dead state 0."""

    def __init__(self) -> None:
        self.rows = [np.zeros((1, 10), dtype=np.int32)]
        self.size = 1
        self.accepts: list[frozenset] = [frozenset()]

    def add(self, dfa: regexdfa.DFA) -> int:
        """Appends all states but the dead one; returns the start state."""
        base = self.size - 1  # local state k >= 1 becomes base + k
        trans = dfa.trans[1:].copy()
        trans[trans > 0] += base
        self.rows.append(trans)
        self.accepts.extend(dfa.accepts[1:])
        self.size += len(trans)
        return base + 1

    def table(self) -> np.ndarray:
        return np.concatenate(self.rows)


def _build() -> Tables:
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS

    metas: list = []
    meta_index: dict[int, int] = {}  # id(metadata) -> entry
    region_meta: dict[str, int] = {}
    cc_main: dict[int, int] = {}
    for cc, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        for k, region in enumerate(regions):
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
            if metadata is None:
                continue
            if id(metadata) not in meta_index:
                meta_index[id(metadata)] = len(metas)
                metas.append(metadata)
            if region in SUPPORTED_REGIONS:
                region_meta[region] = meta_index[id(metadata)]
            if k == 0:
                cc_main[cc] = meta_index[id(metadata)]

    from kernels import e164

    m_count = len(metas)
    general = _Concat()
    gstart = np.zeros(m_count, dtype=np.int32)
    prog_rows: list[list[int]] = []
    npp_pc = np.full(m_count, -1, dtype=np.int32)
    npp_groups = np.zeros(m_count, dtype=np.int8)
    tmpl = np.zeros((m_count, TEMPLATE_SLOTS), dtype=np.int8)
    tmpl_len = np.full(m_count, -1, dtype=np.int8)
    idd_pc = np.full(m_count, -1, dtype=np.int32)
    lenres = np.zeros((m_count, MAX_LEN + 1), dtype=np.int8)
    meta_cc = np.zeros(m_count, dtype=np.int16)

    def add_program(pattern: str) -> tuple[int, int]:
        prog, groups = regexdfa.compile_program(pattern)
        base = len(prog_rows)
        for op, a, b in prog:
            if op in (regexdfa.OP_SPLIT, regexdfa.OP_JMP):
                a, b = a + base, b + base
            prog_rows.append([op, a, b])
        return base, groups

    for m, metadata in enumerate(metas):
        meta_cc[m] = metadata.country_code
        pattern = _pattern(metadata.general_desc)
        if pattern is not None:
            gstart[m] = general.add(regexdfa.build_dfa([(pattern, True, False)]))
        lenres[m] = _length_table(metadata)
        if metadata.national_prefix_for_parsing:
            npp_pc[m], groups = add_program(metadata.national_prefix_for_parsing)
            npp_groups[m] = groups
            if 2 * groups + 1 >= e164.CAPS:
                raise ValueError(f"too many groups in national_prefix_for_parsing of {metadata.id}")
            rule = metadata.national_prefix_transform_rule
            if rule:
                if groups == 0:  # parse() itself would raise IndexError here
                    raise ValueError(f"transform rule without groups in {metadata.id}")
                codes = regexdfa.parse_template(rule)
                tmpl[m, : len(codes)] = codes
                tmpl_len[m] = len(codes)
        if metadata.international_prefix:
            idd_pc[m], _ = add_program(metadata.international_prefix)
    gtrans = general.table()
    gacc = np.array([bool(a) for a in general.accepts], dtype=np.bool_)

    region_names: list[str] = []
    name_index: dict[str, int] = {}

    def name(region: str) -> int:
        if region not in name_index:
            name_index[region] = len(region_names)
            region_names.append(region)
        return name_index[region]

    cc_meta = np.full(1000, -1, dtype=np.int32)
    cc_region = np.full(1000, -1, dtype=np.int16)
    rstart = np.zeros(1000, dtype=np.int32)
    regional = _Concat()
    wins: list[np.ndarray] = [np.full((1, 2 * (MAX_NSN + 1)), -1, dtype=np.int16)]  # the dead state: none
    for cc, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        if cc not in cc_main:
            continue
        cc_meta[cc] = cc_main[cc]
        if len(regions) == 1:
            cc_region[cc] = name(regions[0])
            continue
        cc_region[cc] = -2
        start, win = _region_dfa(cc, regions, regional, name)
        rstart[cc] = start
        wins.append(win)
    rwin = np.concatenate(wins)
    for region in sorted(SUPPORTED_REGIONS):
        name(region)
    min_length = {
        region: min(x for x in metas[m].general_desc.possible_length if x > 0) for region, m in region_meta.items()
    }
    meta = np.zeros((m_count, e164.M_LEN + e164.LEN_SLOTS), dtype=np.int32)
    meta[:, e164.M_GSTART] = gstart
    meta[:, e164.M_NPP] = npp_pc
    meta[:, e164.M_GROUPS] = npp_groups
    meta[:, e164.M_TLEN] = tmpl_len
    meta[:, e164.M_IDD] = idd_pc
    meta[:, e164.M_CC] = meta_cc
    meta[:, e164.M_TMPL : e164.M_TMPL + TEMPLATE_SLOTS] = tmpl
    meta[:, e164.M_LEN :] = lenres
    ccinfo = np.stack([cc_meta, cc_region.astype(np.int32), rstart], axis=1)
    gtable = np.concatenate([gtrans, gacc.astype(np.int32)[:, None]], axis=1)
    rtable = np.concatenate([regional.table(), rwin.astype(np.int32)], axis=1)
    prog = np.asarray(prog_rows, dtype=np.int32).reshape(-1, 3)
    kernel = tuple(np.ascontiguousarray(a) for a in (meta, ccinfo, gtable, rtable, prog))
    return Tables(kernel, region_names, region_meta, min_length)


def _lengths_ok(desc, length: int) -> bool:
    lengths = desc.possible_length
    return not (len(lengths) > 0 and length not in lengths)


def _region_dfa(cc: int, regions, regional: _Concat, name) -> tuple[int, np.ndarray]:
    """Combined DFA of ``_region_code_for_number_from_list`` for one shared code.

    Tags are ``(k, desc)``: region ``k`` matched its leading digits (a prefix
    match) or the full pattern of one of its descs. Whether the desc's possible
    lengths admit the number is decided with the length when the winner table
    is filled, so the automaton itself does not count.
    """
    from phonenumbers import PhoneMetadata

    patterns = []
    plans = []  # per region: None (no metadata), ("lead",), or ("type", general, [(desc name, desc)])
    for k, region in enumerate(regions):
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            plans.append(None)
            continue
        if metadata.leading_digits is not None:
            patterns.append((metadata.leading_digits, (k, "lead"), True))
            plans.append(("lead",))
            continue
        descs = []
        general = metadata.general_desc
        if _pattern(general) is not None:
            patterns.append((_pattern(general), (k, "general_desc"), False))
        candidates = list(TYPE_DESCS)
        if not metadata.same_mobile_and_fixed_line_pattern:
            candidates.append("mobile")
        for attr in candidates:
            desc = getattr(metadata, attr)
            if _pattern(desc) is not None:
                patterns.append((_pattern(desc), (k, attr), False))
                descs.append((attr, desc))
        plans.append(("type", general, descs))

    dfa = regexdfa.build_dfa(patterns)
    start = regional.add(dfa)
    win = np.full((len(dfa.trans), MAX_NSN + 1), -1, dtype=np.int16)
    for state in range(1, len(dfa.trans)):
        tags = dfa.accepts[state]
        for length in range(MAX_NSN + 1):
            win[state, length] = _winner(regions, plans, tags, length, name)
    return start, np.concatenate([win, _settled(dfa.trans, win)], axis=1)[1:]


def _settled(trans: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Per state of a region DFA (``trans``, start 1, dead 0) and national number length
    ``k``: the winner (``win[end state, k]``) whatever digits follow, on every path of
    ``k`` digits through the state; ``kernels.e164.UNSETTLED`` where they still matter.
    Once a walk is settled it stops (``kernels.e164.region_of``): a shared code's region
    is mostly told by its first three or four digits, the rest of the number only
    counted. Exact: for each length at which the state can be reached (every depth its
    paths from the start have), each string of the remaining length must end in a state
    with that winner."""
    from kernels.e164 import UNSETTLED

    n, lengths = win.shape
    depth = np.zeros((lengths, n), dtype=np.bool_)  # depth[j, s]: some path of j digits reaches s
    depth[0, 1] = True
    for j in range(1, lengths):
        depth[j, np.unique(trans[depth[j - 1]])] = True
    unset = -(1 << 40)  # no depth seen yet
    settled = np.full((n, lengths), UNSETTLED, dtype=np.int16)
    for k in range(lengths):
        # after[r][s]: the winner for k of every r-digit string read from s, or UNSETTLED
        after = [win[:, k].astype(np.int64)]
        for _ in range(k):
            nxt = after[-1][trans]
            after.append(np.where((nxt == nxt[:, :1]).all(axis=1), nxt[:, 0], UNSETTLED))
        agreed = np.full(n, unset, dtype=np.int64)
        for j in range(k + 1):
            at = depth[j]
            here = after[k - j][at]
            seen = agreed[at]
            agreed[at] = np.where((seen == unset) | (seen == here), here, UNSETTLED)
        settled[:, k] = np.where(agreed == unset, UNSETTLED, agreed)
    return settled


def _winner(regions, plans, tags, length: int, name) -> int:
    for k, plan in enumerate(plans):
        if plan is None:
            continue
        if plan[0] == "lead":
            if (k, "lead") in tags:
                return name(regions[k])
            continue
        _, general, descs = plan
        if (k, "general_desc") not in tags or not _lengths_ok(general, length):
            continue
        if any((k, attr) in tags and _lengths_ok(desc, length) for attr, desc in descs):
            return name(regions[k])
    return -1
