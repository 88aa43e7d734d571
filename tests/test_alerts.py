"""Alert rules (``telemetry alerts``) and the Grafana dashboard, checked with promtool
against the series the exporter really emits.

Reference: promtool (check rules, test rules, PromQL parsing) and the series a real exporter
emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import telemetry
from telemetry.cli import main
from telemetry.generate import write as write_records
from telemetry.sinks import prometheus
from telemetry.sinks.alerts import rules
from tests.conftest import promtool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "telemetry.json"


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """Sample names the exporter emits for a real processed dataset."""
    out = tmp_path_factory.mktemp("alerts") / "out"
    data = out.parent / "cdrs.parquet"
    write_records(data, 20_000, fmt="parquet", seed=9)
    telemetry.process([str(data)], key=bytes(32), out=out, region="GB", window="1h")
    text = generate_latest(prometheus.make_registry(prometheus.MetricsCollector(out))).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_default_rules_pass_promtool(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no telemetry.toml here: the documented defaults
    assert main(["alerts", "--out", "rules.yml"]) == 0
    assert "wrote 11 alerting rules" in capsys.readouterr().out  # 3 thresholds, 8 history rules
    res = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 11 rules found" in res.stdout
    text = (tmp_path / "rules.yml").read_text()
    assert '"telemetry_asr < 0.4"' in text and '"telemetry_pdd_p95_ms > 5000"' in text
    assert '"telemetry_delivery_rate < 0.9"' in text


def test_configured_rules_fire_as_promtool_evaluates_them(tmp_path: Path) -> None:
    (tmp_path / "telemetry.toml").write_text(
        '[alerts]\nasr_below = 0.4\njitter_p95_ms_above = 30\nmin_volume = 20\n'
        'for = "10m"\nseverity = "page"\nstale_after = "10m"\n'
    )
    assert main(["alerts", "--out", str(tmp_path / "rules.yml"), "--config", str(tmp_path / "telemetry.toml")]) == 0
    assert promtool("check", "rules", "rules.yml", cwd=tmp_path).returncode == 0
    # promtool's rule unit tests: a quiet route below threshold must not fire (min_volume),
    # a busy one must, but only after `for`; a stale exporter fires the staleness alert.
    (tmp_path / "tests.yml").write_text(json.dumps({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'telemetry_asr{channel="voice",route="carrier-f",dst_region="GB"}', "values": "0.2x30"},
                {"series": 'telemetry_attempts{channel="voice",route="carrier-f",dst_region="GB"}', "values": "50x30"},
                {"series": 'telemetry_asr{channel="voice",route="carrier-q",dst_region="GB"}', "values": "0.1x30"},
                {"series": 'telemetry_attempts{channel="voice",route="carrier-q",dst_region="GB"}', "values": "5x30"},
                {"series": 'telemetry_asr{channel="voice",route="carrier-a",dst_region="GB"}', "values": "0.6x30"},
                {"series": 'telemetry_attempts{channel="voice",route="carrier-a",dst_region="GB"}', "values": "90x30"},
                {"series": "telemetry_window_end_seconds", "values": "0x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "TelemetryAsrBelow", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "TelemetryAsrBelow", "exp_alerts": [{
                    "exp_labels": {"severity": "page", "channel": "voice", "route": "carrier-f", "dst_region": "GB"},
                    "exp_annotations": {
                        "summary": "asr below 0.4 on voice route carrier-f",
                        "description": "asr is 0.2 (below 0.4) in the latest complete window; "
                                       "the alert's labels name the channel and dimensions.",
                    },
                }]},
                {"eval_time": "12m", "alertname": "TelemetryMetricsStale", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "TelemetryMetricsStale", "exp_alerts": [
                    {"exp_labels": {"severity": "page"},
                     "exp_annotations": {"summary": "no complete telemetry window for more than 10m"}}]},
                {"eval_time": "15m", "alertname": "TelemetryJitterP95MsAbove", "exp_alerts": []},
            ],
        }],
    }))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_watches_an_exposed_series(exposed: set[str]) -> None:
    section = {"asr_below": 0.4, "ner_below": 0.7, "pdd_p95_ms_above": 5000, "delivery_rate_below": 0.9,
               "latency_p95_s_above": 30, "short_call_ratio_above": 0.3, "min_volume": 10, "stale_after": "1h"}
    for rule in rules(section):
        names = set(re.findall(r"telemetry_[a-z0-9_]+", rule["expr"]))
        assert names and names <= exposed, rule["expr"]


@pytest.mark.parametrize("text, fragment", [
    ("[alerts]\nasr_bellow = 0.4\n", "asr_bellow"),
    ("[alerts]\nnot_a_metric_below = 1\n", "not_a_metric_below"),
    ('[alerts]\nasr_below = "low"\n', "must be a number"),
    ('[alerts]\nfor = "ten minutes"\n', "duration"),
])
def test_bad_alert_configuration_is_one_line(tmp_path: Path, capsys, text: str, fragment: str) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    assert main(["alerts", "--out", str(tmp_path / "r.yml"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "r.yml").exists()


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_exprs_use_exposed_series(exposed: set[str]) -> None:
    exprs = _dashboard_exprs()
    panels = " ".join(exprs)
    for needed in ("telemetry_answered", "telemetry_busy", "telemetry_pdd_p95_ms", "telemetry_delivered",
                   "telemetry_latency_p95_s", "telemetry_short_call_ratio", 'outcome="withheld"'):
        assert needed in panels  # ASR/NER, PDD, delivery, short calls, withheld share
    for expr in exprs:
        names = set(re.findall(r"telemetry_[a-z0-9_]+", expr))
        assert names and names <= exposed, (expr, names - exposed)


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query (as a recording rule, with $route at All)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(e for e in _dashboard_exprs() if not e.startswith("label_values")):
        lines += [f"      - record: dashboard:panel{i}", f"        expr: {json.dumps(expr.replace('$route', '.*'))}"]
    (tmp_path / "dash.yml").write_text("\n".join(lines) + "\n")
    res = promtool("check", "rules", "dash.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_provisioning_points_at_the_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["templating"]["list"][0]["type"] == "datasource"
    prov = (ROOT / "dashboards" / "provisioning" / "dashboards.yml").read_text()
    assert re.search(r"^\s+type: file$", prov, re.M) and "path: /var/lib/grafana/dashboards" in prov
    ds = (ROOT / "dashboards" / "provisioning" / "datasources.yml").read_text()
    assert "type: prometheus" in ds and "127.0.0.1:9464" in ds
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"


def _minutes(per_window: list[float]) -> str:
    """A promtool series scraped every minute from gauges that change once per 15-minute window."""
    return " ".join(f"{v:.6f}" for v in per_window for _ in range(15))


def test_history_rules_fire_on_evidence_not_on_noise(tmp_path: Path, monkeypatch) -> None:
    """A drop on volume fires, the same drop on a handful of calls does not, a slow slide
    over hours fires before any static threshold would; the bounds fed to promtool come from
    the reference's own Wilson formula (tests/reference_metrics.py), not the product's."""
    from tests.reference_metrics import wilson_roots

    monkeypatch.chdir(tmp_path)
    assert main(["alerts", "--out", "rules.yml"]) == 0
    flat, after = 28, 12  # windows: 7 h at the old level, then 3 h of the new behaviour
    routes = {  # answered per window, attempts per window
        "busy": ([3100] * flat + [2700] * after, 5000),  # 62% -> 54% on 5,000 calls
        "quiet": ([30] * flat + [23] * after, 47),  # 64% -> 49% on 47 calls
        "slide": ([496] * flat + [round(800 * (0.62 - 0.01 * (i + 1))) for i in range(after)], 800),
    }
    series = []
    for route, (answered, n) in routes.items():
        labels = f'channel="voice",route="{route}",dst_region="GB"'
        bounds = [wilson_roots(a, n) for a in answered]
        for name, values in (("asr", [a / n for a in answered]), ("asr_lo", [b[0] for b in bounds]),
                             ("asr_hi", [b[1] for b in bounds]), ("attempts", [n] * len(answered))):
            series.append({"series": f"telemetry_{name}{{{labels}}}", "values": _minutes(values)})

    def firing(route: str) -> dict:
        return {"exp_labels": {"severity": "warning", "channel": "voice", "route": route, "dst_region": "GB"},
                "exp_annotations": {
                    "summary": f"asr worse than the rolling baseline on voice route {route}",
                    "description": "the upper bound of asr in the latest complete window is below the lower "
                                   "bound of the rolling baseline; see docs/noc.md for how to read it."}}

    start = flat * 15  # minutes at which the new behaviour begins
    (tmp_path / "tests.yml").write_text(json.dumps({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": f"{start - 5}m", "alertname": "TelemetryAsrDropBaseline", "exp_alerts": []},
            # the busy route's drop, held for one window, fires; the quiet route's never does
            {"eval_time": f"{start + 35}m", "alertname": "TelemetryAsrDropBaseline", "exp_alerts": [firing("busy")]},
            # three hours into a slide of one point per window the slide fires too (ASR still ~0.50)
            {"eval_time": f"{start + 170}m", "alertname": "TelemetryAsrDropBaseline",
             "exp_alerts": [firing("busy"), firing("slide")]},
            {"eval_time": f"{start + 170}m", "alertname": "TelemetryAsrBelow", "exp_alerts": []},
            # no data a week back: the week-on-week rule has nothing to compare with
            {"eval_time": f"{start + 170}m", "alertname": "TelemetryAsrDropWeekAgo", "exp_alerts": []},
        ]}],
    }))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_week_on_week_rule_compares_the_same_window(tmp_path: Path, monkeypatch) -> None:
    """The same route a week later: a drop on volume against last week's interval fires."""
    from tests.reference_metrics import wilson_roots

    monkeypatch.chdir(tmp_path)
    (tmp_path / "telemetry.toml").write_text('[alerts]\nhistory = ["asr"]\n')
    assert main(["alerts", "--out", "rules.yml"]) == 0
    week = 7 * 24 * 4  # windows in a week
    answered = [3100] * (week + 4) + [2700] * 4
    bounds = [wilson_roots(a, 5000) for a in answered]
    labels = 'channel="voice",route="busy",dst_region="GB"'
    series = [{"series": f"telemetry_asr_lo{{{labels}}}", "values": _minutes([b[0] for b in bounds])},
              {"series": f"telemetry_asr_hi{{{labels}}}", "values": _minutes([b[1] for b in bounds])}]
    end = (week + 8) * 15
    (tmp_path / "tests.yml").write_text(json.dumps({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": f"{end - 75}m", "alertname": "TelemetryAsrDropWeekAgo", "exp_alerts": []},
            {"eval_time": f"{end - 2}m", "alertname": "TelemetryAsrDropWeekAgo", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "channel": "voice", "route": "busy", "dst_region": "GB"},
                "exp_annotations": {
                    "summary": "asr worse than the same window a week earlier on voice route busy",
                    "description": "the upper bound of asr in the latest complete window is below the lower "
                                   "bound of the same window a week earlier; see docs/noc.md for how to read it."},
            }]},
        ]}],
    }))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dashboard_interval_bands_are_wilson_of_the_summed_counts(tmp_path: Path) -> None:
    """The band panels' PromQL, evaluated by promtool over two regions of one route, equals
    the reference's Wilson interval of the route's summed counts."""
    from tests.reference_metrics import wilson_roots

    dash = json.loads(DASHBOARD.read_text())
    bands = [p for p in dash["panels"] if p.get("repeat") == "route"]
    assert [p["title"].split(" with ")[0] for p in bands] == ["ASR", "Delivery rate"]
    lines = ["groups:", "  - name: bands", "    rules:"]
    for panel, kind in zip(bands, ("asr", "delivery")):
        assert {o["matcher"]["options"]: o["properties"][0] for o in panel["fieldConfig"]["overrides"]}["upper"] == \
            {"id": "custom.fillBelowTo", "value": "lower"}
        for target in panel["targets"][1:]:
            expr = target["expr"].replace("$route", "busy")
            lines += [f"      - record: band:{kind}_{target['legendFormat']}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "bands.yml").write_text("\n".join(lines) + "\n")
    counts = {"asr": ("answered", "attempts", "voice", (2210, 3400), (90, 140)),
              "delivery": ("delivered", "submitted", "sms", (1877, 1900), (11, 12))}
    series, checks = [], []
    for kind, (num, den, channel, region_gb, region_fr) in counts.items():
        for region, (x, n) in (("GB", region_gb), ("FR", region_fr)):
            labels = f'channel="{channel}",route="busy",dst_region="{region}"'
            series += [{"series": f"telemetry_{num}{{{labels}}}", "values": f"{x}x5"},
                       {"series": f"telemetry_{den}{{{labels}}}", "values": f"{n}x5"}]
        lo, hi = wilson_roots(region_gb[0] + region_fr[0], region_gb[1] + region_fr[1])
        for side, want in (("lower", lo), ("upper", hi)):
            checks.append({"expr": f"abs(band:{kind}_{side} - {want!r}) < bool 1e-9", "eval_time": "2m",
                           "exp_samples": [{"labels": '{route="busy"}', "value": 1}]})
    (tmp_path / "tests.yml").write_text(json.dumps({
        "rule_files": ["bands.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
