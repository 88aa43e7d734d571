"""``telemetry pseudonym ID…``: pseudonyms for access and erasure requests."""

from __future__ import annotations

import argparse
import sys

from telemetry.cli.keys import add_key_arguments, keyring_from_args
from telemetry.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "pseudonym",
        help="print the pseudonym of each identifier (or 'withheld')",
        description="Print one line per identifier: its 32-hex pseudonym under the current key "
        "epoch, or 'withheld'. With no ID arguments, identifiers are read one per line from "
        "standard input (keeps them out of shell history and the process list).",
    )
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--region", metavar="R", help="home region for national numbers, e.g. GB")
    p.add_argument("--domain", default="subscriber", choices=("subscriber", "ip", "record"))
    add_key_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ids = args.ids or [line.rstrip("\r\n") for line in sys.stdin]
    keyring = keyring_from_args(args)
    for line in checked_pseudonyms(ids, keyring, args.region, domain=args.domain):
        print(line if line is not None else "null")
    return 0


def checked_pseudonyms(ids, keyring, region, key_id=None, domain="subscriber") -> list:
    """Hex pseudonyms; a bad identifier is a one-line error naming its position only."""
    from telemetry.pseudonyms import pseudonymize

    try:
        return pseudonymize(ids, key=keyring, domain=domain, region=region, key_id=key_id)
    except ValueError as exc:
        # "values[i]: reason" → name the position, never the identifier
        where, _, reason = str(exc).partition(": ")
        position = where.removeprefix("values[").removesuffix("]")
        if position.isdigit():
            raise ConfigError(f"identifier #{int(position) + 1}: {reason}") from None
        raise ConfigError(str(exc)) from None
