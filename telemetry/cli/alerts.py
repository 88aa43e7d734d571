"""``telemetry alerts --out rules.yml``: Prometheus alerting rules from ``[alerts]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("alerts", help="write Prometheus alerting rules from telemetry.toml [alerts]")
    p.add_argument("--out", required=True, metavar="FILE", help="rules file to write (- for stdout)")
    p.add_argument("--config", metavar="FILE", help="telemetry.toml (default: ./telemetry.toml if present)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry.cli import config_notice
    from telemetry.config import load_config, make_options
    from telemetry.errors import ConfigError
    from telemetry.files import replace_file
    from telemetry.sinks.alerts import rules, rules_yaml

    opts = make_options(load_config(args.config))
    section = opts.extra.get("alerts")
    if section is not None and not isinstance(section, dict):
        raise ConfigError("[alerts] in the configuration must be a table")
    text = rules_yaml(section)
    config_notice(args.config)
    if args.out == "-":
        print(text, end="")
        return 0
    target = Path(args.out)
    try:
        replace_file(target, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {len(rules(section))} alerting rules to {target}")
    return 0
