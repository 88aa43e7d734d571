"""atheris harness: the canonical ``csv`` reader, also with parse blocks small enough
for records to straddle them (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers import ReaderOptions

SMALL_BLOCKS = ReaderOptions(block_bytes=64)


def test_one(data: bytes) -> None:
    check_reader("csv", data)
    check_reader("csv", data, SMALL_BLOCKS)


if __name__ == "__main__":
    fuzz(test_one)
