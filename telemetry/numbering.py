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
  ALPHANUMERIC.
"""

from __future__ import annotations

import enum
import functools
from typing import NamedTuple

import numpy as np
import pyarrow as pa

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
    region: pa.Array  # string ISO region, null for non-phone ids and unknown regions
    region_index: np.ndarray  # int16 index of ``region`` in region_names(), -1 where null


def check_region(region: str | None) -> str | None:
    """The default region for national notation, upper-cased, or None."""
    if region is None:
        return None
    if not isinstance(region, str):
        raise ConfigError(f"region must be an ISO 3166-1 alpha-2 code such as 'GB', got {type(region).__name__}")
    from phonenumbers.phonenumberutil import SUPPORTED_REGIONS

    code = region.strip().upper()
    if code not in SUPPORTED_REGIONS:
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


class Memo:
    """The normalization kernel's memory of values it has parsed (input bytes →
    result), reusable across batches normalized with one region: CDRs name the
    same subscribers over and over, so a long run parses each one about once.

    It holds clear identifiers, so it lives only as long as its owner and is never
    written anywhere. Not thread-safe: one memo per thread. (The pipeline keeps
    identifiers it has seen in ``telemetry.pseudonyms._Seen`` instead, with their
    pseudonyms.)
    """

    def __init__(self, slots: int = 1 << 20, arena_bytes: int = 32 << 20) -> None:
        if slots < 2 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.slots = np.full(slots, -1, dtype=np.int64)
        self.meta = np.empty((slots // 2, 6), dtype=np.int32)
        self.arena = np.empty(arena_bytes, dtype=np.uint8)
        self.fill = np.zeros(2, dtype=np.int64)  # entries, arena bytes used

    @classmethod
    def for_batch(cls, n: int) -> "Memo":
        """A one-off memo sized for ``n`` rows (repeats within one call only)."""
        slots = 1024
        while slots < 2 * n and slots < 1 << 20:
            slots *= 2
        return cls(slots, min(8 << 20, 24 * slots))

    def make_room(self) -> None:
        """Forget everything once three quarters full, so new values are remembered again."""
        if 4 * self.fill[0] >= 3 * len(self.meta) or 4 * self.fill[1] >= 3 * len(self.arena):
            self.slots.fill(-1)
            self.fill[:] = 0


def normalize(
    values: pa.Array | pa.ChunkedArray, region: str | None = None, *, memo: Memo | None = None
) -> Normalized:
    """Normalize identifiers; ``region`` is the default for national notation.
    ``memo`` (optional) carries parsed values over from earlier calls with the
    same region (see :class:`Memo`)."""
    region = check_region(region)
    if isinstance(values, pa.ChunkedArray):
        chunks = [_normalize_chunk(c, region, memo) for c in values.chunks]
        if not chunks:
            chunks = [_normalize_chunk(pa.array([], type=pa.string()), region, memo)]
        if len(chunks) == 1:
            return chunks[0]
        return Normalized(
            pa.concat_arrays([c.ids for c in chunks]),
            np.concatenate([c.kind for c in chunks]),
            np.concatenate([c.reason for c in chunks]),
            np.concatenate([c.cc for c in chunks]),
            pa.concat_arrays([c.region for c in chunks]),
            np.concatenate([c.region_index for c in chunks]),
        )
    if not isinstance(values, pa.Array):
        raise TypeError(f"values must be a pyarrow string array, got {type(values).__name__}")
    if memo is None and len(values) >= _DEDUPE_FROM and not pa.types.is_dictionary(values.type):
        return _normalize_distinct(values, region)
    return _normalize_chunk(values, region, memo)


_DEDUPE_FROM = 4096  # rows from which a one-off call parses each distinct value once


def _normalize_distinct(values: pa.Array, region: str | None) -> Normalized:
    """:func:`normalize` of the distinct values (Arrow's hash table), gathered per
    row: identifiers repeat, and a gather costs less than a lookup in the memo."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(values)
    distinct = len(encoded.dictionary)
    if 2 * distinct > len(values):  # mostly distinct: the memo alone does better
        return _normalize_chunk(values, region, None)
    norm = _normalize_chunk(encoded.dictionary, region, None)
    # row → its distinct value; null rows → one extra entry that reads as null
    entry = encoded.indices.fill_null(distinct).to_numpy(zero_copy_only=False).astype(np.int64)
    kind, reason, cc, region_index = per_row(norm, entry)
    return Normalized(
        norm.ids.take(pa.array(entry, mask=entry == distinct)),
        kind,
        reason,
        cc,
        region_names().take(pa.array(region_index, mask=region_index < 0, type=pa.int16())),
        region_index,
    )


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


def _normalize_chunk(array: pa.Array, region: str | None, memo: Memo | None) -> Normalized:
    from kernels.e164 import normalize_strings
    from telemetry.arrowstr import string_views
    from telemetry.phonemeta import tables

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise TypeError(f"values must be a pyarrow string array, got {array.type}")
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
    if memo is None:
        memo = Memo.for_batch(n)
    else:
        memo.make_room()
    normalize_strings(
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
        memo.slots,
        memo.meta,
        memo.arena,
        memo.fill,
    )
    fallback = np.flatnonzero(kind == _FALLBACK)
    texts: list[str | None] = []
    if fallback.size:
        texts = _finish_in_python(array, fallback, region, kind, reason, cc, region_idx, t.region_names)
    has_text = (kind == Kind.PHONE) | (kind == Kind.SIP) | (kind == Kind.SHORT) | (kind == Kind.ALPHANUMERIC)
    ids = _string_array(out, out_offsets, has_text)
    if fallback.size:
        import pyarrow.compute as pc

        mask = np.zeros(n, dtype=np.bool_)
        mask[fallback] = True
        ids = pc.replace_with_mask(ids, pa.array(mask), pa.array(texts, type=pa.string()))
    regions = region_names().take(pa.array(region_idx, mask=region_idx < 0, type=pa.int16()))
    return Normalized(ids, kind, reason, cc, regions, region_idx)


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
    validity = None
    if not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(out[:total].copy())],
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
        return (Kind.ERROR, _NOT_NUMBER, None, 0, None) if tel else (Kind.ALPHANUMERIC, 0, text, 0, None)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Kind.PHONE, 0, e164, number.country_code, phonenumbers.region_code_for_number(number)
