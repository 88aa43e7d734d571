"""atheris harness: the ``twilio-calls`` and ``twilio-messages`` readers (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers.twilio import parse_time


def test_one(data: bytes) -> None:
    try:
        parse_time(data.decode("utf-8", "replace"))
    except ValueError:
        pass
    check_reader("twilio-calls", data)
    check_reader("twilio-messages", data)


if __name__ == "__main__":
    fuzz(test_one)
