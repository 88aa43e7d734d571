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


def _table(size: int, statuses: dict[int, int]) -> np.ndarray:
    """Code → status index for codes 0 … size − 1: ``statuses``, failed for any other."""
    table = np.full(size, _FAILED, dtype=np.int32)
    table[list(statuses)] = list(statuses.values())
    return table


#: SIP final response → status; 408 is failed here and no_answer after alerting.
_SIP_STATUS = _table(700, {**dict.fromkeys(range(200, 300), _ANSWERED), 486: _BUSY, 600: _BUSY,
                           480: _NO_ANSWER, 603: _REJECTED, 487: _CANCELLED, 503: _CONGESTION})
#: Q.850 cause → status; 16, 31 (normal clearing): answered unless the record shows no answer.
_Q850_STATUS = _table(128, {16: _ANSWERED, 31: _ANSWERED, 17: _BUSY, 18: _NO_ANSWER,
                            19: _NO_ANSWER, 21: _REJECTED, 34: _CONGESTION, 42: _CONGESTION})
#: SIP 408 Request Timeout: no_answer only after alerting (SPEC 2.1), else the route's failure.
_TIMEOUT = 408
#: Q.850 19 "no answer from user (user alerted)": the cause itself says the callee was alerted.
_ALERTED_CAUSE = 19


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
    alerted: pa.Array | np.ndarray | None = None,
) -> pa.DictionaryArray:
    """Status implied by SIP codes and Q.850 causes (SPEC 2.1), one per row.

    ``sip`` and ``q850`` are integer arrays with nulls where unknown (either may be
    None: all unknown). What else the record shows, from :func:`shown`:
    ``answered`` (bool per row, null or None: cannot tell) — True when it shows an
    answer, False when it shows there was none; ``alerted`` (bool per row, null or
    None: nothing shows it) — True when it shows the callee was alerted (a 180/183).

    A record that shows an answer is answered whatever its codes: a failure code then
    belongs to what followed the answer (a re-INVITE, a BYE, another fork) and a
    release cause says how the answered call ended. Otherwise the SIP code wins when
    both are known: it is the final answer the caller saw. 2xx → answered (the 2xx
    is the answer, even where the answer time is missing); 486, 600 → busy; 480 →
    no_answer; 408 → no_answer after alerting (``alerted``, or Q.850 19 "user
    alerted"), else failed; 603 → rejected; 487 → cancelled; 503 → congestion; any
    other code → failed. Q.850 alone: 17 busy; 18, 19 no_answer; 21 rejected; 34, 42
    congestion; 16, 31 (normal clearing) answered unless ``answered`` says there was
    no answer, then cancelled — the caller hung up before answer; any other cause →
    failed. Rows with neither give null. Returns ``dictionary<int32, string>`` over
    :data:`telemetry.schema.STATUSES`.
    """
    n = _length(sip, q850, answered, alerted)
    sip_v, sip_ok = _values(sip, n)
    q_v, q_ok = _values(q850, n)
    ans_v, ans_ok = _values(answered, n)
    alert_v, alert_ok = _values(alerted, n)
    answer_shown = ans_ok & (ans_v != 0)

    # one table lookup per row (codes out of range read as "any other": failed)
    q_status = _Q850_STATUS[np.clip(q_v, 0, len(_Q850_STATUS) - 1)]
    abandoned = (q_status == _ANSWERED) & ans_ok & (ans_v == 0)  # normal clearing, no answer
    q_status[abandoned] = _CANCELLED
    s_status = _SIP_STATUS[np.clip(sip_v, 0, len(_SIP_STATUS) - 1)]
    rang = (alert_ok & (alert_v != 0)) | (q_ok & (q_v == _ALERTED_CAUSE))
    s_status[(sip_v == _TIMEOUT) & rang] = _NO_ANSWER
    out = np.where(sip_ok, s_status, np.where(q_ok, q_status, -1)).astype(np.int32)
    out[answer_shown & (sip_ok | q_ok)] = _ANSWERED

    indices = pa.array(out, mask=out < 0, type=pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(STATUSES, pa.string()))


