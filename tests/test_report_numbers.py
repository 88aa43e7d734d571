"""Every number ``report.html`` shows, read back from the page (chart points and interval
bands through the chart's own axes, heatmap cells and their low-volume marks, the movers
and privacy tables, the header).

Reference: DuckDB SQL over metric rows the test writes (tests/metricrows.py), following
docs/outputs.md and docs/metrics.md, and the Wilson interval as the quadratic roots of the
score test (tests/reference_metrics.wilson_roots); nothing of telemetry.sinks or
telemetry.metrics.intervals is used to compute them.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

import duckdb
import numpy as np
import pytest

from telemetry.sinks.metricsdir import OTHER
from telemetry.sinks.report import render
from tests import metricrows
from tests.reference_metrics import wilson_roots

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)
START = dt.datetime(2026, 3, 2, 6, tzinfo=UTC)
WINDOWS = 6
LONG_WINDOWS = 60
SVG = "{http://www.w3.org/2000/svg}"
RUN = {"records_in": 123_456, "records_ok": 120_000, "records_quarantined": 3_000, "records_opted_out": 456,
       "rows_released": 321, "rows_rolled_up": 17, "rows_withheld": 4, "records_withheld": 1_234, "k": 5}  # fmt: skip

VOICE = "channel IN ('voice', 'voicemail', 'conference')"
MESSAGE = "channel IN ('sms', 'mms')"
# NER counts every call that reached the user (ITU-T E.425), rejected included.
REACHED = "answered + busy + no_answer + rejected"
# docs/outputs.md: a heatmap cell whose 95% interval is wider than 20 points says nothing.
WIDE = 0.2
MOVERS = "Biggest movers: latest window against the previous one"


def _calls(answered: int, attempts: int) -> dict:
    """A voice row with exactly ``answered`` of ``attempts`` answered, the rest failed."""
    row = dict.fromkeys(metricrows.VOICE_STATUSES, 0) | {"answered": answered, "failed": attempts - answered}
    return row | {"attempts": attempts, "asr": answered / attempts, "ner": answered / attempts}


def _write(out: Path, windows: int) -> tuple[Path, duckdb.DuckDBPyConnection]:
    """Hourly windows: nine voice routes (the page draws the eight busiest), some silent
    in some hours (gaps), three message routes, roll-up rows, rows without PDD."""
    rng = np.random.default_rng(21)
    rows = []
    for i in range(windows):
        w = metricrows.window(START + i * HOUR, HOUR)
        for r in range(9):
            if (i + r) % 5 == 4:
                continue  # the route carried no call that hour: a gap in its line
            for region in ("GB-ENG", "GB-WLS", "GB-SCT" if r % 3 else None):
                channel = ("voice", "voicemail", "conference")[int(rng.integers(0, 3))]
                attempts = int(rng.integers(30, 400)) * (r + 1)
                rows.append(w | {"channel": channel, "route": f"trunk-{r}", "dst_region": region}
                            | metricrows.voice_row(rng, attempts))
        for r in range(3):
            for region, channel in (("GB-ENG", "sms"), ("GB-NIR", "mms"), ("GB-SCT", "sms")):
                rows.append(w | {"channel": channel, "route": f"smsc-{r}", "dst_region": region}
                            | metricrows.message_row(rng, int(rng.integers(40, 600))))
        rows.append(w | {"channel": "voice", "route": OTHER, "dst_region": OTHER} | metricrows.voice_row(rng, 9))
        rows.append(w | {"channel": "sms", "route": "smsc-0", "dst_region": OTHER} | metricrows.message_row(rng, 8))
        rows.append(w | {"channel": "voice", "route": "trunk-8", "dst_region": "GB-NIR"} | metricrows.voice_row(rng, 2))
    last = START + (windows - 1) * HOUR
    for row in rows:  # real moves in the last window: trunk-3 answers its busy calls, smsc-1 halves delivery
        if row["window_start"] == last and row["route"] == "trunk-3":
            row |= {"answered": row["answered"] + row["busy"], "busy": 0}
            row["asr"] = row["answered"] / row["attempts"]
        elif row["window_start"] == last and row["route"] == "smsc-1":
            moved = row["delivered"] // 2
            row |= {"delivered": row["delivered"] - moved, "undelivered": row["undelivered"] + moved}
            row["delivery_rate"] = row["delivered"] / row["submitted"]
    # either side of the low-volume rule at 50 %: 46 of 92 spans 20.1 points, 47 of 93 spans 19.9
    w = metricrows.window(START, HOUR)
    rows.append(w | {"channel": "voice", "route": "trunk-7", "dst_region": "GB-NIR"} | _calls(46, 92))
    rows.append(w | {"channel": "voice", "route": "trunk-6", "dst_region": "GB-NIR"} | _calls(47, 93))
    for row in rows[3:40:6]:
        row |= {"pdd_p50_ms": None, "pdd_p95_ms": None, "pdd_p99_ms": None}  # no record with a PDD
    metricrows.write(out, rows, RUN)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW rows AS SELECT *, CAST(epoch(window_start) AS BIGINT) AS t FROM read_parquet('{out}/metrics/*/*.parquet')")
    return out, con


def _sections(out: Path) -> dict[str, str]:
    """The rendered page, split at its section headings (the part before the first is '')."""
    html = render(out)
    parts = re.split(r"<h2>(.*?)</h2>", html)
    return {"": parts[0]} | {unescape(title): body for title, body in zip(parts[1::2], parts[2::2])}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, duckdb.DuckDBPyConnection]:
    return _write(tmp_path_factory.mktemp("written"), WINDOWS)


@pytest.fixture(scope="module")
def page(written) -> dict[str, str]:
    return _sections(written[0])


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """Sixty hourly windows: more than a line's 48 points, so the page groups them in twos."""
    out, con = _write(tmp_path_factory.mktemp("long"), LONG_WINDOWS)
    return con, _sections(out)


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _top(con, where: str, volume: str) -> list[str]:
    return [r for r, in _rows(con, f"SELECT route FROM rows WHERE {where} GROUP BY route "
                                   f"ORDER BY sum({volume}) DESC, route LIMIT 8")]


