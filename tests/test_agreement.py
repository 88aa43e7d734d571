"""Agreement of telemetry.numbering with the phonenumbers package.

The reference for every check is ``phonenumbers.parse(text, region)`` followed
by ``format_number(..., E164)`` and ``region_code_for_number``.

Sizes (seed fixed): 40,000 generated valid numbers from 25 regions, each
written in 3 notations drawn at random from the 13 below, plus all 13
notations for a 2,000-number subset: 146,000 number x notation checks. A
second test feeds 30,000 random digit strings (valid or not, with and without
'+', IDD and trunk prefixes) and requires the same outcome, error or not.

Reference: phonenumbers (parse, format_number E164, region_code_for_number)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType

from telemetry.numbering import Kind, normalize

REGIONS = [
    "US", "CA", "BB", "JM", "PR", "GB", "JE", "GG", "IM", "RU", "KZ", "IT", "VA",
    "DE", "FR", "IN", "AU", "BR", "JP", "AR", "MX", "CN", "ZA", "FI", "AX",
]  # fmt: skip
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
]
NUMBERS = 40_000
SUBSET = 2_000
PER_NUMBER = 3
E164 = PhoneNumberFormat.E164


def _valid_numbers(rng: random.Random) -> list[tuple[str, phonenumbers.PhoneNumber]]:
    examples = []
    for region in REGIONS:
        for numtype in TYPES:
            ex = phonenumbers.example_number_for_type(region, numtype)
            if ex is not None:
                examples.append((region, ex))
    out = []
    per_region = Counter()
    target = NUMBERS // len(REGIONS) + 1
    attempts = 0
    while len(out) < NUMBERS:
        attempts += 1
        assert attempts < NUMBERS * 20, "too few valid numbers generated"
        region, ex = rng.choice(examples)
        if per_region[region] >= target:
            continue
        nsn = phonenumbers.national_significant_number(ex)
        tail = rng.randint(2, min(5, len(nsn) - 1))
        digits = nsn[:-tail] + "".join(rng.choice("0123456789") for _ in range(tail))
        number = phonenumbers.parse("+" + str(ex.country_code) + digits, None)
        if phonenumbers.is_valid_number(number):
            out.append((region, number))
            per_region[region] += 1
    return out


def _idd(region: str) -> str | None:
    meta = PhoneMetadata.metadata_for_region(region)
    idd = meta.preferred_international_prefix or meta.international_prefix
    return idd if idd and all(c.isdigit() or c == "~" for c in idd) else None


def _notations(region: str, number, parse_region: str) -> list[tuple[str, str, str | None, str]]:
    """(notation, text, parse region, reference text) for one number."""
    cc = number.country_code
    nsn = phonenumbers.national_significant_number(number)
    intl = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    e164 = phonenumbers.format_number(number, E164)
    rfc = phonenumbers.format_number(number, PhoneNumberFormat.RFC3966)
    other = parse_region
    idd = _idd(other)
    rows = [
        ("e164", e164, other, e164),
        ("international", intl, other, intl),
        ("national", national, region, national),
        ("rfc3966", rfc, other, rfc),
        ("sip_user_phone", f"sip:{e164}@gw.example.net;user=phone", other, e164),
        ("sip_name_addr", f'"Caller" <sip:{e164}@Example.NET:5061;transport=tls>', other, e164),
        ("dashes", intl.replace(" ", "-"), other, intl.replace(" ", "-")),
        ("dots", national.replace(" ", ".").replace("-", "."), region, national.replace(" ", ".").replace("-", ".")),
        ("national_digits", phonenumbers.normalize_digits_only(national), region, phonenumbers.normalize_digits_only(national)),
        ("parentheses", f"+{cc} ({nsn[:3]}) {nsn[3:]}", other, f"+{cc} ({nsn[:3]}) {nsn[3:]}"),
        ("tel_context", f"tel:{nsn};phone-context=+{cc}", other, f"tel:{nsn};phone-context=+{cc}"),
        ("padded_e164", f"  {e164}\t", other, e164),
    ]
    if idd is not None:
        rows.append(("idd", f"{idd} {cc} {nsn}", other, f"{idd} {cc} {nsn}"))
    else:
        rows.append(("idd", f"00 {cc} {nsn}", "GB", f"00 {cc} {nsn}"))
    return rows


def _reference(text: str, region: str | None) -> tuple[str, str | None] | None:
    try:
        n = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(n, E164), phonenumbers.region_code_for_number(n)


def _check(cases: list[tuple[str, str, str | None, str]]) -> Counter:
    """Normalizes each case with its region and compares with the reference."""
    by_region: dict[str | None, list[int]] = {}
    for i, case in enumerate(cases):
        by_region.setdefault(case[2], []).append(i)
    seen = Counter()
    for region, rows in by_region.items():
        texts = [cases[i][1] for i in rows]
        got = normalize(pa.array(texts), region)
        ids = got.ids.to_pylist()
        regions = got.region.to_pylist()
        for j, i in enumerate(rows):
            notation, text, _, ref_text = cases[i]
            ref = _reference(ref_text, region)
            assert ref is not None, (notation, text, region)
            assert got.kind[j] == Kind.PHONE, (notation, text, region, int(got.kind[j]), int(got.reason[j]))
            assert (ids[j], regions[j]) == ref, (notation, text, region)
            assert int(got.cc[j]) == int(ref[0][1 : 1 + len(str(got.cc[j]))]), (notation, text)
            seen[notation] += 1
    return seen


@pytest.fixture(scope="module")
def numbers():
    return _valid_numbers(random.Random(20240601))


def test_valid_numbers_in_many_notations_agree(numbers):
    rng = random.Random(7)
    cases = []
    for k, (region, number) in enumerate(numbers):
        parse_region = rng.choice(REGIONS)
        notes = _notations(region, number, parse_region)
        chosen = notes if k < SUBSET else rng.sample(notes, PER_NUMBER)
        cases.extend(chosen)
    seen = _check(cases)
    assert sum(seen.values()) >= 100_000
    assert len(seen) >= 13 and min(seen.values()) >= 5_000, seen
    assert len({region for region, _ in numbers}) == len(REGIONS) >= 15


def _random_digit_strings(rng: random.Random, count: int) -> list[tuple[str, str | None]]:
    prefixes = ["", "", "+", "+", "0", "00", "011", "8", "810", "1", "+0", "+00", "+011", "44", "7", "+1", "0044"]
    seps = ["", "", " ", "-", ".", "(", ")", "/"]
    out = []
    for _ in range(count):
        region = rng.choice(REGIONS + [None])
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 16)))
        if rng.random() < 0.5 and region is not None:  # start like a real number of the region
            cc = str(phonenumbers.country_code_for_region(region))
            body = (cc if rng.random() < 0.5 else "") + body
        text = rng.choice(prefixes)
        for ch in body:
            text += ch + (rng.choice(seps) if rng.random() < 0.2 else "")
        out.append((text, region))
    return out


def test_random_digit_strings_agree_including_errors():
    rng = random.Random(11)
    cases = _random_digit_strings(rng, 30_000)
    by_region: dict[str | None, list[int]] = {}
    for i, (_, region) in enumerate(cases):
        by_region.setdefault(region, []).append(i)
    outcomes = Counter()
    for region, rows in by_region.items():
        texts = [cases[i][0] for i in rows]
        got = normalize(pa.array(texts), region)
        ids = got.ids.to_pylist()
        regions = got.region.to_pylist()
        for j, text in enumerate(texts):
            kind = int(got.kind[j])
            if kind == Kind.SHORT:  # our rule: short digit strings without '+' are kept
                assert "+" not in text and sum(c.isdigit() for c in text) <= 6
                outcomes["short"] += 1
                continue
            ref = _reference(text, region)
            if ref is None:
                assert kind == Kind.ERROR, (text, region, ids[j])
                outcomes["error"] += 1
            else:
                assert kind == Kind.PHONE, (text, region, kind, int(got.reason[j]))
                assert (ids[j], regions[j]) == ref, (text, region)
                outcomes["phone"] += 1
    assert outcomes["phone"] > 10_000 and outcomes["error"] > 1_000, outcomes


def test_agreement_sizes_are_as_documented(numbers):
    assert len(numbers) == NUMBERS
    counts = np.unique([r for r, _ in numbers], return_counts=True)[1]
    assert counts.min() > 500
