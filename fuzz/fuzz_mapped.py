"""atheris harness: the ``mapped`` reader with and without a time format (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers import ReaderOptions

MAPPINGS = (
    {"start_time": "t", "source": "a", "destination": "b", "status": "s", "duration_ms": "d"},
    {"start_time": "t", "end_time": "e", "source": "a", "pdd_ms": "p", "mos": "m",
     "time_format": "%d/%m/%Y %H:%M:%S", "timezone": "Europe/London"},
)


def test_one(data: bytes) -> None:
    for mapping in MAPPINGS:
        check_reader("mapped", data, ReaderOptions(extra={"mapping": mapping}))


if __name__ == "__main__":
    fuzz(test_one)
