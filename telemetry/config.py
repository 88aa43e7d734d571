"""Run options: defaults, ``telemetry.toml``, then explicit arguments.

Precedence, lowest first: built-in defaults, the configuration file, keyword
arguments or command-line flags. Unknown keys in the file are an error (a typo
must not silently fall back to a default).

Reader settings (docs/formats.md) go to :attr:`Options.extra` with the other
stages' sections: a name at the top level (``timezone``, ``template``) serves every
format that takes it, a ``[format]`` section (``[asterisk]``, ``[kamailio]``…) one
format. An explicit ``timezone=`` / ``--timezone`` overrides both kinds from the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from telemetry.errors import ConfigError, printable

DEFAULT_CONFIG = "telemetry.toml"
#: The release threshold of SPEC section 5; a lower ``k`` is allowed with a warning.
DEFAULT_K = 5
IP_MODES = ("truncate", "cryptopan")


@dataclass(frozen=True)
class Options:
    """Everything a run can be told; the same names in the API, the CLI and the file.

    Reader settings (``timezone``, ``template``, ``asterisk={...}``…, docs/formats.md) are
    accepted by :func:`make_options` under their own names and kept in :attr:`extra`."""

    fmt: str = "auto"
    region: str | None = None
    window: str = "15m"
    by: tuple[str, ...] = ("route", "dst_region")
    k: int = DEFAULT_K
    short_call_s: float = 6.0
    rate_deck: str | None = None
    opt_out: str | None = None
    emit_records: bool = False
    ip_mode: str = "truncate"  # source_ip in record output: truncate | cryptopan (SPEC 12)
    engine: str = "local"
    threads: int = 0  # 0: one per core
    # --engine dask: an existing scheduler's address (else DASK_SCHEDULER_ADDRESS), or None for a
    # LocalCluster of ``workers`` processes (0: one per core) started and stopped with the run
    scheduler: str | None = None
    workers: int = 0
    batch_rows: int = 262144
    # differential privacy (SPEC 11, docs/privacy.md): None keeps the k-threshold
    dp_epsilon: float | None = None
    dp_delta: float = 1e-8
    dp_max_groups: int = 4
    dp_max_records: int = 16
    dp_max_duration: str = "1h"
    # sections other stages read ([alerts], [mapping]…) and reader settings (timezone, [asterisk]…)
    extra: Mapping[str, Any] = field(default_factory=dict)


_FIELDS = {f.name for f in dataclasses.fields(Options)} - {"extra"}
_SECTIONS = ("alerts", "serve", "mapping", "report")


def config_file(path: str | os.PathLike | None) -> str | os.PathLike | None:
    """The configuration file :func:`load_config` reads: ``path``, else ``./telemetry.toml``
    if it exists, else None."""
    if path is None and Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    return path


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read ``path`` (or ``./telemetry.toml`` if it exists and ``path`` is None)."""
    path = config_file(path)
    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {os.fspath(path)} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {os.fspath(path)} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"configuration file {os.fspath(path)} nests values too deeply") from None
    unknown = sorted(
        printable(k)
        for k in set(data) - _FIELDS - set(_SECTIONS) - {"format"}
        if not _readers().is_setting(k)
    )
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {os.fspath(path)}; known: "
            f"{', '.join(sorted((_FIELDS - {'fmt'}) | {'format'} | set(_SECTIONS)))}, reader "
            "settings and [format] sections (docs/formats.md)"
        )
    if "format" in data:
        data["fmt"] = data.pop("format")
    return data


def make_options(config: Mapping[str, Any] | None = None, **overrides: Any) -> Options:
    """Options from a loaded configuration and explicit (non-None) overrides."""
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    readers: dict[str, Any] = {}
    explicit = {k: v for k, v in overrides.items() if v is not None}
    for source in (config or {}, explicit):
        for name, value in source.items():
            if name in _SECTIONS:
                extra[name] = value
            elif name in _FIELDS:
                values[name] = value
            elif _readers().is_setting(name):
                readers[name] = dict(value) if isinstance(value, Mapping) else value
            else:
                raise TypeError(f"unknown option {name!r}")
    # an explicit setting (--timezone) also wins over the same name in a file's [format]
    if readers:
        formats = _readers().FORMATS
        file_sections = [v for k, v in readers.items() if k in formats and k not in explicit]
        for name in explicit.keys() & readers.keys():
            for section in file_sections:
                if isinstance(section, dict):
                    section.pop(name, None)
        _readers().check_settings(readers)
        extra.update(readers)
    if "by" in values:
        values["by"] = _parse_by(values["by"])
    opts = Options(**values, extra=extra)
    if not isinstance(opts.k, int) or opts.k < 1:
        raise ConfigError(f"k must be a whole number >= 1; got {opts.k!r}")
    if opts.ip_mode not in IP_MODES:
        raise ConfigError(f"ip_mode must be one of {', '.join(IP_MODES)}; got {opts.ip_mode!r}")
    if opts.engine not in ("local", "dask"):
        raise ConfigError(f"engine must be 'local' or 'dask'; got {opts.engine!r}")
    if opts.threads < 0 or opts.workers < 0 or opts.batch_rows < 1:
        raise ConfigError("threads and workers must be >= 0 and batch_rows >= 1")
    _check_dp(opts)
    return opts


def _check_dp(opts: Options) -> None:
    """The DP options are checked even when ``dp_epsilon`` is unset: a typo in the file
    must not wait for the day DP is switched on."""
    eps = opts.dp_epsilon
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf")):
        raise ConfigError(f"dp_epsilon must be a number > 0; got {eps!r}")
    delta = opts.dp_delta
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1e-3:
        raise ConfigError(f"dp_delta must be a number in (0, 0.001); got {delta!r}")
    for name in ("dp_max_groups", "dp_max_records"):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise ConfigError(f"{name} must be a whole number from 1 to 1000000; got {value!r}")
    dp_max_duration_ms(opts)


def dp_max_duration_ms(opts: Options) -> int:
    """``dp_max_duration`` ("1h", "90m", "3600s") in milliseconds."""
    from telemetry.metrics.spec import duration_us

    try:
        return duration_us(opts.dp_max_duration, "dp_max_duration") // 1000
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _readers() -> ModuleType:
    """The reader registry, imported only when a reader setting is met."""
    import telemetry.readers

    return telemetry.readers


def _parse_by(by: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(by, str):
        parts = [p.strip() for p in by.split(",")]
        return tuple(p for p in parts if p)
    return tuple(by)


def thread_count(opts: Options) -> int:
    return opts.threads or os.cpu_count() or 1
