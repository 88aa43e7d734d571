"""Unit tests of identifier normalization (telemetry.numbering, kernels/e164.py)
and of the regex compiler it rests on (telemetry.regexdfa).

Reference: phonenumbers (parse, format_number, its metadata for short codes) and Python's re for
the regex compiler."""

from __future__ import annotations

import os
import random
import re
import threading

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from kernels import e164
from telemetry import regexdfa
from telemetry.errors import ConfigError
from telemetry.numbering import REASONS, Kind, check_region, normalize


def one(text: str | None, region: str | None = "GB"):
    r = normalize(pa.array([text], type=pa.string()), region)
    return r.ids[0].as_py(), Kind(int(r.kind[0])), int(r.reason[0]), int(r.cc[0]), r.region[0].as_py()


@pytest.mark.parametrize(
    "text",
    ["", "   ", "anonymous", "Anonymous", "UNKNOWN", "restricted", "Withheld", "private", "unavailable",
     "sip:anonymous@anonymous.invalid", '"Anonymous" <sip:anonymous@anonymous.invalid>',
     "sip:Restricted@pbx.example.com", "sip:caller@anonymous.invalid", "tel:unknown", " \tanonymous\n"],
)  # fmt: skip
def test_withheld(text):
    assert one(text)[:3] == (None, Kind.WITHHELD, 0)


@pytest.mark.parametrize(
    "text, region, expected, cc, iso",
    [
        ("+44 7700 900123", None, "+447700900123", 44, None),
        ("+44-7700-900123", "US", "+447700900123", 44, None),
        ("+44 (0)7700 900123", None, "+447700900123", 44, None),
        ("(020) 7946 0123", "GB", "+442079460123", 44, "GB"),
        ("020 7946 0123", "GB", "+442079460123", 44, "GB"),
        ("00 44 20 7946 0123", "GB", "+442079460123", 44, "GB"),
        ("011 44 20 7946 0123", "US", "+442079460123", 44, "GB"),
        ("810 44 20 7946 0123", "RU", "+442079460123", 44, "GB"),
        ("8~10 44 20 7946 0123", "RU", "+442079460123", 44, "GB"),  # '~' goes to the fallback
        ("201.555.0123", "US", "+12015550123", 1, "US"),
        ("1 (201) 555-0123", "US", "+12015550123", 1, "US"),
        ("201/555/0123", "US", "+12015550123", 1, "US"),
        ("+1 246 234 5678", None, "+12462345678", 1, "BB"),
        ("234 5678", "BB", "+12462345678", 1, "BB"),  # transform rule ([2-9]\d{6})$ -> 246\1
        ("+7 701 123 4567", None, "+77011234567", 7, "KZ"),
        ("8 (495) 123-45-67", "RU", "+74951234567", 7, "RU"),
        ("+39 06 698 12345", None, "+390669812345", 39, "VA"),
        ("+39 02 1234 5678", None, "+390212345678", 39, "IT"),
        ("0 11 15 2345 6789", "AR", "+5491123456789", 54, "AR"),
        ("(11) 92345-6789", "BR", "+5511923456789", 55, "BR"),
        ("03-1234-5678", "JP", "+81312345678", 81, "JP"),
        ("tel:+1-201-555-0123", None, "+12015550123", 1, "US"),
        ("tel:+44-20-7946-0123;ext=12", None, "+442079460123", 44, "GB"),
        ("tel:20-7946-0123;phone-context=+44", None, "+442079460123", 44, "GB"),
        ("sip:+12015550123@gw.example.com;user=phone", None, "+12015550123", 1, "US"),
        ("<sip:+12015550123@gw.example.com>", None, "+12015550123", 1, "US"),
        ("sip:02079460123@gw.example.com", "GB", "+442079460123", 44, "GB"),
        ("sip:+44-20-7946-0123@gw.example.com;user=phone", None, "+442079460123", 44, "GB"),
        ("\uff10\uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff11\uff12\uff13", "GB", "+442079460123", 44, "GB"),
        ("+800 1234 5678", None, "+80012345678", 800, "001"),
    ],
)
def test_phone_numbers(text, region, expected, cc, iso):
    assert one(text, region) == (expected, Kind.PHONE, 0, cc, iso)
    ref = phonenumbers.parse(text if not text.startswith(("sip", "<sip")) else expected, region)
    assert phonenumbers.format_number(ref, phonenumbers.PhoneNumberFormat.E164) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sip:Alice@Example.COM", "sip:Alice@example.com"),
        ("sips:alice@EXAMPLE.com:5061;transport=tls?subject=x", "sip:alice@example.com"),
        ('"Alice Smith" <sip:alice:secret@PBX.Example.org;lr>', "sip:alice@pbx.example.org"),
        ("sip:bob@[2001:DB8::1]:5060", "sip:bob@[2001:db8::1]"),
        ("SIP:carol@example.com", "sip:carol@example.com"),
        ("sip:1234@pbx.example.com", "sip:1234@pbx.example.com"),  # an extension, not a number
        ("sip:pbx.example.com", "sip:pbx.example.com"),
    ],
)
def test_sip_uris(text, expected):
    assert one(text, None)[:3] == (expected, Kind.SIP, 0)