def _svg(section: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*?</svg>", section, re.S).group(0))


def _children(svg: ET.Element, tag: str) -> list[ET.Element]:
    return [e for e in svg if e.tag == SVG + tag]


def _value_axis(svg: ET.Element, parse):
    """Pixel y to value, from the drawn grid lines and their labels (first and last)."""
    lines = _children(svg, "line")
    labels = [t for t in _children(svg, "text") if t.get("text-anchor") == "end"]
    assert len(lines) == len(labels) == 5
    (y0, v0), (y1, v1) = [(float(ln.get("y1")), parse(t.text)) for ln, t in (zip(lines, labels))][::4]
    return lambda y: v0 + (y - y0) * (v1 - v0) / (y1 - y0)


def _time_axis(svg: ET.Element):
    """Pixel x to the window it marks, from the drawn time ticks (the data's year)."""
    def when(label: str) -> dt.datetime:  # "HH:MM" within a day, else "MM-DD HH:MM"
        if len(label) == 5:
            return dt.datetime.combine(START.date(), dt.time.fromisoformat(label), UTC)
        return dt.datetime.strptime(f"{START.year}-{label}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)

    ticks = [(float(t.get("x")), when(t.text)) for t in _children(svg, "text") if t.get("text-anchor") == "middle"]
    assert len(ticks) >= 2
    (x0, t0), (x1, t1) = ticks[0], ticks[-1]

    def window(x: float) -> float:
        t = t0.timestamp() + (x - x0) * (t1 - t0).total_seconds() / (x1 - x0)
        start = round(t / 3600) * 3600
        assert abs(t - start) < 60, "a point between windows"
        return start

    return window


def _points(spec: str) -> list[tuple[float, float]]:
    return [tuple(map(float, p.lstrip("ML").split(","))) for p in spec.split()]


def _pct(text: str) -> float:
    return float(text.rstrip("%")) / 100


def _number(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def _lines(section: str) -> dict[str, dict[float, float]]:
    """Each line of a line chart as {window start (UNIX s): value}; a gap is no key."""
    svg = _svg(section)
    value, window = _value_axis(svg, _pct), _time_axis(svg)
    return {path.find(SVG + "title").text: {window(x): value(y) for x, y in _points(path.get("d"))}
            for path in _children(svg, "path")}


def _bands(section: str) -> tuple[dict[str, dict[float, tuple[float, float]]], dict[str, list[list[float]]]]:
    """Each line's interval band as {window start: (low, high)}, and the windows of each of
    its polygons (one per run of consecutive windows, high edge forward, then low edge back)."""
    svg = _svg(section)
    value, window = _value_axis(svg, _pct), _time_axis(svg)
    (group,) = _children(svg, "g")
    bands: dict[str, dict[float, tuple[float, float]]] = {}
    runs: dict[str, list[list[float]]] = {}
    for polygon in _children(group, "polygon"):
        route = polygon.find(SVG + "title").text.removesuffix(": 95% interval")
        edge = [tuple(map(float, p.split(","))) for p in polygon.get("points").split()]
        n = len(edge) // 2
        high, low = edge[:n], edge[n:][::-1]
        assert [x for x, _ in high] == [x for x, _ in low]
        runs.setdefault(route, []).append([window(x) for x, _ in high])
        for (x, y_high), (_, y_low) in zip(high, low):
            bands.setdefault(route, {})[window(x)] = (value(y_low), value(y_high))
    return bands, runs


def _runs(present: set[float], buckets: set[float]) -> list[list[float]]:
    """The maximal runs of consecutive ``buckets`` that are all in ``present``."""
    runs: list[list[float]] = [[]]
    for t in sorted(buckets):
        if t in present:
            runs[-1].append(t)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


# The value axis is drawn from 0 to 100 % over 210 px and coordinates are printed to 0.1 px:
# a point reads back within 0.05 % of its value (the mutations below move values by percents).
LINE_TOLERANCE = 5e-4


LINES = pytest.mark.parametrize("title, where, volume, numerator, denominator", [
    ("Answer-seizure ratio (ASR) per route", VOICE, "attempts", "answered", "attempts"),
    ("Network-effectiveness ratio (NER) per route", VOICE, "attempts", REACHED, "attempts"),
    ("SMS/MMS delivery rate per route", MESSAGE, "submitted", "delivered", "submitted"),
], ids=["asr", "ner", "delivery_rate"])  # fmt: skip


def _check_lines(con, section: str, where: str, volume: str, numerator: str, denominator: str,
                 bucket: int) -> int:
    """Each drawn line against the ratio of the summed counts per ``bucket`` seconds of
    windows (epoch-aligned), and its band against the Wilson interval of those counts;
    returns the number of gaps (buckets a route had no row in)."""
    top = _top(con, where, volume)
    expected = {}
    for route, t, n, d in _rows(con, f"SELECT route, t // {bucket} * {bucket} AS b, sum({numerator}), "
                                     f"sum({denominator}) FROM rows "
                                     f"WHERE {where} AND route IN {tuple(top)} GROUP BY route, b"):
        expected.setdefault(route, {})[t] = (n / d, *wilson_roots(n, d))
    buckets = {t for t, in _rows(con, f"SELECT DISTINCT t // {bucket} * {bucket} FROM rows WHERE {where}")}
    drawn, (bands, runs) = _lines(section), _bands(section)
    assert list(drawn) == top  # the eight busiest routes, busiest first (legend order)
    assert list(bands) == top  # a band per line, behind all lines in the same order
    for route in top:
        assert drawn[route].keys() == expected[route].keys(), route  # gaps where the route was silent
        assert runs[route] == _runs(set(expected[route]), buckets), route  # a band breaks at each gap
        for t, (value, low, high) in expected[route].items():
            assert drawn[route][t] == pytest.approx(value, abs=LINE_TOLERANCE), (route, t)
            assert bands[route][t] == pytest.approx((low, high), abs=LINE_TOLERANCE), (route, t)
    return sum(len(buckets) - len(expected[route]) for route in top)


@LINES
def test_line_chart_points_are_the_ratios_of_the_summed_counts(written, page, title, where, volume,
                                                               numerator, denominator) -> None:
    gaps = _check_lines(written[1], page[title], where, volume, numerator, denominator, 3600)
    assert gaps > 0 or where == MESSAGE
    # each band is translucent, in its line's colour, and drawn before (behind) every line
    svg = list(_svg(page[title]))
    group = next(e for e in svg if e.tag == SVG + "g")
    lines = [e for e in svg if e.tag == SVG + "path"]
    assert svg.index(group) < svg.index(lines[0])
    colour = {path.find(SVG + "title").text: path.get("stroke") for path in lines}
    for polygon in _children(group, "polygon"):
        assert polygon.get("fill") == colour[polygon.find(SVG + "title").text.removesuffix(": 95% interval")]
        assert float(polygon.get("fill-opacity")) < 0.3


@LINES
def test_line_chart_of_many_windows_groups_them_and_recomputes_the_ratios(long_run, title, where, volume,
                                                                          numerator, denominator) -> None:
    # 60 windows of 1 h: a line has at most 48 points, so windows are grouped by 2 h (docs/outputs.md)
    con, sections = long_run
    _check_lines(con, sections[title], where, volume, numerator, denominator, 2 * 3600)
    assert len(next(iter(_lines(sections[title]).values()))) > 24


@pytest.mark.parametrize("title, where, columns, weight, parse", [
    ("Post-dial delay percentiles (all voice routes)", VOICE, ("pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms"),
     "attempts", _number),
    ("Delivery latency percentiles (all message routes)", MESSAGE,
     ("latency_p50_s", "latency_p95_s", "latency_p99_s"), "delivered", _number),
], ids=["pdd", "latency"])  # fmt: skip
def test_band_chart_points_are_weighted_means_of_the_row_percentiles(written, page, title, where, columns,
                                                                     weight, parse) -> None:
    _, con = written
    means = ", ".join(f"sum({c} * {weight}) / sum({weight}) FILTER (WHERE {c} IS NOT NULL)" for c in columns)
    expected = {t: v for t, *v in _rows(con, f"SELECT t, {means} FROM rows WHERE {where} GROUP BY t")}
    svg = _svg(page[title])
    value, window = _value_axis(svg, parse), _time_axis(svg)
    top = max(v for vs in expected.values() for v in vs)
    # the axis labels are rounded (1 ms, 0.1 s) and the top one is 1.05 x the highest value
    tolerance = top * 1.05 * 1e-3
    polygon = _points(_children(svg, "polygon")[0].get("points").replace(" ", " L"))
    n = len(polygon) // 2
    mid, high = (_points(p.get("d")) for p in _children(svg, "path"))
    drawn = {"low": polygon[n:][::-1], "mid": mid, "high": polygon[:n]}
    assert len(mid) == n == len(expected) == WINDOWS
    for i, part in enumerate(("low", "mid", "high")):
        for x, y in drawn[part]:
            assert value(y) == pytest.approx(expected[window(x)][i], abs=tolerance), (part, window(x))
    assert high == drawn["high"]


@pytest.mark.parametrize("title, where, volume, numerator, denominator, unit", [
    ("ASR by route × destination region (whole period)", VOICE, "attempts", "answered", "attempts", "attempts"),
    ("Delivery rate by route × destination region (whole period)", MESSAGE, "submitted", "delivered",
     "submitted", "messages"),
], ids=["asr", "delivery_rate"])  # fmt: skip
def test_heatmap_cells_are_the_ratios_of_the_summed_counts(written, page, title, where, volume, numerator,
                                                           denominator, unit) -> None:
    """Each cell's value, interval and volume; a cell whose interval spans more than 20
    points is grey and hatched, its value in grey, and its tooltip says why."""
    _, con = written
    top = _top(con, where, volume)
    expected = {}
    for route, region, n, d in _rows(con, f"SELECT route, coalesce(dst_region, '(none)'), sum({numerator}), "
                                          f"sum({denominator}) FROM rows "
                                          f"WHERE {where} AND route IN {tuple(top)} GROUP BY ALL"):
        low, high = wilson_roots(n, d)
        note = f"95% interval {low:.1%}–{high:.1%} from {d:,} {unit}"
        faint = high - low > WIDE
        expected[(route, region)] = (f"{n / d:.1%} ({'too little volume: ' if faint else ''}{note})",
                                     f"{n / d:.0%}", faint)
    regions = sorted({region for _, region in expected}, key=lambda c: (c == OTHER, c))
    section = page[title]
    svg = _svg(section)
    shown, blank = {}, 0
    elements = [e for e in svg if e.tag in (SVG + "rect", SVG + "path", SVG + "text")]
    for i, rect in enumerate(elements):
        tip = rect.find(SVG + "title")
        if rect.tag != SVG + "rect":
            continue
        if tip is None:
            blank += 1
            continue
        cell, _, text = tip.text.partition(": ")
        route, _, region = cell.partition(" × ")
        hatched = elements[i + 1].tag == SVG + "path"
        label = elements[i + 1 + hatched]
        grey = (rect.get("fill"), label.get("fill")) == ("#e4e4e4", "#666")
        assert grey == hatched, cell  # greyed and hatched together, or neither
        shown[(route, region)] = (text, label.text, hatched)
    assert blank == len(top) * len(regions) - len(expected) > 0
    assert shown == expected
    assert {faint for *_, faint in expected.values()} == {True, False}
    if where == VOICE:  # the two cells either side of the rule
        assert (expected[("trunk-7", "GB-NIR")][2], expected[("trunk-6", "GB-NIR")][2]) == (True, False)
    assert f"wider than 20 points (hi − lo &gt; {WIDE})" in section


def _movers(con, where: str, numerator: str, denominator: str, label: str) -> list[tuple]:
    """(separation, label, route, the table's cells) per route in both of the last two windows."""
    rows = []
    for route, n0, d0, n1, d1 in _rows(con, f"""
            WITH last AS (SELECT DISTINCT t FROM rows WHERE {where} ORDER BY t DESC LIMIT 2),
            per AS (SELECT route, t, sum({numerator}) AS n, sum({denominator}) AS d
                    FROM rows WHERE {where} AND t IN (SELECT t FROM last) GROUP BY route, t)
            SELECT a.route, a.n, a.d, b.n, b.d FROM per a JOIN per b ON a.route = b.route AND a.t < b.t"""):
        (lo0, hi0), (lo1, hi1) = wilson_roots(n0, d0), wilson_roots(n1, d1)
        separation = max(lo1 - hi0, lo0 - hi1)  # > 0: the intervals do not overlap
        verdict = "changed" if separation > 0 else "not significant"
        rows.append((separation, label, route, (
            "" if separation > 0 else ' class="ns"', route, label, f"{n0 / d0:.1%}", f"{lo0:.1%}–{hi0:.1%}",
            f"{d0:,}", f"{n1 / d1:.1%}", f"{lo1:.1%}–{hi1:.1%}", f"{d1:,}", f"{(n1 / d1 - n0 / d0) * 100:+.1f} pp",
            f"{separation * 100:+.1f} pp", verdict)))
    return rows


def _movers_table(section: str) -> list[tuple[str, ...]]:
    table = re.findall(r"<tr([^>]*)>" + r"<td[^>]*>(.*?)</td>" * 11 + "</tr>", section)
    return [tuple(unescape(c) for c in row) for row in table]


def test_movers_are_ranked_by_how_far_the_new_interval_lies_from_the_old(written, page) -> None:
    _, con = written
    rows = (_movers(con, VOICE, "answered", "attempts", "ASR")
            + _movers(con, MESSAGE, "delivered", "submitted", "delivery rate"))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    expected = [cells for *_, cells in rows[:10]]
    assert _movers_table(page[MOVERS]) == expected
    assert {r[2] for r in expected} == {"ASR", "delivery rate"}
    assert {r[0] for r in expected} == {"", ' class="ns"'}  # both kinds of row are on the page


def test_a_big_fall_on_few_calls_ranks_below_a_smaller_fall_on_many(tmp_path) -> None:
    """The issue's case: ASR 30/47 -> 23/47 (15 points down, intervals overlap) ranks below
    3,100/5,000 -> 2,700/5,000 (8 points down, far apart), and is marked not significant.
    Two routes either side of the line: 500/1,000 -> 562/1,000 leaves a gap of 0.014 points,
    -> 561/1,000 overlaps by 0.086."""
    routes = {"trunk-few": ((30, 47), (23, 47)), "trunk-many": ((3100, 5000), (2700, 5000)),
              "trunk-apart": ((500, 1000), (562, 1000)), "trunk-touching": ((500, 1000), (561, 1000))}
    rows = []
    for i in range(2):
        w = metricrows.window(START + i * HOUR, HOUR)
        rows += [w | {"channel": "voice", "route": route, "dst_region": "GB-ENG"} | _calls(*calls[i])
                 for route, calls in routes.items()]
    out, con = tmp_path, duckdb.connect()
    metricrows.write(out, rows, RUN)
    con.execute(f"CREATE VIEW rows AS SELECT *, CAST(epoch(window_start) AS BIGINT) AS t "
                f"FROM read_parquet('{out}/metrics/*/*.parquet')")
    expected = sorted(_movers(con, VOICE, "answered", "attempts", "ASR"), reverse=True)
    assert [r[2] for r in expected] == ["trunk-many", "trunk-apart", "trunk-touching", "trunk-few"]
    table = _movers_table(_sections(out)[MOVERS])
    assert table == [cells for *_, cells in expected]
    many, apart, touching, few = table
    assert (many[9], many[11], many[0]) == ("-8.0 pp", "changed", "")
    assert (few[9], few[11], few[0]) == ("-14.9 pp", "not significant", ' class="ns"')
    assert abs(float(few[9][:-3])) > abs(float(many[9][:-3]))  # ranked by raw change, it would lead
    assert (apart[10], apart[11], touching[10], touching[11]) == ("+0.0 pp", "changed", "-0.1 pp",
                                                                  "not significant")


def test_privacy_section_and_header(written, page) -> None:
    _, con = written
    section = page["Rolled up and withheld"]
    cells = dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", section))
    assert cells == {
        "records read": "123,456", "records aggregated": "120,000", "records quarantined": "3,000",
        "records opted out": "456", "metric rows released": "321", "groups rolled up into __other__ rows": "17",
        "groups withheld (below k even after roll-up)": "4", "records withheld": "1,234",
    }  # fmt: skip
    volume = "coalesce(attempts, 0) + coalesce(submitted, 0)"
    rolled, total = _rows(con, f"SELECT sum({volume}) FILTER (WHERE route = '{OTHER}' OR dst_region = '{OTHER}'), "
                               f"sum({volume}) FROM rows")[0]
    assert rolled > 0
    assert (f"Records in rows with an <code>__other__</code> dimension: {rolled:,} of {total:,} released "
            f"({rolled / total:.1%}). Withheld: {1234 / 120_000:.2%} of aggregated records (k = 5).") in section
    first, last, windows = _rows(con, "SELECT min(window_start), max(window_end), count(DISTINCT window_start) "
                                      "FROM rows")[0]
    assert f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, {windows:,} windows" in page[""]
