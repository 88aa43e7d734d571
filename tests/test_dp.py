"""DP release, checked against a slow dict twin of the bounding rule, the declared noise scales (measured), and the k release on the same data."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telemetry
from tests.conftest import TEST_KEY, run_cli

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone.utc)
EPS = 8.0  # attempts scale 64, release threshold 1298 at the default bounds


def number(prefix: str, i: int) -> str:
    """Generated numbers of 11 digits: ``+1555`` (US, area 555) or ``+3361`` (FR mobile) and ``i``."""
    width = 11 - (len(prefix) - 1)
    assert i < 10**width
    return f"{prefix}{i:0{width}d}"


def calls(route: str, sources: list[str], destinations: list[str], per_pair: int, minute: int = 0,
          ) -> list[dict]:
    """``per_pair`` calls from each source to its destination (zipped), all in one window."""
    rows = []
    for s, d in zip(sources, destinations):
        for j in range(per_pair):
            answered = (j % 3) != 2
            rows.append(dict(
                start_time=T0 + dt.timedelta(minutes=minute, seconds=j), channel="voice", route=route,
                source=s, destination=d, status="answered" if answered else "failed",
                sip_code=200 if answered else 503, duration_ms=60_000 if answered else 0, pdd_ms=1500 + 10 * j,
            ))  # fmt: skip
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    schema = pa.schema([
        ("start_time", pa.timestamp("us", tz="UTC")), ("channel", pa.string()), ("route", pa.string()),
        ("source", pa.string()), ("destination", pa.string()), ("status", pa.string()),
        ("sip_code", pa.int16()), ("duration_ms", pa.int64()), ("pdd_ms", pa.int32()),
    ])  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def crowd(route: str, n: int, per_pair: int, base: int, **kw) -> list[dict]:
    """``n`` distinct callers each calling their own destination ``per_pair`` times."""
    return calls(route, [number("+1555", base + i) for i in range(n)],
                 [number("+3361", base + i) for i in range(n)], per_pair, **kw)  # fmt: skip


def job_for(**options):
    from telemetry.config import make_options
    from telemetry.engine import Job
    from telemetry.keys import as_keyring

    return Job(as_keyring(TEST_KEY), make_options(**options))


def prepared(path: Path, job, batch_rows: int):
    """The prepared batches of ``path`` (what Job.work aggregates)."""
    from telemetry.prepare import prepare
    from telemetry.readers import Piece, ReaderOptions, plan_inputs

    parts = job._parts()
    for item in plan_inputs([str(path)], "auto", batch_rows=batch_rows, options=ReaderOptions(columns=None)):
        for read in item.read() if isinstance(item, Piece) else [item]:
            yield prepare(read, parts["pseudonymizer"]).batch


def contributions(path: Path, batch_rows: int = 1 << 18, **options):
    """The DP state of ``path`` as the pipeline's engine builds it."""
    from telemetry.metrics.state import merge

    job = job_for(dp_epsilon=options.pop("dp_epsilon", EPS), batch_rows=batch_rows, **options)
    from telemetry.readers import ReaderOptions, plan_inputs

    parts = []
    for item in plan_inputs([str(path)], "auto", batch_rows=batch_rows, options=ReaderOptions(columns=job.columns)):
        parts += [p.state for p in job.work_item(item)]
    return merge(parts) if len(parts) > 1 else parts[0]


# --- bounding ---------------------------------------------------------------------------


_M64 = (1 << 64) - 1


def _mix(h: int, v: int) -> int:
    """kernels.aggregate._mix on Python integers (unsigned 64-bit)."""
    h = ((h ^ (v & _M64)) * 0xBF58476D1CE4E5B9) & _M64
    return h ^ (h >> 31)


def _signed(h: int) -> int:
    return h - (1 << 64) if h >> 63 else h


def keyed_hash(values, salt: int) -> int:
    """The keyed hash of a row of integers (kernels.dpbound.row_hashes), in Python."""
    h = _mix(salt & _M64, 0x9E3779B97F4A7C15)
    for v in values:
        h = _mix(h, v)
    return _signed(h)


