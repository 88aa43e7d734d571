"""Synthetic CDRs and MDRs: realistic enough to exercise every metric, fictional throughout.

Deterministic for a seed. Eight routes of different quality (``carrier-f`` is the
bad one: low ASR, long post-dial delay, many network timeouts, poor MOS, slow and
lossy SMS), nine destination regions with their own answer rates and round-trip
times, Zipf-distributed callers, withheld callers, A2P senders (short codes and
alphanumeric ids), voice statuses with consistent SIP codes, Q.850 causes and
post-dial delays, SMS delivery states with delivery latency, and a daily traffic
curve.

How often numbers repeat is the :class:`Shape` of the day (:data:`SHAPES`):
``retail`` (the default) draws callers and callees from small pools, as an
operator's own subscribers call each other; ``transit`` and ``a2p`` give a share
of distinct numbers per column, where nearly every destination appears once.

Numbers are valid for their region per ``phonenumbers`` but random: each pool
varies the trailing digits of ``phonenumbers``' example numbers and keeps the
valid ones (US numbers come from the fictional 555-01xx block). National
notation is that of :data:`HOME_REGION` (``GB``) — pass ``--region GB`` when
processing generated data. IP addresses come from the documentation ranges
(RFC 5737, RFC 3849). Pools are built once per seed; records are index arrays
into them, so generation is vectorized and streams batch by batch.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry.schema import CANONICAL, CHANNELS, DIRECTIONS, STATUSES

HOME_REGION = "GB"
DEFAULT_START = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Carrier:
    name: str
    weight: float
    asr: float  # answer-seizure ratio before the destination's own factor
    pdd_ms: float  # median post-dial delay
    mos: float
    loss_pct: float  # mean packet loss of answered calls
    short_calls: float  # share of answered calls under 6 s
    congestion: float  # share of failures that are congestion (503)
    delivery: float  # SMS delivery rate before the destination's factor
    latency_s: float  # median SMS delivery latency
    timeouts: float = 0.10  # share of failures that time out before any 180/183 (SIP 408)


CARRIERS = (
    Carrier("carrier-a", 0.22, 0.62, 1800, 4.3, 0.2, 0.08, 0.05, 0.97, 2.0),
    Carrier("carrier-b", 0.18, 0.58, 2200, 4.2, 0.3, 0.09, 0.07, 0.95, 3.0),
    Carrier("carrier-c", 0.15, 0.55, 2600, 4.0, 0.5, 0.10, 0.08, 0.94, 4.0),
    Carrier("carrier-d", 0.12, 0.60, 2000, 4.1, 0.4, 0.08, 0.06, 0.96, 2.5),
    Carrier("carrier-e", 0.11, 0.50, 3200, 3.8, 0.8, 0.12, 0.12, 0.90, 6.0, timeouts=0.25),
    Carrier("carrier-f", 0.08, 0.28, 6500, 3.0, 3.0, 0.35, 0.40, 0.62, 45.0, timeouts=0.60),  # bad
    Carrier("carrier-g", 0.08, 0.57, 2400, 4.2, 0.3, 0.09, 0.06, 0.95, 3.0),
    Carrier("carrier-h", 0.06, 0.53, 2900, 3.9, 0.6, 0.11, 0.10, 0.92, 5.0),
)

# region, share of destinations, answer/delivery factor, typical round-trip time (ms)
REGIONS = (
    ("GB", 0.44, 1.00, 25),
    ("US", 0.14, 0.98, 90),
    ("DE", 0.08, 1.02, 35),
    ("FR", 0.07, 1.00, 35),
    ("ES", 0.05, 0.97, 45),
    ("IN", 0.09, 0.85, 170),
    ("BR", 0.05, 0.90, 190),
    ("NG", 0.05, 0.78, 210),
    ("ZA", 0.03, 0.92, 180),
)
CHANNEL_MIX = {"voice": 0.60, "sms": 0.31, "mms": 0.02, "voicemail": 0.04, "conference": 0.03}
DIRECTION_MIX = {"outbound": 0.70, "inbound": 0.25, "internal": 0.05}
# failed voice calls: status, share (congestion's share comes from the carrier)
FAILURES = (
    ("busy", 0.30),
    ("no_answer", 0.36),
    ("rejected", 0.05),
    ("cancelled", 0.18),
    ("failed", 0.11),
)
# status → (SIP codes, Q.850 causes) drawn uniformly
CODES = {
    "answered": ((200,), (16,)),
    "busy": ((486, 486, 486, 600), (17,)),
    "no_answer": ((480, 480, 408), (19, 19, 18)),
    "rejected": ((603,), (21,)),
    "cancelled": ((487,), (16,)),
    "failed": ((404, 484, 500, 502, 488), (1, 28, 38, 41, 127)),
    "congestion": ((503,), (34, 42)),
}
MESSAGE_OUTCOMES = (
    ("undelivered", 0.45),
    ("expired", 0.18),
    ("rejected", 0.15),
    ("deleted", 0.02),
    ("accepted", 0.06),
    ("enroute", 0.11),
    ("unknown", 0.03),
)
WITHHELD = ("anonymous", "restricted", "unknown", "Anonymous")
SENDERS = (
    "AcmeBank",
    "ParcelCo",
    "CityCouncil",
    "Verify",
    "ShopNow",
    "60123",
    "81010",
    "72404",
    "88022",
)
NOTATIONS = ("e164", "international", "national", "sip", "tel")
NOTATION_MIX = (0.35, 0.20, 0.25, 0.12, 0.08)
TENANTS = tuple(f"tenant-{i:02d}" for i in range(1, 13))
MNOS = ("mno-red", "mno-blue", "mno-green", "mno-orange")
DEVICES = ("smartphone", "landline", "feature_phone", "iot")


@dataclass(frozen=True)
class Shape:
    """How often a day's numbers repeat, and what traffic carries them.

    ``sources`` and ``destinations``: the share of distinct numbers in that column,
    distinct numbers ÷ records (0.95: 3.8 M distinct destinations in 4 M records).
    The records cycle through that many made numbers in a random order (each
    appears ⌈records ÷ numbers⌉ or ⌊…⌋ times), valid for their region, written in
    E.164 or, for a ``sip`` share of the numbers, as a SIP URI with ``user=phone``.
    None keeps the pools of ``retail``: 8,000 home subscribers (Zipf) and 13,200
    destinations in every notation. Withheld callers and A2P senders (``senders``:
    the share of outbound messages a sender sends) override sources either way.
    ``channels`` replaces :data:`CHANNEL_MIX`.
    """

    sources: float | None = None
    destinations: float | None = None
    sip: float = 0.0
    senders: float = 0.4
    channels: tuple[tuple[str, float], ...] = tuple(CHANNEL_MIX.items())

    def __post_init__(self) -> None:
        for name in ("sources", "destinations", "sip", "senders"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1 and not (name in ("sip", "senders") and value == 0):
                raise ValueError(f"shape: {name} must be a share in (0, 1]; got {value}")


#: Presets: ``retail`` (an operator's own subscribers: a batch of 262,144 records
#: holds about a third as many distinct numbers), ``transit`` (a carrier's carrier:
#: 180 k distinct callers and 3.8 M distinct callees in 4 M records, interconnect
#: numbers in E.164 or SIP URIs) and ``a2p`` (an SMS aggregator: a few senders, and
#: nearly every message to a number of its own).
SHAPES = {
    "retail": Shape(),
    "transit": Shape(sources=0.045, destinations=0.95, sip=0.1),
    "a2p": Shape(sources=0.002, destinations=0.9, senders=0.9, channels=(("sms", 0.95), ("mms", 0.05))),
}


# -- number pools -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pools:
    subscribers: np.ndarray  # (len(NOTATIONS), S) object: home-region mobile numbers
    destinations: np.ndarray  # (len(NOTATIONS), D) object: all regions, grouped
    region_start: np.ndarray  # first index of each region in ``destinations`` (+ total)
    subscriber_cdf: np.ndarray  # Zipf over subscribers
    ips: np.ndarray  # object: v4 and v6 documentation addresses
    cells: np.ndarray


@functools.lru_cache(maxsize=4)
def _pools(seed: int, subscribers: int = 8000, per_region: int = 1200) -> _Pools:
    import phonenumbers

    rng = np.random.default_rng([seed, 0x9E3779B9])
    home = _numbers(phonenumbers, HOME_REGION, ("MOBILE",), subscribers, rng)
    groups = [
        _numbers(
            phonenumbers,
            region,
            ("MOBILE", "FIXED_LINE"),
            per_region * (3 if region == HOME_REGION else 1),
            rng,
        )
        for region, *_ in REGIONS
    ]
    starts = np.cumsum([0] + [len(g) for g in groups])
    ranks = np.arange(1, len(home) + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / ranks**1.07)
    v4 = [
        f"{net}.{rng.integers(1, 255)}"
        for net in ("192.0.2", "198.51.100", "203.0.113")
        for _ in range(60)
    ]
    v6 = [f"2001:db8:{rng.integers(0, 0xFFFF):x}::{rng.integers(1, 0xFFFF):x}" for _ in range(80)]
    return _Pools(
        subscribers=_formats(phonenumbers, home),
        destinations=_formats(phonenumbers, [n for g in groups for n in g]),
        region_start=starts,
        subscriber_cdf=cdf / cdf[-1],
        ips=np.array(v4 + v6, dtype=object),
        cells=np.array(
            [f"cell-{i:04d}" for i in rng.choice(10000, 400, replace=False)], dtype=object
        ),
    )


def _numbers(
    phonenumbers, region: str, kinds: tuple[str, ...], count: int, rng: np.random.Generator
) -> list:
    """``count`` distinct valid numbers of ``region``, random trailing digits."""
    if region == "US":  # the fictional 555-0100..0199 block, over several area codes
        areas = (201, 202, 212, 303, 312, 415, 503, 617, 702, 713, 718, 805, 907, 917)
        cands = [
            phonenumbers.PhoneNumber(country_code=1, national_number=a * 10**7 + 5550100 + i)
            for a in areas
            for i in range(100)
        ]
        picked = [cands[i] for i in rng.permutation(len(cands))]
        return [n for n in picked if phonenumbers.is_valid_number(n)][:count]
    examples = [
        phonenumbers.example_number_for_type(region, getattr(phonenumbers.PhoneNumberType, k))
        for k in kinds
    ]
    out, seen = [], set()
    for attempt in range(count * 6):
        example = examples[attempt % len(examples)]
        nsn = phonenumbers.national_significant_number(example)
        k = min(6, len(nsn) - 3)
        candidate = nsn[:-k] + f"{int(rng.integers(0, 10**k)):0{k}d}"
        if candidate in seen:
            continue
        number = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(candidate)
        )
        if phonenumbers.is_valid_number(number):
            seen.add(candidate)
            out.append(number)
            if len(out) == count:
                break
    return out


def _formats(phonenumbers, numbers: list) -> np.ndarray:
    fmt = phonenumbers.PhoneNumberFormat
    table = np.empty((len(NOTATIONS), len(numbers)), dtype=object)
    for j, n in enumerate(numbers):
        e164 = f"+{n.country_code}{phonenumbers.national_significant_number(n)}"
        home = phonenumbers.region_code_for_number(n) == HOME_REGION
        table[0, j] = e164
        table[1, j] = phonenumbers.format_number(n, fmt.INTERNATIONAL)
        table[2, j] = phonenumbers.format_number(n, fmt.NATIONAL) if home else e164
        table[3, j] = f"sip:{e164}@gw.example.net;user=phone"
        table[4, j] = phonenumbers.format_number(n, fmt.RFC3966)
    return table


#: Made numbers end in this many random digits after a prefix valid for their region,
#: one of _PREFIXES prefixes of each kind (mobile, fixed line) per region.
_TAIL = 6
_PREFIXES = 8


@functools.lru_cache(maxsize=1)
def _prefixes() -> tuple[pa.Array, np.ndarray]:
    """``+`` calling code and leading national digits (all regions in turn, as one
    string array) after which any :data:`_TAIL` digits make a valid number, and the
    first index of each region's prefixes (+ total). Found by varying the two digits
    before the tail of ``phonenumbers``' example numbers of each kind, in random order; a prefix is kept when forty
    random completions are all valid."""
    import phonenumbers

    rng = np.random.default_rng(0x5EED)
    texts, starts = [], [0]
    for region, *_ in REGIONS:
        found: list[str] = []
        for kind in ("MOBILE", "FIXED_LINE"):
            example = phonenumbers.example_number_for_type(region, getattr(phonenumbers.PhoneNumberType, kind))
            base = phonenumbers.national_significant_number(example)[:-_TAIL]
            for k in rng.permutation(100).tolist():
                lead = base[:-2] + f"{k:02d}"
                if lead in found or lead[0] == "0":
                    continue
                if len(found) >= _PREFIXES * (1 + (kind == "FIXED_LINE")):
                    break
                tails = rng.integers(0, 10**_TAIL, 40)
                numbers = (phonenumbers.PhoneNumber(country_code=example.country_code,
                                                    national_number=int(f"{lead}{t:0{_TAIL}d}")) for t in tails)  # fmt: skip
                if all(phonenumbers.is_valid_number(n) for n in numbers):
                    found.append(lead)
        texts += [f"+{phonenumbers.country_code_for_region(region)}{lead}" for lead in found]
        starts.append(len(texts))
    return pa.array(texts, pa.string()), np.array(starts, np.int64)


def _mix(x: np.ndarray, key: int) -> np.ndarray:
    """A keyed 64-bit mix of uint64 values (splitmix64's finalizer)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(key & (2**64 - 1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _permuted(i: np.ndarray, n: int, key: int) -> np.ndarray:
    """A pseudo-random permutation of 0 … n - 1 applied to ``i``: a four-round
    Feistel network over the smallest even power of two covering n, walked again
    until the value falls within n."""
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    out = i.astype(np.uint64)
    todo = np.arange(len(out))
    while len(todo):
        x = out[todo]
        left, right = x >> np.uint64(half), x & mask
        for r in range(4):
            left, right = right, left ^ (_mix(right, key * 4 + r) & mask)
        out[todo] = (left << np.uint64(half)) | right
        todo = todo[out[todo] >= np.uint64(n)]
    return out


def _made_numbers(i: np.ndarray, records: int, share: float, sip: float, key: int) -> np.ndarray:
    """Numbers of records ``i`` (global indices) of a column whose distinct share is
    ``share``: record i holds made number ``perm(i) mod (share × records)``; number j
    lies in a region drawn by :data:`REGIONS` shares and is a prefix of that region
    and a tail, both from an affine map of j (one-to-one for up to 10^6 numbers per
    prefix of a region)."""
    count = max(1, round(share * records))
    j = _permuted(i, max(records, 1), key) % np.uint64(count)
    prefixes, starts = _prefixes()
    cdf = np.cumsum([r[1] for r in REGIONS])
    region = np.searchsorted(cdf / cdf[-1], (_mix(j, key + 1) >> np.uint64(11)) / 2.0**53, side="right")
    region = region.clip(0, len(REGIONS) - 1)
    lo, size = starts[region], np.diff(starts)[region]
    capacity = size.astype(np.uint64) * np.uint64(10**_TAIL)
    with np.errstate(over="ignore"):
        q = (j * np.uint64(2654435761) + np.uint64(key & 0xFFFFFFFF)) % capacity
    lead = prefixes.take(pa.array(lo + (q // np.uint64(10**_TAIL)).astype(np.int64)))
    tail = pc.utf8_lpad(pc.cast(pa.array(q % np.uint64(10**_TAIL)), pa.string()), _TAIL, "0")
    e164 = pc.binary_join_element_wise(lead, tail, "")
    as_sip = (_mix(j, key + 2) >> np.uint64(11)) / 2.0**53 < sip
    if as_sip.any():
        uri = pc.binary_join_element_wise("sip:", e164, "@gw.example.net;user=phone", "")
        e164 = pc.if_else(pa.array(as_sip), uri, e164)
    return e164.to_numpy(zero_copy_only=False)


# -- records -----------------------------------------------------------------------------------


def generate(
    records: int,
    *,
    seed: int = 0,
    start: dt.datetime | None = None,
    hours: float = 24,
    batch_rows: int = 262144,
    shape: str | Shape = "retail",
) -> Iterator[pa.RecordBatch]:
    """``records`` synthetic records in the canonical schema, in start-time order,
    as batches of at most ``batch_rows`` rows. ``start`` (default 2026-11-02 00:00
    UTC; a naive datetime is UTC) and ``hours`` bound the start times; ``shape`` is
    a :class:`Shape` or the name of one of :data:`SHAPES`."""
    if records < 0:
        raise ValueError("generate: records must not be negative")
    if hours <= 0:
        raise ValueError("generate: hours must be positive")
    if batch_rows < 1:
        raise ValueError("generate: batch_rows must be at least 1")
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ValueError(f"generate: shape must be one of {', '.join(SHAPES)}; got {shape!r}")
        shape = SHAPES[shape]
    start = start or DEFAULT_START
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    start_us = int(start.timestamp() * 1_000_000)
    pools = _pools(seed)
    clock = _Clock(start, hours)
    for first in range(0, records, batch_rows):
        n = min(batch_rows, records - first)
        rng = np.random.default_rng([seed, first])
        yield _batch(n, first, records, rng, pools, clock, start_us, seed, shape)


class _Clock:
    """Start times follow a daily curve (quiet night, morning and late-afternoon peaks)."""

    def __init__(self, start: dt.datetime, hours: float) -> None:
        minutes = max(1, int(round(hours * 60)))
        hour_of_day = ((start.hour * 60 + start.minute + np.arange(minutes)) / 60.0) % 24
        density = (
            0.12
            + np.exp(-((hour_of_day - 11) ** 2) / 8)
            + 0.9 * np.exp(-((hour_of_day - 17) ** 2) / 6)
        )
        self.cdf = np.concatenate([[0.0], np.cumsum(density) / density.sum()])
        self.edges_us = np.linspace(0, hours * 3600e6, minutes + 1)

    def offsets_us(self, quantiles: np.ndarray) -> np.ndarray:
        return np.interp(quantiles, self.cdf, self.edges_us).astype(np.int64)


def _pick(rng: np.random.Generator, weights, n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=np.float64)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(0, len(p) - 1)


def _dictionary(
    codes: np.ndarray, vocabulary: tuple[str, ...], mask: np.ndarray | None = None
) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), mask=mask), pa.array(vocabulary, pa.string())
    )


def _batch(
    n: int,
    first: int,
    total: int,
    rng: np.random.Generator,
    pools: _Pools,
    clock: _Clock,
    start_us: int,
    seed: int,
    shape: Shape,
) -> pa.RecordBatch:
    chan_names = [c for c, _ in shape.channels]
    channel = np.array([CHANNELS.index(c) for c in chan_names])[
        _pick(rng, [w for _, w in shape.channels], n)
    ]
    voice = np.isin(channel, [CHANNELS.index(c) for c in ("voice", "voicemail", "conference")])
    direction = np.array([DIRECTIONS.index(d) for d in DIRECTION_MIX])[
        _pick(rng, list(DIRECTION_MIX.values()), n)
    ]
    carrier = _pick(rng, [c.weight for c in CARRIERS], n)
    region = _pick(rng, [r[1] for r in REGIONS], n)
    tenant = _pick(rng, 1.0 / np.arange(1, len(TENANTS) + 1), n)

    start = start_us + clock.offsets_us((first + np.arange(n) + rng.random(n)) / max(total, 1))

    # who calls whom: subscribers (Zipf) on our side, destination pools on the far side
    subscriber = np.searchsorted(pools.subscriber_cdf, rng.random(n), side="right").clip(
        0, pools.subscribers.shape[1] - 1
    )
    lo, hi = pools.region_start[region], pools.region_start[region + 1]
    far = lo + (rng.random(n) ** 1.6 * (hi - lo)).astype(np.int64)  # some far ends are busier
    other = np.searchsorted(pools.subscriber_cdf, rng.random(n), side="right").clip(
        0, pools.subscribers.shape[1] - 1
    )
    notation_a = _pick(rng, NOTATION_MIX, n)
    notation_b = _pick(rng, NOTATION_MIX, n)
    ours_a = pools.subscribers[notation_a, subscriber]
    theirs = pools.destinations[notation_b, far]
    ours_b = pools.subscribers[notation_b, other]
    inbound = direction == DIRECTIONS.index("inbound")
    internal = direction == DIRECTIONS.index("internal")
    source = np.where(inbound, pools.destinations[notation_a, far], ours_a)
    destination = np.where(
        inbound, pools.subscribers[notation_b, subscriber], np.where(internal, ours_b, theirs)
    )
    index = first + np.arange(n, dtype=np.int64)
    if shape.sources is not None:
        source = _made_numbers(index, total, shape.sources, shape.sip, seed * 8 + 1)
    if shape.destinations is not None:
        destination = _made_numbers(index, total, shape.destinations, shape.sip, seed * 8 + 5)
    withheld = voice & (rng.random(n) < 0.03)
    source[withheld] = np.array(WITHHELD, dtype=object)[
        rng.integers(0, len(WITHHELD), withheld.sum())
    ]
    a2p = ~voice & ~inbound & (rng.random(n) < shape.senders)
    source[a2p] = np.array(SENDERS, dtype=object)[
        _pick(rng, 1.0 / np.arange(1, len(SENDERS) + 1), int(a2p.sum()))
    ]

    c_asr = np.array([c.asr for c in CARRIERS])[carrier] * np.array([r[2] for r in REGIONS])[region]
    status = np.empty(n, dtype=np.int64)
    # voice: answered, else a failure kind; congestion's share depends on the route
    answered = voice & (rng.random(n) < c_asr)
    kind = _pick(rng, [w for _, w in FAILURES], n)
    fail = np.array([STATUSES.index(s) for s, _ in FAILURES])[kind]
    congested = rng.random(n) < np.array([c.congestion for c in CARRIERS])[carrier]
    fail = np.where(congested, STATUSES.index("congestion"), fail)
    status[:] = np.where(answered, STATUSES.index("answered"), fail)
    # messages: delivered, else another outcome (some not final yet)
    c_del = np.array([c.delivery for c in CARRIERS])[carrier] * np.sqrt(
        np.array([r[2] for r in REGIONS])[region]
    )
    delivered = rng.random(n) < c_del
    outcome = np.array([STATUSES.index(s) for s, _ in MESSAGE_OUTCOMES])[
        _pick(rng, [w for _, w in MESSAGE_OUTCOMES], n)
    ]
    status = np.where(voice, status, np.where(delivered, STATUSES.index("delivered"), outcome))

    sip = np.zeros(n, dtype=np.int64)
    q850 = np.zeros(n, dtype=np.int64)
    for name, (sips, causes) in CODES.items():
        rows = voice & (status == STATUSES.index(name))
        k = int(rows.sum())
        sip[rows] = np.array(sips)[rng.integers(0, len(sips), k)]
        q850[rows] = np.array(causes)[rng.integers(0, len(causes), k)]
    no_sip = ~voice | (rng.random(n) < 0.04)  # e.g. ISUP legs report only a cause
    no_q850 = ~voice | (rng.random(n) < 0.10)
    # network timeouts: the INVITE's transaction timer fires before any 180/183 (SIP 408,
    # Q.850 102 as RFC 3398 maps it). Drawn from a stream of their own, so the draws
    # below are those of a generator without them.
    timeouts = np.random.default_rng([seed, first, 408]).random(n)
    timed_out = (status == STATUSES.index("failed")) & voice & (
        timeouts < np.array([c.timeouts for c in CARRIERS])[carrier]
    )
    sip[timed_out], q850[timed_out] = 408, 102

    pdd = rng.lognormal(np.log(np.array([c.pdd_ms for c in CARRIERS])[carrier]), 0.45).clip(
        80, 30000
    )
    # post-dial delay runs to the first 180/183: a timeout has none, a 408 after ringing has
    # one (SPEC 2.1 tells them apart by it)
    no_pdd = ~voice | timed_out | ((rng.random(n) < 0.02) & (sip != 408))
    ring = np.where(
        status == STATUSES.index("no_answer"),
        rng.uniform(20e3, 60e3, n),
        rng.lognormal(np.log(7e3), 0.5, n),
    )
    ring = np.where(status == STATUSES.index("busy"), rng.uniform(200, 1500, n), ring)
    ring = np.where(timed_out, np.maximum(32e3 - pdd, 0), ring)  # Timer B: 64 × T1 = 32 s
    answer = start + ((pdd + ring) * 1000).astype(np.int64)
    short = rng.random(n) < np.array([c.short_calls for c in CARRIERS])[carrier]
    talk = np.where(
        short, rng.uniform(500, 5900, n), rng.lognormal(np.log(95e3), 0.9, n).clip(6000, 3 * 3600e3)
    )
    duration = np.where(answered, talk, 0).astype(np.int64)
    latency = rng.lognormal(np.log(np.array([c.latency_s for c in CARRIERS])[carrier] * 1e6), 0.8)
    latency = np.where(
        status == STATUSES.index("expired"), rng.uniform(24, 72, n) * 3600e6, latency
    )
    latency = np.where(
        status == STATUSES.index("rejected"), rng.uniform(0.1, 1.5, n) * 1e6, latency
    )
    pending = np.isin(status, [STATUSES.index(s) for s in ("accepted", "enroute", "unknown")])
    end = np.where(
        voice,
        np.where(answered, answer + duration * 1000, answer),
        start + latency.astype(np.int64),
    )

    media = answered & (rng.random(n) < 0.9)
    mos = (np.array([c.mos for c in CARRIERS])[carrier] + rng.normal(0, 0.35, n)).clip(1.0, 4.5)
    jitter = rng.gamma(2.0, 2.0 + 4.0 * (carrier == 5), n)
    loss = rng.exponential(np.array([c.loss_pct for c in CARRIERS])[carrier]).clip(0, 100)
    rtt = np.array([r[3] for r in REGIONS])[region] * rng.lognormal(0, 0.2, n)

    ip = pools.ips[rng.integers(0, len(pools.ips), n)]
    has_ip = voice & (rng.random(n) < 0.95)
    cell = pools.cells[rng.integers(0, len(pools.cells), n)]
    has_cell = rng.random(n) < 0.7
    device = _pick(rng, (0.70, 0.12, 0.10, 0.08), n)
    roaming = rng.random(n) < 0.04

    ids = pc.cast(pa.array(first + np.arange(n, dtype=np.int64)), pa.string())
    ids = pc.utf8_lpad(ids, 9, "0")
    prefix = pa.array(np.where(voice, f"call-{seed}", f"msg-{seed}"), pa.string())
    record_id = pc.binary_join_element_wise(prefix, ids, "-")

    def f32(values, mask):
        return pa.array(values.astype(np.float32), mask=mask)

    columns = {
        "record_id": record_id,
        "channel": _dictionary(channel, CHANNELS),
        "direction": _dictionary(direction, DIRECTIONS),
        "tenant": pa.array(np.array(TENANTS, dtype=object)[tenant], pa.string()),
        "start_time": pa.array(start, pa.int64()).cast(CANONICAL.field("start_time").type),
        "answer_time": pa.array(answer, mask=~answered).cast(CANONICAL.field("answer_time").type),
        "end_time": pa.array(end, mask=~voice & pending).cast(CANONICAL.field("end_time").type),
        "pdd_ms": pa.array(pdd.astype(np.int32), mask=no_pdd),
        "duration_ms": pa.array(duration, mask=~voice),
        "source": pa.array(source, pa.string()),
        "destination": pa.array(destination, pa.string()),
        "status": _dictionary(status, STATUSES),
        "sip_code": pa.array(sip.astype(np.int16), mask=no_sip),
        "q850_cause": pa.array(q850.astype(np.int16), mask=no_q850),
        "route": pa.array(np.array([c.name for c in CARRIERS], dtype=object)[carrier], pa.string()),
        "source_ip": pa.array(np.where(has_ip, ip, None), pa.string()),
        "mos": f32(mos, ~media),
        "jitter_ms": f32(jitter, ~media),
        "packet_loss_pct": f32(loss, ~media),
        "rtt_ms": f32(rtt, ~media),
        "location": pa.array(np.where(has_cell, cell, None), pa.string()),
        "roaming": pa.array(roaming),
        "mno": pa.array(
            np.array(MNOS, dtype=object)[_pick(rng, (0.4, 0.3, 0.2, 0.1), n)], pa.string()
        ),
        "device_type": pa.array(np.array(DEVICES, dtype=object)[device], pa.string()),
    }
    return pa.RecordBatch.from_arrays([columns[name] for name in CANONICAL.names], schema=CANONICAL)


# -- files -------------------------------------------------------------------------------------


def write(
    path: str | os.PathLike,
    records: int,
    *,
    fmt: str | None = None,
    seed: int = 0,
    start: dt.datetime | None = None,
    hours: float = 24,
    batch_rows: int = 262144,
    shape: str | Shape = "retail",
) -> int:
    """Write ``records`` generated records to ``path`` as ``fmt`` (any registered reader
    format with a writer — :func:`telemetry.readers.writable_formats`; None: from the
    extension), of ``shape`` (see :func:`generate`). Returns the number of records written."""
    from telemetry.readers import get_format, writable_formats

    path = os.fspath(path)
    fmt = fmt or format_for(path)
    if fmt not in writable_formats():
        raise ValueError(
            f"write: no writer for format {fmt!r}; one of {', '.join(writable_formats())}"
        )
    batches = generate(records, seed=seed, start=start, hours=hours, batch_rows=batch_rows, shape=shape)
    return get_format(fmt).write(batches, path)


def format_for(path: str | os.PathLike) -> str:
    """The format an output file name asks for: its extension (``.parquet``, ``.csv``,
    ``.jsonl``…) or a vendor's file name (``Master.csv``)."""
    from telemetry.readers import format_by_name, writable_formats

    fmt = format_by_name(path)
    if fmt is None or fmt.name not in writable_formats():
        raise ValueError(
            f"cannot tell the output format from {os.path.basename(os.fspath(path))!r}; "
            f"pass fmt ({', '.join(writable_formats())})"
        )
    return fmt.name
