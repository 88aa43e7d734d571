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
    absent when none). The column comes back unchanged when nothing needed it."""
    if column.null_count == len(column):
        return column, {}
    dictionary = pa.types.is_dictionary(column.type)
    encoded = column if dictionary else pc.dictionary_encode(column)
    values = encoded.dictionary
    flags = rewrites(values)
    if not any(flag.any() for flag in flags.values()):
        return column, {}
    rows = np.bincount(encoded.indices.drop_null().to_numpy(), minlength=len(values))
    counts = {kind: int(rows[flag].sum()) for kind, flag in flags.items()}
    out = _rewritten(values, flags).take(encoded.indices)
    return (pc.dictionary_encode(out) if dictionary else out), {k: n for k, n in counts.items() if n}


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
