"""Writing a small file whole: a fresh temporary file beside it, then a rename."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def replace_file(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o666) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically: readers see the old file or
    the new one, never half of one. The temporary file has a random name in the same
    directory and is created with ``O_EXCL | O_NOFOLLOW``, so a file or symbolic link
    someone placed there beforehand is never written through. ``mode`` is narrowed by
    the umask, as for ``open``. Raises OSError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, _FLAGS, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
