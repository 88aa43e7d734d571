"""The output directory of ``process``: write aside, then swap in what the product owns.

A run writes ``metrics/``, ``records/``, ``quarantine/`` and ``run.json`` into a staging
directory ``OUT/.telemetry-run-*`` (its own, made with a unique name) and only when it has
succeeded moves them into place, one ``rename`` each. A failed or interrupted run removes
its staging directory and leaves the previous outputs as they were.

``OUT/.telemetry-outputs.json`` lists every file the product wrote there. Before a run, and
again just before the swap, each output path that exists must hold only listed files: a
file the product did not write (an operator's own ``records/``) stops the run with a
one-line error instead of being deleted. Replaced outputs are removed file by file (the
files found under them that the list names), never by deleting a tree. The decisions and
the window the swap leaves are in docs/design.md ("Output directory").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from telemetry.errors import ConfigError
from telemetry.files import replace_file

log = logging.getLogger("telemetry")

#: What a run replaces, in the order it is swapped in (run.json last: it describes the rest).
OUTPUTS = ("metrics", "records", "quarantine", "run.json")
MANIFEST = ".telemetry-outputs.json"
_FORMAT = "telemetry-outputs"
_STAGING_PREFIX = ".telemetry-run-"


@contextmanager
def staged(out: Path, inputs: Iterable[str]) -> Iterator[Path]:
    """A staging directory inside ``out`` for the run's outputs, swapped in when the
    ``with`` block ends normally and removed when it raises. ``out`` is created if missing.
    Raises ConfigError (before anything is written) when ``out`` is not a directory, an
    input lies inside an output the run would replace, or an output path holds files the
    product did not write."""
    _make_dir(out)
    _check_inputs(out, inputs)
    _owned(out)
    for left in sorted(out.glob(f"{_STAGING_PREFIX}*")):  # not deleted: it may be a run still going
        log.warning("%s is left by an interrupted run (or another run is writing here); delete it", left)
    stage = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        yield stage
        owned = _owned(out)  # again: files may have appeared during the run
        _swap(out, stage, owned)
    except BaseException:
        if os.path.isdir(stage / "old") and any((stage / "old").iterdir()):  # a swap not undone: keep it
            raise
        shutil.rmtree(stage, ignore_errors=True)  # made by this run, under a name only it knows
        raise
    _remove_replaced(stage, owned)


def _make_dir(out: Path) -> None:
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; name a directory for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc.strerror or exc}") from None


def _check_inputs(out: Path, inputs: Iterable[str]) -> None:
    """Refuse an input that is, or lies inside, an output the run would replace."""
    replaced = [os.path.realpath(out / name) for name in (*OUTPUTS, MANIFEST)]
    for path in inputs:
        real = os.path.realpath(path)
        for name, target in zip((*OUTPUTS, MANIFEST), replaced):
            if real == target or real.startswith(target + os.sep):
                raise ConfigError(
                    f"input {path} lies inside {name} of --out {out}, which this run replaces; "
                    "move the input or choose another --out"
                )


def _owned(out: Path) -> set[str]:
    """The files listed in ``out``'s manifest, after checking that every output path that
    exists holds nothing else. Paths are relative to ``out``, with ``/``."""
    listed = _read_manifest(out)
    for name in OUTPUTS:
        path = out / name
        if not os.path.lexists(path):
            continue
        foreign = [f for f in _files(out, path) if f not in listed or (out / f).is_symlink()]
        if foreign:
            what = f"{out / name} was" if foreign == [name] else f"{out / name} holds {len(foreign):,} files"
            raise ConfigError(
                f"{what} not written by telemetry (no entry in {out / MANIFEST}); it is never "
                "deleted: move it away or choose another --out"
            )
    return listed


def _files(out: Path, path: Path) -> list[str]:
    """Every non-directory under ``path`` (``path`` itself when it is not a directory,
    or is a symbolic link: the link is not followed), relative to ``out``."""
    if path.is_symlink() or not path.is_dir():
        return [path.relative_to(out).as_posix()]
    found = []
    for root, dirs, files in os.walk(path):
        # a symbolic link to a directory is listed in dirs and not entered: count it as a file
        found.extend(Path(root, d).relative_to(out).as_posix() for d in dirs if Path(root, d).is_symlink())
        found.extend(Path(root, f).relative_to(out).as_posix() for f in files)
    return found


def _read_manifest(out: Path) -> set[str]:
    path = out / MANIFEST
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, RecursionError):
        data = None
    files = data.get("files") if isinstance(data, dict) and data.get("format") == _FORMAT else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(
            f"{path} is not a telemetry output list; move it and the outputs beside it away or choose another --out"
        )
    return set(files)


def _write_manifest(out: Path, files: Iterable[str]) -> None:
    data = {"format": _FORMAT, "version": 1, "files": sorted(files)}
    replace_file(out / MANIFEST, json.dumps(data, indent=1) + "\n")


def _swap(out: Path, stage: Path, owned: set[str]) -> None:
    """Move the previous outputs into ``stage/old`` and the new ones into place, undoing
    the moves if one fails. The manifest lists old and new files while they trade places,
    so a run killed midway leaves nothing unlisted; then it lists the new ones only."""
    new = {f for name in OUTPUTS if os.path.lexists(stage / name) for f in _files(stage, stage / name)}
    old = stage / "old"
    old.mkdir()
    _write_manifest(out, owned | new)
    moves: list[tuple[Path, Path]] = []
    try:
        for name in OUTPUTS:
            for source, target in ((out / name, old / name), (stage / name, out / name)):
                if os.path.lexists(source):
                    os.rename(source, target)
                    moves.append((source, target))
    except OSError as exc:
        for source, target in reversed(moves):
            os.rename(target, source)  # if this fails too, the error stops the run with old/ kept
        old.rmdir()
        _write_manifest(out, owned)
        raise ConfigError(
            f"cannot move the outputs into {out}: {exc.strerror or exc}; the previous ones are kept"
        ) from None
    _write_manifest(out, new)


def _remove_replaced(stage: Path, owned: set[str]) -> None:
    """Delete the previous outputs, now in ``stage/old``: the listed files, then the
    directories they leave empty. Anything else stays, with a warning."""
    old = stage / "old"
    for name in OUTPUTS:
        if os.path.lexists(old / name):
            for file in _files(old, old / name):
                if file in owned and not (old / file).is_symlink():
                    (old / file).unlink()
    for root, _dirs, _names in sorted(os.walk(old), key=lambda entry: entry[0], reverse=True):
        try:
            os.rmdir(root)
        except OSError:  # not empty: holds something telemetry did not write
            pass
    try:
        stage.rmdir()
    except OSError:
        log.warning("kept %s: it holds files telemetry did not write", old)
