"""``telemetry stream --watch DIR --out OUT``: continuous mode (SPEC section 9, docs/stream.md)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from telemetry.cli.keys import add_key_arguments, keyring_from_args
from telemetry.errors import ConfigError
from telemetry.stream.files import BATCH_BYTES, BATCH_FILES
from telemetry.cli.process import add_run_arguments, dp_nothing, options_from_args


def register(sub) -> None:
    p = sub.add_parser("stream", help="follow a directory of arriving CDR/MDR files (continuous mode)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--watch", metavar="DIR", help="directory where finished files arrive")
    source.add_argument("--stdin", action="store_true",
                        help="read JSON lines or CSV from standard input instead (with --format)")
    p.add_argument("--out", required=True, metavar="OUT", help="output directory (metrics with revisions, run.json)")
    p.add_argument("--state", metavar="DIR", help="state directory (default OUT/_state); holds pseudonyms")
    p.add_argument("--lateness", default="10m", metavar="D",
                   help="how far behind the newest start_time a window stays open (default 10m)")
    p.add_argument("--retention", default="24h", metavar="D",
                   help="how long after its end a released window still takes late records (default 24h)")
    p.add_argument("--once", action="store_true", help="process what is there, release every window, exit")
    p.add_argument("--poll", default="2s", metavar="D", help="directory listing interval (default 2s)")
    p.add_argument("--batch-files", type=int, default=BATCH_FILES, metavar="N",
                   help=f"at most N files per micro-batch, each ending in a commit "
                   f"(default {BATCH_FILES})")
    p.add_argument("--batch-mb", type=int, default=BATCH_BYTES >> 20, metavar="M",
                   help=f"at most M MiB of files per micro-batch (default {BATCH_BYTES >> 20}; "
                   "at least one file)")
    p.add_argument("--serve", type=int, metavar="PORT", help="also serve the Prometheus endpoint on PORT")
    add_run_arguments(p)
    add_key_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry.allocators import tune_allocators
    from telemetry.config import load_config, make_options
    from telemetry.stream.driver import Stream, StreamOptions, parse_duration
    from telemetry.stream.stdin import Spool

    tune_allocators()
    opts = make_options(load_config(args.config), **options_from_args(args))
    keyring = keyring_from_args(args)
    out = Path(args.out)
    state = Path(args.state) if args.state else out / "_state"
    spool = Spool(state / "spool", sys.stdin.buffer) if args.stdin else None
    sopts = StreamOptions(
        watch=spool.root if spool else Path(args.watch),
        out=out,
        state=state,
        lateness_us=parse_duration("--lateness", args.lateness),
        retention_us=parse_duration("--retention", args.retention),
        once=args.once,
        poll_s=parse_duration("--poll", args.poll) / 1e6,
        spool=spool is not None,
        batch_files=args.batch_files,
        batch_bytes=args.batch_mb << 20,
    )
    if args.batch_files < 1 or args.batch_mb < 1:
        raise ConfigError("--batch-files and --batch-mb must be at least 1")
    stream = Stream(sopts, keyring, opts)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stream.stop.set(), stream.wake()))
    server = None
    if args.serve is not None:
        from telemetry.sinks import prometheus

        server, _ = prometheus.serve(out, port=args.serve)
        print(f"serving http://127.0.0.1:{server.server_port}/metrics", file=sys.stderr, flush=True)
    if spool is not None:
        spool.start(stream)
    try:
        code = stream.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    s = stream.summary()
    print(f"{s['files']:,} files, {s['records_in']:,} records ({s['records_late']:,} late, "
          f"{s['records_pending']:,} pending, {s['records_quarantined']:,} quarantined); "
          f"{s['rows_released']:,} rows released over {s['commits']:,} commits; watermark {s['watermark']}; "
          f"output in {out}")
    if "dp" in s:
        print(f"differential privacy at epsilon {s['dp']['epsilon']:g} per window: "
              f"{s['records_dp_truncated']:,} records over the contribution bounds left out{dp_nothing(s)}")
    return code
