"""``telemetry stream --stdin``: standard input cut into files the stream reads.

Lines are gathered into chunks (at most CHUNK_LINES lines or CHUNK_SECONDS of
waiting, whichever first) written to a spool directory under the state
directory, under a temporary name then renamed, so the stream consumes them
like any watched file. A CSV header line is repeated at the top of every chunk.
At end of input the stream drains the spool, releases every window and exits,
as with ``--once``. Standard input cannot be read twice: what a crash loses is
what had not reached a chunk yet.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import BinaryIO

CHUNK_LINES = 65536
CHUNK_SECONDS = 1.0


class Spool:
    def __init__(self, root: Path, source: BinaryIO) -> None:
        self.root = root
        self.source = source
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def start(self, stream) -> None:
        lines: queue.Queue[bytes | None] = queue.Queue(maxsize=4 * CHUNK_LINES)
        threading.Thread(target=self._read, args=(lines,), name="telemetry-stdin", daemon=True).start()
        threading.Thread(target=self._pump, args=(lines, stream), name="telemetry-spool", daemon=True).start()

    def _read(self, lines: queue.Queue) -> None:
        for line in self.source:
            lines.put(line)
        lines.put(None)

    def _write(self, lines: list[bytes], header: bytes | None) -> None:
        target = self.root / f"chunk-{time.time_ns():020d}.in"  # never a name consumed before
        tmp = self.root / f".{target.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            if header is not None:
                handle.write(header)
            handle.writelines(lines)
        os.replace(tmp, target)

    def _pump(self, lines: queue.Queue, stream) -> None:
        header = None
        chunk: list[bytes] = []
        first = True
        while True:
            try:
                line = lines.get(timeout=CHUNK_SECONDS)
            except queue.Empty:
                line = b""  # a pause in the input: hand over what has come so far
            if line is None or (line == b"" and chunk) or len(chunk) >= CHUNK_LINES:
                if chunk:
                    self._write(chunk, header)
                    chunk = []
                if line is None:
                    break
            if not line:
                continue
            if first:
                first = False
                if not line.lstrip().startswith(b"{"):  # CSV: its header heads every chunk
                    header = line
                    continue
            chunk.append(line)
        stream.finish_when_idle = True
        stream.wake()
