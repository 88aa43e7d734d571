"""atheris harness: the ``asterisk`` reader (Master.csv), in UTC and in local time
(``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers import ReaderOptions

LOCAL = ReaderOptions(extra={"timezone": "Europe/London"})


def test_one(data: bytes) -> None:
    check_reader("asterisk", data)
    check_reader("asterisk", data, LOCAL, suffix="-Master.csv")


if __name__ == "__main__":
    fuzz(test_one)
