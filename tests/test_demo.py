"""``telemetry demo``'s summary: every number it prints checked against the Parquet rows it wrote
(row count; attempts + submitted per released row) and the records it generated."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from telemetry.cli import main

RECORDS = 5000


def _demo(out: Path, capsys, *options: str) -> str:
    assert main(["demo", "--out", str(out), "--records", str(RECORDS), *options]) == 0
    return capsys.readouterr().out


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return int(match.group(1).replace(",", ""))


def _route_rows(text: str) -> list[list[str]]:
    table = text.split("\nroute ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [row.split() for row in table]


@pytest.mark.parametrize("options", [(), ("--window", "1h", "--by", "route", "--k", "40")])
def test_each_number_answers_one_question_and_matches_the_rows(tmp_path, capsys, options) -> None:
    text = _demo(tmp_path, capsys, *options)
    rows = pl.read_parquet(tmp_path / "metrics" / "**" / "*.parquet")
    window = options[1] if options else "15m"
    grouping = "channel × route" if options else "channel × route × dst_region"
    assert f"metric rows, one per {window} window × {grouping} (in " in text
    assert _number(r"\n  ([\d,]+) released: each covers at least k=", text) == len(rows)
    withheld = _number(r"their ([\d,]+) records, ", text)
    assert withheld == RECORDS - (rows["attempts"].fill_null(0) + rows["submitted"].fill_null(0)).sum()
    share = float(re.search(r"records, ([\d.]+)% of those", text).group(1))
    assert share == pytest.approx(100 * withheld / RECORDS, abs=0.005)
    # one line per question: the run's withheld groups once, the route table's own aggregation once
    assert text.count("groups withheld (below k=") == 1 and text.count("of its groups withheld") <= 1
    assert "--window 1h" in text and "--by route" in text and "--k 3" in text


def test_the_route_table_names_what_its_own_aggregation_withheld(tmp_path, capsys) -> None:
    for k, label in (("1", "none of its groups withheld"), ("300", "of its groups withheld (")):
        text = _demo(tmp_path / k, capsys, "--k", k)
        header = next(line for line in text.splitlines() if line.startswith("top routes"))
        assert f"k={k}: " in header and label in header
        routes = _route_rows(text)
        shown = sum(int(r[1].replace(",", "")) if r[1] != "-" else 0 for r in routes) + sum(
            int(r[-2].replace(",", "")) if r[-2] != "-" else 0 for r in routes
        )
        hidden = 0 if k == "1" else _number(r"of its groups withheld \(([\d,]+) records\)", header)
        assert len(routes) < 10 and shown + hidden == RECORDS  # every route listed: nothing else missing
