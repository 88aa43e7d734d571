"""Rate decks (dial-code tables): ``prefix,name`` CSV → longest-prefix match.

A deck maps E.164 dial codes to destination names (``44,United Kingdom``,
``447,United Kingdom Mobile``). :meth:`RateDeck.lookup` gives each normalized
number the longest matching prefix (``dst_prefix``, digits without ``+``) and
its name; identifiers that are not ``+digits`` get null.

File format: UTF-8 CSV, one ``prefix,name`` per line, an optional header line
whose first field is not a prefix (``prefix,name``), blank lines and lines
starting with ``#`` ignored. A prefix is 1–15 digits with an optional leading
``+``; a name is non-empty. A malformed line or a prefix given twice is a
:class:`~telemetry.errors.ConfigError` naming the file and line.
"""

from __future__ import annotations

import csv
import os
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from telemetry.errors import ConfigError

MAX_PREFIX = 15


class _Trie(NamedTuple):
    children: np.ndarray  # int32 [nodes, 10]
    value: np.ndarray  # int32 [nodes] entry index or -1


class RateDeck:
    """A loaded rate deck; build with :meth:`load` or :meth:`from_entries`."""

    def __init__(self, prefixes: list[str], names: list[str]) -> None:
        self.prefixes = pa.array(prefixes, type=pa.string())
        self.names = pa.array(names, type=pa.string())
        self._trie = _build_trie(prefixes)

    def __len__(self) -> int:
        return len(self.prefixes)

    @classmethod
    def from_entries(cls, entries: dict[str, str]) -> RateDeck:
        """A deck from ``{prefix: name}`` (prefixes as digits, optional ``+``)."""
        prefixes, names = [], []
        for prefix, name in entries.items():
            digits = prefix[1:] if prefix.startswith("+") else prefix
            if not (digits.isascii() and digits.isdigit() and 1 <= len(digits) <= MAX_PREFIX) or not name:
                raise ValueError("rate deck prefixes must be 1-15 digits with an optional leading +, names non-empty")
            prefixes.append(digits)
            names.append(name)
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("rate deck prefixes must be unique")
        return cls(prefixes, names)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RateDeck:
        """Reads a ``prefix,name`` CSV file."""
        where = os.fspath(path)
        try:
            with open(where, encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"rate deck {where}: cannot be read ({type(exc).__name__}); give a UTF-8 CSV file") from None
        prefixes: list[str] = []
        names: list[str] = []
        seen: dict[str, int] = {}
        for lineno, row in enumerate(rows, start=1):
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
                continue
            first = row[0].strip()
            digits = first[1:] if first.startswith("+") else first
            is_prefix = digits.isascii() and digits.isdigit()
            if not is_prefix and not prefixes and not seen and lineno == _first_data_line(rows):
                continue  # header
            if len(row) < 2:
                raise ConfigError(f"rate deck {where}, line {lineno}: expected 'prefix,name'")
            if not is_prefix or not 1 <= len(digits) <= MAX_PREFIX:
                raise ConfigError(
                    f"rate deck {where}, line {lineno}: the prefix must be 1-{MAX_PREFIX} digits with an optional leading +"
                )
            name = ",".join(row[1:]).strip()
            if not name:
                raise ConfigError(f"rate deck {where}, line {lineno}: the name is empty")
            if digits in seen:
                raise ConfigError(f"rate deck {where}, line {lineno}: prefix already given on line {seen[digits]}")
            seen[digits] = lineno
            prefixes.append(digits)
            names.append(name)
        if not prefixes:
            raise ConfigError(f"rate deck {where}: no 'prefix,name' lines")
        return cls(prefixes, names)

    def lookup(self, e164: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
        """(prefix, name) of the longest matching prefix; null where none matches
        or the identifier is not ``+digits``."""
        from kernels.trie import longest_prefix
        from telemetry.arrowstr import string_views

        if isinstance(e164, pa.DictionaryArray):  # look each distinct value up once
            if len(e164.dictionary) > len(e164):  # a dictionary over more than these rows
                return self.lookup(e164.dictionary_decode())
            prefix, name = self.lookup(e164.dictionary)
            return prefix.take(e164.indices), name.take(e164.indices)
        chunks = e164.chunks if isinstance(e164, pa.ChunkedArray) else [e164]
        parts = []
        for chunk in chunks:
            views = string_views(chunk)
            parts.append(longest_prefix(views.offsets, views.data, views.valid, self._trie.children, self._trie.value))
        index = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        take = pa.array(index, mask=index < 0, type=pa.int32())
        return self.prefixes.take(take), self.names.take(take)


def _first_data_line(rows: list[list[str]]) -> int:
    for lineno, row in enumerate(rows, start=1):
        if row and not (len(row) == 1 and not row[0].strip()) and not row[0].lstrip().startswith("#"):
            return lineno
    return 0


def _build_trie(prefixes: list[str]) -> _Trie:
    children = [[0] * 10]
    value = [-1]
    for index, digits in enumerate(prefixes):
        node = 0
        for ch in digits:
            d = ord(ch) - 48
            nxt = children[node][d]
            if nxt == 0:
                nxt = len(children)
                children[node][d] = nxt
                children.append([0] * 10)
                value.append(-1)
            node = nxt
        value[node] = index
    return _Trie(np.asarray(children, dtype=np.int32), np.asarray(value, dtype=np.int32))
