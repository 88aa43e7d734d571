"""The status vocabulary of SPEC 2.1: spellings readers meet, and the status a
SIP code or Q.850 cause implies when a source gives no status of its own.

Every reader maps onto the same vocabulary through :func:`status_codes`, so a
vendor module only adds spellings here (``STATUS_ALIASES``) instead of keeping
its own table.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry.schema import CHANNELS, DIRECTIONS, STATUSES

#: Spellings met in the field → canonical status. Keys are lower case with runs of
#: blanks, hyphens and underscores folded to one underscore (see :func:`fold`).
STATUS_ALIASES: dict[str, str] = {
    **{s: s for s in STATUSES},
    "noanswer": "no_answer",
    "no_answer": "no_answer",
    "canceled": "cancelled",
    "cancel": "cancelled",
    "busy_here": "busy",
    "fail": "failed",
    "failure": "failed",
    "completed": "answered",  # Twilio call status
    "sent": "enroute",  # Twilio message status: handed to the carrier, not final
    "queued": "accepted",
    "sending": "enroute",
    "received": "delivered",
    "read": "delivered",
    # SMPP delivery-receipt ``stat:`` values
    "delivrd": "delivered",
    "undeliv": "undelivered",
    "rejectd": "rejected",
    "acceptd": "accepted",
}
CHANNEL_ALIASES: dict[str, str] = {**{c: c for c in CHANNELS}, "call": "voice", "text": "sms"}
DIRECTION_ALIASES: dict[str, str] = {
    **{d: d for d in DIRECTIONS},
    "outgoing": "outbound",
    "incoming": "inbound",
    "out": "outbound",
    "in": "inbound",
    "outbound_api": "outbound",  # Twilio
    "outbound_dial": "outbound",
    "outbound_call": "outbound",
    "outbound_reply": "outbound",
}

_ANSWERED, _BUSY, _NO_ANSWER, _REJECTED, _CANCELLED, _FAILED, _CONGESTION = (
    STATUSES.index(s)
    for s in ("answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion")
)
_SIP = {
    486: _BUSY,
    600: _BUSY,
    480: _NO_ANSWER,
    408: _NO_ANSWER,
    603: _REJECTED,
    487: _CANCELLED,
    503: _CONGESTION,
}
_Q850 = {17: _BUSY, 18: _NO_ANSWER, 19: _NO_ANSWER, 21: _REJECTED, 34: _CONGESTION, 42: _CONGESTION}
#: Q.850 causes of a normal release: the call was answered, unless we know it was not.
_Q850_NORMAL = (16, 31)


def fold(text: str) -> str:
    """The lookup key of a spelling: lower case, blanks/hyphens/underscores → ``_``."""
    out = []
    for part in text.strip().lower().replace("-", " ").replace("_", " ").split():
        out.append(part)
    return "_".join(out)


def status_from_codes(
    sip: pa.Array | np.ndarray | None,
    q850: pa.Array | np.ndarray | None,
    answered: pa.Array | np.ndarray | None = None,
) -> pa.DictionaryArray:
    """Status implied by SIP codes and Q.850 causes (SPEC 2.1), one per row.

    ``sip`` and ``q850`` are integer arrays with nulls where unknown (either may be
    None: all unknown). The SIP code wins when both are known: it is the final
    answer the caller saw. 2xx → answered; 486, 600 → busy; 480, 408 → no_answer;
    603 → rejected; 487 → cancelled; 503 → congestion; any other code → failed.
    Q.850 alone: 17 busy; 18, 19 no_answer; 21 rejected; 34, 42 congestion;
    16, 31 (normal clearing) answered unless ``answered`` (optional bool per row,
    e.g. answer_time present) says otherwise, then cancelled — the caller hung up
    before answer; any other cause → failed. Rows with neither give null.
    Returns ``dictionary<int32, string>`` over :data:`telemetry.schema.STATUSES`.
    """
    n = _length(sip, q850, answered)
    sip_v, sip_ok = _values(sip, n)
    q_v, q_ok = _values(q850, n)
    out = np.full(n, -1, dtype=np.int32)

    q_status = np.full(n, _FAILED, dtype=np.int32)
    for cause, status in _Q850.items():
        q_status[q_v == cause] = status
    normal = np.isin(q_v, _Q850_NORMAL)
    q_status[normal] = _ANSWERED
    if answered is not None:
        ans_v, ans_ok = _values(answered, n)
        q_status[normal & ans_ok & (ans_v == 0)] = _CANCELLED
    out[q_ok] = q_status[q_ok]

    s_status = np.full(n, _FAILED, dtype=np.int32)
    s_status[(sip_v >= 200) & (sip_v < 300)] = _ANSWERED
    for code, status in _SIP.items():
        s_status[sip_v == code] = status
    out[sip_ok] = s_status[sip_ok]

    indices = pa.array(out, mask=out < 0, type=pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(STATUSES, pa.string()))


def _length(*arrays) -> int:
    lengths = {len(a) for a in arrays if a is not None}
    if len(lengths) != 1:
        raise ValueError("status_from_codes: sip, q850 and answered must have one common length")
    return lengths.pop()


def _values(array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values with nulls as 0, known mask)."""
    if array is None:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    if isinstance(array, (pa.Array, pa.ChunkedArray)):
        known = ~np.asarray(array.is_null(), dtype=np.bool_)
        values = np.asarray(array.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return values, known
    if np.ma.isMaskedArray(array):
        return array.filled(0).astype(np.int64), ~np.ma.getmaskarray(array)
    return np.asarray(array).astype(np.int64), np.ones(n, dtype=np.bool_)
