"""Command line: ``telemetry <command>``.

Each command lives in its own module exposing ``register(subparsers)``, which
adds its parser and sets ``func`` (a callable taking the parsed arguments and
returning the exit code). Exit codes (SPEC section 6): 0 success, 1 completed
with quarantined rows, 2 usage or configuration error. Errors are one line on
stderr and never echo identifiers or key material.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from telemetry.errors import TelemetryError

COMMANDS = ("demo", "process", "generate", "pseudonym", "keys", "optout", "erase", "serve", "alerts", "report")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        print(f"telemetry: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="telemetry", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"telemetry.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="telemetry: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except TelemetryError as exc:
        print(f"telemetry: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("telemetry: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``telemetry`` command (and ``python -m telemetry``): :func:`main`, then an
    exit that skips tearing the interpreter down. Freeing what a run leaves behind
    (numba's typing registries, loaded kernels, Arrow pools) object by object cost
    0.3-0.4 s after a 4 M-record run and changes nothing a user can see; exit
    handlers still run and the standard streams are flushed first. An unexpected
    exception, or a thread still working, takes the ordinary way out."""
    import atexit
    import os
    import threading

    # No command makes a BLAS call, but NumPy's OpenBLAS starts a worker per core on
    # import, which spins ~0.1 s of CPU waiting for work (a fifth of a 1,000-record run,
    # taken from the reader's threads in a large one). An operator's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    code = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    atexit._run_exitfuncs()  # what interpreter shutdown would run (thread joins, temp files)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to deliver
            pass
    os._exit(code)
