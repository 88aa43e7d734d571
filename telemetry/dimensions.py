"""Text dimensions as they may be published: no subscriber number, no control
character, no value that could pass for one of the product's own labels.

``route``, ``tenant``, ``mno`` and ``device_type`` come from the input as
written, and every sink (metrics Parquet, the Prometheus endpoint, the HTML
report, record output) shows them verbatim. :func:`published` rewrites a
column once, where the pipeline builds the dimensions, so every sink gets the
same clean values (docs/design.md, "Dimension values"):

1. control, format and separator characters (Unicode Cc, Cf, Co, Zl, Zp: NUL, CR,
   LF, U+202E…) become U+FFFD;
2. a value that looks like a subscriber identifier (:data:`SUBSCRIBER_LIKE`)
   becomes :data:`NUMBER`;
3. a value that begins with ``__`` or ``~`` gets a ``~`` in front, so no input
   value equals a label the product makes (``__other__``, ``__number__``) and
   the rewrite stays one to one.

The checks run on a batch's distinct values (its dictionary), not per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.arrowstr import string_views

#: Input text columns that are dimensions (SPEC section 4).
TEXT_DIMENSIONS = ("route", "tenant", "mno", "device_type")
#: What a dimension value that looks like a subscriber identifier is published as.
NUMBER = "__number__"
ESCAPE = "~"

_CONTROL = r"[\p{Cc}\p{Cf}\p{Co}\p{Zl}\p{Zp}]"
#: A subscriber identifier: 7 or more decimal digits in a row, where blanks, dots,
#: hyphens, parentheses and slashes may stand between digits and a ``+`` before
#: the first, no letter or digit touching either end (``+44 7700 900555``,
#: ``(020) 7946-0018``, ``SIP peer 447700900555``; not ``AC5f3e1234567b``); or an
#: ``@`` (the user part of a SIP URI or an e-mail address).
SUBSCRIBER_LIKE = r"(^|[^\p{L}\p{N}])\+?\p{Nd}([\s().\-/]*\p{Nd}){6,}([^\p{L}\p{N}]|$)|@"
#: A dotted IPv4 address (a gateway), with an optional port: not a subscriber.
_IPV4 = r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(:\d{1,5})?$"
_RESERVED = r"^(__|~)"

#: Kinds of rewrite, as counted by :func:`published` and named in the run's warnings.
KINDS = {
    "control": "control or bidi characters replaced by U+FFFD",
    "number": f"a value that looks like a subscriber number, published as {NUMBER}",
    "reserved": f"a value beginning with __ or {ESCAPE}, published with {ESCAPE} in front",
}


def published(column: pa.Array) -> tuple[pa.Array, dict[str, int]]:
    """``column`` (``string`` or dictionary of strings) as it may be published, and
    how many of its rows each kind of rewrite changed (kinds of :data:`KINDS`;
    absent when none). The column comes back unchanged when nothing needed it.

    The rules run on the distinct values only: a byte-level screen
    (:func:`_suspects`) clears most of them at NumPy speed, and the regular
    expressions see the rest."""
    if column.null_count == len(column):
        return column, {}
    dictionary = pa.types.is_dictionary(column.type)
    encoded = column if dictionary else pc.dictionary_encode(column)
    values = encoded.dictionary
    suspect = _suspects(values)
    if not suspect.any():
        return column, {}
    flags = {kind: _spread(flag, suspect) for kind, flag in rewrites(values.filter(pa.array(suspect))).items()}
    if not any(flag.any() for flag in flags.values()):
        return column, {}
    rows = np.bincount(encoded.indices.drop_null().to_numpy(), minlength=len(values))
    counts = {kind: n for kind, flag in flags.items() if (n := int(rows[flag].sum()))}
    # two values may now read the same (two numbers): one dictionary entry each
    rewritten = _rewritten(values, flags)
    distinct = pc.unique(rewritten)
    indices = pc.take(pc.index_in(rewritten, distinct).cast(pa.int32()), encoded.indices)
    out = pa.DictionaryArray.from_arrays(indices, distinct)
    return (out if dictionary else out.dictionary_decode()), counts


def _suspects(values: pa.Array) -> np.ndarray:
    """Per value: whether it may need a rewrite — it holds a control or non-ASCII
    byte, an ``@``, 7 or more ASCII digits, or begins with ``_`` or ``~``. A cheap
    superset of what :func:`rewrites` flags, for a few distinct values."""
    views = string_views(values)
    data, starts, ends = views.data, views.offsets[:-1], views.offsets[1:]
    if not len(data):
        return np.zeros(len(values), np.bool_)
    odd = (data < 0x20) | (data >= 0x7F) | (data == ord("@"))
    digit = (data >= ord("0")) & (data <= ord("9"))
    out = (ends > starts) & np.isin(data[np.minimum(starts, len(data) - 1)], _LEADS)
    for mask, least in ((odd, 1), (digit, 7)):
        before = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
        out |= before[ends] - before[starts] >= least
    return out & views.valid


_LEADS = np.frombuffer(b"_~", np.uint8)


def _spread(flags: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``flags`` of the values selected by ``where``, as flags of all values."""
    out = np.zeros(len(where), np.bool_)
    out[where] = flags
    return out


def rewrites(values: pa.Array) -> dict[str, np.ndarray]:
    """Per value of ``values`` (``string``): which rewrites of :data:`KINDS` apply."""
    control = _flag(pc.match_substring_regex(values, _CONTROL))
    text = _printable(values, control)
    number = _flag(pc.match_substring_regex(text, SUBSCRIBER_LIKE))
    if number.any():
        number &= ~_flag(pc.match_substring_regex(text, _IPV4))
    reserved = _flag(pc.match_substring_regex(text, _RESERVED)) & ~number
    return {"control": control, "number": number, "reserved": reserved}


def _rewritten(values: pa.Array, flags: dict[str, np.ndarray]) -> pa.Array:
    text = _printable(values, flags["control"])
    if flags["reserved"].any():
        escaped = pc.binary_join_element_wise(ESCAPE, text, "")
        text = pc.if_else(pa.array(flags["reserved"]), escaped, text)
    if flags["number"].any():
        text = pc.if_else(pa.array(flags["number"]), pa.scalar(NUMBER), text)
    return text


def _printable(values: pa.Array, control: np.ndarray) -> pa.Array:
    return pc.replace_substring_regex(values, _CONTROL, "\ufffd") if control.any() else values


def is_published_as_is(value: str) -> bool:
    """Whether one value would be published unchanged (for quarantine's allow-list)."""
    return not any(flag[0] for flag in rewrites(pa.array([value], pa.string())).values())


def _flag(matches: pa.Array) -> np.ndarray:
    return matches.fill_null(False).to_numpy(zero_copy_only=False)
