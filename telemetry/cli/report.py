"""``telemetry report DIR --out report.html``: self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("report", help="self-contained HTML report over the metrics of DIR")
    p.add_argument("dir", metavar="DIR", help="output directory of process or stream")
    p.add_argument("--out", metavar="FILE", help="HTML file to write (default DIR/report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry.errors import ConfigError
    from telemetry.sinks.report import write_report

    target = Path(args.out) if args.out else Path(args.dir) / "report.html"
    try:
        path = write_report(args.dir, target)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"report:   {path}")
    return 0
