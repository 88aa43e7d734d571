"""Zero-copy NumPy views of Arrow arrays (strings, fixed-width values), and validity masks.

Handles ``string`` and ``large_string``, sliced arrays (``array.offset``),
absent validity bitmaps and read-only buffers. Chunked arrays are handled by
the callers one chunk at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa


class StringViews(NamedTuple):
    """``offsets[i]:offsets[i+1]`` are the bytes of row ``i`` in ``data``;
    ``valid[i]`` is False for nulls. ``offsets`` has ``len + 1`` entries (int32 or
    int64, as the array stores them); ``data`` is read-only uint8."""

    offsets: np.ndarray
    data: np.ndarray
    valid: np.ndarray


def string_views(array: pa.Array) -> StringViews:
    """Views of one Arrow string chunk; raises ``TypeError`` for other types."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        offset_type = np.int32
    elif pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
        offset_type = np.int64
    else:
        raise TypeError(f"expected a string array, got {array.type}")
    n = len(array)
    offsets_buf, data_buf = array.buffers()[1:3]
    if offsets_buf is None:  # an empty array may come without buffers
        offsets = np.zeros(n + 1, dtype=offset_type)
    else:
        offsets = np.frombuffer(offsets_buf, dtype=offset_type)[array.offset : array.offset + n + 1]
    if data_buf is None:
        data = np.zeros(0, dtype=np.uint8)
    else:
        data = np.frombuffer(data_buf, dtype=np.uint8)
    return StringViews(offsets, data, validity(array))


def plain_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One plain string array: chunks concatenated, dictionaries decoded."""
    if isinstance(values, pa.ChunkedArray):
        chunks = [plain_strings(c) for c in values.chunks]
        return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())
    return values.dictionary_decode() if pa.types.is_dictionary(values.type) else values


def numeric_values(array: pa.Array) -> np.ndarray:
    """The values of a fixed-width numeric array (zero-copy); a null row holds
    whatever its slot holds, so read :func:`validity` beside them."""
    n = len(array)
    if n == 0:
        return np.zeros(0, array.type.to_pandas_dtype())
    return np.frombuffer(array.buffers()[1], array.type.to_pandas_dtype())[array.offset : array.offset + n]


def filled_values(array: pa.Array, dtype: type, null: float) -> np.ndarray:
    """A numeric (or timestamp) Arrow array as a new NumPy array of ``dtype``, ``null``
    where null, read from its buffers: ``fill_null`` and ``to_numpy`` walk the
    validity bitmap bit by bit (~1 ms per 262,144 rows; this takes a twentieth)."""
    if pa.types.is_timestamp(array.type):
        array = array.cast(pa.int64())
    values = numeric_values(array)
    if not array.null_count:
        return values.astype(dtype)
    from kernels.aggregate import with_nulls

    out = np.empty(len(array), dtype)
    with_nulls(values, validity(array), out.dtype.type(null), out)
    return out


def bitmap(valid: np.ndarray) -> tuple[pa.Buffer | None, int]:
    """The Arrow validity bitmap of ``valid`` (bool per row) and its null count; no
    bitmap when no row is null (:func:`validity`'s inverse)."""
    nulls = len(valid) - int(np.count_nonzero(valid))
    return (pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None), nulls


def fixed_width(kind: pa.DataType, values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """``values`` (one row per element, or per ``kind``'s bytes) as an Arrow array of
    ``kind``, null where ``valid`` is False, made from their buffers: ``pa.array(values,
    mask=...)`` converts the mask value by value (about 30 against 5 µs a column of
    30,000 rows) and holds the GIL meanwhile."""
    present, nulls = bitmap(valid)
    return pa.Array.from_buffers(kind, len(valid), [present, pa.py_buffer(np.ascontiguousarray(values))], nulls)


def validity(array: pa.Array) -> np.ndarray:
    """``True`` per non-null row (bool array), unpacked from the validity bitmap at
    once: ``is_valid()`` + NumPy conversion go bit by bit, ten times slower."""
    n = len(array)
    if array.null_count == 0:
        return np.ones(n, dtype=np.bool_)
    if pa.types.is_null(array.type) or array.buffers()[0] is None:  # nulls without a bitmap
        return np.asarray(array.is_valid(), dtype=np.bool_)
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, count=array.offset + n, bitorder="little")[array.offset :].view(np.bool_)
