"""Keyed pseudonyms of identifiers (SPEC section 3): normalize, then HMAC.

:class:`Pseudonymizer` is what the pipeline holds per run: the keyring's
midstates per domain, the configured region and rate deck. :func:`pseudonymize`
is the notebook-facing function of SPEC section 7.
"""

from __future__ import annotations

import threading
from functools import cached_property
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.keys import Keyring, as_keyring

if TYPE_CHECKING:
    from telemetry.numbering import Normalized

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

        The work is done once per distinct value of all the columns together (CDRs
        name the same subscribers over and over, as callers and as callees) and per
        key epoch present, then gathered per row.
        """
        from telemetry.numbering import distinct_entries, per_row, region_names

        arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        if len({len(a) for a in arrays}) > 1:
            raise ValueError("identifier columns must have the same number of rows")
        n = len(arrays[0])
        values, entries = distinct_entries(arrays)
        distinct = len(values)
        keys = np.zeros(n, np.int64) if key_index is None else np.asarray(key_index, np.int64)
        if n and keys.min() == keys.max():  # one epoch: the common case, no sort
            epochs, slot = keys[:1], np.zeros(n, np.int64)
        else:
            epochs, slot = np.unique(keys, return_inverse=True)
        norm, hashed = self._seen.lookup(values, [e for e in epochs.tolist() if e >= 0])
        # one 16-byte item per digest: NumPy gathers items ten times faster than (n, 16) rows
        digests = np.zeros((len(epochs), distinct + 1), "V16")
        ok = np.zeros((len(epochs), distinct + 1), np.bool_)
        for e, epoch in enumerate(epochs.tolist()):
            if epoch >= 0:  # else no key covers these rows: null
                digests[e, :distinct], ok[e, :distinct] = hashed[epoch]
        out = []
        for row in entries:
            flat = slot.reshape(n) * (distinct + 1) + row
            valid = ok.reshape(-1)[flat]
            nulls = n - int(np.count_nonzero(valid))
            bitmap = None if nulls == 0 else pa.py_buffer(np.packbits(valid, bitorder="little"))
            pseudo = pa.Array.from_buffers(
                pa.binary(16), n, [bitmap, pa.py_buffer(digests.reshape(-1)[flat])], null_count=nulls
            )
            kind, reason, cc, region_index = per_row(norm, row)
            region_index = region_index.astype(np.int32)
            region = pa.DictionaryArray.from_arrays(pa.array(region_index, mask=region_index < 0), region_names())
            indices = pa.array(row, mask=row == distinct, type=pa.int32())
            normalized = pa.DictionaryArray.from_arrays(indices, norm.ids)
            out.append(Identifiers(pseudo, kind, reason, cc, region, normalized))
        return out

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


class _Seen:
    """The distinct identifiers a run has met, with what each became: its
    normalization (text, kind, reason, calling code, region) and, per key epoch, its
    pseudonym. CDRs name the same subscribers over and over, so a batch costs a
    lookup per distinct value (``kernels.intern``); only values met for the first
    time are normalized and hashed. The threads of a run share it: a lookup reads the
    table outside the lock (``kernels.intern`` reads it exactly while another thread
    adds to it) and adds what it did not find under the lock, and its results stay
    valid whatever other threads add later (the result arrays are replaced, never
    changed in place).

    It holds clear identifiers: it lives only as long as its owner (one run's
    :class:`Pseudonymizer`), is never pickled or written anywhere, and is emptied
    past :data:`SEEN_LIMIT` values, which bounds its memory.
    """

    def __init__(self, region: str | None, states: np.ndarray) -> None:
        self.region = region
        self.states = states
        self._lock = threading.Lock()
        self._generation = 0  # tables emptied so far (_clear)
        self._clear()

    def _clear(self) -> None:
        from kernels.intern import empty

        self._generation += 1
        self.slots, self.starts, self.arena, self.fill = empty()
        self.ids = pa.array([], pa.string())
        self.kind = np.zeros(0, np.int8)
        self.reason = np.zeros(0, np.int8)
        self.cc = np.zeros(0, np.int16)
        self.region_index = np.zeros(0, np.int16)
        self.digests: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # epoch → (V16 digests, valid)

    def lookup(
        self, values: pa.Array, epochs: list[int]
    ) -> tuple[Normalized, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """The normalization of ``values`` (no nulls, repeats allowed: dictionaries), and per
        key epoch of ``epochs`` their digests (16-byte items) and validity."""
        from kernels.intern import TODO, intern
        from telemetry.arrowstr import string_views
        from telemetry.numbering import Normalized

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
            self._numbers(values, number, generation)
            for epoch in epochs:
                self._hash_new(epoch)
            ids, kind, reason, cc, region_index = self.ids, self.kind, self.reason, self.cc, self.region_index
            digests = {epoch: self.digests[epoch] for epoch in epochs}
        norm = Normalized(ids.take(number), kind[number], reason[number], cc[number], region_index[number])
        return norm, {epoch: (d[number], ok[number]) for epoch, (d, ok) in digests.items()}

    def _numbers(self, values: pa.Array, number: np.ndarray, generation: int) -> None:
        """Complete ``number``, a lookup of ``values`` in the table of ``generation``:
        the values it did not find (TODO) are added; all of them if the table was
        emptied since, or is now (past SEEN_LIMIT)."""
        from kernels.intern import TODO, intern
        from telemetry.arrowstr import string_views

        todo = np.flatnonzero(number == TODO) if generation == self._generation else np.arange(len(values))
        if not len(todo):
            return
        if self.fill[0] + len(todo) > SEEN_LIMIT:
            self._clear()
            todo = np.arange(len(values))
        new = values if len(todo) == len(values) else values.take(todo)
        views = string_views(new)
        got = np.empty(len(new), np.int64)
        before = int(self.fill[0])
        self.slots, self.starts, self.arena = intern(
            views.offsets, views.data, views.valid, self.slots, self.starts, self.arena, self.fill, got, True
        )
        number[todo] = got
        if self.fill[0] > before:
            self._normalize(before, int(self.fill[0]))

    def _normalize(self, before: int, after: int) -> None:
        """Normalize the values numbered ``before`` … ``after - 1``, just added."""
        from telemetry.numbering import normalize_distinct

        lo = self.starts[before]
        offsets = (self.starts[before : after + 1] - lo).astype(np.int32)
        text = self.arena[lo : self.starts[after]]
        new = pa.Array.from_buffers(pa.string(), after - before, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
        norm = normalize_distinct(new, self.region)  # the table's values are distinct
        self.ids = pa.concat_arrays([self.ids, norm.ids])
        self.kind = np.concatenate([self.kind, norm.kind])
        self.reason = np.concatenate([self.reason, norm.reason])
        self.cc = np.concatenate([self.cc, norm.cc])
        self.region_index = np.concatenate([self.region_index, norm.region_index])

    def _hash_new(self, epoch: int) -> None:
        """HMAC under ``epoch`` the values that have no digest for it yet."""
        from telemetry.arrowstr import validity
        from telemetry.hashing import hmac16

        digests, ok = self.digests.get(epoch, (np.zeros(0, "V16"), np.zeros(0, np.bool_)))
        done = len(digests)
        if done < len(self.ids):
            todo = len(self.ids) - done
            hashed = hmac16(self.ids.slice(done), self.states, np.full(todo, epoch, np.int32))
            digests = np.concatenate([digests, np.frombuffer(hashed.buffers()[1], "V16", todo)])
            ok = np.concatenate([ok, validity(hashed)])
        self.digests[epoch] = digests, ok  # also when nothing is new: a batch of nulls first


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