@pytest.mark.parametrize(
    "text, region, kind",
    [
        ("112", "GB", Kind.SHORT),
        ("12345", None, Kind.SHORT),
        ("840 840", "GB", Kind.SHORT),
        ("123456", "US", Kind.SHORT),
        ("MyBank", "GB", Kind.ALPHANUMERIC),
        ("  MyBank ", "GB", Kind.ALPHANUMERIC),
        ("1-800-FLOWERS", "US", Kind.ALPHANUMERIC),
        ("*21#", "GB", Kind.SHORT),  # via the fallback: 2 digits, no +
        ("-", "GB", Kind.ALPHANUMERIC),
    ],
)
def test_short_and_alphanumeric_kept_trimmed(text, region, kind):
    assert one(text, region)[:2] == (text.strip(), kind)


def test_short_code_limit_follows_the_region():
    # Germany has 4-digit national numbers: only 3 digits are a short code there
    assert one("1234", "DE")[1] == Kind.PHONE
    assert one("123", "DE")[1] == Kind.SHORT
    assert one("123456", "GB")[1] == Kind.SHORT


@pytest.mark.parametrize(
    "text, region, reason",
    [
        ("020 7946 0123", None, 1),
        ("07700 900123", None, 1),
        ("sip:02079460123@gw.example.com", None, 1),
        ("+999 1234 5678", None, 2),
        ("+12", "GB", 5),
        ("+1", None, 5),
        ("tel:;phone-context=+44", None, 5),
        ("+44 1" + "2" * 30, None, 4),
    ],
)
def test_errors_carry_a_reason_without_the_value(text, region, reason):
    ids, kind, code, cc, iso = one(text, region)
    assert (ids, kind, code, cc, iso) == (None, Kind.ERROR, reason, 0, None)
    digits = "".join(c for c in text if c.isdigit())
    assert digits[-4:] not in REASONS[reason]


def test_nulls_and_kinds_line_up():
    values = pa.array(["+442079460123", None, "anonymous", "sip:a@b.example", "112", "MyBank", "0207946012", None])
    r = normalize(values, None)
    assert r.kind.tolist() == [2, 0, 1, 3, 4, 5, 6, 0]
    assert r.ids.to_pylist() == ["+442079460123", None, None, "sip:a@b.example", "112", "MyBank", None, None]
    assert r.region.to_pylist() == ["GB"] + [None] * 7
    assert r.cc.dtype == np.int16 and r.kind.dtype == np.int8 and r.reason.dtype == np.int8
    assert r.ids.type == pa.string() and r.region.type == pa.string()


def _ids(values, region="GB"):
    r = normalize(values, region)
    return r.ids.to_pylist(), r.kind.tolist(), r.cc.tolist(), r.region.to_pylist()


SAMPLE = ["+44 20 7946 0123", None, "020 7946 0124", "sip:X@Y.example", "anonymous", "112", "+1 201 555 0123"]