def reference_keep(keys: list[tuple], src: list[int], dst: list[int], h: list[int], L: int, G: int,
                   salt: int) -> np.ndarray:
    """The bounding rule of docs/privacy.md written out with dicts and sorts, on records
    given by their row key, parties and record hash (the rule's inputs); the (subscriber,
    row) hashes computed here in Python from the row key and the run's key."""

    def smallest(records, party) -> set:
        lists = defaultdict(list)
        for i in records:
            lists[(keys[i], party[i])].append((h[i], i))
        return {i for items in lists.values() for _, i in sorted(items)[:L]}

    bounded = smallest(smallest(range(len(keys)), src), dst)
    rows = defaultdict(set)
    for i in bounded:
        rows[(keys[i][0], src[i])].add(keys[i])
        rows[(keys[i][0], dst[i])].add(keys[i])

    def rank_hash(k, s):
        return _signed(_mix(_mix(keyed_hash(k, salt) & _M64, s), 0x94D049BB133111EB))

    chosen = {ws: set(sorted(ks, key=lambda k: rank_hash(k, ws[1]))[:G]) for ws, ks in rows.items()}
    return np.array([
        i in bounded and k in chosen[(k[0], src[i])] and k in chosen[(k[0], dst[i])]
        for i, k in enumerate(keys)
    ])  # fmt: skip


def records_of(c) -> tuple[list[tuple], list[int], list[int], list[int], np.ndarray]:
    """Every record of a DP state's blocks: row key, source, destination, record hash and
    the block's verdict."""
    keys, src, dst, h, keep = [], [], [], [], []
    for b in c.blocks:
        keys += [tuple(k) for k in b.keys[b.gid].tolist()]
        src += b.cols["src"].tolist()
        dst += b.cols["dst"].tolist()
        h += b.cols["hash"].tolist()
        keep.append(b.keep)
    return keys, src, dst, h, np.concatenate(keep) if keep else np.zeros(0, bool)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Heavy callers (over L per row and over G rows), a crowd, withheld callers, several windows."""
    rng = random.Random(7)
    rows = crowd("big", 300, 3, 0)
    for i in range(40):  # heavy: each calls 6 routes × 30 times, partners drawn from the crowd's destinations
        src = number("+1555", 900_000 + i)
        for r in range(6):
            dsts = [number("+3361", rng.randrange(300)) for _ in range(30)]
            rows += calls(f"r{r}", [src] * 30, dsts, 1, minute=rng.randrange(40))
    rows += calls("big", ["anonymous"] * 50, [number("+3361", 5000 + i) for i in range(50)], 1)
    rows += crowd("late", 50, 20, 7000, minute=70)  # second window, 20 > L per pair
    rng.shuffle(rows)
    return write(tmp_path_factory.mktemp("dp") / "mixed.parquet", rows)


def test_bounding_matches_the_slow_rule_and_ignores_the_split(mixed, tmp_path, monkeypatch) -> None:
    from telemetry.metrics import dp

    job = job_for(dp_epsilon=EPS)
    spec, params, salt = job.spec, job.dp, job._parts()["dp_salt"]
    whole = [dp.accumulate(b, spec, params, salt, prune=False) for b in prepared(mixed, job, 1 << 20)]
    assert len(whole) == 1
    full = whole[0]
    keys, src, dst, h, keep = records_of(full)
    assert len(keys) == full.records  # nothing pruned: every record judged
    expected = reference_keep(keys, src, dst, h, params.max_records, params.max_groups, salt)
    assert (keep == expected).all()
    truncated = int((~expected).sum())
    assert truncated > 1000  # heavy callers and withheld callers are cut
    cut_per_window = Counter(k[0] for k, ok in zip(keys, expected) if not ok)
    assert len(cut_per_window) > 1

    def kept_rows(c) -> list:
        keys, src, dst, h, keep = records_of(c.consolidated())
        return sorted((*k, s, d, x) for k, s, d, x, ok in zip(keys, src, dst, h, keep) if ok)

    reference = kept_rows(full)
    # the same records in time order: batches share only the windows at their edges, which
    # merges bound again at once; shuffled, every batch holds every window: merges defer
    ordered = tmp_path / "ordered.parquet"
    pq.write_table(pq.read_table(mixed).sort_by("start_time"), ordered)
    at_merge = []
    consolidated = dp.Contributions.consolidated
    monkeypatch.setattr(dp.Contributions, "consolidated",
                        lambda c, windows=None: at_merge.append(windows is not None) or consolidated(c, windows))
    for path in (mixed, ordered):
        for batch_rows in (997, 4096, 1 << 20):  # the last: one batch, its two windows left pending
            for order in (1, -1):
                parts = [dp.accumulate(b, spec, params, salt) for b in prepared(path, job, batch_rows)][::order]
                state = parts[0]
                for part in parts[1:]:
                    state = state.merge(part)
                assert kept_rows(state) == reference
                released = dp.release(state)
                assert released.records_dp_truncated == truncated
                # as the stream keeps them: each batch's state split by window, one state a window;
                # and the merged state split once consolidated (blocks that dropped step 1's cuts)
                windows = {}
                for part in parts:
                    for w, piece in part.by_window().items():
                        windows[w] = windows[w].merge(piece) if w in windows else piece
                assert set(windows) == {k[0] for k in keys}
                assert sorted(r for c in windows.values() for r in kept_rows(c)) == reference
                for split in (windows, state.consolidated().by_window()):
                    assert all({k[0] for k in records_of(c)[0]} == {w} for w, c in split.items())
                    cut = {w: c.records - int(records_of(c.consolidated())[4].sum()) for w, c in split.items()}
                    assert cut == {w: cut_per_window[w] for w in windows}
    assert any(at_merge) and not all(at_merge)  # both ways taken


def test_smallest_per_set_with_ties() -> None:
    """The kernel's "limit smallest hashes of each set" (ties: the earlier element) against
    sorting each set's (hash, position) pairs, on sets with many equal hashes."""
    from kernels import dpbound as kb

    rng = np.random.default_rng(11)
    for trial in range(200):
        n, n_sets, limit = int(rng.integers(0, 300)), int(rng.integers(1, 20)), int(rng.integers(1, 10))
        ids = rng.integers(0, n_sets, n)
        hashes = rng.integers(-4, 4, n) if trial % 2 else rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
        mask = rng.random(n) < 0.8
        members = defaultdict(list)
        for i in np.flatnonzero(mask).tolist():
            members[int(ids[i])].append((int(hashes[i]), i))
        expected = np.zeros(n, bool)
        for items in members.values():
            expected[[i for _, i in sorted(items)[:limit]]] = True
        assert (kb.smallest(ids, n_sets, hashes, limit, mask) == expected).all()


