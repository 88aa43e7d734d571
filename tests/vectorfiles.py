"""The one loader of the published vector files in ``tests/vectors/``."""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parent / "vectors"


def load_vectors(name: str) -> list[dict[str, str]]:
    """Records of ``tests/vectors/NAME``: ``Key = value`` lines, blank-line separated,
    ``#`` comments ignored. Values stay text; callers decode hex themselves."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for number, line in enumerate((VECTORS / name).read_text(encoding="ascii").splitlines(), 1):
        line = line.strip()
        if line.startswith("#"):
            continue
        if not line:
            if current:
                records.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{name}:{number}: expected 'Name = value'")
        current[key.strip()] = value.strip()
    if current:
        records.append(current)
    return records