def shown(
    answer_time: pa.Array | None,
    duration_ms: pa.Array | None,
    pdd_ms: pa.Array | None,
    *,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """What canonical columns show of a call's progress: ``(answered, alerted)``.

    ``answered`` is a masked bool array over the ``n`` rows: True where
    ``answer_time`` is present or ``duration_ms`` is positive; False where neither
    and the source gives answer times (an empty one means "not answered") or a
    duration of 0; masked where it cannot tell. ``alerted`` is True where
    ``pdd_ms`` is present — by SPEC 2 post-dial delay runs to the first 180/183, or
    to the 200 when none came — or the call was answered. A column is None when the
    source does not give it.
    """
    answer = _present(answer_time, n)
    talk_v, talk_ok = _values(duration_ms, n)
    yes = answer | (talk_ok & (talk_v > 0))
    no = ~yes & ((answer_time is not None) | talk_ok)
    answered = np.ma.masked_array(yes, mask=~(yes | no))
    return answered, yes | _present(pdd_ms, n)


def _present(array: pa.Array | None, n: int) -> np.ndarray:
    if array is None:
        return np.zeros(n, dtype=np.bool_)
    from telemetry.arrowstr import validity

    return validity(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)


def _length(*arrays) -> int:
    lengths = {len(a) for a in arrays if a is not None}
    if len(lengths) != 1:
        raise ValueError(
            "status_from_codes: sip, q850, answered and alerted must have one common length"
        )
    return lengths.pop()


def _values(array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values with nulls as 0, known mask)."""
    if array is None:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    if isinstance(array, (pa.Array, pa.ChunkedArray)):
        from telemetry.arrowstr import filled_values, validity

        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_boolean(array.type):
            array = array.cast(pa.int8())
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
#: FreeSWITCH's own causes beyond Q.850 (values above 127): the status they mean
#: when the record shows no answer (an answered call is answered however it ended).
#: A caller who hangs up or a leg that loses a race to answer is a cancelled
#: attempt, not a network failure. ``PROGRESS_TIMEOUT`` is only ever raised on a leg
#: that has neither rung, answered nor sent early media (``switch_ivr_originate.c``,
#: ``check_per_channel_timeouts``): the route's failure. The timers of
#: :data:`RING_TIMERS` fire before or after ringing alike.
HANGUP_CAUSE_STATUS: dict[str, str] = {
    "ORIGINATOR_CANCEL": "cancelled",
    "LOSE_RACE": "cancelled",
    "PICKED_OFF": "cancelled",
    "CRASH": "failed",
    "SYSTEM_SHUTDOWN": "failed",
    "MANAGER_REQUEST": "failed",
    "BLIND_TRANSFER": "answered",
    "ATTENDED_TRANSFER": "answered",
    "ALLOTTED_TIMEOUT": "failed",
    "USER_CHALLENGE": "failed",
    "MEDIA_TIMEOUT": "failed",
    "PROGRESS_TIMEOUT": "failed",
    "USER_NOT_REGISTERED": "failed",
    "GATEWAY_DOWN": "congestion",
    "INVALID_GATEWAY": "failed",
    "INVALID_PROFILE": "failed",
    "INVALID_URL": "failed",
    "NO_PICKUP": "failed",
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
#: FreeSWITCH causes of a timer that ends a leg whether or not it rang: the per-leg
#: time limit (``leg_timeout``) and the end of an originate that leaves a ``pickup/``
#: leg unclaimed. Like SIP 408 they are no_answer after alerting, else
#: :data:`HANGUP_CAUSE_STATUS` (failed).
RING_TIMERS = frozenset({"ALLOTTED_TIMEOUT", "NO_PICKUP"})
