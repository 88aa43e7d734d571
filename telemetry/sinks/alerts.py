"""Prometheus alerting rules from the ``[alerts]`` thresholds of telemetry.toml.

Keys are ``<metric column>_below`` or ``<metric column>_above`` (e.g.
``asr_below = 0.4``, ``pdd_p95_ms_above = 5000``), plus ``for`` (how long the
condition must hold, default ``15m``: one default window), ``severity``
(default ``warning``), ``min_volume`` (ignore rows with fewer attempts or
submitted messages; default 0) and ``stale_after`` (alert when the newest
complete window is older than this, e.g. ``"1h"``; off by default).

History rules compare a route with itself and fire only on evidence
(docs/noc.md). For a ratio in ``history`` (default ``asr``, ``ner``,
``delivery_rate``, ``pdd_p95_ms``): the upper bound of this window's 95%
interval below the lower bound of the same series ``history_offset`` ago
(default ``1w``: the same window last week), or below the mean lower bound of
a rolling baseline (``history_baseline``, default ``6h``, ending one ``for``
before now, so that a slide in progress does not drag its own baseline down).
A percentile has no interval: it fires when it exceeds ``history_factor``
(default 1.5) times its value then, on at least ``history_min_volume``
(default 100) attempts or messages.
The YAML is written by hand: its strings are JSON strings, which YAML reads
as double-quoted scalars, so no YAML library is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from telemetry.errors import ConfigError
from telemetry.metrics.frame import MESSAGE_COLUMNS
from telemetry.metrics.intervals import RATIOS, bounds
from telemetry.sinks.metricsdir import METRIC_COLUMNS
from telemetry.sinks.prometheus import PREFIX

DEFAULT_THRESHOLDS = {"asr_below": 0.4, "pdd_p95_ms_above": 5000, "delivery_rate_below": 0.9}
DEFAULT_HISTORY = ("asr", "ner", "delivery_rate", "pdd_p95_ms")
_HISTORY_SETTINGS = ("history", "history_offset", "history_baseline", "history_factor", "history_min_volume")
_SETTINGS = ("for", "severity", "min_volume", "stale_after", *_HISTORY_SETTINGS)
_PERCENTILES = ("pdd_p50_ms", "pdd_p95_ms", "pdd_p99_ms", "jitter_p95_ms",
                "latency_p50_s", "latency_p95_s", "latency_p99_s")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_NAME = re.compile(r"^(?P<column>[a-z0-9_]+)_(?P<side>below|above)$")


def _duration(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ConfigError(f"[alerts] {key} must be a Prometheus duration such as \"15m\"; got {value!r}")
    return value


def _camel(column: str) -> str:
    return "".join(part.capitalize() for part in column.split("_"))


def rules(section: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Alerting rules (dicts in Prometheus rule-file shape) for an ``[alerts]`` table.
    ``None`` (no section) uses DEFAULT_THRESHOLDS."""
    section = dict(DEFAULT_THRESHOLDS if section is None else section)
    hold = _duration("for", section.get("for", "15m"))
    severity = section.get("severity", "warning")
    if not isinstance(severity, str) or not severity:
        raise ConfigError("[alerts] severity must be a non-empty string such as \"warning\"")
    min_volume = section.get("min_volume", 0)
    if not isinstance(min_volume, (int, float)) or isinstance(min_volume, bool) or min_volume < 0:
        raise ConfigError("[alerts] min_volume must be a number >= 0")
    out: list[dict[str, Any]] = []
    for key, value in section.items():
        if key in _SETTINGS:
            continue
        m = _NAME.match(key)
        if not m or m["column"] not in METRIC_COLUMNS:
            raise ConfigError(
                f"unknown key {key} in [alerts]; use <metric>_below or <metric>_above with a metric "
                f"column of docs/metrics.md (e.g. asr_below), or one of {', '.join(_SETTINGS)}"
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"[alerts] {key} must be a number")
        column, side = m["column"], m["side"]
        op, word = ("<", "below") if side == "below" else (">", "above")
        expr = f"{PREFIX}{column} {op} {value}"
        if min_volume:
            volume = "submitted" if column in MESSAGE_COLUMNS else "attempts"
            # ``and`` matches on every label but the name: the same channel and dimensions
            expr = f"({expr}) and {PREFIX}{volume} >= {min_volume}"
        out.append({
            "alert": f"Telemetry{_camel(column)}{word.capitalize()}",
            "expr": expr,
            "for": hold,
            "labels": {"severity": severity},
            "annotations": {
                "summary": f"{column} {word} {value} on {{{{ $labels.channel }}}} route {{{{ $labels.route }}}}",
                "description": f"{column} is {{{{ $value }}}} ({word} {value}) in the latest complete window; "
                               "the alert's labels name the channel and dimensions.",
            },
        })
    out += _history_rules(section, hold, severity)
    if "stale_after" in section:
        age = _duration("stale_after", section["stale_after"])
        out.append({
            "alert": "TelemetryMetricsStale",
            "expr": f"time() - {PREFIX}window_end_seconds > {_seconds(age)}",
            "for": "5m",
            "labels": {"severity": severity},
            "annotations": {"summary": f"no complete telemetry window for more than {age}"},
        })
    return out