def test_sliced_chunked_large_and_dictionary_inputs_agree():
    expected = _ids(pa.array(SAMPLE))
    big = pa.array(["pad"] * 3 + SAMPLE + ["pad"])
    assert _ids(big.slice(3, len(SAMPLE))) == expected
    assert _ids(pa.array(SAMPLE, type=pa.large_string())) == expected
    assert _ids(pa.array(SAMPLE).dictionary_encode()) == expected
    chunked = pa.chunked_array([pa.array(SAMPLE[:2]), pa.array([], type=pa.string()), pa.array(SAMPLE[2:])])
    assert _ids(chunked) == expected
    assert _ids(pa.chunked_array([], type=pa.string())) == ([], [], [], [])
    assert _ids(pa.array([], type=pa.string())) == ([], [], [], [])


# Ofcom's drama ranges: 14,000 fictional numbers
DRAMA_PREFIXES = ("020 7946 0", "0113 496 0", "0114 496 0", "0115 496 0", "0116 496 0", "0117 496 0",
                  "0118 496 0", "0121 496 0", "0131 496 0", "0141 496 0", "0151 496 0", "0161 496 0",
                  "0191 498 0", "07700 900")  # fmt: skip
DRAMA = [f"{prefix}{i:03d}" for prefix in DRAMA_PREFIXES for i in range(1000)]


@pytest.mark.parametrize("rows", [5000, 20_000])
def test_a_large_call_reads_as_each_value_alone(rows):
    # normalize parses each distinct value once and gathers per row: every row must
    # read as that value normalized in a call of its own (checked on a sample of rows)
    rng = random.Random(rows)
    pool = DRAMA[:700] + ["anonymous", "sip:Alice@Example.COM", "112", "AcmeBank", "+999 1234"]
    pool += ["\uff0b44 20 7946 0125", "0", ""]
    mostly_distinct = rng.sample(DRAMA, min(rows, len(DRAMA)))
    mostly_distinct += mostly_distinct[: rows - len(mostly_distinct)]
    for values in (
        [rng.choice(pool) if rng.random() > 0.05 else None for _ in range(rows)],
        [value if rng.random() > 0.05 else None for value in mostly_distinct],
    ):
        whole = normalize(pa.array(values, pa.string()), "GB")
        for i in rng.sample(range(rows), 300):
            alone = normalize(pa.array([values[i]], pa.string()), "GB")
            assert whole.ids[i] == alone.ids[0] and whole.region[i] == alone.region[0]
            for name in ("kind", "reason", "cc", "region_index"):
                assert getattr(whole, name)[i] == getattr(alone, name)[0], name


def test_fallback_rows_mix_with_kernel_rows():
    values = pa.array(["+44 20 7946 0123", "\uff0b44 20 7946 0125", None, "8~10 1 201 555 0123", "112"])
    ids, kinds, _, regions = _ids(values, "RU")
    assert ids == ["+442079460123", "+442079460125", None, "+12015550123", "112"]
    assert kinds == [2, 2, 0, 2, 4]
    assert regions == ["GB", "GB", None, "US", None]


def test_wrong_arguments():
    with pytest.raises(TypeError):
        normalize(pa.array([1, 2]))
    with pytest.raises(TypeError):
        normalize(["+442079460123"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown region"):
        normalize(pa.array(["1"]), "XX")
    assert check_region("gb") == "GB" and check_region(None) is None
    # regions are checked against the tables' regions, without importing phonenumbers
    from phonenumbers.phonenumberutil import SUPPORTED_REGIONS

    assert [r for r in SUPPORTED_REGIONS if check_region(r.lower()) != r] == []
    with pytest.raises(ConfigError, match="unknown region"):
        check_region("001")  # the non-geographic entries' name is not a region


def test_kernel_constants_match_the_recipe():
    assert [e164.NULL, e164.WITHHELD, e164.PHONE, e164.SIP, e164.SHORT, e164.ALPHANUMERIC, e164.ERROR] == [
        int(k) for k in Kind
    ]
    assert sorted(REASONS) == [0, e164.R_NO_REGION, e164.R_BAD_CC, e164.R_TOO_SHORT, e164.R_TOO_LONG, e164.R_NOT_NUMBER]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=20), st.sampled_from([None, "GB", "US", "BR"]))
