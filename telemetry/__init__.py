"""Privacy-preserving routing-quality telemetry for CDRs and MDRs.

``import telemetry`` is cheap: it neither imports Numba nor compiles a kernel.
The public names below are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "process": "telemetry.pipeline",
    "read_metrics": "telemetry.sinks.metricsdir",
    "pseudonymize": "telemetry.pseudonyms",
    "Keyring": "telemetry.keys",
    "warmup": "telemetry.pseudonyms",
    "TelemetryError": "telemetry.errors",
    "ConfigError": "telemetry.errors",
    "KeyMaterialError": "telemetry.errors",
    "SchemaError": "telemetry.errors",
    "InputError": "telemetry.errors",
    "CANONICAL": "telemetry.schema",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