def test_record_hashes_are_of_the_whole_record() -> None:
    """The record hash, computed from the columns as stored, is the keyed hash of the joined
    record (row key, start, parties, status, code, duration, measures' float64 bits) as the
    Python twin computes it."""
    from kernels import dpbound as kb

    rng = np.random.default_rng(5)
    n = 50
    rows = rng.integers(-(2**62), 2**62, (7, 4))
    gid = rng.integers(0, 7, n)
    ints = [rng.integers(0, 2**52, n), rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
            rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64), rng.integers(-1, 12, n).astype(np.int8),
            rng.integers(-1, 700, n).astype(np.int16), rng.integers(0, 3_600_000, n)]  # fmt: skip
    floats = [rng.normal(size=n).astype(np.float32) for _ in range(4)] + [rng.normal(size=n) * 1e6]
    floats[2][::3] = np.nan
    floats[4][1::4] = np.nan
    got = kb.record_hashes(rows, gid, *ints, *floats, np.int64(-12345))
    joined = [[*rows[g].tolist(), *(int(a[i]) for a in ints), *(int(np.float64(f[i]).view(np.int64)) for f in floats)]
              for i, g in enumerate(gid.tolist())]  # fmt: skip
    assert got.tolist() == [keyed_hash(row, -12345) for row in joined]
    assert kb.row_hashes(rows, np.int64(-12345)).tolist() == [keyed_hash(r, -12345) for r in rows.tolist()]