def test_never_raises_and_e164_is_well_formed(values, region):
    r = normalize(pa.array(values, type=pa.string()), region)
    ids = r.ids.to_pylist()
    for value, text, kind, cc in zip(values, ids, r.kind.tolist(), r.cc.tolist()):
        if value is None:
            assert kind == Kind.NULL and text is None
        elif kind == Kind.PHONE:
            assert re.fullmatch(r"\+[1-9]\d{2,19}", text), text
            assert text[1:].startswith(str(cc))
        elif kind in (Kind.WITHHELD, Kind.ERROR):
            assert text is None
        else:
            assert text


PHONE_ALPHABET = st.text(alphabet="0123456789+ -()./", min_size=1, max_size=22)


#: The error reason (REASONS) of each phonenumbers parse error, given (region, plus).
PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: lambda region, plus: 1 if region is None and not plus else 2,
    phonenumbers.NumberParseException.TOO_SHORT_NSN: lambda region, plus: 3,
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: lambda region, plus: 3,
    phonenumbers.NumberParseException.TOO_LONG: lambda region, plus: 4,
}


def short_code_limit(region: str | None) -> int:
    """The documented short-code rule, from libphonenumber's own metadata: at most 6
    digits, and fewer than the region's shortest national number."""
    if region is None:
        return 6
    lengths = phonenumbers.PhoneMetadata.metadata_for_region(region).general_desc.possible_length
    return min(6, min(lengths) - 1)


@settings(max_examples=400, deadline=None)
@given(PHONE_ALPHABET, st.sampled_from([None, "GB", "US", "DE", "JP", "BR", "AR", "RU", "BB", "JE"]))
@example("   ", "GB").via("blank: withheld")
@example("(+)-./", "US").via("no digit: alphanumeric, kept as written")
@example(" 840 840 ", "GB").via("six digits, no +: short in GB")
@example("1234", "DE").via("four digits: a German national number, not a short code")
@example("+123", None).via("a + makes it a number, however short")
def test_phone_notation_matches_phonenumbers(text, region):
    """Every kind checked: blank is WITHHELD, no digit ALPHANUMERIC, a short digit string
    without + SHORT (kept trimmed), the rest exactly what phonenumbers gives (what it
    does not see as a number at all is ALPHANUMERIC, a parse error an ERROR with its reason)."""
    got = one(text, region)
    digits = sum(ch.isdigit() for ch in text)
    plus = "+" in text and not any(ch.isdigit() for ch in text[: text.index("+")])
    if not text.strip():
        expected = (None, Kind.WITHHELD, 0, 0, None)
    elif not digits:
        expected = (text.strip(), Kind.ALPHANUMERIC, 0, 0, None)
    elif not plus and digits <= short_code_limit(region):
        expected = (text.strip(), Kind.SHORT, 0, 0, None)
    else:
        try:
            n = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            if exc.error_type == exc.NOT_A_NUMBER and not plus:  # no number meant: kept as written
                expected = (text.strip(), Kind.ALPHANUMERIC, 0, 0, None)
            elif exc.error_type == exc.NOT_A_NUMBER:  # a + announces a number: this one is bad
                expected = (None, Kind.ERROR, 5, 0, None)
            else:
                expected = (None, Kind.ERROR, PARSE_REASONS[exc.error_type](region, plus), 0, None)
        else:
            ref = phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
            expected = (ref, Kind.PHONE, 0, n.country_code, phonenumbers.region_code_for_number(n))
    event(expected[1].name)
    assert got == expected, got


