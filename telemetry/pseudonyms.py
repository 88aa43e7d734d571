"""Keyed pseudonyms of identifiers (SPEC section 3): normalize, then HMAC.

:class:`Pseudonymizer` is what the pipeline holds per run: the keyring's
midstates per domain, the configured region and rate deck. :func:`pseudonymize`
is the notebook-facing function of SPEC section 7.
"""

from __future__ import annotations

import threading
from functools import cached_property
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.keys import Keyring, as_keyring

DOMAINS = ("subscriber", "ip", "record")


class Identifiers(NamedTuple):
    """Pseudonyms of one identifier column and what was derived on the way."""

    pseudonyms: pa.Array  # binary(16); null for null, withheld or rejected rows
    kind: np.ndarray  # int8 telemetry.numbering.Kind per row
    reason: np.ndarray  # int8 reason code per row (0 = ok), see telemetry.numbering.REASONS
    cc: np.ndarray  # int16 calling code, 0 when not a phone number
    region: pa.Array  # ISO region or null, dictionary-encoded over telemetry.numbering.region_names()
    normalized: pa.Array  # string normalized identifier (E.164 …) — never leaves the process


class Pseudonymizer:
    """Holds the per-domain HMAC midstates of a keyring for one run."""

    def __init__(self, keyring: Keyring, *, region: str | None = None) -> None:
        from telemetry.hashing import midstates
        from telemetry.numbering import check_region

        self.keyring = keyring
        self.region = check_region(region)
        self._states = {d: midstates(keyring.subkeys(d)) for d in DOMAINS}
        self._seen = _Seen(self.region, self._states["subscriber"])

    def __getstate__(self) -> dict:
        # clear identifiers stay home; AES contexts are rebuilt where needed
        return {k: v for k, v in self.__dict__.items() if k not in ("_seen", "_cryptopans")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _seen=_Seen(state["region"], state["_states"]["subscriber"]))

    def epoch_index(self, start_time: pa.Array) -> np.ndarray:
        """Index of the key epoch covering each record's start time (-1: none)."""
        micros = start_time.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return self.keyring.epoch_index(micros)

    def identifiers(self, values: pa.Array, key_index: np.ndarray | None = None) -> Identifiers:
        """Normalize subscriber identifiers and pseudonymize them."""
        return self.identifier_columns([values], key_index)[0]

    def identifier_columns(
        self, columns: Sequence[pa.Array | pa.ChunkedArray], key_index: np.ndarray | None = None
    ) -> list[Identifiers]:
        """:meth:`identifiers` of several columns of the same rows (``source`` and
        ``destination``), one record's epoch per row (``key_index``, default 0).

        CDRs name the same subscribers over and over, so a column is normally looked up
        in the run's table of identifiers seen (per dictionary entry, or per row of plain
        text): only values met for the first time are normalized and hashed, per key
        epoch present, and the results are gathered per row. A column whose values are
        mostly new (transit, A2P) goes without the table: every value is normalized and
        hashed where it stands (see :class:`_Seen` for how that is decided).
        """
        arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        if len({len(a) for a in arrays}) > 1:
            raise ValueError("identifier columns must have the same number of rows")
        n = len(arrays[0])
        keys = np.zeros(n, np.int64) if key_index is None else np.asarray(key_index, np.int64)
        epochs = keys[:1] if n and keys.min() == keys.max() else np.unique(keys)  # one epoch: no sort
        return [self._column(c, array, keys, epochs.tolist()) for c, array in enumerate(arrays)]

    def _column(self, c: int, array: pa.Array, keys: np.ndarray, epochs: list[int]) -> Identifiers:
        """:meth:`identifier_columns` of the ``c``-th column."""
        from telemetry.arrowstr import filled_values, plain_strings

        if pa.types.is_dictionary(array.type) and not array.dictionary.null_count:
            values, entry = array.dictionary, filled_values(array.indices, np.int64, -1)
        else:
            values, entry = plain_strings(array), None
        seen = self._seen
        state = seen.direct.get(c)  # None: undecided
        if state is None and entry is not None and len(values) >= DECIDE_MIN:
            # a dictionary's entries are distinct within the batch: its first batch is all new
            # whether or not they repeat in later batches, so it says nothing; the table it is
            seen.direct[c] = False
        elif state is not False and seen.sample(c, values):  # undecided, or without the table
            return self._direct(values, entry, keys)
        number, table, new = seen.lookup(values, [e for e in epochs if e >= 0])
        if state is False:  # on the table the batch before too: this lookup is the column's share
            seen.observe(c, new, len(values))
        rows = number if entry is None else np.append(number, -1)[entry]
        return _gathered(rows, table, keys, epochs)

    def _direct(self, values: pa.Array, entry: np.ndarray | None, keys: np.ndarray) -> Identifiers:
        """A column of mostly new values: normalized per value (dictionary entry or row)
        and hashed per row, without the table."""
        from telemetry.hashing import hmac16
        from telemetry.numbering import normalize_distinct, per_row

        norm = normalize_distinct(values, self.region)
        if entry is None:
            kind, reason, cc, region_index, ids = norm.kind, norm.reason, norm.cc, norm.region_index, norm.ids
        else:
            entry = np.where(entry < 0, len(values), entry)
            kind, reason, cc, region_index = per_row(norm, entry)
            ids = norm.ids.take(pa.array(entry, mask=entry == len(values)))
        pseudo = hmac16(ids, self._states["subscriber"], keys)
        return Identifiers(pseudo, kind, reason, cc, _regions(region_index), ids)

    def ips(self, values: pa.Array, key_index: np.ndarray | None = None) -> tuple[pa.Array, np.ndarray]:
        """Pseudonyms of the truncated networks of IP addresses, and the invalid mask."""
        from telemetry.hashing import hmac16
        from telemetry.ipaddr import truncate_ips

        networks, invalid = truncate_ips(values)
        return hmac16(networks, self._states["ip"], key_index), invalid

    def cryptopan_ips(self, values: pa.Array, key_index: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """Crypto-PAn addresses (SPEC section 12) of IP addresses, each under its
        epoch's ``cryptopan`` subkey, and the invalid mask."""
        from telemetry.cryptopan import anonymize_by_epoch

        return anonymize_by_epoch(values, self._cryptopans, key_index)

    @cached_property
    def _cryptopans(self) -> list:
        from telemetry.cryptopan import CryptoPAn

        return [None if k is None else CryptoPAn(k) for k in self.keyring.subkeys("cryptopan")]

    def records(self, values: pa.Array, key_index: np.ndarray | None = None) -> pa.Array:
        """Pseudonyms of source-system record ids (trimmed, otherwise as given)."""
        import pyarrow.compute as pc

        from telemetry.hashing import hmac16

        trimmed = pc.utf8_trim_whitespace(values)
        return hmac16(trimmed, self._states["record"], key_index)

    def hash_normalized(self, values: pa.Array, domain: str, key_index: np.ndarray | None = None) -> pa.Array:
        """HMAC of already normalized text in ``domain``."""
        from telemetry.hashing import hmac16

        return hmac16(values, self._states[domain], key_index)


#: The run's table of identifiers seen (shared by its threads) starts afresh past this many.
SEEN_LIMIT = 1 << 20
#: A column whose lookups add more than DIRECT_ABOVE new values per value looked up (rows,
#: or dictionary entries) goes without the table: told by a value sample of its first
#: batch (a dictionary's first batch takes the table: its entries are all new), or by a
#: whole batch's lookup later; one without it whose sample adds fewer than TABLE_BELOW
#: comes back. Only batches of at least DECIDE_MIN values decide. The break-even lies
#: near 0.1 new for E.164 as written and near 0.7 for national notation; at 0.4 the
#: wrong side costs about 1.5x either way. Figures: docs/design.md.
DIRECT_ABOVE = 0.4
TABLE_BELOW = 0.25
DECIDE_MIN = 4096
#: Without the table, values whose hash has its top SAMPLE_BITS bits zero are still
#: looked up and added: one value in 64, wherever it occurs.
SAMPLE_BITS = 6


def value_sample(values: pa.Array) -> np.ndarray:
    """The rows of ``values`` whose value's hash has its top SAMPLE_BITS bits zero: one
    value in 2^SAMPLE_BITS, with every row that holds it (``kernels.intern.sample``), so
    the distinct values among them are about that share of the distinct values of the
    whole array, and a value is in or out wherever it occurs. Nulls are never taken."""
    from kernels.intern import sample
    from telemetry.arrowstr import string_views

    views = string_views(values)
    rows = np.empty(len(values), np.int64)
    return rows[: sample(views.offsets, views.data, views.valid, SAMPLE_BITS, rows)]


def _regions(region_index: np.ndarray) -> pa.DictionaryArray:
    from telemetry.arrowstr import fixed_width
    from telemetry.numbering import region_names

    # the indices made from their buffers: pa.array(index, mask=...) took twice as long
    # (0.40 vs 0.19 ms per 262,144 rows), holding the GIL
    index = region_index.astype(np.int32)
    indices = fixed_width(pa.int32(), index, index >= 0)
    return pa.DictionaryArray.from_arrays(indices, region_names())


def _gathered(rows: np.ndarray, table: "_Table", keys: np.ndarray, epochs: list[int]) -> Identifiers:
    """Per row what the table holds for its number in ``rows`` (-1: a null row), the
    pseudonym under the row's epoch of ``keys`` (null where the epoch is -1)."""
    from telemetry.arrowstr import fixed_width

    n = len(rows)
    null = rows < 0
    nulls = bool(null.any())
    if nulls and not len(table.kind):  # nothing but nulls: nothing to gather from
        table = _Table.nothing()
    at = np.where(null, 0, rows) if nulls else rows
    kind, reason, cc, region_index = table.kind[at], table.reason[at], table.cc[at], table.region_index[at]
    digests = np.zeros(n, "V16")
    valid = np.zeros(n, np.bool_)
    for epoch in epochs:
        if epoch < 0 or epoch not in table.digests:  # no key covers these rows (or no rows): null
            continue
        d, ok = table.digests[epoch]
        if len(epochs) == 1:
            digests, valid = d[at], ok[at]
        else:
            sel = np.flatnonzero(keys == epoch)
            digests[sel], valid[sel] = d[at[sel]], ok[at[sel]]
    if nulls:
        kind[null], reason[null], cc[null], region_index[null], valid[null] = 0, 0, 0, -1, False
    pseudo = fixed_width(pa.binary(16), digests, valid)
    normalized = pa.DictionaryArray.from_arrays(pa.array(at.astype(np.int32), mask=null if nulls else None), table.ids)
    return Identifiers(pseudo, kind, reason, cc, _regions(region_index), normalized)


class _Table(NamedTuple):
    """What the table of identifiers seen held at one moment, by value number: the
    normalization and, per key epoch asked, the digests (16-byte items) and validity."""

    ids: pa.Array
    kind: np.ndarray
    reason: np.ndarray
    cc: np.ndarray
    region_index: np.ndarray
    digests: dict[int, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def nothing(cls) -> "_Table":
        """One null value, for batches of nulls alone."""
        return cls(pa.nulls(1, pa.string()), np.zeros(1, np.int8), np.zeros(1, np.int8), np.zeros(1, np.int16),
                   np.full(1, -1, np.int16), {})  # fmt: skip


class _Seen:
    """The distinct identifiers a run has met, with what each became: its
    normalization (text, kind, reason, calling code, region) and, per key epoch, its
    pseudonym. CDRs name the same subscribers over and over, so a batch costs a
    lookup per distinct value (``kernels.intern``); only values met for the first
    time are normalized and hashed. The threads of a run share it: a lookup reads the
    table outside the lock (``kernels.intern`` reads it exactly while another thread
    adds to it) and adds what it did not find under the lock, and its results stay
    valid whatever other threads add later (the arrays are appended to past the end
    a result holds, never written below it: :class:`_Appended`).

    It holds clear identifiers: it lives only as long as its owner (one run's
    :class:`Pseudonymizer`), is never pickled or written anywhere, and is emptied
    past :data:`SEEN_LIMIT` values, which bounds its memory.
    """

    def __init__(self, region: str | None, states: np.ndarray) -> None:
        self.region = region
        self.states = states
        self._lock = threading.Lock()
        self._generation = 0  # tables emptied so far (_clear)
        self.direct: dict[int, bool] = {}  # column → goes without the table (sample, observe); absent: undecided
        self._clear()

    def _clear(self) -> None:
        from kernels.intern import empty

        self._generation += 1
        self.slots, self.starts, self.arena, self.fill = empty()
        # by value number: the normalized text (bytes, offsets into them, valid), kind, reason,
        # calling code and region; per epoch (V16 digests, valid), for the values hashed so far
        self.text, self.offsets, self.valid = _Appended(np.uint8), _Appended(np.int32, [0]), _Appended(np.bool_)
        self.kind, self.reason = _Appended(np.int8), _Appended(np.int8)
        self.cc, self.region_index = _Appended(np.int16), _Appended(np.int16)
        self.digests: dict[int, tuple[_Appended, _Appended]] = {}

    def lookup(self, values: pa.Array, epochs: list[int]) -> tuple[np.ndarray, _Table, int]:
        """The number of each of ``values`` (repeats allowed; -1 for a null) in the table as
        it stands afterwards, what that table holds (with the digests of ``epochs``), and
        how many values were added."""
        from kernels.intern import TODO, intern
        from telemetry.arrowstr import string_views

        # Most values were met before: they are looked up outside the lock, in the table as
        # it stands (kernels.intern reads it exactly while another thread adds to it);
        # under the lock only the others are added.
        number = np.full(len(values), TODO, np.int64)
        with self._lock:
            table, fill, generation = (self.slots, self.starts, self.arena), self.fill.copy(), self._generation
        if fill[0]:  # an empty table has nothing to find
            views = string_views(values)
            intern(views.offsets, views.data, views.valid, *table, fill, number, False)
        with self._lock:
            new = self._numbers(values, number, generation)
            for epoch in epochs:
                self._hash_new(epoch)
            held = _Table(self._ids(0), self.kind.held(), self.reason.held(), self.cc.held(),
                          self.region_index.held(),
                          {epoch: (self.digests[epoch][0].held(), self.digests[epoch][1].held()) for epoch in epochs})  # fmt: skip
        return number, held, new

    def observe(self, c: int, new: int, looked_up: int) -> None:
        """Column ``c`` added ``new`` values in ``looked_up``: it goes without the table
        from its next batch on when that share is above DIRECT_ABOVE."""
        if looked_up >= DECIDE_MIN and new > DIRECT_ABOVE * looked_up:
            self.direct[c] = True

    def sample(self, c: int, values: pa.Array) -> bool:
        """Whether column ``c`` goes without the table for ``values``, from a value sample
        of them looked up (and added) in the table: values in or out of it wherever they
        occur, so the new values it adds per value looked up are what the whole column's
        lookup would add (repeats within ``values`` and values met before both count).
        An undecided column goes without the table above DIRECT_ABOVE, one without it
        comes back below TABLE_BELOW; fewer than DECIDE_MIN values decide nothing and
        take the table."""
        if len(values) < DECIDE_MIN:
            return self.direct.get(c, False)
        rows = value_sample(values)
        _, _, new = self.lookup(values.take(rows), [])
        bound = TABLE_BELOW if self.direct.get(c, False) else DIRECT_ABOVE
        self.direct[c] = new > bound * len(rows)
        return self.direct[c]

    def _numbers(self, values: pa.Array, number: np.ndarray, generation: int) -> int:
        """Complete ``number``, a lookup of ``values`` in the table of ``generation``:
        the values it did not find (TODO) are added; all of them if the table was
        emptied since, or is now (past SEEN_LIMIT). Returns how many were added."""
        from kernels.intern import TODO, intern
        from telemetry.arrowstr import string_views

        todo = np.flatnonzero(number == TODO) if generation == self._generation else np.arange(len(values))
        if not len(todo):
            return 0
        new = values if len(todo) == len(values) else values.take(todo)
        views = string_views(new)
        longest = int(views.offsets[-1]) - int(views.offsets[0]) + 32 * len(new)  # normalized, at most
        if self.fill[0] + len(todo) > SEEN_LIMIT or int(self.offsets.held()[-1]) + longest >= 2**31:
            self._clear()  # past SEEN_LIMIT values, or past what the text's int32 offsets can say
            todo = np.arange(len(values))
            new, views = values, string_views(values)
        got = np.empty(len(new), np.int64)
        before = int(self.fill[0])
        self.slots, self.starts, self.arena = intern(
            views.offsets, views.data, views.valid, self.slots, self.starts, self.arena, self.fill, got, True
        )
        number[todo] = got
        if self.fill[0] > before:
            self._normalize(before, int(self.fill[0]))
        return int(self.fill[0]) - before

    def _normalize(self, before: int, after: int) -> None:
        """Normalize the values numbered ``before`` … ``after - 1``, just added."""
        from telemetry.arrowstr import string_views
        from telemetry.numbering import normalize_distinct

        lo = self.starts[before]
        offsets = (self.starts[before : after + 1] - lo).astype(np.int32)
        text = self.arena[lo : self.starts[after]]
        new = pa.Array.from_buffers(pa.string(), after - before, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
        norm = normalize_distinct(new, self.region)  # the table's values are distinct
        views = string_views(norm.ids)
        first, last = int(views.offsets[0]), int(views.offsets[-1])
        end = self.offsets.held()[-1]
        self.text.append(views.data[first:last])
        self.offsets.append(views.offsets[1:] - (first - end))
        self.valid.append(views.valid)
        self.kind.append(norm.kind)
        self.reason.append(norm.reason)
        self.cc.append(norm.cc)
        self.region_index.append(norm.region_index)

    def _ids(self, start: int) -> pa.Array:
        """The normalized text of the values numbered from ``start`` on (no copy)."""
        from telemetry.arrowstr import bitmap

        count = self.valid.count
        present, nulls = bitmap(self.valid.held()[start:])
        buffers = [present, pa.py_buffer(self.offsets.held()[start:]), pa.py_buffer(self.text.held())]
        return pa.Array.from_buffers(pa.string(), count - start, buffers, null_count=nulls)

    def _hash_new(self, epoch: int) -> None:
        """HMAC under ``epoch`` the values that have no digest for it yet."""
        from telemetry.arrowstr import validity
        from telemetry.hashing import hmac16

        digests, ok = self.digests.setdefault(epoch, (_Appended("V16"), _Appended(np.bool_)))
        done = digests.count
        if done < self.valid.count:
            todo = self.valid.count - done
            hashed = hmac16(self._ids(done), self.states, np.full(todo, epoch, np.int32))
            digests.append(np.frombuffer(hashed.buffers()[1], "V16", todo))
            ok.append(validity(hashed))


class _Appended:
    """A NumPy array appended to in place: an item once written is never written again,
    so a prefix handed out (:meth:`held`) stays as it was whatever is appended later,
    past its end or into a larger array that takes this one's place. An append copies
    what it appends (and, when it grows, the items before once per doubling), where
    concatenating copied the whole table, under the lock, every batch that added to it."""

    def __init__(self, dtype: object, first: Sequence[int] = ()) -> None:
        self.array = np.empty(1024, dtype)
        self.count = 0
        self.append(np.asarray(first, self.array.dtype))

    def append(self, items: np.ndarray) -> None:
        end = self.count + len(items)
        if end > len(self.array):
            bigger = np.empty(max(2 * len(self.array), end), self.array.dtype)
            bigger[: self.count] = self.array[: self.count]
            self.array = bigger
        self.array[self.count : end] = items
        self.count = end

    def held(self) -> np.ndarray:
        return self.array[: self.count]


def pseudonymize(
    values: pa.Array | pa.ChunkedArray | Sequence[str | None],
    *,
    key: bytes | Keyring,
    domain: str = "subscriber",
    region: str | None = None,
    key_id: str | None = None,
) -> pa.Array | list[str | None]:
    """Pseudonyms of ``values`` under the current epoch of ``key``.

    Given a ``pyarrow`` array: a ``fixed_size_binary(16)`` array, nulls (and
    withheld callers) as null. Given a list: 32-digit hex strings, ``"withheld"``
    for withheld callers, ``None`` for ``None``. ``domain`` is ``"subscriber"``
    (identifiers are normalized first, national notation needs ``region``),
    ``"ip"`` (truncated to /24 or /48 first) or ``"record"``. ``key_id`` picks
    another epoch of a keyring than the current one.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}; got {domain!r}")
    keyring = as_keyring(key)
    key_id = key_id or keyring.current.key_id
    if key_id not in keyring.key_ids():
        raise ValueError(f"key_id {key_id} is not an epoch of this keyring")
    current = keyring.key_ids().index(key_id)
    as_list = not isinstance(values, (pa.Array, pa.ChunkedArray))
    if as_list:
        if isinstance(values, (str, bytes)):
            raise TypeError("values must be a sequence of identifiers or a pyarrow array, not one string")
        array = pa.array(list(values), type=pa.string())
    else:
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise TypeError(f"values must be a pyarrow string array; got {array.type}")
    key_index = np.full(len(array), current, dtype=np.int16)
    engine = Pseudonymizer(keyring, region=region)
    withheld = np.zeros(len(array), dtype=np.bool_)
    if domain == "subscriber":
        from telemetry.numbering import REASONS, Kind

        ids = engine.identifiers(array, key_index)
        bad = np.flatnonzero(ids.reason != 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"values[{i}]: {REASONS[int(ids.reason[i])]}")
        withheld = ids.kind == Kind.WITHHELD
        result = ids.pseudonyms
    elif domain == "ip":
        result, invalid = engine.ips(array, key_index)
        bad = np.flatnonzero(invalid)
        if bad.size:
            raise ValueError(f"values[{int(bad[0])}]: not an IPv4 or IPv6 address")
    else:
        result = engine.records(array, key_index)
    if not as_list:
        return result
    from telemetry.hashing import hex32

    hexes = hex32(result)
    return ["withheld" if w else h for h, w in zip(hexes, withheld.tolist())]


def warmup() -> None:
    """Compile every kernel now (the CLI calls this before timing a run)."""
    keyring = Keyring.from_key(bytes(32))
    sample = pa.array(["+15550100", "tel:+1-555-0101", "anonymous", None, "sip:a@b.example"])
    engine = Pseudonymizer(keyring, region="US")
    index = np.zeros(len(sample), dtype=np.int16)
    engine.identifiers(sample, index)
    engine.ips(pa.array(["192.0.2.1", "2001:db8::1", None]), index[:3])
    engine.records(sample, index)
