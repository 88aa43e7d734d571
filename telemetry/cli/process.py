"""``telemetry process INPUT… --out DIR``: the batch pipeline."""

from __future__ import annotations

import argparse
import sys

from telemetry.cli.keys import add_key_arguments, keyring_from_args


def register(sub) -> None:
    p = sub.add_parser("process", help="pseudonymize and aggregate CDR/MDR files")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="input files")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_run_arguments(p)
    add_key_arguments(p)
    p.set_defaults(func=run)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``process`` and the commands built on it."""
    p.add_argument("--format", dest="fmt", metavar="FMT", help="input format (default: auto)")
    p.add_argument("--config", metavar="FILE", help="telemetry.toml (default: ./telemetry.toml if present)")
    p.add_argument("--region", metavar="R", help="home region for national numbers, e.g. GB")
    p.add_argument("--window", metavar="W", help="window length, e.g. 1m, 15m, 1h, 1d (default 15m)")
    p.add_argument("--by", metavar="COLS", help="grouping columns (default route,dst_region)")
    p.add_argument("--k", type=int, metavar="K", help="release threshold (default 5)")
    p.add_argument("--rate-deck", metavar="CSV", help="prefix,name dial-code table for dst_prefix")
    p.add_argument("--opt-out", metavar="FILE", help="opt-out list (telemetry optout add)")
    p.add_argument("--engine", choices=("local", "dask"), help="execution engine (default local)")
    p.add_argument("--threads", type=int, metavar="N", help="worker threads (default: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="--engine dask: the scheduler of an existing cluster, e.g. tls://host:8786 "
                   "(default: DASK_SCHEDULER_ADDRESS, else a local cluster)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="--engine dask without a scheduler: worker processes (default: one per core)")
    p.add_argument("--emit-records", action="store_true", default=None,
                   help="also write pseudonymized records to DIR/records/")
    p.add_argument("--ip-mode", choices=("truncate", "cryptopan"),
                   help="source_ip in record output: the pseudonym of its /24 or /48 network "
                   "(truncate, default) or a prefix-preserving Crypto-PAn address (cryptopan)")
    p.add_argument("--dp-epsilon", type=float, metavar="E",
                   help="differential privacy with budget E per window release, replacing --k (docs/privacy.md)")
    p.add_argument("--dp-delta", type=float, metavar="D", help="DP: delta spent on which rows exist (default 1e-8)")
    p.add_argument("--dp-max-groups", type=int, metavar="G", help="DP: rows per subscriber per window (default 4)")
    p.add_argument("--dp-max-records", type=int, metavar="L", help="DP: records per subscriber per row (default 16)")
    p.add_argument("--dp-max-duration", metavar="D", help="DP: durations clamped to D before summing (default 1h)")
    p.add_argument("--timezone", metavar="TZ",
                   help="IANA zone of vendor times written without one, e.g. Europe/London "
                   "(default UTC; see docs/formats.md)")
    p.add_argument("--template", metavar="A,B,C",
                   help="FreeSWITCH mod_cdr_csv template: its variable names in order "
                   "(default: the example template)")


def options_from_args(args: argparse.Namespace) -> dict:
    names = ("fmt", "region", "window", "by", "k", "rate_deck", "opt_out", "engine", "threads",
             "scheduler", "workers", "emit_records", "ip_mode", "dp_epsilon", "dp_delta", "dp_max_groups",
             "dp_max_records", "dp_max_duration", "timezone", "template")
    return {name: getattr(args, name) for name in names}


def run(args: argparse.Namespace) -> int:
    from telemetry.allocators import tune_allocators

    tune_allocators()
    from telemetry.cli import config_notice
    from telemetry.config import load_config, make_options
    from telemetry.pipeline import run as run_pipeline
    from telemetry.progress import Progress

    opts = make_options(load_config(args.config), **options_from_args(args))
    config_notice(args.config)
    keyring = keyring_from_args(args)
    from pathlib import Path

    with Progress(sys.stderr) as progress:
        result = run_pipeline(args.inputs, keyring, opts, Path(args.out), progress)
    print(summary_line(result.summary, args.out))
    return result.exit_code


def dp_nothing(s: dict) -> str:
    """Why a DP run released no row, when it had rows to weigh: an analyst's first
    question, since a row needs thousands of records at the usual epsilons."""
    if s["rows_released"] or not s.get("rows_withheld", 1):
        return ""
    return (f"; no row reached the release threshold of {s['dp']['selection']['threshold']:,} records "
            "(after bounding): a longer --window, fewer --by columns or a larger --dp-epsilon put more "
            "records in each row (docs/privacy.md, \"When to prefer k\")")


def summary_line(s: dict, out: str) -> str:
    line = (
        f"{s['records_in']:,} records in {s['seconds']:.2f} s ({s['records_per_second'] or 0:,.0f}/s): "
        f"{s['records_ok']:,} aggregated, {s['records_quarantined']:,} quarantined, "
        f"{s['records_opted_out']:,} opted out; {s['rows_released']:,} metric rows released, "
        f"{s['rows_withheld']:,} withheld ({s['records_withheld']:,} records); output in {out}"
    )
    if "dp" in s:
        line += (f"; differential privacy at epsilon {s['dp']['epsilon']:g}: "
                 f"{s['records_dp_truncated']:,} records over the contribution bounds left out{dp_nothing(s)}")
    if s["records_quarantined"]:
        line += f" (see {out}/quarantine/rejects.jsonl)"
    return line
