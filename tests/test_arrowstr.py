"""telemetry.arrowstr's bitmap helpers against pyarrow's own reading of validity."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from telemetry.arrowstr import bitmap, fixed_width, validity


@given(st.lists(st.booleans(), max_size=200))
def test_bitmap_is_what_arrow_reads_as_validity(flags: list[bool]) -> None:
    valid = np.array(flags, dtype=np.bool_)
    present, nulls = bitmap(valid)
    values = np.arange(len(valid), dtype=np.int32)
    array = pa.Array.from_buffers(pa.int32(), len(valid), [present, pa.py_buffer(values)], null_count=nulls)
    array.validate(full=True)
    assert nulls == flags.count(False)
    assert (present is None) == all(flags)
    assert array.is_valid().to_pylist() == flags
    assert validity(array).tolist() == flags  # and back


@given(st.lists(st.tuples(st.booleans(), st.floats(allow_nan=False)), max_size=200))
def test_fixed_width_is_pyarrows_masked_array(rows: list[tuple[bool, float]]) -> None:
    valid = np.array([ok for ok, _ in rows], dtype=np.bool_)
    values = np.array([v for _, v in rows], dtype=np.float64)
    array = fixed_width(pa.float64(), np.repeat(values, 2)[::2], valid)  # a strided view of values
    array.validate(full=True)
    assert array.equals(pa.array(values, pa.float64(), mask=~valid))
    digests = np.arange(16 * len(rows), dtype=np.uint64).astype(np.uint8).reshape(len(rows), 16)
    binary = fixed_width(pa.binary(16), digests, valid)
    assert binary.to_pylist() == [bytes(d) if ok else None for d, ok in zip(digests, valid)]