def _example_numbers() -> list[str]:
    """phonenumbers' example number of every region and number type, in E.164."""
    from phonenumbers import PhoneNumberType
    from phonenumbers.phonenumberutil import SUPPORTED_REGIONS

    out = set()
    for region in sorted(SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                out.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return sorted(out)


@st.composite
def _example_varied(draw) -> str:
    """An example number with some of its last digits redrawn, one dropped or one added:
    real calling codes and national numbers, regions told apart by their digits."""
    text = draw(st.sampled_from(_example_numbers()))
    tail = draw(st.text("0123456789", min_size=0, max_size=4))
    cut = draw(st.integers(0, min(4, len(text) - 2)))
    return text[: len(text) - cut] + tail if draw(st.booleans()) else text[: len(text) - len(tail)] + tail


E164_WRITTEN = st.from_regex(r"\+[0-9]{0,22}", fullmatch=True) | _example_varied() | st.sampled_from(
    ["+447400123456", "+12015550123", "+5491123456789", "+80012345678", "+4420794601234567890", "+0123",
     "+441212106033", "+441800201234567"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(E164_WRITTEN, min_size=1, max_size=8), st.sampled_from([None, "GB", "US", "BR", "AR"]))
def test_plus_and_digits_fast_path_matches_phonenumbers_and_the_general_path(texts, region):
    # '+' and digits alone skip the general scan (kernels.e164._plus_digits): the same
    # rows behind a leading space take the general path; both must read as phonenumbers
    fast = normalize(pa.array(texts), region)
    slow = normalize(pa.array([" " + t for t in texts]), region)
    assert fast.ids.equals(slow.ids) and fast.region.equals(slow.region)
    for name in ("kind", "reason", "cc"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name))
    for i, text in enumerate(texts):
        kind = Kind(int(fast.kind[i]))
        if kind == Kind.ALPHANUMERIC:
            continue  # '+' without digits: our own rule (documented), as above
        try:
            n = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            assert kind == Kind.ERROR, text
            continue
        assert kind == Kind.PHONE and fast.ids[i].as_py() == phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
        assert fast.cc[i] == n.country_code and fast.region[i].as_py() == phonenumbers.region_code_for_number(n)


@settings(max_examples=300, deadline=None)
@given(st.lists(E164_WRITTEN, min_size=1, max_size=8), st.sampled_from([None, "GB", "US", "BR", "AR"]))
def test_a_sip_user_of_plus_and_digits_reads_as_the_number_alone(texts, region):
    # sip:+447700900123@gw;user=phone (interconnects) takes the '+' and digits path on its user
    # part (kernels.e164._row): the number as the row of it alone reads (held to phonenumbers
    # above), kept as sip:user@host (host lower-cased) when that is not a phone number
    plain = normalize(pa.array(texts), region)
    for form in ("sip:{}@GW.example.net;user=phone", '"Gateway" <sips:{}@gw.example.net:5061>'):
        sip = normalize(pa.array([form.format(t) for t in texts]), region)
        for i, text in enumerate(texts):
            kind = Kind(int(plain.kind[i]))
            if kind in (Kind.PHONE, Kind.ERROR):
                assert (sip.kind[i], sip.reason[i], sip.cc[i]) == (plain.kind[i], plain.reason[i], plain.cc[i]), text
                assert sip.ids[i] == plain.ids[i] and sip.region[i] == plain.region[i], text
            else:
                assert Kind(int(sip.kind[i])) == Kind.SIP and sip.ids[i].as_py() == f"sip:{text}@gw.example.net", text


def test_two_threads_get_the_same_results():
    rng = random.Random(3)
    values = pa.array(
        [rng.choice(["+44 20 7946 %04d", "(020) 7946 %04d", "sip:u%d@h.example", "+1 201 555 %04d"]) % rng.randrange(10_000)
         for _ in range(20_000)]
    )  # fmt: skip
    expected = normalize(values, "GB")
    results = [None, None]

    def work(k):
        results[k] = normalize(values, "GB")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert r.ids.equals(expected.ids) and r.region.equals(expected.region)
        assert (r.kind == expected.kind).all() and (r.cc == expected.cc).all()


# --------------------------------------------------------------------------- regexdfa
def _metadata_patterns():
    from phonenumbers import PhoneMetadata

    out = []
    for region in ["GB", "US", "DE", "AR", "BR", "JP", "RU", "IT", "BB", "JE", "AU", "IN"]:
        m = PhoneMetadata.metadata_for_region(region)
        for desc in (m.general_desc, m.fixed_line, m.mobile, m.toll_free):
            if desc is not None and desc.national_number_pattern:
                out.append(desc.national_number_pattern)
    return out


def _walk(dfa, digits):
    s = 1
    for ch in digits:
        s = int(dfa.trans[s, int(ch)])
    return dfa.accepts[s]


def test_regions_of_shared_codes_deep_in_their_dfa_match_phonenumbers():
    # kernels.e164.region_of stops walking a shared code's DFA where its state settles the
    # region for the number's length (telemetry.phonemeta._settled). Numbers made by random
    # walks that mostly keep to live states reach every depth of each code's DFA, where the
    # digits left may or may not still matter; the region must be region_code_for_number's
    from telemetry.phonemeta import tables

    ccinfo, rtrans = tables().kernel[1], tables().kernel[3]
    rng = random.Random(17)
    texts = []
    for code in np.flatnonzero(ccinfo[:, 1] == -2).tolist():
        for _ in range(150):
            state, digits = int(ccinfo[code, 2]), ""
            for _ in range(rng.randint(4, 15)):
                live = [d for d in range(10) if rtrans[state, d] != 0]
                d = rng.choice(live) if live and rng.random() < 0.97 else rng.randrange(10)
                digits += str(d)
                state = int(rtrans[state, d])
            texts.append(f"+{code}{digits}")
    got = normalize(pa.array(texts), None)
    for i, text in enumerate(texts):
        try:
            n = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            assert Kind(int(got.kind[i])) == Kind.ERROR, text
            continue
        assert got.cc[i] == n.country_code and got.region[i].as_py() == phonenumbers.region_code_for_number(n), text


def test_a_settled_state_holds_one_winner_for_every_way_on():
    # telemetry.phonemeta._settled against sets of states: from each state, for each depth it
    # is reached at, the states every string of the digits left can end in. Small random DFAs
    # (few digits lead anywhere but the dead state 0) reach states at several depths, which
    # the metadata's DFAs seldom do
    from telemetry.phonemeta import _settled

    rng = np.random.default_rng(4)
    for _ in range(60):
        n, lengths = int(rng.integers(3, 9)), int(rng.integers(1, 7))
        trans = np.where(rng.random((n, 10)) < 0.3, rng.integers(1, n, (n, 10)), 0).astype(np.int32)
        trans[0] = 0
        win = rng.integers(-1, 2, (n, lengths)).astype(np.int16)
        win[0] = -1
        depths = [{1}]
        for _ in range(lengths - 1):
            depths.append({int(t) for s in depths[-1] for t in trans[s]})
        got = _settled(trans, win)
        for s in range(n):
            for k in range(lengths):
                winners = set()
                for j in range(k + 1):
                    if s in depths[j]:
                        ends = {s}
                        for _ in range(k - j):
                            ends = {int(t) for e in ends for t in trans[e]}
                        winners |= {int(win[e, k]) for e in ends}
                assert got[s, k] == (winners.pop() if len(winners) == 1 else e164.UNSETTLED), (trans, win, s, k)


def test_dfa_fullmatch_agrees_with_re():
    rng = random.Random(5)
    for pattern in _metadata_patterns():
        dfa = regexdfa.build_dfa([(pattern, "t", False)])
        compiled = re.compile(pattern)
        for _ in range(300):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 13)))
            assert ("t" in _walk(dfa, digits)) == bool(compiled.fullmatch(digits)), (pattern, digits)


