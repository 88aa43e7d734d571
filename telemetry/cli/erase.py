"""``telemetry erase DATASET [ID…]`` (SPEC section 13) and ``erase DATASET --epoch KEY_ID``.

Prints and logs counts only: never an identifier or a pseudonym.
"""

from __future__ import annotations

import argparse
import re
import sys

from telemetry.cli.keys import add_key_arguments, keyring_from_args
from telemetry.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "erase",
        help="remove a subject's records (or one key epoch's) from record output",
        description="Remove every record of DATASET/records/ whose source or destination is one of the "
        "identifiers, under every key epoch that still has a key. With no ID arguments, identifiers "
        "are read one per line from standard input (keeps them out of shell history and the process "
        "list). With --epoch, remove every record of that key epoch instead (retention; no key needed). "
        "Counts are printed and appended to DATASET/erasures.jsonl.",
    )
    p.add_argument("dataset", metavar="DATASET", help="output directory of telemetry process --emit-records")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--region", metavar="R", help="home region for national numbers, e.g. GB")
    p.add_argument("--epoch", metavar="KEY_ID", help="remove every record of this key epoch (see: keys list)")
    add_key_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry.erase import LOG_NAME, drop_epoch, erase

    if args.epoch is not None:
        if args.ids:
            raise ConfigError("--epoch removes a whole epoch: give no identifiers with it")
        key_id = args.epoch.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            raise ConfigError("--epoch needs a key id of 16 hex digits (see: telemetry keys list)")
        result = drop_epoch(args.dataset, key_id)
        what = f"epoch {key_id}"
    else:
        ids = args.ids or [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        if not ids:
            raise ConfigError("no identifiers: give them as arguments or one per line on standard input")
        keyring = keyring_from_args(args)
        epochs = [e.key_id for e in keyring.epochs if e.key is not None]
        if not epochs:
            raise ConfigError("every epoch of the keyring is shredded: its pseudonyms cannot be recomputed "
                              "(drop its records with: telemetry erase DATASET --epoch KEY_ID)")
        pseudonyms = [p for key_id in epochs for p in _pseudonyms(ids, keyring, args.region, key_id)]
        result = erase(args.dataset, pseudonyms, identifiers=len(ids), key_ids=epochs)
        what = f"{len(ids)} identifier{'s' if len(ids) != 1 else ''}"
    print(
        f"erased {result.records_removed:,} records of {what}: {result.files_rewritten:,} files rewritten, "
        f"{result.files_deleted:,} deleted (no rows left); {result.files_scanned:,} record files looked at, "
        f"{result.files_decided_by_statistics:,} decided by their statistics alone; logged in "
        f"{args.dataset.rstrip('/')}/{LOG_NAME}"
    )
    if result.files_foreign:
        print(f"telemetry: warning: left {result.files_foreign} Parquet files under records/ that telemetry "
              "did not write untouched", file=sys.stderr)
    return 0


def _pseudonyms(ids: list[str], keyring, region: str | None, key_id: str) -> list[bytes]:
    """The 16-byte pseudonyms of ``ids`` under epoch ``key_id`` (withheld callers have none)."""
    from telemetry.cli.pseudonym import checked_pseudonyms

    return [bytes.fromhex(h) for h in checked_pseudonyms(ids, keyring, region, key_id) if h != "withheld"]
