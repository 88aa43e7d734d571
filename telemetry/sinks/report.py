"""``report.html``: one self-contained page over a metrics directory.

Everything is inline (SVG drawn here, CSS in the page) and a Content-Security-
Policy forbids any fetch, so the file works offline and cannot leak a request.
Ratios shown per route are recomputed from the counts of the released rows
(exact), each with the 95% Wilson interval of those summed counts: drawn as a
band on the charts, ranking the movers, and greying heatmap cells whose interval
is too wide to say anything. Percentiles do not merge, so the PDD and latency
bands are the volume-weighted mean of the per-row percentiles, and the page says so.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import polars as pl

from telemetry.files import replace_file
from telemetry.metrics.intervals import wilson
from telemetry.sinks import svg
from telemetry.sinks.metricsdir import (
    MESSAGE_CHANNELS, OTHER, VOICE_CHANNELS, check_dir, dimension_columns, read_metrics, read_run,
)

MAX_ROUTES = 8
MOVERS = 10
MAX_POINTS = 48  # per line chart, so eight routes stay readable
#: A heatmap cell whose 95% interval is wider than this (hi - lo) is drawn faint: too
#: little volume for its value to say anything (at a ratio of 50 %: fewer than 93 attempts).
WIDE = 0.2
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px}h2{font-size:17px;margin-top:30px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}.note{color:#666;font-size:12px}.up{color:#2a7d2a}.down{color:#b22}
tr.ns td{color:#999}td,th{white-space:nowrap}
"""


def _pct(v: float) -> str:
    return f"{v:.0%}"


def _ms(v: float) -> str:
    return f"{v:,.0f} ms"


def _s(v: float) -> str:
    return f"{v:,.1f} s"


def _route_col(df: pl.DataFrame) -> str | None:
    dims = dimension_columns(df)
    return "route" if "route" in dims else (dims[0] if dims else None)


def _top(df: pl.DataFrame, key: str, volume: str) -> list[str]:
    if df.is_empty():
        return []
    ranked = df.group_by(key).agg(pl.col(volume).sum()).sort([volume, key], descending=[True, False])
    return [str(v) for v in ranked[key].to_list()[:MAX_ROUTES]]


