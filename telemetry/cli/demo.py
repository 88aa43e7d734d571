"""``telemetry demo``: synthetic records, a throw-away key, the whole pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_REGION = "GB"  # the generator writes national numbers in this region's notation


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on generated data")
    p.add_argument("--out", default="telemetry-demo", metavar="DIR", help="output directory")
    p.add_argument("--records", type=int, default=200_000, metavar="N")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry.cli.process import summary_line, tune_allocators

    tune_allocators()
    from telemetry.config import make_options
    from telemetry.generate import write
    from telemetry.keys import Keyring
    from telemetry.pipeline import run as run_pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "input" / "cdrs.parquet"
    data.parent.mkdir(exist_ok=True)
    write(data, args.records, fmt="parquet", seed=args.seed)
    keyring = Keyring.generate()  # lives only in this process: the demo's pseudonyms are unlinkable
    print(f"generated {args.records:,} synthetic CDRs/MDRs in {data}; key id {keyring.current.key_id} (temporary)")

    result = run_pipeline([str(data)], keyring, make_options(region=DEMO_REGION), out)
    print(summary_line(result.summary, str(out)))
    routes = run_pipeline([str(data)], keyring, make_options(region=DEMO_REGION, by=("route",), window="1d"), None)
    print()
    print(route_table(routes.metrics, routes.summary))
    print()
    print(f"metrics:  {out / 'metrics'}/date=*/part-0.parquet (hive-partitioned)")
    print(f"summary:  {out / 'run.json'}")
    from telemetry.sinks.report import write_report

    print(f"report:   {write_report(out, out / 'report.html')}")
    return 0


def route_table(metrics, summary: dict) -> str:
    """Top routes by attempts over the whole run, voice and messaging side by side."""
    import polars as pl

    voice = (
        metrics.filter(pl.col("channel").is_in(["voice", "voicemail", "conference"]))
        .group_by("route")
        .agg(
            pl.col("attempts").sum(),
            (pl.col("answered").sum() / pl.col("attempts").sum()).alias("asr"),
            ((pl.col("ner") * pl.col("attempts")).sum() / pl.col("attempts").sum()).alias("ner"),
            (pl.col("acd_s") * pl.col("answered")).sum().truediv(pl.col("answered").sum()).alias("acd_s"),
            pl.col("pdd_p95_ms").max(),
        )
    )
    sms = (
        metrics.filter(pl.col("channel").is_in(["sms", "mms"]))
        .group_by("route")
        .agg(pl.col("submitted").sum(), (pl.col("delivered").sum() / pl.col("submitted").sum()).alias("delivery"))
    )
    table = voice.join(sms, on="route", how="full", coalesce=True).sort(
        pl.col("attempts").fill_null(0) + pl.col("submitted").fill_null(0), descending=True
    )
    lines = [f"{'route':<14}{'attempts':>10}{'ASR':>7}{'NER':>7}{'ACD s':>8}{'PDD p95':>9}{'SMS':>9}{'deliv.':>8}"]
    for r in table.head(10).iter_rows(named=True):
        lines.append(
            f"{(r['route'] or '(none)'):<14}{_n(r['attempts'])}{_p(r['asr'])}{_p(r['ner'])}"
            f"{_f(r['acd_s'], 8, 1)}{_f(r['pdd_p95_ms'], 9, 0)}{_n(r['submitted'], 9)}{_p(r['delivery'], 8)}"
        )
    ok = summary["records_ok"] or 1
    lines.append(
        f"withheld by the k={summary['k']} rule: {summary['rows_withheld']:,} rows, "
        f"{summary['records_withheld']:,} records ({summary['records_withheld'] / ok:.2%} of aggregated)"
    )
    return "\n".join(lines)


def _n(v, width: int = 10) -> str:
    return f"{v:>{width},}" if v is not None else f"{'-':>{width}}"


def _p(v, width: int = 7) -> str:
    return f"{v:>{width}.1%}" if v is not None else f"{'-':>{width}}"


def _f(v, width: int, digits: int) -> str:
    return f"{v:>{width},.{digits}f}" if v is not None else f"{'-':>{width}}"
