"""``telemetry serve DIR``: Prometheus / OpenMetrics endpoint over the latest metrics."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from telemetry.errors import ConfigError

log = logging.getLogger("telemetry")

_KEYS = ("host", "port", "max_series")


def register(sub) -> None:
    p = sub.add_parser("serve", help="Prometheus endpoint over the latest metrics of DIR")
    p.add_argument("dir", metavar="DIR", help="output directory of process or stream")
    p.add_argument("--host", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, help="TCP port (default 9464; 0 picks a free one)")
    p.add_argument("--max-series", type=int, metavar="N",
                   help="label sets per metric before the rest is merged into __other__ (default 2000)")
    p.add_argument("--config", metavar="FILE", help="telemetry.toml with a [serve] section")
    p.set_defaults(func=run)


def serve_settings(section: Any, args: argparse.Namespace) -> dict[str, Any]:
    """[serve] values overridden by flags; unknown keys are an error."""
    from telemetry.sinks import prometheus

    if not isinstance(section, dict):
        raise ConfigError("[serve] in the configuration must be a table")
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [serve]; known: {', '.join(_KEYS)}")
    settings = {"host": prometheus.DEFAULT_HOST, "port": prometheus.DEFAULT_PORT,
                "max_series": prometheus.DEFAULT_MAX_SERIES, **section}
    for key in _KEYS:
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    if not isinstance(settings["host"], str) or not settings["host"]:
        raise ConfigError("serve host must be an address such as 127.0.0.1")
    port = settings["port"]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"serve port must be a whole number from 0 to 65535; got {port!r}")
    return settings


def loopback(host: str) -> bool:
    """Whether ``host`` binds to loopback only (``localhost`` or a loopback address); a
    wildcard (``0.0.0.0``, ``::``), another address or another name is not."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def run(args: argparse.Namespace) -> int:
    from telemetry.cli import config_notice
    from telemetry.config import load_config, make_options
    from telemetry.sinks import prometheus
    from telemetry.sinks.metricsdir import check_dir

    out = check_dir(args.dir)
    opts = make_options(load_config(args.config))
    s = serve_settings(opts.extra.get("serve", {}), args)
    config_notice(args.config)
    if not loopback(s["host"]):
        log.warning("serve: %s is not a loopback address: anyone who can reach it reads the metrics "
                    "(the endpoint has no authentication); bind 127.0.0.1 unless that is intended", s["host"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # before the line that says it serves
    server, thread = prometheus.serve(out, host=s["host"], port=s["port"], max_series=s["max_series"])
    host = s["host"] if ":" not in s["host"] else f"[{s['host']}]"
    print(f"serving http://{host}:{server.server_port}/metrics from {out} (Ctrl-C to stop)", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    server.server_close()
    return 0