def _coarsen(df: pl.DataFrame) -> pl.DataFrame:
    """Group consecutive windows so a line has at most MAX_POINTS points; ratios stay
    exact because they are recomputed from the summed counts afterwards."""
    if df.is_empty():
        return df
    first, last = df["window_start"].min(), df["window_start"].max()
    width = (df["window_end"] - df["window_start"]).max()
    n = int((last - first) / width) + 1
    if n <= MAX_POINTS:
        return df
    step_us = int(width.total_seconds() * 1_000_000) * -(-n // MAX_POINTS)
    start = pl.col("window_start").cast(pl.Int64)
    return df.with_columns(((start // step_us) * step_us).cast(pl.Datetime("us", "UTC")).alias("window_start"))


def _summed(df: pl.DataFrame, by: list[str], num: pl.Expr, den: str) -> pl.DataFrame:
    """Per ``by`` group: the summed numerator ``n`` and denominator ``d``, and the ratio with
    its 95% Wilson interval (``ratio``, ``lo``, ``hi``; null where d is 0). Every ratio and
    interval on the page comes from here, from summed counts; under DP the rows' own
    ``r_lo``/``r_hi`` also cover the noise, and this is where they would widen the interval."""
    agg = df.group_by(by).agg(num.sum().alias("n"), pl.col(den).sum().alias("d"))
    lo, hi = wilson(agg["n"].to_numpy(), agg["d"].to_numpy())
    some = pl.col("d") > 0
    return agg.with_columns(
        pl.when(some).then(pl.col("n") / pl.col("d")).alias("ratio"),
        pl.when(some).then(pl.Series(lo)).alias("lo"), pl.when(some).then(pl.Series(hi)).alias("hi"),
    )


def _ratio_series(df: pl.DataFrame, key: str, names: list[str], num: pl.Expr, den: str) -> tuple[dict, dict]:
    """Per-route ratio per window from summed counts, and its interval per window (the
    line and band of svg.line_chart); windows without traffic are gaps."""
    df = _coarsen(df)
    times = [t.timestamp() for t in df["window_start"].unique().sort().to_list()]
    agg = _summed(df.filter(pl.col(key).is_in(names)), ["window_start", key], num, den)
    lookup = {(r["window_start"].timestamp(), r[key]): r for r in agg.iter_rows(named=True)}
    none = dict.fromkeys(("ratio", "lo", "hi"))
    points = {n: [(t, lookup.get((t, n), none)) for t in times] for n in names}
    return ({n: [(t, r["ratio"]) for t, r in pts] for n, pts in points.items()},
            {n: [(t, r["lo"], r["hi"]) for t, r in pts] for n, pts in points.items()})


def _ratio_chart(df: pl.DataFrame, key: str, names: list[str], num: pl.Expr, den: str, label: str) -> str:
    lines, bands = _ratio_series(df, key, names, num, den)
    return svg.line_chart(lines, label, _pct, 0, 1, bands=bands) + (
        '<p class="note">Shaded around each line: the 95% interval of each point (Wilson score interval '
        "of the summed counts). A wide band is a point on little volume; where two routes' bands "
        "overlap, the data cannot tell them apart.</p>")


def _weighted_band(df: pl.DataFrame, cols: tuple[str, str, str], weight: str):
    """Per window, the ``weight``-weighted mean of each percentile column over rows that have it."""
    exprs = []
    for c in cols:
        w = pl.when(pl.col(c).is_not_null()).then(pl.col(weight)).otherwise(0)
        exprs.append(((pl.col(c).fill_null(0) * w).sum() / w.sum()).alias(c))
    agg = df.group_by("window_start").agg(exprs).sort("window_start")
    clean = [[None if v is None or v != v else v for v in agg[c].to_list()] for c in cols]
    return [t.timestamp() for t in agg["window_start"].to_list()], *clean


def _heat(df: pl.DataFrame, key: str, num: pl.Expr, den: str, names: list[str], unit: str) -> str:
    if "dst_region" not in df.columns or key == "dst_region" or df.is_empty():
        return '<p class="note">needs the route and dst_region dimensions (--by route,dst_region)</p>'
    agg = _summed(df.filter(pl.col(key).is_in(names)), [key, "dst_region"], num, den).filter(pl.col("d") > 0)
    cols = sorted({str(v) if v is not None else "(none)" for v in agg["dst_region"].to_list()},
                  key=lambda c: (c == OTHER, c))
    cells = {}
    for r in agg.iter_rows(named=True):
        faint = r["hi"] - r["lo"] > WIDE
        note = f"95% interval {r['lo']:.1%}–{r['hi']:.1%} from {r['d']:,} {unit}"
        cells[(str(r[key]), str(r["dst_region"]) if r["dst_region"] is not None else "(none)")] = svg.Cell(
            r["ratio"], f"too little volume: {note}" if faint else note, faint)
    return svg.heatmap(names, cols, cells, "heatmap") + (
        f'<p class="note">Hatched grey cells: too little volume for the value to say anything: its 95% '
        f"interval is wider than {WIDE * 100:.0f} points (hi − lo &gt; {WIDE}); at a ratio near 50 % that is "
        f"fewer than 93 {unit}. Hover a cell for its interval and volume.</p>")


def _movers(voice: pl.DataFrame, msg: pl.DataFrame, key: str) -> str:
    rows = []
    for label, df, num, den in (("ASR", voice, pl.col("answered"), "attempts"),
                                ("delivery rate", msg, pl.col("delivered"), "submitted")):
        windows = df["window_start"].unique().sort().to_list() if not df.is_empty() else []
        if len(windows) < 2:
            continue
        prev, last = windows[-2], windows[-1]
        per = _summed(df.filter(pl.col("window_start").is_in([prev, last])), [key, "window_start"], num, den)
        both = (per.filter(pl.col("window_start") == prev)
                .join(per.filter(pl.col("window_start") == last), on=key, suffix="_new", nulls_equal=True)
                .filter((pl.col("d") > 0) & (pl.col("d_new") > 0))
                # how far the new interval lies from the old one; > 0: they do not overlap
                .with_columns(pl.max_horizontal(pl.col("lo_new") - pl.col("hi"),
                                                pl.col("lo") - pl.col("hi_new")).alias("separation")))
        rows += [(label, r) for r in both.iter_rows(named=True)]
    if not rows:
        return '<p class="note">needs at least two windows</p>'
    rows.sort(key=lambda lr: (-lr[1]["separation"], lr[0], str(lr[1][key])))
    out = ["<table><tr><th>route</th><th>metric</th><th>previous</th><th>95% interval</th><th>volume</th>"
           "<th>latest</th><th>95% interval</th><th>volume</th><th>change</th><th>separation</th>"
           "<th>evidence</th></tr>"]
    for label, r in rows[:MOVERS]:
        changed = r["separation"] > 0
        cls = "up" if r["ratio_new"] >= r["ratio"] else "down"
        out.append(
            ("<tr>" if changed else '<tr class="ns">') + f"<td>{escape(str(r[key]))}</td><td>{label}</td>"
            f"<td>{r['ratio']:.1%}</td><td>{r['lo']:.1%}–{r['hi']:.1%}</td><td>{r['d']:,}</td>"
            f"<td>{r['ratio_new']:.1%}</td><td>{r['lo_new']:.1%}–{r['hi_new']:.1%}</td><td>{r['d_new']:,}</td>"
            f'<td class="{cls}">{(r["ratio_new"] - r["ratio"]) * 100:+.1f} pp</td>'
            f"<td>{r['separation'] * 100:+.1f} pp</td>"
            f"<td>{'changed' if changed else 'not significant'}</td></tr>")
    out.append("</table>")
    out.append('<p class="note">Ranked by separation: how far the latest window\'s 95% interval lies from '
               "the previous one's (the new low bound minus the old high bound for a rise, the old low bound "
               "minus the new high bound for a fall). Positive: the intervals do not overlap, the route "
               "changed. Zero or negative: they overlap and the change may be chance; such rows are greyed "
               "and marked not significant. So a 15-point fall on 47 calls ranks below an 8-point fall on "
               "5,000 calls.</p>")
    return "".join(out)


def _privacy(df: pl.DataFrame, run: dict[str, Any]) -> str:
    dims = dimension_columns(df)
    vol = pl.col("attempts").fill_null(0) + pl.col("submitted").fill_null(0)
    other = pl.any_horizontal([pl.col(d) == OTHER for d in dims]).fill_null(False) if dims else pl.lit(False)
    total = df.select(vol.sum()).item() if not df.is_empty() else 0
    rolled = df.filter(other).select(vol.sum()).item() if not df.is_empty() else 0
    ok = run.get("records_ok") or 0
    items = [
        ("records read", run.get("records_in")), ("records aggregated", run.get("records_ok")),
        ("records quarantined", run.get("records_quarantined")), ("records opted out", run.get("records_opted_out")),
        ("metric rows released", run.get("rows_released")),
        ("groups rolled up into __other__ rows", run.get("rows_rolled_up")),
        ("groups withheld (below k even after roll-up)", run.get("rows_withheld")),
        ("records withheld", run.get("records_withheld")),
    ]
    out = ["<table>"]
    for name, value in items:
        out.append(f"<tr><td>{escape(name)}</td><td>{'-' if value is None else f'{value:,}'}</td></tr>")
    out.append("</table>")
    share = f"{rolled / total:.1%}" if total else "-"
    withheld = f"{run['records_withheld'] / ok:.2%}" if ok and run.get("records_withheld") is not None else "-"
    out.append(f"<p>Records in rows with an <code>__other__</code> dimension: {rolled:,} of {total:,} "
               f"released ({share}). Withheld: {withheld} of aggregated records (k = {escape(str(run.get('k', '?')))}).</p>")
    return "".join(out)


def render(out: str | Path) -> str:
    """The report page for the output directory ``out``."""
    out = check_dir(out)
    df, run = read_metrics(out), read_run(out)
    if df.is_empty():
        body = "<p>No metric rows released yet.</p>" + _privacy(pl.DataFrame(), run)
        return _page(out, run, df, body)
    key = _route_col(df) or "channel"
    voice = df.filter(pl.col("channel").is_in(VOICE_CHANNELS))
    msg = df.filter(pl.col("channel").is_in(MESSAGE_CHANNELS))
    vroutes, mroutes = _top(voice, key, "attempts"), _top(msg, key, "submitted")
    reached = pl.col("answered") + pl.col("busy") + pl.col("no_answer") + pl.col("rejected")
    parts = [
        f"<h2>Answer-seizure ratio (ASR) per {escape(key)}</h2>",
        _ratio_chart(voice, key, vroutes, pl.col("answered"), "attempts", "ASR")
        if vroutes else '<p class="note">no voice rows</p>',
        f"<h2>Network-effectiveness ratio (NER) per {escape(key)}</h2>",
        _ratio_chart(voice, key, vroutes, reached, "attempts", "NER")
        if vroutes else '<p class="note">no voice rows</p>',
        "<h2>Post-dial delay percentiles (all voice routes)</h2>",
        svg.band_chart(*_weighted_band(voice, ("pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms"), "attempts"),
                       ("p50", "p95", "p99"), "PDD", _ms) if not voice.is_empty() else "",
        '<p class="note">Band p50–p99, line p95: attempt-weighted mean of the per-row percentiles '
        "(percentiles of different rows do not merge exactly).</p>",
        f"<h2>SMS/MMS delivery rate per {escape(key)}</h2>",
        _ratio_chart(msg, key, mroutes, pl.col("delivered"), "submitted", "delivery rate")
        if mroutes else '<p class="note">no message rows</p>',
        "<h2>Delivery latency percentiles (all message routes)</h2>",
        svg.band_chart(*_weighted_band(msg, ("latency_p50_s", "latency_p95_s", "latency_p99_s"), "delivered"),
                       ("p50", "p95", "p99"), "latency", _s) if not msg.is_empty() else "",
        '<p class="note">Band p50–p99, line p95: delivered-weighted mean of the per-row percentiles.</p>',
        f"<h2>ASR by {escape(key)} × destination region (whole period)</h2>",
        _heat(voice, key, pl.col("answered"), "attempts", vroutes, "attempts"),
        f"<h2>Delivery rate by {escape(key)} × destination region (whole period)</h2>",
        _heat(msg, key, pl.col("delivered"), "submitted", mroutes, "messages"),
        "<h2>Biggest movers: latest window against the previous one</h2>", _movers(voice, msg, key),
        "<h2>Rolled up and withheld</h2>", _privacy(df, run),
    ]
    return _page(out, run, df, "\n".join(parts))


def _page(out: Path, run: dict[str, Any], df: pl.DataFrame, body: str) -> str:
    if df.is_empty():
        span = "no windows"
    else:
        first, last = df["window_start"].min(), df["window_end"].max()
        span = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, {df['window_start'].n_unique():,} windows"
    by = ", ".join(run.get("by", dimension_columns(df)) or [])
    meta = (f"{escape(span)}; window {escape(str(run.get('window', '?')))}; grouped by channel, {escape(by)}; "
            f"key id {escape(str(run.get('key_id', '?')))}; run started {escape(str(run.get('started_at', '?')))}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>Routing quality report</title><style>{_STYLE}</style></head><body>"
            f"<h1>Routing quality report</h1><p class=\"note\">{meta}</p>\n{body}\n"
            f'<p class="note">Generated by telemetry from {escape(out.name or str(out))}: released metric rows only, '
            "no identifiers or pseudonyms.</p></body></html>\n")


def write_report(out: str | Path, target: str | Path) -> Path:
    """Render the report of ``out`` into ``target`` (written atomically)."""
    return replace_file(target, render(out))


__all__ = ["render", "write_report"]