def test_dfa_prefix_latch_agrees_with_re_match():
    rng = random.Random(6)
    patterns = ["06698", "1[03-79]|[2-9]", "658|876", "", "7"]
    dfa = regexdfa.build_dfa([(p, k, True) for k, p in enumerate(patterns)])
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 8)))
        expected = {k for k, p in enumerate(patterns) if re.match(p, digits)}
        assert set(_walk(dfa, digits)) == expected, digits


def _run_program(pattern, digits):
    prog, groups = regexdfa.compile_program(pattern)
    prog = np.asarray(prog, dtype=np.int32)
    caps = np.full(e164.CAPS, -1, dtype=np.int64)
    stack = np.zeros((e164.STACK, 2 + e164.CAPS), dtype=np.int64)
    x = np.array([int(c) for c in digits] + [0], dtype=np.uint8)
    end = e164._vm(prog, 0, x, 0, len(digits), 0, caps, stack)
    found = end, [(int(caps[2 * g]), int(caps[2 * g + 1])) for g in range(1, groups + 1)]
    # the same digits as text behind other bytes, as the E.164 fast path runs it
    text = np.frombuffer(b"+44" + digits.encode() + b"9", dtype=np.uint8)
    end = e164._vm(prog, 0, text, 3, len(digits), 48, caps, stack)
    assert (end, [(int(caps[2 * g]), int(caps[2 * g + 1])) for g in range(1, groups + 1)]) == found
    return found


