"""The stream's checkpoint: window states, watermark, counts and the manifest of
consumed files, committed together in one atomic step.

Layout of the state directory (owner-only, like the key file: it holds
pseudonyms)::

    CURRENT            {"format", "version", "commit": N, "dir": "c0000000N"}
    c0000000N/meta.json    watermark, counts, manifest, windows and their files
    c0000000N/w<i>.total.npz, w<i>.delta.npz, w<i>.json   one window each

A commit writes ``cN.tmp/`` (a window unchanged since the last commit is a hard
link to its file there, not a copy), syncs it, renames it to ``cN`` and then
replaces ``CURRENT``: that rename is the commit. The outputs of commit N
(``part-cN`` metric files, ``rejects-cN.jsonl``, record parts) are written before
it; on start, files of a commit after the one ``CURRENT`` names are leftovers of
an interrupted micro-batch and are removed, as are ``c*`` directories other than
the current one. Nothing here is pickle: arrays in ``.npz`` files read with
``allow_pickle=False`` (:mod:`telemetry.metrics.persist`) and JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from telemetry.errors import ConfigError, InputError
from telemetry.metrics.persist import load_state, save_state
from telemetry.metrics.spec import AggSpec
from telemetry.stream.book import Window

FORMAT = "telemetry-stream-state"
VERSION = 1
_COMMIT_DIR = re.compile(r"^c(\d{8})(\.tmp)?$")


def commit_tag(n: int) -> str:
    return f"c{n:08d}"


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        raise InputError(f"stream state file {path.name} is not readable JSON; the state directory is damaged") from None


class Store:
    """One state directory."""

    def __init__(self, root: Path, spec: AggSpec) -> None:
        self.root = root
        self.spec = spec
        if root.exists() and not root.is_dir():
            raise ConfigError(f"state directory {root} is a file; name a directory with --state")
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        self._dir: Path | None = None  # the current commit's directory

    def committed(self) -> tuple[int, dict[str, Any], dict[int, Window]]:
        """The last commit (0, {}, {} when there is none), after removing what an
        interrupted commit left here."""
        current = self.root / "CURRENT"
        if not current.exists():
            self._clean(keep=None)
            return 0, {}, {}
        head = _read_json(current)
        if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") != VERSION:
            raise InputError(f"{current} is not a telemetry stream state of format version {VERSION}")
        self._dir = self.root / head["dir"]
        self._clean(keep=self._dir.name)
        meta = _read_json(self._dir / "meta.json")
        windows = {}
        for entry in meta["windows"]:
            index = int(entry["index"])
            info = _read_json(self._dir / entry["json"])
            window = Window(
                index,
                load_state(self._dir / entry["total"], self.spec),
                load_state(self._dir / entry["delta"], self.spec) if entry.get("delta") else None,
                released=bool(info["released"]),
                rows={tuple(k): list(v) for k, v in info["rows"]},
                own={tuple(k) for k in info["own"]},
                changed=False,
            )
            windows[index] = window
        return int(head["commit"]), meta, windows

    def _clean(self, keep: str | None) -> None:
        for entry in self.root.iterdir():
            if _COMMIT_DIR.match(entry.name) and entry.name != keep:
                shutil.rmtree(entry)

    def commit(self, n: int, meta: dict[str, Any], windows: dict[int, Window]) -> None:
        """Write commit ``n`` and make it the current one."""
        tag = commit_tag(n)
        work = self.root / f"{tag}.tmp"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(mode=0o700)
        entries = []
        for index in sorted(windows):
            window = windows[index]
            names = {"total": f"w{index}.total.npz", "json": f"w{index}.json",
                     "delta": f"w{index}.delta.npz" if window.delta is not None else None}
            if window.changed or self._dir is None:
                save_state(window.total, work / names["total"])
                if window.delta is not None:
                    save_state(window.delta, work / names["delta"])
                _write_json(work / names["json"], {
                    "released": window.released,
                    "rows": [[list(k), v] for k, v in window.rows.items()],
                    "own": [list(k) for k in window.own],
                })
            else:
                for name in filter(None, names.values()):
                    os.link(self._dir / name, work / name)
            entries.append({"index": index, **names})
        _write_json(work / "meta.json", {**meta, "windows": entries})
        _sync_dir(work)
        final = self.root / tag
        os.rename(work, final)
        _write_json(self.root / "CURRENT", {"format": FORMAT, "version": VERSION, "commit": n, "dir": tag})
        _sync_dir(self.root)
        previous, self._dir = self._dir, final
        if previous is not None and previous != final:
            shutil.rmtree(previous, ignore_errors=True)
        for window in windows.values():
            window.changed = False
