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
        from telemetry.arrowstr import filled_values, validity

        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        return filled_values(array, np.int64, 0), validity(array)
    if np.ma.isMaskedArray(array):
        return array.filled(0).astype(np.int64), ~np.ma.getmaskarray(array)
    return np.asarray(array).astype(np.int64), np.ones(n, dtype=np.bool_)


#: Q.850 cause names as FreeSWITCH spells them (``switch_types.h``) → cause value.
Q850_CAUSES: dict[str, int] = {
    "UNSPECIFIED": 0,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42,
    "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44,
    "PRE_EMPTED": 45,
    "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52,
    "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58,
    "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65,
    "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69,
    "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81,
    "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95,
    "MANDATORY_IE_MISSING": 96,
    "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98,
    "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103,
    "PROTOCOL_ERROR": 111,
    "INTERWORKING": 127,
}
#: FreeSWITCH's own causes beyond Q.850 (values above 127): the status they mean.
#: A caller who hangs up or a leg that loses a race to answer is a cancelled
#: attempt, not a network failure.
HANGUP_CAUSE_STATUS: dict[str, str] = {
    "ORIGINATOR_CANCEL": "cancelled",
    "LOSE_RACE": "cancelled",
    "PICKED_OFF": "cancelled",
    "CRASH": "failed",
    "SYSTEM_SHUTDOWN": "failed",
    "MANAGER_REQUEST": "failed",
    "BLIND_TRANSFER": "answered",
    "ATTENDED_TRANSFER": "answered",
    "ALLOTTED_TIMEOUT": "no_answer",
    "USER_CHALLENGE": "failed",
    "MEDIA_TIMEOUT": "failed",
    "PROGRESS_TIMEOUT": "no_answer",
    "USER_NOT_REGISTERED": "failed",
    "GATEWAY_DOWN": "congestion",
    "INVALID_GATEWAY": "failed",
    "INVALID_PROFILE": "failed",
    "INVALID_URL": "failed",
    "NO_PICKUP": "no_answer",
    "SRTP_READ_ERROR": "failed",
    "BOWOUT": "cancelled",
    "BUSY_EVERYWHERE": "busy",
    "DECLINE": "rejected",
    "DOES_NOT_EXIST_ANYWHERE": "failed",
    "NOT_ACCEPTABLE": "failed",
    "UNWANTED": "rejected",
    "NO_IDENTITY": "failed",
    "BAD_IDENTITY_INFO": "failed",
    "UNSUPPORTED_CERTIFICATE": "failed",
    "INVALID_IDENTITY": "failed",
    "STALE_DATE": "failed",
    "REJECT_ALL": "rejected",
}
