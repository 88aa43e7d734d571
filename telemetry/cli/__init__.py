"""Command line: ``telemetry <command>``.

Each command lives in its own module exposing ``register(subparsers)``, which
adds its parser and sets ``func`` (a callable taking the parsed arguments and
returning the exit code). Exit codes (SPEC section 6): 0 success, 1 completed
with quarantined rows, 2 usage or configuration error (anything that stops a run
for a reason the user can fix, a file system's refusal such as a full disk
included), 3 internal error (a bug: reported as one line naming only the
exception's type, the traceback's frames shown with ``-v``), 130 interrupted.
Errors are one line on stderr and never echo identifiers or key material.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from telemetry.errors import TelemetryError

#: Exit code of an unexpected exception (a bug), distinct from 1 "completed, rows quarantined".
INTERNAL_ERROR = 3
COMMANDS = ("demo", "process", "stream", "generate", "pseudonym", "keys", "optout", "erase", "serve", "alerts",
            "report")


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


def config_notice(path: str | None) -> None:
    """Say on stderr which configuration file a command applied (``--config``, else
    ``./telemetry.toml``): a file left in the working directory would otherwise change a
    run with no word. Called once the settings were accepted, so an error stays one line."""
    from telemetry.config import config_file

    found = config_file(path)
    if found is not None:
        where = " (found in the working directory)" if path is None else ""
        print(f"telemetry: configuration from {found}{where}", file=sys.stderr)


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
    except OSError as exc:  # a file system's refusal (disk full, no permission): the user's to fix
        if exc.errno is None or not exc.strerror:
            return _internal_error(exc, args.verbose)
        where = f": {exc.filename}" if exc.filename is not None else ""
        print(f"telemetry: error: {exc.strerror}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        return _internal_error(exc, args.verbose)


def _internal_error(exc: Exception, verbose: bool) -> int:
    """Report a bug: its message may quote data, so only the exception's type is shown."""
    name = type(exc).__name__
    if verbose:  # where it happened: the frames, not the message
        frames = "".join(traceback.format_tb(exc.__traceback__))
        print(f"Traceback (most recent call last):\n{frames}{name} (message withheld)", file=sys.stderr)
    print(f"telemetry: internal error ({name}); run again with -v for the traceback and report it",
          file=sys.stderr)
    return INTERNAL_ERROR


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