def test_truncation_reaches_run_json_and_no_rollup(mixed, tmp_path) -> None:
    result = telemetry.process([mixed], key=TEST_KEY, out=tmp_path / "o", dp_epsilon=EPS, by="route")
    full = contributions(mixed, by="route")
    kept = records_of(full.consolidated())[4].sum()
    on_disk = json.loads((tmp_path / "o" / "run.json").read_text())
    assert on_disk["records_dp_truncated"] == result.summary["records_dp_truncated"] == full.records - kept
    assert on_disk["k"] is None and on_disk["rows_rolled_up"] == 0
    assert "__other__" not in result.metrics["route"].to_list()


# --- noise ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def groups(tmp_path_factory) -> Path:
    """A large row (600 callers × 8 calls: nothing truncated) and rows of one and two callers."""
    rows = crowd("large", 600, 8, 0)
    rows += calls("one", [number("+1555", 800_000)], [number("+3361", 80_000)], 400)
    rows += calls("two", [number("+1555", 800_001), number("+1555", 800_002)],
                  [number("+3361", 80_001), number("+3361", 80_002)], 400)  # fmt: skip
    return write(tmp_path_factory.mktemp("dp") / "groups.parquet", rows)


def test_noise_spread_matches_the_declared_scale(groups) -> None:
    from telemetry.metrics import dp

    state = contributions(groups, by="route")
    runs = [dp.release(state) for _ in range(500)]
    scale = runs[0].dp["queries"]["attempts"]["scale"]
    assert scale == pytest.approx(2 * 4 * 16 / (EPS * 3 / 12))
    large = np.array([r.metrics.filter(route="large")["attempts"].item() for r in runs])
    # discrete Laplace of scale b: mean 0, variance 2r/(1-r)^2 with r = exp(-1/b) (≈ 2b²)
    r = np.exp(-1 / scale)
    sd = np.sqrt(2 * r) / (1 - r)
    assert abs(large.mean() - 4800) < 4 * sd / np.sqrt(len(large))
    assert 0.8 < large.std() / sd < 1.25  # a scale off by 2x fails
    answered = np.array([r.metrics.filter(route="large")["answered"].item() for r in runs])
    sd_status = np.sqrt(2) * runs[0].dp["queries"]["status"]["scale"]
    assert 0.8 < answered.std() / sd_status < 1.25
    assert abs(answered.mean() - 3600) < 4 * sd_status / np.sqrt(len(answered))  # 6 of each caller's 8 answered
    # groups of one and two callers: never released
    assert not any(set(r.metrics["route"].to_list()) & {"one", "two"} for r in runs)


def test_accounting_adds_up_from_the_file_alone(groups, tmp_path) -> None:
    telemetry.process([groups], key=TEST_KEY, out=tmp_path / "o", dp_epsilon=EPS, by="route",
                      dp_max_groups=2, dp_max_records=5)  # fmt: skip
    (part,) = sorted((tmp_path / "o" / "metrics").rglob("*.parquet"))
    meta = json.loads(pq.read_schema(part).metadata[b"dp"])
    assert meta["epsilon"] == EPS and meta["delta"] == 1e-8
    assert meta["bounds"]["max_groups"] == 2 and meta["bounds"]["max_records"] == 5
    spent = sum(q["sensitivity"] / q["scale"] for q in meta["queries"].values())
    assert spent <= EPS * (1 + 1e-12)
    assert meta["queries"]["attempts"]["sensitivity"] == 2 * 2 * 5
    assert meta["queries"]["duration_ms"]["sensitivity"] == 2 * 2 * 5 * 3_600_000
    assert meta["queries"]["distinct_sources"]["sensitivity"] == 2
    b = meta["queries"]["attempts"]["scale"]
    assert meta["selection"]["threshold"] == 2 * 5 + int(np.ceil(b * np.log(2 / 1e-8)))
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["dp"] == meta


def test_noise_cannot_be_seeded(groups) -> None:
    """Same inputs, same key, NumPy's and Python's generators seeded alike: different noise;
    and no NumPy generator is drawn from at all."""
    outs = []
    for _ in range(2):
        np.random.seed(1)
        random.seed(1)
        outs.append(telemetry.process([groups], key=TEST_KEY, dp_epsilon=EPS, by="route").metrics)
    assert outs[0]["attempts"].to_list() != outs[1]["attempts"].to_list()


