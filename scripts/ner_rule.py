"""NER of one generated day under SPEC 2.1's "408 after alerting" rule and under the old
rule that counted every 408 as no_answer: the figures of docs/metrics.md.

Writes the day twice without its status column, so the product derives every status from
the SIP code, the Q.850 cause and what the record shows (telemetry.status): once as is (the
rule), once with status no_answer filled in on every 408 row (what the old derivation gave
them; every other row is derived alike). Both go through ``telemetry.process``.

    PYTHONPATH=. python scripts/ner_rule.py [--records N] [--seed S]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import telemetry
from telemetry.generate import generate
from telemetry.schema import VOICE_CHANNELS

NER = ("answered", "busy", "no_answer", "rejected")


def day(records: int, seed: int, old_rule: bool) -> pa.Table:
    table = pa.Table.from_batches(list(generate(records, seed=seed)))
    status = pa.nulls(table.num_rows, pa.string())
    if old_rule:
        timeout = pc.fill_null(pc.equal(table.column("sip_code"), 408), False)
        status = pc.if_else(timeout, pa.scalar("no_answer"), status)
    return table.set_column(table.schema.get_field_index("status"), "status", status)


def ner_by_route(path: Path, out: Path) -> pl.DataFrame:
    result = telemetry.process(path, key=secrets.token_bytes(32), out=out, by=["route"],
                               window="1d", k=1, region="GB")
    voice = result.metrics.filter(pl.col("channel").is_in(VOICE_CHANNELS))
    per_route = voice.group_by("route").agg(pl.col("attempts", *NER, "failed").sum())
    total = per_route.select(pl.lit("all routes").alias("route"), pl.exclude("route").sum())
    both = pl.concat([per_route.sort("route"), total])
    return both.with_columns((pl.sum_horizontal(*NER) / pl.col("attempts")).alias("ner"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        frames = {}
        for name, old in (("new", False), ("old", True)):
            path = Path(tmp) / f"{name}.parquet"
            pq.write_table(day(args.records, args.seed, old), path)
            frames[name] = ner_by_route(path, Path(tmp) / f"out-{name}")
    new, old = frames["new"], frames["old"]
    timeouts = old["no_answer"] - new["no_answer"]
    print("| route | attempts | 408 before alerting | NER, every 408 no_answer | NER, SPEC 2.1 "
          "| change |")
    print("|---|---|---|---|---|---|")
    for route, attempts, moved, before, after in zip(
        new["route"], new["attempts"], timeouts, old["ner"], new["ner"], strict=True
    ):
        print(f"| {route} | {attempts:,} | {moved:,} | {before:.4f} | {after:.4f} | "
              f"{100 * (after - before):+.2f} pt |")


if __name__ == "__main__":
    main()
