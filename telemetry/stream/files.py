"""Which files of the watched directory are ready, in which order, and a wake-up
when new ones arrive.

The directory listing compared with the committed manifest is the truth: a
change notification only ends the wait early (inotify says nothing of writes
made on another NFS client, and a notification can be lost on overflow), so the
loop also lists the directory every ``poll`` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("telemetry")

#: Names a writer uses while a file is incomplete (SPEC section 9): never read.
HIDDEN_PREFIXES = (".", "_")
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial")
#: A micro-batch (one commit) ends after this many files or this many bytes of them, by
#: default: its work, and what a restart does again, grows with its bytes, not its files.
BATCH_FILES = 4096
BATCH_BYTES = 256 << 20


def ready(name: str) -> bool:
    """Whether a file name is final (not hidden, not a write in progress)."""
    return not name.startswith(HIDDEN_PREFIXES) and not name.lower().endswith(PARTIAL_SUFFIXES)


@dataclass(frozen=True)
class Found:
    name: str
    path: str
    mtime_ns: int
    size: int


def listing(root: Path, skip: Container[str] = ()) -> list[Found]:
    """Ready regular files directly in ``root``, by modification time, then name; a
    name in ``skip`` (a file consumed) is passed over before its ``stat``: a stream
    lists its directory at every poll and after every micro-batch, and the files it
    consumed, a day of them, are still there."""
    found = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name in skip or not ready(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            found.append(Found(entry.name, entry.path, stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:  # renamed away between the listing and the stat
            continue
    found.sort(key=lambda f: (f.mtime_ns, f.name))
    return found


def first_files(todo: list[Found], files: int, nbytes: int) -> list[Found]:
    """The next micro-batch: the first files of ``todo``, at most ``files`` of them and
    ``nbytes`` bytes together (at least one file)."""
    total = 0
    for n, found in enumerate(todo[:files]):
        total += found.size
        if n and total > nbytes:
            return todo[:n]
    return todo[:files]


class Waker:
    """Waits up to ``poll`` seconds, less when the directory ``root`` changes (watchdog's
    inotify / kqueue / polling observer, when the package is installed); with no
    ``root``, only when :attr:`event` is set."""

    def __init__(self, root: Path | None) -> None:
        self.event = threading.Event()
        self._observer = None
        if root is None:
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.info("stream: the watchdog package is not installed; listing the directory every poll interval")
            return
        event = self.event

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, _event) -> None:
                event.set()

        observer = Observer()
        observer.schedule(_Wake(), os.fspath(root), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def wait(self, seconds: float) -> None:
        self.event.wait(seconds)
        self.event.clear()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