def test_no_numpy_random_in_a_release(groups, monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("numpy.random used")

    for name in ("default_rng", "laplace", "random", "randint", "normal", "geometric"):
        monkeypatch.setattr(np.random, name, refuse)
    result = telemetry.process([groups], key=TEST_KEY, dp_epsilon=EPS, by="route")
    assert result.summary["rows_released"] == 1


def test_same_shape_with_and_without_dp(groups) -> None:
    plain = telemetry.process([groups], key=TEST_KEY, by="route")
    private = telemetry.process([groups], key=TEST_KEY, dp_epsilon=EPS, by="route")
    assert private.metrics.schema == plain.metrics.schema
    row = private.metrics.row(0, named=True)
    for name in ("attempts", "answered", "failed", "distinct_sources", "distinct_destinations"):
        assert isinstance(row[name], int) and row[name] >= 0
    assert 0 <= row["asr_lo"] <= row["asr"] <= row["asr_hi"] <= 1
    assert row["pdd_p50_ms"] > 0


def test_dp_interval_covers_noise_and_sampling(groups) -> None:
    """Over repeated releases the widened interval holds the true ASR (2/3 of 4800 is
    answered) at least 95% of the time, where the plain Wilson interval of the noisy
    parts does not."""
    from telemetry.metrics import dp
    from telemetry.metrics.intervals import wilson

    state = contributions(groups, by="route")
    truth = 3600 / 4800  # 6 of every caller's 8 calls are answered
    covered = plain = 0
    for _ in range(200):
        row = dp.release(state).metrics.filter(route="large").row(0, named=True)
        covered += row["asr_lo"] <= truth <= row["asr_hi"]
        lo, hi = wilson(np.array([row["answered"]]), np.array([row["attempts"]]))
        plain += lo[0] <= truth <= hi[0]
    assert covered >= 195
    assert plain < covered


# --- options ----------------------------------------------------------------------------


def test_cli_and_config(groups, tmp_path, key_env) -> None:
    bad = run_cli("process", str(groups), "--out", str(tmp_path / "x"), "--dp-epsilon", "-1", env=key_env)
    assert bad.returncode == 2 and "dp_epsilon" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    (tmp_path / "telemetry.toml").write_text('dp_epsilon = 8.0\ndp_max_records = 10\nby = ["route"]\n')
    ok = run_cli("process", str(groups), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "telemetry.toml"),
                 "--dp-max-groups", "3", env=key_env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert (run["dp"]["bounds"]["max_groups"], run["dp"]["bounds"]["max_records"]) == (3, 10)
    assert run["rows_released"] > 0 and "no row reached" not in ok.stdout
    # nothing released: the summary says what a row needs, the threshold of run.json
    none = run_cli("process", str(groups), "--out", str(tmp_path / "n"), "--dp-epsilon", "0.01", env=key_env)
    assert none.returncode == 0, none.stderr
    run = json.loads((tmp_path / "n" / "run.json").read_text())
    assert run["rows_released"] == 0 and run["rows_withheld"] > 0
    assert f"no row reached the release threshold of {run['dp']['selection']['threshold']:,} records" in none.stdout


# --- differencing attacks ----------------------------------------------------------------


TARGET_CALLS = 6  # the target's calls the attacker tries to learn (within the bounds: nothing truncated)


def attack_error(runs_a, runs_b, truth: int) -> np.ndarray:
    return np.array([a - b for a, b in zip(runs_a, runs_b)]) - truth


def dp_spread(meta) -> float:
    """The standard deviation of a difference of two noisy attempts."""
    return 2 * meta["queries"]["attempts"]["scale"]


@pytest.fixture(scope="module")
def attack_data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("attack")
    crowd_fr = crowd("R", 500, 8, 0)  # 4,000 calls to FR from 500 callers
    target = calls("R", [number("+1555", 999_999)], ["+4915123456780"], TARGET_CALLS, minute=5)  # the only DE calls
    # the attacker's four phones, two calls each to four other regions: each row below k
    sybils = calls("R", [number("+1555", 990_000 + i) for i in range(4)],
                   ["+34612345678", "+393123456789", "+31612345678", "+32470123456"], 2, minute=6)  # fmt: skip
    early = crowd("R", 500, 8, 0)
    late_target = calls("R", [number("+1555", 999_999)], [number("+3361", 99_999)], TARGET_CALLS, minute=10)
    return {
        "by": write(folder / "by.parquet", crowd_fr + target),
        "rollup": write(folder / "rollup.parquet", crowd_fr + target + sybils),
        "first": write(folder / "first.parquet", early),
        "overlap": write(folder / "overlap.parquet", early + late_target),
    }


def attempts_of(path: Path, where: dict, **options) -> int:
    frame = telemetry.process([path], key=TEST_KEY, **options).metrics
    for name, value in where.items():
        frame = frame.filter(frame[name] == value) if value is not None else frame.filter(frame[name].is_null())
    return int(frame["attempts"].sum()) if len(frame) else 0


def test_attack_by_sets(attack_data) -> None:
    """(1) --by route minus --by route,dst_region: the DE row is withheld under k, the route
    total is not, and their difference is the target's calls."""
    path = attack_data["by"]
    total = attempts_of(path, {"route": "R"}, by="route")
    released = attempts_of(path, {"route": "R"}, by="route,dst_region")
    assert total - released == TARGET_CALLS  # recovered exactly under k = 5
    dp_total = [attempts_of(path, {"route": "R"}, by="route", dp_epsilon=EPS) for _ in range(20)]
    dp_released = [attempts_of(path, {"route": "R"}, by="route,dst_region", dp_epsilon=EPS) for _ in range(20)]
    error = attack_error(dp_total, dp_released, TARGET_CALLS)
    meta = telemetry.process([path], key=TEST_KEY, by="route", dp_epsilon=EPS).summary["dp"]
    # the attacker's estimate is off by the noise (sd 2b = 128 calls at epsilon 8), not by the target's 6 calls
    assert np.abs(error).mean() > 0.3 * dp_spread(meta) > 5 * TARGET_CALLS


def test_attack_rollup(attack_data) -> None:
    """(2) the roll-up next to its released siblings: four sybil callers (the attacker's own
    phones) lift the target's DE row into a released __other__ row; minus the sybils' own
    known calls, it is the target's."""
    path = attack_data["rollup"]
    frame = telemetry.process([path], key=TEST_KEY, by="route,dst_region").metrics
    other = frame.filter(frame["dst_region"] == "__other__")["attempts"].item()
    assert other - 4 * 2 == TARGET_CALLS
    assert frame.filter(frame["dst_region"] == "FR")["attempts"].item() == 4000  # the released sibling
    dp_runs = [telemetry.process([path], key=TEST_KEY, by="route,dst_region", dp_epsilon=EPS).metrics for _ in range(20)]
    assert all(f["dst_region"].to_list() == ["FR"] for f in dp_runs)
    # what is left: the FR row and the route total from a coarser run, each with noise
    dp_total = [attempts_of(path, {"route": "R"}, by="route", dp_epsilon=EPS) for _ in range(20)]
    error = attack_error(dp_total, [f["attempts"].sum() for f in dp_runs], TARGET_CALLS + 8)
    meta = telemetry.process([path], key=TEST_KEY, by="route", dp_epsilon=EPS).summary["dp"]
    assert np.abs(error).mean() > 0.3 * dp_spread(meta)


def test_attack_overlapping_ranges(attack_data) -> None:
    """(3) two runs over overlapping time ranges: the second has the target's later calls in
    the same window; both rows pass k; their difference is the target's."""
    first = attempts_of(attack_data["first"], {"route": "R"}, by="route")
    second = attempts_of(attack_data["overlap"], {"route": "R"}, by="route")
    assert second - first == TARGET_CALLS
    dp_first = [attempts_of(attack_data["first"], {"route": "R"}, by="route", dp_epsilon=EPS) for _ in range(20)]
    dp_second = [attempts_of(attack_data["overlap"], {"route": "R"}, by="route", dp_epsilon=EPS) for _ in range(20)]
    error = attack_error(dp_second, dp_first, TARGET_CALLS)
    meta = telemetry.process([attack_data["first"]], key=TEST_KEY, by="route", dp_epsilon=EPS).summary["dp"]
    assert np.abs(error).mean() > 0.3 * dp_spread(meta)
