from telemetry.cli import entry

entry()
