"""``telemetry report``: a self-contained page, loaded in real headless Chromium.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe``
(NUL-separated JSON on fds 3 and 4), which needs no websocket library: console
messages, uncaught exceptions and browser log entries (CSP violations, failed
fetches) are collected while the page loads, then a full-page screenshot is taken.

Reference: Chromium's own console and log (a deliberately broken page proves the detector),
Polars over the released rows with the Wilson interval of tests/reference_metrics.wilson_roots."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

import telemetry
from telemetry.cli import main
from telemetry.generate import write as write_records
from telemetry.sinks.report import render
from tests.conftest import require
from tests.reference_metrics import wilson_roots

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    require(path, "chromium is not on PATH: run `make debian-tools` (make test does)")
    return path


class Browser:
    """Just enough of the DevTools protocol: commands, events, one page session."""

    def __init__(self, profile: Path) -> None:
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()

        def fds() -> None:  # runs in the child before close_fds keeps 3 and 4
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen(
            [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4),
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, "chromium did not answer in time"
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)


def load_page(url: str, width: int = 1100) -> tuple[list[str], Image.Image]:
    """Load ``url``; return (problems reported by the page, full-page screenshot)."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        b = Browser(Path(profile))
        try:
            target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                b.send(f"{domain}.enable", session=s)
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
            b.send("Page.navigate", {"url": url}, session=s)
            b.wait_event("Page.loadEventFired")
            time.sleep(0.3)  # late console messages / CSP reports
            height = b.send("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight",
                                                 "returnByValue": True}, session=s)["result"]["value"]
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False}, session=s)
            shot = b.send("Page.captureScreenshot", {"format": "png"}, session=s)["data"]
            problems = []
            for ev in b.events:
                m, p = ev.get("method"), ev.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                    problems.append(f"console.{p['type']}")
                elif m == "Runtime.exceptionThrown":
                    problems.append("exception")
                elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                    problems.append(f"log {p['entry']['source']}: {p['entry']['text'][:120]}")
        finally:
            b.close()
    return problems, Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB")


def _variety(img: Image.Image) -> tuple[int, float]:
    """(distinct colours, share of pixels that are not the page background)."""
    small = img.resize((img.width // 2, img.height // 2))
    colours = small.getcolors(maxcolors=1 << 20) or []
    background = max(colours)[1]
    other = sum(n for n, c in colours if c != background)
    return len(colours), other / (small.width * small.height)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    data = out.parent / "cdrs.parquet"
    write_records(data, 40_000, fmt="parquet", seed=3)
    telemetry.process([str(data)], key=bytes(range(32)), out=out, region="GB", window="1h")
    return out


def test_report_loads_in_chromium_without_errors_and_draws(dataset: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    assert main(["report", str(dataset), "--out", str(target)]) == 0
    problems, img = load_page(target.as_uri())
    assert problems == []
    img.save(tmp_path / "report.png")
    colours, ink = _variety(img)
    assert img.height > 2000  # every section rendered, not just a header
    assert colours > 200 and ink > 0.08, (colours, ink)
    # the charts themselves draw: the ASR chart region (first SVG) has coloured lines
    top = img.crop((0, 100, img.width, 450))
    assert len(top.getcolors(maxcolors=1 << 20) or []) > 50


def test_detector_sees_console_errors_and_fetches(tmp_path: Path) -> None:
    """The no-error assertion above can fail: a page with a script error and an
    external image is reported (the CSP-free page tries the fetch, which fails offline)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><p>x</p><script>console.error("boom"); undefinedCall();</script>')
    problems, img = load_page(bad.as_uri())
    assert "console.error" in problems and "exception" in problems
    assert _variety(img)[1] < 0.01  # and a nearly empty page counts as blank


def test_report_is_self_contained(dataset: Path) -> None:
    html = render(dataset)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # no reference to anything outside the file (the SVG namespace URI is not fetched)
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html) + re.findall(r"url\(([^)]*)\)", html)
    assert refs == []
    assert "<script" not in html
    assert re.findall(r"https?://[^\s\"'<]+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")
    for section in ("Answer-seizure ratio", "Network-effectiveness ratio", "Post-dial delay",
                    "delivery rate", "Delivery latency", "destination region", "Biggest movers",
                    "Rolled up and withheld"):
        assert section in html


def test_report_numbers_match_the_dataset(dataset: Path) -> None:
    """Heatmap cells and the movers table agree with a direct Polars computation."""
    html = render(dataset)
    df = pl.read_parquet(dataset / "metrics", hive_partitioning=True)
    voice = df.filter(pl.col("channel").is_in(["voice", "voicemail", "conference"]))
    cell = (voice.group_by("route", "dst_region").agg(pl.col("answered").sum(), pl.col("attempts").sum())
            .filter(pl.col("attempts") > 50).sort("attempts", descending=True).row(0, named=True))
    expected = cell["answered"] / cell["attempts"]
    low, high = wilson_roots(cell["answered"], cell["attempts"])
    assert (f"{cell['route']} × {cell['dst_region']}: {expected:.1%} (95% interval {low:.1%}–{high:.1%} "
            f"from {cell['attempts']:,} attempts)</title>") in html
    run = json.loads((dataset / "run.json").read_text())
    assert f"<td>records withheld</td><td>{run['records_withheld']:,}</td>" in html
    windows = voice["window_start"].unique().sort()
    prev, last = windows[-2], windows[-1]
    per = (voice.filter(pl.col("window_start").is_in([prev, last])).group_by("route", "window_start")
           .agg(pl.col("answered").sum(), pl.col("attempts").sum()))
    separations = []
    for route in per["route"].unique().to_list():
        a = per.filter((pl.col("route") == route) & (pl.col("window_start") == prev))
        b = per.filter((pl.col("route") == route) & (pl.col("window_start") == last))
        if a.height and b.height:
            (lo0, hi0), (lo1, hi1) = (wilson_roots(x["answered"][0], x["attempts"][0]) for x in (a, b))
            separations.append((max(lo1 - hi0, lo0 - hi1), route))
    # the ASR rows of the movers table, in order, are the routes of the widest separation first
    shown = re.findall(r"<tr(?: class=\"ns\")?><td>([^<]*)</td><td>ASR</td>", html)
    assert shown and shown == [route for _, route in sorted(separations, reverse=True)][:len(shown)]


def test_report_of_missing_dir_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_demo_writes_report(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--records", "5000"]) == 0
    assert (tmp_path / "d" / "report.html").is_file()
    assert str(tmp_path / "d" / "report.html") in capsys.readouterr().out
