"""Alert rules (``telemetry alerts``) and the Grafana dashboard, checked with promtool
against the series the exporter really emits."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import telemetry
from telemetry.cli import main
from telemetry.generate import write as write_records
from telemetry.sinks import prometheus
from telemetry.sinks.alerts import rules

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "telemetry.json"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """Sample names the exporter emits for a real processed dataset."""
    out = tmp_path_factory.mktemp("alerts") / "out"
    data = out.parent / "cdrs.parquet"
    write_records(data, 20_000, fmt="parquet", seed=9)
    telemetry.process([str(data)], key=bytes(32), out=out, region="GB", window="1h")
    text = generate_latest(prometheus.make_registry(prometheus.MetricsCollector(out))).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.mark.tool("promtool")
def test_default_rules_pass_promtool(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no telemetry.toml here: the documented defaults
    assert main(["alerts", "--out", "rules.yml"]) == 0
    assert "wrote 3 alerting rules" in capsys.readouterr().out
    res = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 3 rules found" in res.stdout
    text = (tmp_path / "rules.yml").read_text()
    assert '"telemetry_asr < 0.4"' in text and '"telemetry_pdd_p95_ms > 5000"' in text
    assert '"telemetry_delivery_rate < 0.9"' in text


@pytest.mark.tool("promtool")
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


@pytest.mark.tool("promtool")
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
