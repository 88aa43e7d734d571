"""The public surface: cheap import, a truthful ``__all__``."""

from __future__ import annotations

import subprocess
import sys

import telemetry


def test_every_name_in_all_resolves():
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None, name


def test_import_does_not_load_numba_or_compile():
    code = "import sys, telemetry; print('numba' in sys.modules, 'kernels' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        telemetry.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
