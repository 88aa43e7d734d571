"""``telemetry optout add|remove|list --list FILE``: the opt-out list.

Stores pseudonyms under every key epoch of the keyring, never the identifiers.
"""

from __future__ import annotations

import argparse
import sys

from telemetry.cli.keys import add_key_arguments, keyring_from_args


def register(sub) -> None:
    p = sub.add_parser("optout", help="manage the list of subscribers excluded from processing")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("add", "add subscribers"), ("remove", "remove subscribers")):
        a = actions.add_parser(
            action,
            help=text,
            description=f"{text.capitalize()}. With no ID arguments, identifiers are read one per "
            "line from standard input.",
        )
        a.add_argument("ids", nargs="*", metavar="ID")
        a.add_argument("--list", required=True, metavar="FILE", dest="list_file")
        a.add_argument("--region", metavar="R", help="home region for national numbers")
        add_key_arguments(a)
        a.set_defaults(func=run)
    s = actions.add_parser("count", help="how many pseudonyms the list holds per key epoch")
    s.add_argument("--list", required=True, metavar="FILE", dest="list_file")
    s.set_defaults(func=count)


def run(args: argparse.Namespace) -> int:
    from telemetry.cli.pseudonym import checked_pseudonyms
    from telemetry.optout import OptOut

    ids = args.ids or [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    keyring = keyring_from_args(args)
    listing = OptOut.load(args.list_file)
    changed = 0
    for epoch in keyring.epochs:
        if epoch.key is None:
            continue
        pseudonyms = [p for p in checked_pseudonyms(ids, keyring, args.region, epoch.key_id) if p != "withheld"]
        if args.action == "add":
            changed += listing.add(epoch.key_id, pseudonyms)
        else:
            changed += listing.remove(epoch.key_id, pseudonyms)
    listing.save(args.list_file)
    verb = "added" if args.action == "add" else "removed"
    print(f"{verb} {changed} pseudonym(s) for {len(ids)} identifier(s); list holds {len(listing)}")
    return 0


def count(args: argparse.Namespace) -> int:
    from telemetry.optout import OptOut

    listing = OptOut.load(args.list_file)
    for key_id, values in sorted(listing.entries.items()):
        print(f"{key_id}  {len(values)}")
    return 0
