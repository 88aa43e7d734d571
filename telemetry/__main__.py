"""``python -m telemetry``."""

from telemetry.cli import entry

if __name__ == "__main__":  # not when a worker process of a local Dask cluster imports it again
    entry()
