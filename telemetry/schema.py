"""The canonical record (SPEC section 2), defined once."""

from __future__ import annotations

import functools

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
DICT = pa.dictionary(pa.int32(), pa.string())

CANONICAL = pa.schema(
    [
        pa.field("record_id", pa.string()),
        pa.field("channel", DICT),
        pa.field("direction", DICT),
        pa.field("tenant", pa.string()),
        pa.field("start_time", TS, nullable=False),
        pa.field("answer_time", TS),
        pa.field("end_time", TS),
        pa.field("pdd_ms", pa.int32()),
        pa.field("duration_ms", pa.int64()),
        pa.field("source", pa.string()),
        pa.field("destination", pa.string()),
        pa.field("status", DICT),
        pa.field("sip_code", pa.int16()),
        pa.field("q850_cause", pa.int16()),
        pa.field("route", pa.string()),
        pa.field("source_ip", pa.string()),
        pa.field("mos", pa.float32()),
        pa.field("jitter_ms", pa.float32()),
        pa.field("packet_loss_pct", pa.float32()),
        pa.field("rtt_ms", pa.float32()),
        pa.field("location", pa.string()),
        pa.field("roaming", pa.bool_()),
        pa.field("mno", pa.string()),
        pa.field("device_type", pa.string()),
    ]
)

COLUMNS = tuple(CANONICAL.names)

#: Footer key-value metadata of every record output file (``--emit-records``): how
#: ``telemetry erase`` tells the files the product wrote from anything else in ``records/``.
RECORDS_METADATA = {b"telemetry.output": b"records/1"}

#: Columns holding subscriber identifiers (pseudonymized, never passed through).
IDENTIFIER_COLUMNS = ("source", "destination")

#: Text columns the Parquet reader keeps as their dictionary pages store them:
#: the identifiers and the text dimensions, few distinct values each per batch.
DICTIONARY_TEXT = (*IDENTIFIER_COLUMNS, "tenant", "route", "mno", "device_type")

#: The canonical record as the Parquet reader hands it to the pipeline: the
#: :data:`DICTIONARY_TEXT` columns stay dictionary-encoded (the same strings in
#: Arrow's dictionary layout), so each distinct identifier is checked, normalized
#: and hashed once per batch and each route grouped by its code, none decoded per
#: row. Text readers hand over ``CANONICAL`` (encoding there would only add a
#: pass). Outputs never see this layout: record output casts back to ``CANONICAL``.
READ = pa.schema([f.with_type(DICT) if f.name in DICTIONARY_TEXT else f for f in CANONICAL])

@functools.cache
def read_schema(text_identifiers: tuple[str, ...] = ()) -> pa.Schema:
    """:data:`READ` with the identifier columns ``text_identifiers`` as plain text: a
    Parquet column whose writer gave up its dictionary on mostly distinct values (transit
    destinations, A2P recipients) is read as text, since Arrow would otherwise build a
    dictionary of every page itself."""
    text = set(text_identifiers) & set(IDENTIFIER_COLUMNS)
    return pa.schema([f.with_type(pa.string()) if f.name in text else f for f in READ]) if text else READ


CHANNELS = ("voice", "sms", "mms", "voicemail", "conference")
VOICE_CHANNELS = ("voice", "voicemail", "conference")
MESSAGE_CHANNELS = ("sms", "mms")
DIRECTIONS = ("outbound", "inbound", "internal")
VOICE_STATUSES = ("answered", "busy", "no_answer", "rejected", "cancelled", "failed", "congestion")
MESSAGE_FINAL_STATUSES = ("delivered", "undelivered", "expired", "rejected", "deleted")
MESSAGE_PENDING_STATUSES = ("accepted", "enroute", "unknown")
MESSAGE_STATUSES = MESSAGE_FINAL_STATUSES + MESSAGE_PENDING_STATUSES
STATUSES = tuple(dict.fromkeys(VOICE_STATUSES + MESSAGE_STATUSES))

#: Derived before hashing (SPEC section 3), appended to pseudonymized batches.
DERIVED = pa.schema(
    [
        pa.field("dst_cc", pa.int16()),
        pa.field("dst_region", pa.string()),
        pa.field("dst_prefix", pa.string()),
        pa.field("dst_prefix_name", pa.string()),
    ]
)

PSEUDONYM = pa.binary(16)
