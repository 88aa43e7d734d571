"""``telemetry keys init|rotate|list|shred``: keyring management.

Never prints key material: ``list`` shows key ids, valid-from times and states.
Also home of :func:`add_key_arguments` and :func:`keyring_from_args`, which
every command that needs a key uses.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from telemetry.errors import ConfigError, KeyMaterialError

if TYPE_CHECKING:
    from telemetry.keys import Keyring

ENV_PASSPHRASE = "TELEMETRY_PASSPHRASE"


def register(sub) -> None:
    p = sub.add_parser(
        "keys",
        help="create, rotate, list and shred pseudonymization keys",
        description="Manage the keyring. Key material is never printed.",
    )
    actions = p.add_subparsers(dest="action", required=True)

    init = actions.add_parser("init", help="create a key file with one new key")
    init.add_argument("--out", required=True, metavar="FILE", help="key file to create (mode 0600)")
    init.add_argument("--seal", action="store_true", help="encrypt the file with a passphrase")
    init.add_argument("--valid-from", metavar="T", help="ISO 8601 time the key is valid from (default: always)")
    init.add_argument("--force", action="store_true", help="replace an existing FILE (its keys are destroyed)")
    init.add_argument("--from-env", action="store_true",
                      help="store the key in TELEMETRY_KEY instead of generating one")
    init.add_argument("--passphrase-file", metavar="FILE", help="passphrase for --seal (first line)")
    init.set_defaults(func=run_init)

    rotate = actions.add_parser("rotate", help="add an epoch with a new key")
    add_key_arguments(rotate, required=True)
    rotate.add_argument("--valid-from", metavar="T", help="ISO 8601 time the new key is valid from (default: now)")
    rotate.set_defaults(func=run_rotate)

    listing = actions.add_parser("list", help="show key ids, valid-from times and states")
    add_key_arguments(listing)
    listing.set_defaults(func=run_list)

    shred = actions.add_parser("shred", help="destroy epoch keys for good (crypto-shredding)")
    add_key_arguments(shred, required=True)
    which = shred.add_mutually_exclusive_group(required=True)
    which.add_argument("--key-id", metavar="ID", help="the epoch to shred (see: keys list)")
    which.add_argument("--older-than", metavar="AGE",
                       help="shred every epoch whose validity ended more than AGE ago: a whole number "
                       "and h, d or w (e.g. 90d), for a retention policy")
    shred.set_defaults(func=run_shred)


def add_key_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add ``--key-file FILE`` and ``--passphrase-file FILE`` to ``parser``."""
    parser.add_argument(
        "--key-file",
        required=required,
        metavar="FILE",
        help="key file (telemetry keys init)" + ("" if required else "; default: the key in TELEMETRY_KEY"),
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help=f"passphrase of a sealed key file (first line); or set {ENV_PASSPHRASE}, "
        "or type it when asked",
    )


def keyring_from_args(args: argparse.Namespace) -> Keyring:
    """The keyring of ``--key-file`` (asking for a passphrase if sealed), else ``TELEMETRY_KEY``."""
    return _load(args)[0]


def _load(args: argparse.Namespace) -> tuple[Keyring, bool, bytes | None]:
    """(keyring, whether the file is sealed, the passphrase used)."""
    from telemetry.keys import Keyring, PassphraseRequired, load_key_file

    key_file = getattr(args, "key_file", None)
    if key_file is None:
        return Keyring.resolve(), False, None
    passphrase = _given_passphrase(args)
    try:
        keyring, sealed = load_key_file(key_file, passphrase)
    except PassphraseRequired as exc:
        passphrase = _ask_passphrase(f"passphrase for {key_file}: ", exc)
        keyring, sealed = load_key_file(key_file, passphrase)
    return keyring, sealed, passphrase if sealed else None


def _given_passphrase(args: argparse.Namespace) -> bytes | None:
    from telemetry.keys import read_private

    path = getattr(args, "passphrase_file", None)
    if path:
        text = read_private(path, "passphrase file").decode("utf-8", "replace")
        return _encode(text.splitlines()[0] if text else "", f"passphrase file {path}")
    if os.environ.get(ENV_PASSPHRASE):
        return _encode(os.environ[ENV_PASSPHRASE], ENV_PASSPHRASE)
    return None


def _ask_passphrase(prompt: str, missing: Exception, *, confirm: bool = False) -> bytes:
    """Ask on the terminal; without one (scripts, pipes), raise ``missing``."""
    if not sys.stdin.isatty():
        raise missing
    import getpass

    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("same passphrase again: ") != first:
        raise ConfigError("the two passphrases differ; nothing was written")
    return _encode(first, "the passphrase")


def _encode(text: str, where: str) -> bytes:
    if not text:
        raise ConfigError(f"{where} is empty")
    # the same passphrase typed on another terminal may arrive in another Unicode form
    return unicodedata.normalize("NFC", text).encode("utf-8")


