"""The stream's checkpoint: window states, watermark, counts and the manifest of
consumed files, committed together in one atomic step.

Layout of the state directory (owner-only, like the key file: it holds
pseudonyms)::

    CURRENT                  {"format", "version", "commit": N, "meta": "meta-c0000000N.json", "dp"}
    meta-c0000000N.json      watermark, counts, manifest, and which segment holds each window
    seg-c0000000M.npz        the windows that changed in commit M: their states and revisions
                             (under DP: their contributions, or their noisy rows as Arrow IPC
                             bytes until the commit that publishes them)

``dp`` is the run's DP parameters (null: the k-threshold); a state is resumed only
with the same ones, since its windows were bounded and released under them.

A commit writes one segment with the windows changed since the last commit (a
window unchanged since stays in the segment that holds it) and one meta file,
syncs both, then replaces ``CURRENT``: that rename is the commit. The outputs
of commit N (``part-cN`` metric files, ``rejects-cN.jsonl``, record parts) are
written before it. On start, segments and meta files of a commit after the one
``CURRENT`` names are leftovers of an interrupted micro-batch and are removed,
as are segments no window refers to any more. Nothing here is pickle: arrays
in ``.npz`` files read with ``allow_pickle=False``
(:mod:`telemetry.metrics.persist`) and JSON.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from telemetry.errors import ConfigError, InputError
from telemetry.metrics.persist import (
    contributions_arrays,
    contributions_from_arrays,
    ipc_bytes,
    ipc_table,
    read_npz,
    state_arrays,
    state_from_arrays,
    write_npz,
)
from telemetry.metrics.spec import AggSpec
from telemetry.stream.book import Window
from telemetry.stream.dpwindow import DpWindow

if TYPE_CHECKING:
    from telemetry.metrics.dp import Params

FORMAT = "telemetry-stream-state"
VERSION = 2  # 2: DP windows and the "dp" entry of CURRENT; a version 1 state is a k-threshold one
_OWN = re.compile(r"^(seg|meta)-c(\d{8})\.(npz|json)$")


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

    def __init__(self, root: Path, spec: AggSpec, dp: tuple[Params, int] | None = None) -> None:
        from dataclasses import asdict

        self.root = root
        self.spec = spec
        self.dp = dp  # the DP parameters and bounding key of the run
        self._dp_header = asdict(dp[0]) if dp is not None else None
        if root.exists() and not root.is_dir():
            raise ConfigError(f"state directory {root} is a file; name a directory with --state")
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        self._segments: dict[int, str] = {}  # window index -> the segment holding it

    def committed(self) -> tuple[int, dict[str, Any], dict[int, Window]]:
        """The last commit (0, {}, {} when there is none), after removing what an
        interrupted commit left here."""
        current = self.root / "CURRENT"
        if not current.exists():
            self._clean(0)
            return 0, {}, {}
        head = _read_json(current)
        if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") not in (1, VERSION):
            raise InputError(f"{current} is not a telemetry stream state of format version {VERSION}")
        if head.get("dp") != self._dp_header:
            raise ConfigError(f"the state in {self.root} was written "
                              f"{'without' if head.get('dp') is None else 'with other'} differential privacy "
                              "settings than this run's; use the same --dp-* options, or a new --state directory")
        n = int(head["commit"])
        meta = _read_json(self.root / head["meta"])
        self._segments = {int(index): name for index, name in meta.pop("segments")}
        self._clean(n)
        windows = {}
        loaded: dict[str, dict[str, np.ndarray]] = {}
        for index, name in self._segments.items():
            arrays = loaded.get(name)
            if arrays is None:
                arrays = loaded[name] = read_npz(self.root / name)
            windows[index] = self._window(index, arrays, name)
        return n, meta, windows

    def _window(self, index: int, arrays: dict[str, np.ndarray], where: str) -> Window | DpWindow:
        def part(kind: str) -> dict[str, np.ndarray]:
            prefix = f"w{index}/{kind}/"
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        damaged = InputError(f"stream state file {where} is damaged; the state directory cannot be used")
        try:
            info = json.loads(bytes(arrays[f"w{index}/info"]).decode())
        except (KeyError, ValueError):
            raise damaged from None
        if self.dp is not None:
            total = part("dp")
            try:
                table = ipc_table(arrays[f"w{index}/noisy"]) if f"w{index}/noisy" in arrays else None
            except pa.ArrowInvalid:
                raise damaged from None
            outcome = info.get("outcome") if isinstance(info, dict) else None
            if (outcome is None) != (table is None) or (table is None) == (not total):
                raise damaged
            return DpWindow(index, contributions_from_arrays(total, self.spec, *self.dp, where) if total else None,
                            table, outcome, changed=False)  # fmt: skip
        delta = part("delta")
        return Window(
            index,
            state_from_arrays(part("total"), self.spec, where),
            state_from_arrays(delta, self.spec, where) if delta else None,
            released=bool(info["released"]),
            rows={tuple(k): list(v) for k, v in info["rows"]},
            own={tuple(k) for k in info["own"]},
            changed=False,
        )

    def _clean(self, committed: int) -> None:
        """Remove segments and meta files of later commits, and segments nothing refers to."""
        live = set(self._segments.values()) | {f"meta-{commit_tag(committed)}.json"}
        for entry in self.root.iterdir():
            m = _OWN.match(entry.name)
            if (m and entry.name not in live) or entry.name.startswith("."):
                entry.unlink()

    def commit(self, n: int, meta: dict[str, Any], windows: dict[int, Window]) -> None:
        """Write commit ``n`` and make it the current one."""
        tag = commit_tag(n)
        changed = [index for index in sorted(windows) if windows[index].changed or index not in self._segments]
        if changed:
            arrays: dict[str, np.ndarray] = {}
            for index in changed:
                arrays.update(_window_arrays(windows[index]))
            write_npz(self.root / f"seg-{tag}.npz", arrays)
        segments = {index: self._segments.get(index) for index in windows}
        segments.update({index: f"seg-{tag}.npz" for index in changed})
        name = f"meta-{tag}.json"
        _write_json(self.root / name, {**meta, "segments": sorted(segments.items())})
        _write_json(self.root / "CURRENT",
                    {"format": FORMAT, "version": VERSION, "commit": n, "meta": name, "dp": self._dp_header})
        _sync_dir(self.root)
        self._segments = segments
        self._clean(n)
        for window in windows.values():
            window.changed = False


def _window_arrays(window: Window | DpWindow) -> dict[str, np.ndarray]:
    index = window.index
    arrays: dict[str, np.ndarray] = {}
    if isinstance(window, DpWindow):
        if window.total is not None:
            arrays.update({f"w{index}/dp/{k}": v for k, v in contributions_arrays(window.total).items()})
        if window.table is not None:
            arrays[f"w{index}/noisy"] = ipc_bytes(window.table)
        info: dict[str, Any] = {"outcome": window.outcome}
    else:
        for kind, state in (("total", window.total), ("delta", window.delta)):
            if state is not None:
                arrays.update({f"w{index}/{kind}/{k}": v for k, v in state_arrays(state).items()})
        info = {"released": window.released, "rows": [[list(k), v] for k, v in window.rows.items()],
                "own": [list(k) for k in window.own]}
    arrays[f"w{index}/info"] = np.frombuffer(json.dumps(info).encode(), np.uint8)
    return arrays