def test_programs_reproduce_re_match_ends_and_groups():
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import SUPPORTED_REGIONS

    patterns = set()
    for region in SUPPORTED_REGIONS:
        m = PhoneMetadata.metadata_for_region(region)
        for p in (m.national_prefix_for_parsing, m.international_prefix):
            if p:
                patterns.add(p)
    rng = random.Random(8)
    for pattern in sorted(patterns):
        compiled = re.compile(pattern)
        for _ in range(60):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 14)))
            if rng.random() < 0.5:  # start with something the pattern accepts
                digits = "".join(rng.choice("0189") for _ in range(rng.randint(1, 4))) + digits
            end, groups = _run_program(pattern, digits)
            m = compiled.match(digits)
            if m is None:
                assert end == -1, (pattern, digits)
            else:
                assert end == m.end(), (pattern, digits)
                assert groups == [m.span(g) if m.group(g) is not None else (-1, -1) for g in range(1, compiled.groups + 1)]


def test_unsupported_syntax_fails_loudly():
    for bad in ["a", "\\w", "[^1]", "1*", "1+"]:
        with pytest.raises(ValueError):
            regexdfa.compile_program(bad)


def test_numbering_tables_cached_on_disk_load_exactly_and_a_damaged_copy_is_ignored(tmp_path):
    from telemetry import phonemeta

    built = phonemeta._build()
    path = str(tmp_path / "phonemeta.npz")
    phonemeta._save(built, path)
    loaded = phonemeta._load(path)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(built.kernel, loaded.kernel))
    assert (loaded.region_names, loaded.region_meta, loaded.min_length) == (
        built.region_names, built.region_meta, built.min_length)  # fmt: skip
    with open(path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 64)
    assert phonemeta._load(path) is None
    assert phonemeta._load(str(tmp_path / "absent.npz")) is None


def test_the_intern_table_uses_the_full_64_bit_hash():
    # A conditional expression mixing uint64 with a plain 0 is float64 in Numba: the
    # prefetch pass once lost the hashes' low 11 bits, which are the slot index, and
    # every lookup probed long runs of a few crowded slots.
    from kernels import intern
    from telemetry.arrowstr import string_views

    views = string_views(pa.array([f"+4477009{i:05d}" for i in range(500)] + [None]))
    n = len(views.valid)
    want = [intern._hash(views.data, np.int64(views.offsets[i]), np.int64(views.offsets[i + 1])) for i in range(n - 1)]
    assert len({h & 0x7FF for h in want}) > 400  # the low bits are spread
    slots, starts, arena, _ = intern.empty()
    hashes = np.empty(n, np.uint64)
    intern._warm(views.offsets, views.data, views.valid, slots, starts, arena, 0, hashes, 0, n)
    assert hashes[:-1].tolist() == want


def test_numbering_tables_cache_is_named_after_the_phonenumbers_release(tmp_path, monkeypatch):
    # the cache key reads phonenumbers' __init__.py (its __version__) without importing it
    import importlib.util
    from types import SimpleNamespace

    from kernels import _jit
    from telemetry import phonemeta

    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path))
    installed = phonemeta._cache_path()
    fake = tmp_path / "__init__.py"
    find_spec = importlib.util.find_spec

    def spec(name, *args):
        return SimpleNamespace(origin=str(fake)) if name == "phonenumbers" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", spec)
    paths = []
    for version in ("9.0.43", "9.0.44", "9.0.43"):
        fake.write_text(f'__version__ = "{version}"\n')
        paths.append(phonemeta._cache_path())
    assert paths[0] == paths[2] != paths[1]
    assert installed not in paths and os.path.dirname(installed) == str(tmp_path)
