"""Opt-out list: subscribers who objected to processing (SPEC section 5).

The list holds pseudonyms, never clear identifiers: for every key epoch of the
keyring at the time an identifier is added, its pseudonym under that epoch,
filed under the epoch's ``key_id``. Records whose source or destination
matches are excluded before aggregation and counted in ``records_opted_out``.

A pseudonym is bound to its epoch: after ``telemetry keys rotate`` the new
epoch has new pseudonyms, so standing objections must be added again (the
operator keeps the requests themselves; this list cannot be re-keyed because
it holds no clear identifiers). ``process`` warns when the keyring has an epoch
that the list does not cover.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from telemetry.errors import ConfigError
from telemetry.files import replace_file

FORMAT = "telemetry-optout/1"


class OptOut:
    def __init__(self, entries: dict[str, set[str]] | None = None) -> None:
        self.entries: dict[str, set[str]] = {k: set(v) for k, v in (entries or {}).items()}
        self._arrays: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "OptOut":
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError
            entries = {str(k): {str(p) for p in v} for k, v in data["entries"].items()}
            for values in entries.values():
                for value in values:
                    bytes.fromhex(value)
                    if len(value) != 32:
                        raise ValueError
        except (OSError, ValueError, KeyError, AttributeError, TypeError, RecursionError):
            raise ConfigError(f"opt-out list {path} is not a {FORMAT} file") from None
        return cls(entries)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        data = {"format": FORMAT, "entries": {k: sorted(v) for k, v in sorted(self.entries.items())}}
        replace_file(path, json.dumps(data, indent=1) + "\n", mode=0o600)

    def add(self, key_id: str, pseudonyms: Iterable[str]) -> int:
        bucket = self.entries.setdefault(key_id, set())
        before = len(bucket)
        bucket.update(pseudonyms)
        self._arrays.pop(key_id, None)
        return len(bucket) - before

    def remove(self, key_id: str, pseudonyms: Iterable[str]) -> int:
        bucket = self.entries.get(key_id, set())
        before = len(bucket)
        bucket.difference_update(pseudonyms)
        self._arrays.pop(key_id, None)
        return before - len(bucket)

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def uncovered(self, key_ids: Sequence[str]) -> list[str]:
        """Epochs of the keyring for which the list holds nothing."""
        return [k for k in key_ids if not self.entries.get(k)] if self.entries else []

    def _array(self, key_id: str) -> np.ndarray:
        if key_id not in self._arrays:
            values = sorted(bytes.fromhex(v) for v in self.entries.get(key_id, ()))
            self._arrays[key_id] = np.array(values, dtype="S16")
        return self._arrays[key_id]

    def matches(self, pseudonyms: pa.Array, key_index: np.ndarray, key_ids: Sequence[str]) -> np.ndarray:
        """Rows whose pseudonym (under the row's epoch) is on the list."""
        n = len(pseudonyms)
        out = np.zeros(n, dtype=np.bool_)
        if not self.entries or n == 0:
            return out
        buf = pseudonyms.buffers()[1]
        values = np.frombuffer(buf, dtype="S16")[pseudonyms.offset : pseudonyms.offset + n]
        for k, key_id in enumerate(key_ids):
            listed = self._array(key_id)
            if listed.size == 0:
                continue
            rows = np.flatnonzero(key_index == k)
            out[rows] = np.isin(values[rows], listed)
        if pseudonyms.null_count:
            out &= ~np.asarray(pseudonyms.is_null(), dtype=np.bool_)
        return out
