"""Keyed pseudonyms: HMAC-SHA256 of Arrow string columns (SPEC section 3).

The recipe layer over :mod:`kernels.sha256`. Keys enter once, as midstates
(:func:`midstates`); the kernel never sees key bytes. Where the CPU has the SHA
extensions (:func:`kernels.shani.available`) identifiers of one block are hashed
with them (``hmac_rows_ni``), elsewhere by the portable kernel (``hmac_rows``);
both give the same bytes. Import this module
lazily: it imports Numba.

A ``pa.ChunkedArray`` of values gives one contiguous ``pa.FixedSizeBinaryArray``
(the chunks are hashed into one output buffer, so concatenating costs nothing
and the result lines up with ``key_index`` and the record batch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from kernels import sha256 as _k
from kernels import shani
from telemetry.arrowstr import fixed_width, string_views

PSEUDONYM_BYTES = 16
PSEUDONYM_TYPE = pa.binary(PSEUDONYM_BYTES)


def midstates(subkeys: Sequence[bytes | None]) -> np.ndarray:
    """HMAC-SHA256 inner and outer midstates of each key, shape (K, 2, 8) uint32.

    ``None`` marks a shredded key: its entry is all zero and rows hashed with
    it come out null. Keys longer than 64 bytes are hashed first, as HMAC
    requires; the project's subkeys are 32 bytes.
    """
    if isinstance(subkeys, (bytes, bytearray, memoryview, str)) or not isinstance(
        subkeys, Sequence
    ):
        raise TypeError("subkeys must be a sequence of bytes keys (or None for shredded keys)")
    if len(subkeys) == 0:
        raise ValueError("subkeys must hold at least one key")
    out = np.zeros((len(subkeys), 2, 8), dtype=np.uint32)
    block = np.zeros(64, dtype=np.uint8)
    for i, key in enumerate(subkeys):
        if key is None:
            continue
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"subkeys[{i}] must be bytes or None, not {type(key).__name__}")
        raw = bytes(key)
        if len(raw) > 64:
            raw = hashlib.sha256(raw).digest()
        block[:] = 0
        block[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        _k.key_midstates(block, out[i])
    block[:] = 0  # do not leave key bytes in a buffer the GC frees later
    return out


def _check_states(states: np.ndarray) -> np.ndarray:
    if not isinstance(states, np.ndarray):
        raise TypeError("states must be the numpy array returned by midstates()")
    if (
        states.dtype != np.uint32
        or states.ndim != 3
        or states.shape[1:] != (2, 8)
        or states.shape[0] == 0
    ):
        raise ValueError(
            f"states must have shape (K, 2, 8) and dtype uint32 as midstates() returns; "
            f"got shape {states.shape} dtype {states.dtype}"
        )
    return np.ascontiguousarray(states)


def _check_key_index(key_index: np.ndarray | None, n: int, nkeys: int) -> np.ndarray:
    if key_index is None:
        return np.zeros(n, dtype=np.int32)
    if not isinstance(key_index, np.ndarray):
        raise TypeError("key_index must be a numpy integer array or None")
    if key_index.dtype.kind not in "iu" or key_index.ndim != 1:
        raise TypeError(
            f"key_index must be a 1-D integer array; got {key_index.ndim}-D {key_index.dtype}"
        )
    if len(key_index) != n:
        raise ValueError(
            f"key_index has {len(key_index)} entries for {n} values; it needs one per value"
        )
    if n and (int(key_index.min()) < -1 or int(key_index.max()) >= nkeys):
        raise ValueError(f"key_index entries must be -1 (no key: null) or 0..{nkeys - 1}")
    # One dtype for the kernel: each dtype combination compiles separately.
    return key_index.astype(np.int32, copy=False)


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    if isinstance(values, pa.ChunkedArray):
        chunks = list(values.chunks)
        kind = values.type
    elif isinstance(values, pa.Array):
        chunks = [values]
        kind = values.type
    else:
        raise TypeError(
            f"values must be a pyarrow string array or chunked array, not {type(values).__name__}"
        )
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_null(kind)
    ):
        raise TypeError(f"values must be a pyarrow string or large_string array; got {values.type}")
    return chunks


def hmac_digests(
    values: pa.Array | pa.ChunkedArray,
    states: np.ndarray,
    key_index: np.ndarray | None = None,
    *,
    size: int = PSEUDONYM_BYTES,
) -> pa.FixedSizeBinaryArray:
    """HMAC-SHA256 of each value's UTF-8 bytes under ``states[key_index[i]]``,
    truncated to ``size`` bytes (a multiple of 4, at most 32).

    Without ``key_index`` every row uses key 0. A row is null when its value
    is null, its ``key_index`` is -1 or its key is shredded.
    """
    if not isinstance(size, int) or size <= 0 or size > 32 or size % 4:
        raise ValueError(f"size must be a multiple of 4 between 4 and 32; got {size!r}")
    chunks = _chunks(values)
    states = _check_states(states)
    n = sum(len(c) for c in chunks)
    keys = _check_key_index(key_index, n, states.shape[0])
    out = np.zeros((n, size), dtype=np.uint8)
    valid = np.zeros(n, dtype=np.bool_)
    kernel = _k.hmac_rows_ni if shani.available() else _k.hmac_rows
    start = 0
    for chunk in chunks:
        m = len(chunk)
        if pa.types.is_null(chunk.type):
            start += m  # stays null
            continue
        offsets, data, ok = string_views(chunk)
        kernel(
            offsets,
            data,
            ok,
            keys[start : start + m],
            states,
            out[start : start + m],
            valid[start : start + m],
        )
        start += m
    return fixed_width(pa.binary(size), out, valid)


def hmac16(
    values: pa.Array | pa.ChunkedArray,
    states: np.ndarray,
    key_index: np.ndarray | None = None,
) -> pa.FixedSizeBinaryArray:
    """Pseudonyms: the first 16 bytes of HMAC-SHA256(subkey, value) per row,
    as ``fixed_size_binary(16)``; nulls, ``key_index`` -1 and shredded keys
    give null. ``states`` comes from :func:`midstates`; ``key_index`` (one
    integer per row) picks the epoch key, default key 0."""
    return hmac_digests(values, states, key_index, size=PSEUDONYM_BYTES)


def hex32(pseudonyms: pa.FixedSizeBinaryArray | pa.ChunkedArray) -> list[str | None]:
    """Pseudonyms as 32 lower-case hex digits (the CSV/JSON form); nulls as None."""
    if isinstance(pseudonyms, pa.ChunkedArray):
        return [h for chunk in pseudonyms.chunks for h in hex32(chunk)]
    if (
        not isinstance(pseudonyms, pa.FixedSizeBinaryArray)
        or pseudonyms.type.byte_width != PSEUDONYM_BYTES
    ):
        raise TypeError(
            f"pseudonyms must be a fixed_size_binary(16) array; got {type(pseudonyms).__name__}"
        )
    n = len(pseudonyms)
    data = pseudonyms.buffers()[1]
    if n == 0 or data is None:
        return [None] * n
    start = pseudonyms.offset * PSEUDONYM_BYTES
    text = memoryview(data)[start : start + n * PSEUDONYM_BYTES].hex()
    hexes = [text[32 * i : 32 * i + 32] for i in range(n)]
    if pseudonyms.null_count:
        for i in np.flatnonzero(np.asarray(pseudonyms.is_null())).tolist():
            hexes[i] = None
    return hexes
