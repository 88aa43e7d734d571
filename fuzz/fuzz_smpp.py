"""atheris harness: SMPP receipt parser and the ``smpp-dlr`` reader (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers.smpp import parse_receipt


def test_one(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parse_receipt(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    check_reader("smpp-dlr", data)


if __name__ == "__main__":
    fuzz(test_one)
