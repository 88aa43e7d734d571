"""Rate-deck loading and longest-prefix lookup against a slow Python twin.

Reference: a slow Python longest-prefix twin."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from telemetry.errors import ConfigError
from telemetry.ratedeck import RateDeck

DECK = """prefix,name
44,United Kingdom
447,United Kingdom Mobile
+4477009,UK Drama Mobile
1,NANP
1201,US New Jersey
"1246","Barbados, Bridgetown"
# comment line

"""


def slow_lookup(entries: dict[str, str], value: str | None):
    if value is None or not value.startswith("+") or not value[1:].isdigit():
        return None, None
    best = None
    for prefix in entries:
        if value[1:].startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return (best, entries[best]) if best else (None, None)


@pytest.fixture
def deck_file(tmp_path):
    path = tmp_path / "deck.csv"
    path.write_text(DECK, encoding="utf-8")
    return path


def test_load_and_lookup(deck_file):
    deck = RateDeck.load(deck_file)
    assert len(deck) == 6
    values = pa.array(["+447700900123", "+442079460123", "+12015550123", "+12462345678", "+33123456789",
                       None, "sip:a@b.example", "112", "+", "+4477009"])  # fmt: skip
    prefix, name = deck.lookup(values)
    assert prefix.to_pylist() == ["4477009", "44", "1201", "1246", None, None, None, None, None, "4477009"]
    assert name.to_pylist()[3] == "Barbados, Bridgetown"
    assert prefix.type == pa.string() and name.type == pa.string()


def test_random_lookups_match_slow_twin():
    rng = random.Random(4)
    entries = {}
    while len(entries) < 300:
        entries["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))] = f"dest{len(entries)}"
    deck = RateDeck.from_entries(entries)
    values = ["+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15))) for _ in range(5000)]
    values += [None, "withheld", "+12a4", ""]
    chunked = pa.chunked_array([pa.array(values[:100]), pa.array(values[100:], type=pa.string())])
    prefix, name = deck.lookup(chunked)
    assert list(zip(prefix.to_pylist(), name.to_pylist())) == [slow_lookup(entries, v) for v in values]
    sliced = pa.array(["x"] + values, type=pa.large_string()).slice(1)
    assert deck.lookup(sliced)[0].to_pylist() == prefix.to_pylist()


@pytest.mark.parametrize(
    "text, line",
    [("44,UK\nabc,Nowhere\n", 2), ("44\n", 1), ("44,UK\n44,Again\n", 2), ("44,\n", 1),
     ("1234567890123456,Too long\n", 1), ("prefix,name\n+,Empty\n", 2)],
)  # fmt: skip
def test_bad_lines_name_file_and_line(tmp_path, text, line):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"bad\.csv, line {line}:"):
        RateDeck.load(path)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        RateDeck.load(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("prefix,name\n")
    with pytest.raises(ConfigError, match="no 'prefix,name' lines"):
        RateDeck.load(tmp_path / "empty.csv")


def test_works_on_normalized_output(deck_file):
    from telemetry.numbering import normalize

    ids = normalize(pa.array(["020 7946 0123", "07700 900123", "anonymous"]), "GB").ids
    assert RateDeck.load(deck_file).lookup(ids)[0].to_pylist() == ["44", "4477009", None]
