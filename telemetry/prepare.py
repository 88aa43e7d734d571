"""One read batch → pseudonymized, derived batch ready for aggregation.

This is the per-batch work every engine runs: choose the key epoch of each
record, normalize and pseudonymize identifiers, derive the destination's
calling code, region and rate-deck prefix, quarantine what cannot be
pseudonymized, drop the records of opted-out subscribers (counted) and make
the text dimensions publishable (:mod:`telemetry.dimensions`, counted).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.dimensions import TEXT_DIMENSIONS, published
from telemetry.optout import OptOut
from telemetry.pseudonyms import Pseudonymizer
from telemetry.quarantine import detailed, mask_fields
from telemetry.readers import ReadBatch, Reject, RejectRun, reject_runs
from telemetry.schema import DICTIONARY_TEXT, RECORDS_METADATA

#: Canonical columns that never reach aggregation or record output as they are.
_CLEAR = ("record_id", "source", "destination", "source_ip", "location")


class Prepared(NamedTuple):
    batch: pa.RecordBatch  # for aggregation: pseudonyms + derived columns, no clear identifiers
    records: pa.RecordBatch | None  # record-level output (--emit-records)
    rejects: list[Reject | RejectRun]
    opted_out: int
    rewritten: dict[str, int]  # "column kind" → rows whose dimension value was rewritten


def prepare(
    read: ReadBatch,
    pseudonymizer: Pseudonymizer,
    *,
    rate_deck=None,
    opt_out: OptOut | None = None,
    emit_records: bool = False,
    ip_mode: str = "truncate",
) -> Prepared:
    batch = read.batch
    n = batch.num_rows
    key_index = pseudonymizer.epoch_index(batch.column("start_time"))
    src, dst = pseudonymizer.identifier_columns([batch.column("source"), batch.column("destination")], key_index)
    ip_column = batch.column("source_ip")
    ip_invalid = np.zeros(n, dtype=np.bool_)
    ip_out = None  # source_ip of record output: network pseudonyms, or Crypto-PAn addresses
    if emit_records and ip_column.null_count < n:
        anonymize = pseudonymizer.cryptopan_ips if ip_mode == "cryptopan" else pseudonymizer.ips
        ip_out, ip_invalid = anonymize(ip_column, key_index)

    rejected = (key_index < 0) | (src.reason != 0) | (dst.reason != 0) | ip_invalid
    bad = np.flatnonzero(rejected)
    reasons = _reasons(key_index[bad], src.reason[bad], dst.reason[bad])
    full = np.array(detailed(reasons.tolist()), dtype=np.bool_)
    rejects: list[Reject | RejectRun] = [
        Reject(read.file_of(i), int(read.rows[i]), reason, mask_fields(batch, i))
        for i, reason in zip(bad[full].tolist(), reasons[full].tolist(), strict=True)
    ]
    if not full.all():
        summed = bad[~full]
        files = np.asarray([read.file_of(i) for i in summed.tolist()], dtype=object)
        for file in dict.fromkeys(files.tolist()):  # one batch may hold several small files
            mine = files == file
            rejects += reject_runs(file, read.rows[summed[mine]], reasons[~full][mine])

    opted = np.zeros(n, dtype=np.bool_)
    if opt_out is not None:
        key_ids = pseudonymizer.keyring.key_ids()
        opted = opt_out.matches(src.pseudonyms, key_index, key_ids) | opt_out.matches(
            dst.pseudonyms, key_index, key_ids
        )
        opted &= ~rejected
    dropped = rejected | opted
    keep = pa.array(~dropped) if dropped.any() else None  # None: every row stays, nothing to copy

    derived = _derived(dst, rate_deck)
    columns = {name: batch.column(name) for name in batch.schema.names if name not in _CLEAR}
    rewritten: dict[str, int] = {}
    for name in TEXT_DIMENSIONS:
        columns[name], counts = published(columns[name])
        rewritten.update({f"{name} {kind}": n for kind, n in counts.items()})
    columns["source"] = src.pseudonyms
    columns["destination"] = dst.pseudonyms
    columns.update(derived)
    prepared = pa.RecordBatch.from_pydict(columns)
    if keep is not None:
        prepared = prepared.filter(keep)

    records = None
    if emit_records:
        from telemetry.numbering import Kind

        rec = dict(columns)
        for name in ("dst_region", *DICTIONARY_TEXT):  # record output keeps plain strings (CANONICAL)
            if name in rec and pa.types.is_dictionary(rec[name].type):
                rec[name] = rec[name].cast(pa.string())
        rec["record_id"] = pseudonymizer.records(batch.column("record_id"), key_index)
        if ip_out is None:
            ip_out = pa.nulls(n, pa.string() if ip_mode == "cryptopan" else pa.binary(16))
        rec["source_ip"] = ip_out
        rec["source_withheld"] = pa.array(src.kind == Kind.WITHHELD)
        ids = np.asarray(pseudonymizer.keyring.key_ids() + [None], dtype=object)
        rec["key_id"] = pa.array(ids[key_index], type=pa.string()).dictionary_encode()
        records = pa.RecordBatch.from_pydict(rec).replace_schema_metadata(RECORDS_METADATA)
        if keep is not None:
            records = records.filter(keep)
    return Prepared(prepared, records, rejects, int(opted.sum()), rewritten)


def _reasons(key_index: np.ndarray, src_reason: np.ndarray, dst_reason: np.ndarray) -> np.ndarray:
    """Why each rejected row could not be pseudonymized (the first problem found), as
    an object array of shared strings."""
    from telemetry.numbering import REASONS

    def texts(column: str) -> np.ndarray:
        out = np.empty(max(REASONS) + 1, dtype=object)
        for code, text in REASONS.items():
            out[code] = f"{column}: {text}"
        return out

    out = np.full(len(key_index), "source_ip: not an IPv4 or IPv6 address", dtype=object)
    out = np.where(dst_reason != 0, texts("destination")[dst_reason], out)
    out = np.where(src_reason != 0, texts("source")[src_reason], out)
    no_epoch = "no key epoch covers start_time (before the first epoch, or its key was shredded)"
    return np.where(key_index < 0, no_epoch, out)


def _derived(dst, rate_deck) -> dict[str, pa.Array]:
    cc = pa.array(dst.cc, mask=dst.cc == 0, type=pa.int16())
    if rate_deck is not None:
        prefix, name = rate_deck.lookup(dst.normalized)
    else:
        prefix = name = pa.nulls(len(dst.cc), pa.string())
    return {"dst_cc": cc, "dst_region": dst.region, "dst_prefix": prefix, "dst_prefix_name": name}

