"""IP addresses to truncated networks (SPEC section 3), the recipe over :mod:`kernels.ipnet`.

By default an IPv4 address keeps its /24 and an IPv6 address its /48; the
network text (``192.0.2.0/24``, ``2001:db8:1::/48``, as Python's
``ipaddress.ip_network(...).compressed`` prints it) is what the caller then
pseudonymizes with :func:`telemetry.hashing.hmac16` under the ``ip`` subkey.

Accepted around the address: surrounding whitespace, ``a.b.c.d:port``,
``[v6]``, ``[v6]:port`` and a ``%zone`` suffix on IPv6. IPv4-mapped IPv6
(``::ffff:192.0.2.1``) is truncated as the IPv4 address it carries. Null and
blank values are null and not invalid (an absent address is not an error);
anything else that does not parse is null and flagged in the invalid mask so
the pipeline can quarantine the row. Import this module lazily: it imports Numba.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels import ipnet as _k
from telemetry.arrowstr import bitmap, string_views

V4_PREFIX = 24
V6_PREFIX = 48


def truncate_ips(
    values: pa.Array | pa.ChunkedArray,
    *,
    v4_prefix: int = V4_PREFIX,
    v6_prefix: int = V6_PREFIX,
) -> tuple[pa.StringArray, np.ndarray]:
    """Networks of the addresses in ``values`` and a boolean mask of the rows
    that are not an IP address. A chunked array gives one concatenated result."""
    if isinstance(v4_prefix, bool) or not isinstance(v4_prefix, int) or not 0 <= v4_prefix <= 32:
        raise ValueError(f"v4_prefix must be an integer from 0 to 32; got {v4_prefix!r}")
    if isinstance(v6_prefix, bool) or not isinstance(v6_prefix, int) or not 0 <= v6_prefix <= 128:
        raise ValueError(f"v6_prefix must be an integer from 0 to 128; got {v6_prefix!r}")
    if isinstance(values, pa.ChunkedArray):
        chunks = list(values.chunks)
    elif isinstance(values, pa.Array):
        chunks = [values]
    else:
        raise TypeError(f"values must be a pyarrow string array, not {type(values).__name__}")
    kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
        raise TypeError(f"values must be a pyarrow string or large_string array; got {values.type}")
    n = sum(len(c) for c in chunks)
    invalid = np.zeros(n, dtype=np.bool_)
    out_valid = np.zeros(n, dtype=np.bool_)
    # int64 offsets while filling, so chunks can be written into one buffer.
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    out_data = np.empty(n * _k.MAX_TEXT, dtype=np.uint8)
    row = 0
    pos = 0
    for chunk in chunks:
        m = len(chunk)
        if m and not pa.types.is_null(chunk.type):
            offsets, data, ok = string_views(chunk)
            used = _k.truncate_rows(
                offsets, data, ok, v4_prefix, v6_prefix,
                out_offsets[row : row + m + 1], out_data[pos:],
                out_valid[row : row + m], invalid[row : row + m],
            )  # fmt: skip
            out_offsets[row : row + m + 1] += pos
            pos += used
        else:
            out_offsets[row : row + m + 1] = pos
        row += m
    text = out_data[:pos].copy()  # release the worst-case allocation
    present, nulls = bitmap(out_valid)
    if pos < 2**31:
        kind_out, offs = pa.string(), out_offsets.astype(np.int32)
    else:
        kind_out, offs = pa.large_string(), out_offsets
    networks = pa.Array.from_buffers(
        kind_out, n, [present, pa.py_buffer(offs), pa.py_buffer(text)], null_count=nulls
    )
    return networks, invalid
