"""The bytes pyarrow's CSV reader reads, made safe for it.

- Invalid UTF-8 is replaced by U+FFFD: pyarrow decodes the text of a row it hands to
  ``invalid_row_handler`` and gives up on the whole file when that fails; readers
  reject the rows holding U+FFFD afterwards.
- A read never ends between ``\r`` and ``\n``: pyarrow drops the ``\n`` of a CRLF
  split between two reads even inside a quoted field (apache/arrow#51368, open in
  pyarrow 26), silently changing the value.
- A read is as long as asked until the end: pyarrow cannot split a block too short
  for a record.
- A range of the file (for parsing ranges side by side) and an end-of-input ``tail``
  (a vendor reader's sentinel line) are supported; ``nul`` says whether the file's
  bytes held a NUL, so that a sentinel made with one can be told from the data.
- A ``head`` line before the file's bytes: pyarrow's streaming reader parses on, at
  open, until a block gives a good row, holding every bad row on the way; a good
  ``head`` row (dropped by the reader) makes the first block do.
- Reads can be paced (``ahead``): pyarrow reads up to 32 blocks ahead of the batches
  it hands out, and when converting its batches is slower than parsing (bad rows)
  that many blocks stay in memory. With ``ahead``, a read waits until the reader has
  asked for a batch (:meth:`want`) for all but ``ahead`` of the reads so far.
"""

from __future__ import annotations

import threading

#: Seconds a paced read waits for :meth:`Utf8Stream.want` before it goes anyway: a
#: safety net, should pyarrow ever need more blocks for one batch than it does now.
STALL_SECONDS = 2.0


class Utf8Stream:
    """``head``, then bytes ``start`` to ``end`` (None: the end) of the file at ``path``,
    invalid UTF-8 replaced by U+FFFD, then ``tail``. ASCII blocks pass through without
    a copy; ``ascii`` says no other came yet, ``repaired`` that bytes were replaced,
    ``nul`` that a NUL byte came. ``ahead``: at most that many reads more than batches
    asked for (:meth:`want`); None: no limit."""

    def __init__(
        self,
        path: str,
        span: tuple[int, int | None] = (0, None),
        tail: bytes = b"",
        head: bytes = b"",
        ahead: int | None = None,
    ) -> None:
        start, end = span
        self._raw = open(path, "rb")
        self._raw.seek(start)
        self._left = None if end is None else end - start  # bytes of the range not read yet
        self._tail = tail
        self._buffer = bytearray(head)
        self._credit = ahead  # reads that may go before the next want(); None: any
        self._gate = threading.Condition()
        self._carry = b""  # an incomplete UTF-8 sequence at the end of the last chunk
        self._done = False
        self.ascii = True  # every byte so far was ASCII (so no field can hold U+FFFD)
        self.repaired = False  # some bytes were replaced (so text lengths differ)
        self.nul = False  # some byte of the file was NUL
        self.closed = False

    def want(self) -> None:
        """The reader asks for a batch: one more read may go."""
        with self._gate:
            if self._credit is not None:
                self._credit += 1
                self._gate.notify_all()

    def _pace(self) -> None:
        with self._gate:
            if self._credit is None:
                return
            if self._credit <= 0:
                self._gate.wait_for(lambda: self._credit > 0 or self.closed, STALL_SECONDS)
            self._credit -= 1

    def read(self, size: int = -1) -> bytes:
        self._pace()
        if size < 0:
            while not self._done:
                self._take(self._get(1 << 20))
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        if not self._buffer and not self._done:
            chunk = self._get(size)
            # a whole block passes as it is; a short one (the end) goes with the tail, as
            # pyarrow takes a block too short for a record as one it cannot split
            whole = len(chunk) == size and not chunk.endswith(b"\r")
            if whole and not self._carry and chunk.isascii():
                self.nul = self.nul or b"\x00" in chunk
                return chunk
            self._take(chunk)
        while len(self._buffer) < size and not self._done:
            self._take(self._get(size - len(self._buffer)))
        end = size
        if 1 < end <= len(self._buffer) and self._buffer[end - 1] == 0x0D and not (
            self._done and end == len(self._buffer)
        ):
            end -= 1  # (apache/arrow#51368)
        out = bytes(self._buffer[:end])
        del self._buffer[:end]
        return out

    def _get(self, size: int) -> bytes:
        if self._left is not None:
            size = min(size, self._left)
            if size <= 0:
                return b""
        chunk = self._raw.read(size)
        if self._left is not None:
            self._left -= len(chunk)
        return chunk

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            if self._carry:
                self._buffer += self._repair(self._carry)
                self._carry = b""
            self._buffer += self._tail
            self._done = True
            return
        data = self._carry + chunk if self._carry else chunk
        cut = _complete(data)
        self._carry = data[cut:]
        self._buffer += self._repair(data[:cut])

    def _repair(self, data: bytes) -> bytes:
        self.nul = self.nul or b"\x00" in data
        if data.isascii():
            return data
        self.ascii = False
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            self.repaired = True
            return data.decode("utf-8", "replace").encode("utf-8")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._raw.close()
        with self._gate:
            self.closed = True
            self._gate.notify_all()

    def __enter__(self) -> Utf8Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _complete(data: bytes) -> int:
    """Length of ``data`` without a UTF-8 sequence cut short at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if need > back else len(data)
    return len(data)
