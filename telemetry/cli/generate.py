"""``telemetry generate --records N --out FILE``: synthetic CDRs/MDRs in an input format."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator

from telemetry.errors import ConfigError, InputError


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="write synthetic CDRs/MDRs (fictional numbers) in an input format",
        description="Write realistic synthetic call and message records with fictional or random "
        "valid numbers. National numbers are in GB notation: process them with --region GB.",
    )
    p.add_argument("--records", type=int, required=True, metavar="N", help="number of records")
    p.add_argument("--out", required=True, metavar="FILE", help="output file")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=_Writable(),
        metavar="FMT",
        help="output format, one of %(choices)s (default: from the file name)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument(
        "--start", metavar="TIME", help="first start time, ISO 8601 (default 2026-11-02T00:00Z)"
    )
    p.add_argument(
        "--hours", type=float, default=24.0, metavar="H", help="time span in hours (default 24)"
    )
    p.add_argument(
        "--shape",
        choices=("retail", "transit", "a2p"),
        default="retail",
        help="how often numbers repeat: retail (an operator's own subscribers, the default), "
        "transit (3.8 M distinct destinations in 4 M records) or a2p (SMS from a few senders, "
        "nearly every recipient new)",
    )
    p.add_argument("--distinct-sources", type=float, metavar="SHARE",
                   help="distinct sources ÷ records, in (0, 1]; overrides the shape's")  # fmt: skip
    p.add_argument("--distinct-destinations", type=float, metavar="SHARE",
                   help="distinct destinations ÷ records, in (0, 1]; overrides the shape's")  # fmt: skip
    p.set_defaults(func=run)


class _Writable:
    """The formats with a writer, as argparse choices; looked up in the reader registry
    only when used, so building the parser for another command imports no reader."""

    def __iter__(self) -> Iterator[str]:
        from telemetry.readers import writable_formats

        return iter(writable_formats())

    def __contains__(self, name: object) -> bool:
        return name in tuple(self)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from telemetry.generate import SHAPES, format_for, write

    if args.records < 0:
        raise ConfigError("--records must not be negative")
    if args.hours <= 0:
        raise ConfigError("--hours must be positive")
    try:
        fmt = args.fmt or format_for(args.out)
    except ValueError:
        raise ConfigError(
            f"cannot tell the format of {args.out} from its name; pass --format FMT"
        ) from None
    start = None
    if args.start:
        try:
            start = dt.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                "--start must be an ISO 8601 time, e.g. 2026-11-02T00:00:00Z"
            ) from None
    shares = {"sources": args.distinct_sources, "destinations": args.distinct_destinations}
    try:
        shape = replace(SHAPES[args.shape], **{k: v for k, v in shares.items() if v is not None})
    except ValueError:
        raise ConfigError("--distinct-sources and --distinct-destinations must be shares in (0, 1]") from None
    try:
        n = write(args.out, args.records, fmt=fmt, seed=args.seed, start=start, hours=args.hours, shape=shape)
    except OSError as exc:
        raise InputError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    left_out = args.records - n  # e.g. messages, which a switch's CDR file cannot hold
    skipped = f"; {left_out:,} of a channel {fmt} does not hold left out" if left_out else ""
    print(
        f"wrote {n:,} synthetic records to {args.out} "
        f"({fmt}{skipped}; national numbers in GB notation: use --region GB)"
    )
    return 0
