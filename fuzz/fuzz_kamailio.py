"""atheris harness: the ``kamailio`` reader (acc_cdrs export) with the usual column
names and with a site mapping and a local time zone (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers import ReaderOptions

SITE = ReaderOptions(extra={"kamailio": {
    "columns": {"gw": "route", "cli": "source", "pdd": "pdd_ms"},
    "timezone": "Europe/London",
}})


def test_one(data: bytes) -> None:
    check_reader("kamailio", data)
    check_reader("kamailio", data, SITE, suffix="-acc_cdrs.csv")


if __name__ == "__main__":
    fuzz(test_one)
