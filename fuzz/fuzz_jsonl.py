"""atheris harness: the canonical ``jsonl`` reader (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz


def test_one(data: bytes) -> None:
    check_reader("jsonl", data)


if __name__ == "__main__":
    fuzz(test_one)