def parse_time(text: str | None, option: str = "--valid-from") -> datetime | None:
    """ISO 8601 (a date, or date and time; naive means UTC) as an aware UTC datetime."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option}: not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def run_init(args: argparse.Namespace) -> int:
    from telemetry.keys import Keyring, format_time

    if os.path.lexists(args.out) and not args.force:
        raise ConfigError(f"key file {args.out} exists; pass --force to replace it (its keys are destroyed)")
    valid_from = parse_time(args.valid_from)
    if args.from_env:
        env = Keyring.from_env()
        if env is None:
            raise KeyMaterialError("--from-env: TELEMETRY_KEY is not set")
        keyring = Keyring.from_key(env.current.key, valid_from)  # type: ignore[arg-type]
    else:
        keyring = Keyring.generate(valid_from)
    passphrase = None
    if args.seal:
        passphrase = _given_passphrase(args) or _ask_passphrase(
            "passphrase for the new key file: ",
            ConfigError(f"--seal needs a passphrase: pass --passphrase-file FILE or set {ENV_PASSPHRASE}"),
            confirm=True,
        )
    elif args.passphrase_file:
        raise ConfigError("--passphrase-file is for --seal; add --seal to encrypt the key file")
    keyring.save(args.out, passphrase)
    epoch = keyring.current
    print(
        f"wrote {'sealed ' if args.seal else ''}key file {args.out}: key id {epoch.key_id}, "
        f"valid from {format_time(epoch.valid_from)}"
    )
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from telemetry.keys import format_time

    keyring, sealed, passphrase = _load(args)
    now = datetime.now(UTC).replace(microsecond=0)
    valid_from = parse_time(args.valid_from) or now
    try:
        rotated = keyring.rotate(valid_from)
    except ValueError as exc:
        raise ConfigError(f"--valid-from: {exc}") from None
    rotated.save(args.key_file, passphrase)
    epoch = rotated.epochs[-1]
    print(
        f"added key id {epoch.key_id}, valid from {format_time(epoch.valid_from)}; "
        f"{args.key_file} now holds {len(rotated.epochs)} epochs"
    )
    if valid_from < now:
        print(
            "telemetry: warning: the new key is valid from a past time: records since then get new "
            "pseudonyms if they are processed again",
            file=sys.stderr,
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from telemetry.keys import format_time

    keyring = _load(args)[0]
    current = next((e.key_id for e in reversed(keyring.epochs) if e.key is not None), None)
    print(f"{'key_id':<16}  {'valid_from':<27}  state")
    for epoch in keyring.epochs:
        state = epoch.state + (" (current)" if epoch.key_id == current else "")
        print(f"{epoch.key_id:<16}  {format_time(epoch.valid_from):<27}  {state}")
    return 0


_AGE = re.compile(r"(\d+)([hdw])")
_AGE_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_age(text: str, option: str = "--older-than") -> timedelta:
    """``90d``, ``12w``, ``36h`` as a timedelta."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigError(f"{option}: a whole number and h, d or w, e.g. 90d")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


def run_shred(args: argparse.Namespace) -> int:
    if args.older_than is not None:
        return _shred_older(args, parse_age(args.older_than))
    keyring, sealed, passphrase = _load(args)
    wanted = args.key_id.strip().lower()
    if wanted not in keyring.key_ids():
        raise ConfigError(f"no epoch with key id {wanted} in {args.key_file}; see: telemetry keys list")
    index = keyring.key_ids().index(wanted)
    if keyring.epochs[index].key is None:
        print(f"key id {wanted} was already shredded")
        return 0
    shredded = keyring.shred(wanted)
    shredded.save(args.key_file, passphrase)
    print(
        f"shredded key id {wanted}: pseudonyms made with it can no longer be recomputed or linked. "
        "Copies of the key file (backups, snapshots) still hold it until they are destroyed too."
    )
    if all(e.key is None for e in shredded.epochs[index:]):
        print(
            "telemetry: warning: no key covers records from that epoch on; add one with: telemetry keys rotate",
            file=sys.stderr,
        )
    return 0


def _shred_older(args: argparse.Namespace, age: timedelta) -> int:
    from telemetry.keys import format_time

    keyring, sealed, passphrase = _load(args)
    cutoff = datetime.now(UTC).replace(microsecond=0) - age
    expired = keyring.ended_before(cutoff)
    if not expired:
        print(f"no epoch with a key ended before {format_time(cutoff)}; nothing shredded")
        return 0
    for key_id in expired:
        keyring = keyring.shred(key_id)
    keyring.save(args.key_file, passphrase)
    for key_id in expired:
        print(f"shredded key id {key_id}")
    print(
        f"{len(expired)} epoch(s) whose validity ended before {format_time(cutoff)} shredded. Copies of the key "
        "file (backups, snapshots) still hold them until destroyed too. Drop their record output with: "
        "telemetry erase DATASET --epoch KEY_ID"
    )
    return 0