def _number(section: Mapping[str, Any], key: str, default: float, low: float, strict: bool) -> float:
    value = section.get(key, default)
    bad = not isinstance(value, (int, float)) or isinstance(value, bool)
    if bad or value < low or (strict and value == low):
        raise ConfigError(f"[alerts] {key} must be a number {'above' if strict else 'of at least'} {low}")
    return value


def _history_rules(section: Mapping[str, Any], hold: str, severity: str) -> list[dict[str, Any]]:
    """Rules against the series' own past (see the module docstring)."""
    columns = section.get("history", list(DEFAULT_HISTORY))
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ConfigError('[alerts] history must be a list of metric columns, e.g. ["asr", "ner"]')
    offset = _duration("history_offset", section.get("history_offset", "1w"))
    baseline = _duration("history_baseline", section.get("history_baseline", "6h"))
    factor = _number(section, "history_factor", 1.5, 1, strict=True)
    min_volume = _number(section, "history_min_volume", 100, 0, strict=False)
    then_name = "WeekAgo" if offset == "1w" else "Offset"
    out: list[dict[str, Any]] = []
    for column in columns:
        if column in RATIOS:
            lo, hi = (PREFIX + b for b in bounds(column))
            for name, then in ((then_name, f"{lo} offset {offset}"),
                               ("Baseline", f"avg_over_time({lo}[{baseline}] offset {hold})")):
                out.append(_history_rule(column, name, f"{hi} < {then}", hold, severity,
                                         "the upper bound", "below the lower bound of"))
        elif column in _PERCENTILES:
            volume = PREFIX + ("submitted" if column in MESSAGE_COLUMNS else "attempts")
            series = PREFIX + column
            for name, then in ((then_name, f"{series} offset {offset}"),
                               ("Baseline", f"avg_over_time({series}[{baseline}] offset {hold})")):
                expr = f"({series} > {factor} * {then}) and {volume} >= {min_volume}"
                out.append(_history_rule(column, name, expr, hold, severity, "the value",
                                         f"above {factor} times the value of"))
        else:
            raise ConfigError(f"[alerts] history: {column} is neither a ratio nor a percentile column "
                              f"({', '.join((*RATIOS, *_PERCENTILES))})")
    return out


_THEN = {"WeekAgo": "the same window a week earlier", "Baseline": "the rolling baseline",
         "Offset": "the same series at history_offset"}


def _history_rule(column: str, name: str, expr: str, hold: str, severity: str, what: str,
                  how: str) -> dict[str, Any]:
    then = _THEN[name]
    change = "Drop" if column in RATIOS else "Rise"
    return {
        "alert": f"Telemetry{_camel(column)}{change}{name}",
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity},
        "annotations": {
            "summary": f"{column} worse than {then} on {{{{ $labels.channel }}}} route {{{{ $labels.route }}}}",
            "description": f"{what} of {column} in the latest complete window is {how} {then}; "
                           "see docs/noc.md for how to read it.",
        },
    }


def _seconds(duration: str) -> int:
    m = re.match(r"^([0-9]+)(ms|s|m|h|d|w|y)$", duration)
    assert m is not None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[m[2]]
    return int(int(m[1]) * scale)


def rules_yaml(section: Mapping[str, Any] | None, group: str = "telemetry") -> str:
    """A Prometheus rules file (``promtool check rules`` accepts it)."""
    q = json.dumps
    lines = ["# generated by `telemetry alerts` from the [alerts] section of telemetry.toml", "groups:",
             f"  - name: {q(group)}", "    rules:"]
    for rule in rules(section):
        lines.append(f"      - alert: {q(rule['alert'])}")
        lines.append(f"        expr: {q(rule['expr'])}")
        lines.append(f"        for: {q(rule['for'])}")
        for block in ("labels", "annotations"):
            lines.append(f"        {block}:")
            lines.extend(f"          {k}: {q(v)}" for k, v in rule[block].items())
    if len(lines) == 4:
        lines[-1] = "    rules: []"
    return "\n".join(lines) + "\n"
