"""Normalize subscriber identifiers before hashing (SPEC section 3).

:func:`normalize` turns raw ``source``/``destination`` strings into the text
that is hashed, the kind of identifier, and for phone numbers the calling code
and ISO region (``dst_cc``, ``dst_region``). The work is done by
``kernels/e164.py`` over the Arrow buffers; the rules (see ``docs/numbering.md``):

* ASCII whitespace is trimmed. Empty strings and the words ``anonymous``,
  ``unknown``, ``restricted``, ``withheld``, ``private``, ``unavailable`` (any
  case), also as the user of a SIP URI or the number of a ``tel:`` URI, and SIP
  URIs on the host ``anonymous.invalid`` (RFC 3323) are WITHHELD.
* ``tel:`` URIs (RFC 3966) are their number; a ``;phone-context=+…`` prefixes a
  local number. ``sip:``/``sips:`` URIs, optionally as ``Name <uri>``, are their
  user part when it is digits with an optional leading ``+`` or when the URI
  has ``user=phone``; otherwise they become ``sip:user@host`` (password, port,
  parameters and headers dropped, host lower-cased).
* Phone numbers become E.164 exactly as ``phonenumbers.parse(text, region)``
  followed by ``format_number(…, E164)`` does, and the region is the one
  ``region_code_for_number`` gives (``"001"`` for non-geographic codes).
* Without a ``+``, at most ``min(6, shortest national number length of the
  region - 1)`` digits (6 without a region) is a SHORT code, kept as written.
* A string with an ASCII letter is ALPHANUMERIC, kept as written: sender ids,
  but also vanity numbers (``1-800-FLOWERS``) and numbers with an extension.
* Strings with other characters (non-ASCII digits such as full-width ones,
  ``~`` as in ``8~10``, ``*``, ``#``, tabs) are parsed by ``phonenumbers`` itself,
  one call per distinct value; what it cannot parse as a number is kept as
  ALPHANUMERIC, unless a ``+`` comes before its first digit: that announces a
  phone number, so it is an ERROR (not a phone number), as ``+0`` is.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.arrowstr import bitmap
from telemetry.errors import ConfigError


class Kind(enum.IntEnum):
    NULL = 0
    WITHHELD = 1
    PHONE = 2
    SIP = 3
    SHORT = 4
    ALPHANUMERIC = 5
    ERROR = 6


REASONS: dict[int, str] = {
    0: "ok",
    1: "national number without a configured region",
    2: "unknown country calling code",
    3: "too short to be a phone number",
    4: "too long to be a phone number",
    5: "not a phone number",
}
_NO_REGION, _BAD_CC, _TOO_SHORT, _TOO_LONG, _NOT_NUMBER = 1, 2, 3, 4, 5
_FALLBACK = 7
#: Digit strings up to this long are short codes when no region is configured.
SHORT_MAX = 6
_SPACE = " \t\n\v\f\r"


class Normalized(NamedTuple):
    ids: pa.Array  # string: normalized identifier; null where input null, WITHHELD or ERROR
    kind: np.ndarray  # int8 Kind per row
    reason: np.ndarray  # int8 error reason per row, 0 = ok; REASONS[code] -> text
    cc: np.ndarray  # int16 calling code, 0 = not a phone number
    region_index: np.ndarray  # int16 index of ``region`` in region_names(), -1 where null

    @property
    def region(self) -> pa.Array:
        """String ISO region, null for non-phone ids and unknown regions (made when read)."""
        return region_names().take(pa.array(self.region_index, mask=self.region_index < 0, type=pa.int16()))


def check_region(region: str | None) -> str | None:
    """The default region for national notation, upper-cased, or None."""
    if region is None:
        return None
    if not isinstance(region, str):
        raise ConfigError(f"region must be an ISO 3166-1 alpha-2 code such as 'GB', got {type(region).__name__}")
    from telemetry.phonemeta import tables  # its regions are phonenumbers' SUPPORTED_REGIONS

    code = region.strip().upper()
    if code not in tables().region_meta:
        raise ConfigError(
            f"unknown region {region!r}: use an ISO 3166-1 alpha-2 code known to libphonenumber "
            "(e.g. US, GB, DE), or leave the region unset to accept only numbers written with +"
        )
    return code


def short_max(region: str | None) -> int:
    """Longest digit string (without '+') that counts as a short code."""
    if region is None:
        return SHORT_MAX
    from telemetry.phonemeta import tables

    return min(SHORT_MAX, tables().min_length[region] - 1)


def normalize(values: pa.Array | pa.ChunkedArray, region: str | None = None) -> Normalized:
    """Normalize identifiers; ``region`` is the default for national notation.
    Each distinct value is parsed once (Arrow's hash table, or the dictionary of a
    dictionary array as it is), then the results are gathered per row."""
    from telemetry.arrowstr import plain_strings

    region = check_region(region)
    if isinstance(values, pa.ChunkedArray):
        values = plain_strings(values)
    if not isinstance(values, pa.Array):
        raise TypeError(f"values must be a pyarrow string array, got {type(values).__name__}")
    text_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise TypeError(f"values must be a pyarrow string array, got {values.type}")
    distinct, (entry,) = distinct_entries([values])
    norm = normalize_distinct(distinct, region)
    return Normalized(norm.ids.take(pa.array(entry, mask=entry == len(distinct))), *per_row(norm, entry))


def distinct_entries(columns: Sequence[pa.Array]) -> tuple[pa.Array, list[np.ndarray]]:
    """The values of text columns of the same rows (no nulls; repeats allowed) and, per
    column, each row's entry in them (int64; ``len(values)`` for a null row), so that
    work done once per value is gathered per row. Dictionary columns give their
    dictionaries as they are; text columns are encoded one by one (Arrow's hash
    table), not concatenated first: a value in several columns is listed once per
    column, which the caller's lookup absorbs."""
    import pyarrow.compute as pc

    from telemetry.arrowstr import filled_values, plain_strings

    encoded = [
        c if pa.types.is_dictionary(c.type) and not c.dictionary.null_count else pc.dictionary_encode(plain_strings(c))
        for c in columns
    ]
    dictionaries = [c.dictionary for c in encoded]
    indices = [c.indices for c in encoded]
    if len({d.type for d in dictionaries}) > 1:
        dictionaries = [d.cast(pa.large_string()) for d in dictionaries]
    values = pa.concat_arrays(dictionaries) if len(dictionaries) > 1 else dictionaries[0]
    entries = []
    start = 0
    for dictionary, index in zip(dictionaries, indices):
        entry = filled_values(index, np.int64, len(values) - start)
        entry += start  # this dictionary's entries follow the ones before it; nulls → len(values)
        entries.append(entry)
        start += len(dictionary)
    return values, entries


