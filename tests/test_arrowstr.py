"""telemetry.arrowstr's bitmap helpers against pyarrow's own reading of validity."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from telemetry.arrowstr import bitmap, validity


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
