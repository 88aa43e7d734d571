"""``telemetry demo``: synthetic records, a throw-away key, the whole pipeline."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

DEMO_REGION = "GB"  # the generator writes national numbers in this region's notation


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on generated data")
    p.add_argument("--out", default="telemetry-demo", metavar="DIR", help="output directory")
    p.add_argument("--records", type=int, default=200_000, metavar="N")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--window", metavar="W", help="window length, as for process (default 15m)")
    p.add_argument("--by", metavar="COLS", help="grouping columns, as for process (default route,dst_region)")
    p.add_argument("--k", type=int, metavar="K", help="release threshold, as for process (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry.allocators import tune_allocators

    tune_allocators()
    from telemetry.config import make_options
    from telemetry.generate import write
    from telemetry.keys import Keyring
    from telemetry.pipeline import run as run_pipeline

    options = make_options(region=DEMO_REGION, window=args.window, by=args.by, k=args.k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "input" / "cdrs.parquet"
    data.parent.mkdir(exist_ok=True)
    write(data, args.records, fmt="parquet", seed=args.seed)
    keyring = Keyring.generate()  # lives only in this process: the demo's pseudonyms are unlinkable
    print(f"generated {args.records:,} synthetic CDRs/MDRs in {data}; key id {keyring.current.key_id} (temporary)", flush=True)  # fmt: skip
    with compile_progress() as compiled:
        result = run_pipeline([str(data)], keyring, options, out)
        routes = run_pipeline([str(data)], keyring, make_options(region=DEMO_REGION, by=("route",), window="1d", k=options.k), None)  # fmt: skip
    print()
    print(release_summary(result.summary, out, compiling=bool(compiled)))
    print()
    print(route_table(routes.metrics, routes.summary))
    print()
    print(f"metrics:  {out / 'metrics'}/date=*/part-0.parquet (hive-partitioned)")
    print(f"summary:  {out / 'run.json'}")
    from telemetry.sinks.report import write_report

    print(f"report:   {write_report(out, out / 'report.html')}")
    return 0


@contextlib.contextmanager
def compile_progress():
    """On a machine's first run Numba compiles the kernels the demo calls (about a minute, then
    kept in the disk cache): say so, and which kernel, rather than seem hung. Gives the list of
    kernels compiled."""
    from kernels import _jit
    from kernels.build import Progress, duration

    progress = Progress("telemetry demo", every=float("inf"))  # off a terminal: two lines
    compiled: list[str] = []

    def note(name: str) -> None:
        if not compiled:
            where = _jit.CACHE_DIR or f"nowhere: {_jit.NO_CACHE_REASON}"
            progress.done(f"first run here: compiling the kernels it needs, about a minute, once (kept in {where})")
        compiled.append(name)
        progress.show(f"compiling kernel {len(compiled)}: {name}")

    _jit.on_compile.append(note)
    try:
        yield compiled
    finally:
        _jit.on_compile.remove(note)
    if compiled:
        progress.done(f"{len(compiled)} kernels compiled, {duration(progress.elapsed())} with the run; later runs load them")


def release_summary(s: dict, out: Path, compiling: bool = False) -> str:
    """What the run released and withheld, each number saying what it counts."""
    k = s["k"]
    grouping = " × ".join([f"{s['window']} window", "channel", *s["by"]])
    aggregated = s["records_ok"] or 1
    lines = [
        f"processed {s['records_in']:,} records in {s['seconds']:.2f} s ({s['records_per_second'] or 0:,.0f}/s"
        f"{', compiling included' if compiling else ''}): "
        f"{s['records_ok']:,} aggregated, {s['records_quarantined']:,} quarantined, {s['records_opted_out']:,} opted out",
        f"metric rows, one per {grouping} (in {out / 'metrics'}):",
        f"  {s['rows_released']:,} released: each covers at least k={k} distinct callers and {k} distinct callees",
        f"    (senders, recipients); {s['rows_rolled_up']:,} groups below that are merged into __other__ rows",
        f"  {s['rows_withheld']:,} groups withheld (below k={k} even merged): their {s['records_withheld']:,} records, "
        f"{s['records_withheld'] / aggregated:.2%} of those",
        "    aggregated, are in no released row: totals over the released rows fall short by that share",
        "  to withhold less: longer windows (--window 1h), fewer grouping columns (--by route) or a",
        "    smaller k (--k 3, weaker privacy); the same options as telemetry process and telemetry.toml",
    ]
    if s["records_quarantined"]:
        lines.append(f"quarantined rows and why: {out / 'quarantine' / 'rejects.jsonl'}")
    return "\n".join(lines)


def route_table(metrics, summary: dict) -> str:
    """Top routes by attempts over the whole run, voice and messaging side by side, from its
    own aggregation (one row per day, channel and route), whose withheld groups it names."""
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
    withheld = (
        f"{summary['rows_withheld']:,} of its groups withheld ({summary['records_withheld']:,} records), not shown"
        if summary["rows_withheld"] else "none of its groups withheld"
    )
    lines = [
        f"top routes over the whole run, from a second aggregation (one row per {summary['window']} window, channel "
        f"and route; k={summary['k']}: {withheld})",
        f"{'route':<14}{'attempts':>10}{'ASR':>7}{'NER':>7}{'ACD s':>8}{'PDD p95':>9}{'SMS':>9}{'deliv.':>8}",
    ]
    for r in table.head(10).iter_rows(named=True):
        lines.append(
            f"{(r['route'] or '(none)'):<14}{_n(r['attempts'])}{_p(r['asr'])}{_p(r['ner'])}"
            f"{_f(r['acd_s'], 8, 1)}{_f(r['pdd_p95_ms'], 9, 0)}{_n(r['submitted'], 9)}{_p(r['delivery'], 8)}"
        )
    return "\n".join(lines)


def _n(v, width: int = 10) -> str:
    return f"{v:>{width},}" if v is not None else f"{'-':>{width}}"


def _p(v, width: int = 7) -> str:
    return f"{v:>{width}.1%}" if v is not None else f"{'-':>{width}}"


def _f(v, width: int, digits: int) -> str:
    return f"{v:>{width},.{digits}f}" if v is not None else f"{'-':>{width}}"
