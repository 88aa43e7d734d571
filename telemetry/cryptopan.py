"""Prefix-preserving IP address anonymization: Crypto-PAn (SPEC section 12).

Xu, Fan, Ammar, Moon, *Prefix-Preserving IP Address Anonymization*, ICNP 2002,
as their reference implementation (Crypto-PAn 1.0) computes it: the 32-byte key
is an AES-128 key (first 16 bytes) and a pad (last 16 bytes, encrypted once with
that key). Bit ``i`` of an address (from the most significant) is flipped by the
most significant bit of AES(the address's first ``i`` bits, then the pad's
remaining bits). Two addresses sharing exactly an ``n``-bit prefix therefore
map to addresses sharing exactly an ``n``-bit prefix. IPv4 uses the first 32
bits of the 128-bit block, IPv6 all 128 (as yacryptopan extends it).

Every prefix block of every distinct address is independent, so
:meth:`CryptoPAn.anonymize_array` builds them all with NumPy and hands them to
one AES-ECB call per large chunk (hardware AES through ``cryptography``), where
a per-address loop makes 32 or 128 calls per address.

Addresses are read with the grammar of :mod:`telemetry.ipaddr` (whitespace,
``a.b.c.d:port``, ``[v6]:port``, ``%zone``); the output is the bare address,
dotted quad or RFC 5952 text. IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is
anonymized as the IPv4 address it carries, as truncation treats it. Messages
never contain an address. Import lazily: parsing uses :mod:`kernels.ipnet`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.arrowstr import bitmap

KEY_BYTES = 32
#: Prefix blocks per AES call: 2 MiB of blocks, few calls, cache-sized buffers.
CHUNK_BLOCKS = 1 << 17


def _top_bits(width: int) -> np.ndarray:
    """``masks[p]``: the top ``p`` bits of a ``width``-bit word set (p = 0 … 127), as
    uint64 for the high (width 64) or low (width 128, the bits past 64) half."""
    ones = (1 << 64) - 1
    masks = []
    for p in range(128):
        if width == 64:
            keep = min(p, 64)
        else:
            keep = max(p - 64, 0)
        masks.append((ones << (64 - keep)) & ones if keep else 0)
    return np.array(masks, dtype=np.uint64)


_HIGH_MASKS = _top_bits(64)
_LOW_MASKS = _top_bits(128)


class CryptoPAn:
    """Crypto-PAn under one 32-byte key (AES key, then pad)."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"key must be {KEY_BYTES} bytes; got {type(key).__name__}")
        key = bytes(key)
        if len(key) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes; got {len(key)}")
        self._cipher = Cipher(algorithms.AES(key[:16]), modes.ECB())
        pad = self._cipher.encryptor().update(key[16:])
        self._pad_high, self._pad_low = np.frombuffer(pad, ">u8").astype(np.uint64)

    def __repr__(self) -> str:  # never the key
        return "CryptoPAn(<key>)"

    def anonymize(self, text: str) -> str:
        """The anonymized address of one IPv4 or IPv6 address text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        out, _ = self.anonymize_array(pa.array([text], pa.string()))
        if not out[0].is_valid:
            raise ValueError("text is not an IPv4 or IPv6 address")
        return out[0].as_py()

    def anonymize_array(self, values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
        """Anonymized addresses of a string array (chunked, large or dictionary
        encoded too) and a boolean mask of the rows that are not an IP address.

        Null and blank rows give null and are not invalid; invalid rows give null.
        Each distinct text is parsed and anonymized once.
        """
        from kernels import ipnet
        from telemetry.arrowstr import plain_strings, string_views

        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            raise TypeError(f"values must be a pyarrow string array, not {type(values).__name__}")
        kind_of = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
        if not (pa.types.is_string(kind_of) or pa.types.is_large_string(kind_of) or pa.types.is_null(kind_of)):
            raise TypeError(f"values must be a pyarrow string or large_string array; got {values.type}")
        if pa.types.is_null(kind_of):
            return pa.nulls(len(values), pa.string()), np.zeros(len(values), np.bool_)
        encoded = pc.dictionary_encode(plain_strings(values))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        texts = encoded.dictionary
        kind = np.zeros(len(texts), np.int8)
        words = np.zeros((len(texts), 8), np.uint16)
        if len(texts):
            ipnet.address_rows(*string_views(texts), kind, words)
        self._anonymize_words(kind, words)
        offsets = np.zeros(len(texts) + 1, np.int64)
        data = np.empty(len(texts) * ipnet.MAX_TEXT, np.uint8)
        used = ipnet.format_rows(kind, words, offsets, data)
        present, nulls = bitmap(kind > 0)
        text_type, offsets = (pa.string(), offsets.astype(np.int32)) if used < 2**31 else (pa.large_string(), offsets)
        anonymized = pa.Array.from_buffers(
            text_type, len(texts), [present, pa.py_buffer(offsets), pa.py_buffer(data[:used].copy())],
            null_count=nulls,
        )
        indices = encoded.indices
        out = anonymized.take(indices)
        invalid = np.zeros(len(indices), np.bool_)
        if (kind < 0).any():
            from telemetry.arrowstr import validity

            index = indices.to_numpy(zero_copy_only=False)
            present = validity(indices)
            invalid[present] = kind[index[present].astype(np.int64)] < 0
        return out, invalid

    def _anonymize_words(self, kind: np.ndarray, words: np.ndarray) -> None:
        """Replace the addresses in ``words`` (as ``kernels.ipnet.address_rows`` fills
        it) by their anonymized values, in place."""
        v4 = np.flatnonzero(kind == 4)
        if v4.size:
            value = (words[v4, 6].astype(np.uint64) << np.uint64(16)) | words[v4, 7]
            high = self._flips(value << np.uint64(32), np.zeros_like(value), 32)[0] >> np.uint64(32)
            value ^= high
            words[v4, 6] = (value >> np.uint64(16)).astype(np.uint16)
            words[v4, 7] = (value & np.uint64(0xFFFF)).astype(np.uint16)
        v6 = np.flatnonzero(kind == 6)
        if v6.size:
            halves = words[v6].astype(">u2").view(">u8").astype(np.uint64)  # (n, 2): high, low
            high, low = self._flips(halves[:, 0], halves[:, 1], 128)
            halves[:, 0] ^= high
            halves[:, 1] ^= low
            words[v6] = halves.astype(">u8").view(">u2").astype(np.uint16)

    def _flips(self, high: np.ndarray, low: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
        """The flip bits (top ``levels`` bits of a 128-bit word, as high and low
        uint64 halves) of addresses given left-aligned in 128 bits.

        A prefix block depends only on the prefix, so the addresses are sorted and
        each encrypts only the blocks of the prefixes the address before it does not
        share (for addresses clustered in subnets, a few of their 32 or 128); the
        other bits are copied from the address before (``kernels.ipnet``)."""
        from kernels import ipnet

        n = len(high)
        order = np.argsort(high) if levels <= 64 else np.lexsort((low, high))  # IPv4: low is zero
        high, low = high[order].view(np.int64), low[order].view(np.int64)
        lcp = np.empty(n, np.int64)
        ipnet.shared_prefix(high, low, lcp)
        first = np.minimum(lcp, levels - 1) + 1  # the first level whose prefix is new
        own = np.empty(int((levels - first).sum()), np.uint8)
        buffer = np.empty((CHUNK_BLOCKS, 16), np.uint8)
        pads = self._pad_high.view(np.int64), self._pad_low.view(np.int64)
        encryptor = self._cipher.encryptor()  # per call: contexts are not shared between threads
        row = done = 0
        while row < n:
            row, used = ipnet.prefix_blocks(high, low, first, levels, *pads, row, buffer)
            cipher = np.frombuffer(encryptor.update(buffer[:used].reshape(-1)), np.uint8)
            own[done : done + used] = cipher[::16] >> 7
            done += used
        flips = np.empty((2, n), np.int64)
        ipnet.assemble_flips(first, own, levels, flips[0], flips[1])
        out = np.empty((2, n), np.uint64)
        out[:, order] = flips.view(np.uint64)
        return out[0], out[1]


def anonymize_by_epoch(
    values: pa.Array | pa.ChunkedArray, pans: list[CryptoPAn | None], key_index: np.ndarray
) -> tuple[pa.Array, np.ndarray]:
    """:meth:`CryptoPAn.anonymize_array` of each row under the Crypto-PAn of its key
    epoch (``pans[key_index[i]]``); null, and not invalid, where ``key_index`` is
    negative or the epoch has no key (those rows are quarantined for that reason)."""
    from telemetry.arrowstr import plain_strings

    values = plain_strings(values)
    key_index = np.asarray(key_index)
    n = len(values)
    usable = np.array([p is not None for p in pans] + [False])[key_index]  # index -1 reads the False
    epochs = np.unique(key_index[usable])
    if len(epochs) == 1 and usable.all():
        return pans[int(epochs[0])].anonymize_array(values)  # type: ignore[union-attr]
    parts, invalid = [], np.zeros(n, np.bool_)
    order = []
    for epoch in epochs.tolist():
        rows = np.flatnonzero(usable & (key_index == epoch))
        out, bad = pans[epoch].anonymize_array(values.take(pa.array(rows)))  # type: ignore[union-attr]
        parts.append(out)
        invalid[rows] = bad
        order.append(rows)
    rest = np.flatnonzero(~usable)
    parts.append(pa.nulls(len(rest), pa.string()))
    order.append(rest)
    position = np.empty(n, np.int64)
    position[np.concatenate(order)] = np.arange(n)
    return pa.concat_arrays(parts).take(pa.array(position)), invalid
