"""The error family. Messages name the argument and the remedy, never an
identifier value or key material."""

from __future__ import annotations


class TelemetryError(Exception):
    """Base of every error the product raises on purpose."""

    exit_code = 2


class ConfigError(TelemetryError):
    """A command-line option, configuration file or argument is wrong."""


class KeyMaterialError(TelemetryError):
    """A key file is missing, unreadable, too open, tampered with or sealed with
    another passphrase."""


class SchemaError(TelemetryError):
    """An input does not have the shape its format requires."""


class InputError(TelemetryError):
    """An input file cannot be opened or its format cannot be told."""


def printable(name: object) -> str:
    """``name`` for an error message: as it is when printable, else its escaped repr, so a
    key holding a newline or a control byte cannot break the one-line message."""
    text = str(name)
    return text if text.isprintable() else repr(text)