def per_row(
    norm: Normalized, entry: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``kind``, ``reason``, ``cc`` and ``region_index`` per row, where ``entry`` indexes
    the values ``norm`` describes and ``len(norm.kind)`` stands for a null row."""
    return (
        np.append(norm.kind, np.int8(Kind.NULL))[entry],
        np.append(norm.reason, np.int8(0))[entry],
        np.append(norm.cc, np.int16(0))[entry],
        np.append(norm.region_index, np.int16(-1))[entry],
    )


def normalize_distinct(array: pa.Array, region: str | None) -> Normalized:
    """:func:`normalize` of a string array whose values are distinct (nulls allowed),
    parsing every row: no encoding first. ``region`` as :func:`check_region` returns it."""
    from kernels.e164 import normalize_strings
    from telemetry.arrowstr import string_views
    from telemetry.phonemeta import tables

    t = tables()
    views = string_views(array)
    n = len(array)
    size = int(views.offsets[-1]) - int(views.offsets[0]) if n else 0
    out = np.empty(size + 32 * n, dtype=np.uint8)
    out_offsets = np.empty(n + 1, dtype=np.int64)
    kind = np.empty(n, dtype=np.int8)
    reason = np.empty(n, dtype=np.int8)
    cc = np.empty(n, dtype=np.int16)
    region_idx = np.empty(n, dtype=np.int16)
    dm = t.region_meta[region] if region is not None else -1
    verbatim = normalize_strings(
        views.offsets,
        views.data,
        views.valid,
        t.kernel,
        dm,
        short_max(region),
        out,
        out_offsets,
        kind,
        reason,
        cc,
        region_idx,
    )
    fallback = np.flatnonzero(kind == _FALLBACK)
    texts: list[str | None] = []
    if fallback.size:
        texts = _finish_in_python(array, fallback, region, kind, reason, cc, region_idx, t.region_names)
    if verbatim == n and pa.types.is_string(array.type):  # every row its own E.164, as written
        return Normalized(array, kind, reason, cc, region_idx)
    has_text = (kind == Kind.PHONE) | (kind == Kind.SIP) | (kind == Kind.SHORT) | (kind == Kind.ALPHANUMERIC)
    ids = _string_array(out, out_offsets, has_text)
    if fallback.size:
        import pyarrow.compute as pc

        mask = np.zeros(n, dtype=np.bool_)
        mask[fallback] = True
        ids = pc.replace_with_mask(ids, pa.array(mask), pa.array(texts, type=pa.string()))
    return Normalized(ids, kind, reason, cc, region_idx)


@functools.cache
def region_names() -> pa.Array:
    """Every region a number can resolve to (ISO codes, ``001`` for non-geographic
    calling codes), in the order of :attr:`Normalized.region_index`."""
    from telemetry.phonemeta import tables

    return pa.array(tables().region_names, type=pa.string())


def _string_array(out: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> pa.Array:
    n = len(valid)
    total = int(offsets[-1])
    if total >= 2**31:
        raise ValueError("a batch of identifiers must hold less than 2 GiB of text; use smaller batches")
    present, nulls = bitmap(valid)
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [present, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(out[:total].copy())],
        null_count=nulls,
    )


def _finish_in_python(array, rows, region, kind, reason, cc, region_idx, region_names) -> list[str | None]:
    """Rows outside the kernel's grammar, one ``phonenumbers`` call per value."""
    index = {name: k for k, name in enumerate(region_names)}
    limit = short_max(region)
    values = array.take(pa.array(rows)).to_pylist()
    done: dict[str, tuple] = {}
    texts = []
    for row, value in zip(rows.tolist(), values):
        if value not in done:
            done[value] = _parse_one(value, region, limit)
        k, r, text, code, reg = done[value]
        kind[row], reason[row], cc[row] = k, r, code
        region_idx[row] = index.get(reg, -1) if reg is not None else -1
        texts.append(text)
    return texts


def _parse_one(value: str, region: str | None, limit: int) -> tuple[int, int, str | None, int, str | None]:
    import phonenumbers
    from phonenumbers import NumberParseException

    text = value.strip(_SPACE)
    tel = text[:4].lower() == "tel:"
    digits = phonenumbers.normalize_digits_only(text)
    first = min((text.find(c) for c in "+\uff0b" if c in text), default=-1)
    plus = first >= 0 and not any(ch.isdigit() for ch in text[:first])
    if not digits:
        return (Kind.ERROR, _NOT_NUMBER, None, 0, None) if tel else (Kind.ALPHANUMERIC, 0, text, 0, None)
    if not plus and len(digits) <= limit:
        return Kind.SHORT, 0, text, 0, None
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        kinds = {
            NumberParseException.TOO_SHORT_NSN: _TOO_SHORT,
            NumberParseException.TOO_SHORT_AFTER_IDD: _TOO_SHORT,
            NumberParseException.TOO_LONG: _TOO_LONG,
        }
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            return Kind.ERROR, (_NO_REGION if region is None and not plus else _BAD_CC), None, 0, None
        if exc.error_type in kinds:
            return Kind.ERROR, kinds[exc.error_type], None, 0, None
        # a + before the digits announces a number (the kernel's rule too): a bad one is an error
        return (Kind.ERROR, _NOT_NUMBER, None, 0, None) if tel or plus else (Kind.ALPHANUMERIC, 0, text, 0, None)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Kind.PHONE, 0, e164, number.country_code, phonenumbers.region_code_for_number(number)
