"""The keyring (SPEC section 3 "Keys", "Key storage") and ``telemetry keys``.

Derivations are checked against an HKDF written here from RFC 5869 with
``hmac`` (itself checked against the RFC's SHA-256 test vectors), key files by
reading their bytes, and the CLI by running it as a subprocess and searching
everything it prints for the key material.

Reference: HKDF written here from RFC 5869 with hmac (checked on the RFC's vectors) and the key
files' bytes."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from telemetry.errors import ConfigError, KeyMaterialError
from telemetry.keys import (
    BEGINNING,
    PassphraseRequired,
    Epoch,
    Keyring,
    as_keyring,
    key_id,
    load_key_file,
    subkey,
)
from tests.conftest import TEST_KEY, run_cli

PASSPHRASE = b"correct horse battery staple"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 4, 1, tzinfo=UTC)
T2 = datetime(2026, 7, 1, 12, 30, tzinfo=UTC)
KEYS = [bytes([i]) * 32 for i in (7, 8, 9)]


def ref_hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 section 2, written out: extract, then expand T(1) | T(2) | …"""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def micros(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def material(key: bytes) -> list[bytes]:
    """Every form in which a key could leak: raw, hex, base64 (both alphabets)."""
    return [
        key,
        key.hex().encode(),
        key.hex().upper().encode(),
        base64.b64encode(key),
        base64.urlsafe_b64encode(key),
        base64.b64encode(key).rstrip(b"="),
    ]


def assert_no_material(blob: bytes | str, keys: list[bytes], where: str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for key in keys:
        for needle in material(key):
            assert needle not in data, f"{where} contains key material"


def three_epochs() -> Keyring:
    return Keyring.from_key(KEYS[0], T0).rotate(T1, key=KEYS[1]).rotate(T2, key=KEYS[2])


# -- derivations ------------------------------------------------------------------

# RFC 5869 appendix A, test cases 1-3 (SHA-256): https://www.rfc-editor.org/rfc/rfc5869#appendix-A
RFC5869 = [
    dict(ikm="0b" * 22, salt="000102030405060708090a0b0c", info="f0f1f2f3f4f5f6f7f8f9", length=42,
         okm="3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    dict(ikm=bytes(range(0x00, 0x50)).hex(), salt=bytes(range(0x60, 0xB0)).hex(),
         info=bytes(range(0xB0, 0x100)).hex(), length=82,
         okm="b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
             "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
             "cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    dict(ikm="0b" * 22, salt="", info="", length=42,
         okm="8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]


@pytest.mark.parametrize("case", RFC5869, ids=["A.1", "A.2", "A.3"])
def test_reference_hkdf_matches_rfc5869(case):
    out = ref_hkdf_sha256(bytes.fromhex(case["ikm"]), bytes.fromhex(case["salt"]),
                          bytes.fromhex(case["info"]), case["length"])
    assert out.hex() == case["okm"]


@pytest.mark.parametrize("domain", ["subscriber", "ip", "record", "cryptopan"])
def test_subkey_is_hkdf_of_the_spec(domain):
    rng = np.random.default_rng(5869)
    for key in [TEST_KEY, bytes(32), *(rng.bytes(32) for _ in range(20))]:
        expected = ref_hkdf_sha256(key, b"", b"telemetry/v1/" + domain.encode(), 32)
        assert subkey(key, domain) == expected


def test_subkeys_differ_per_domain_and_reject_others():
    assert len({subkey(TEST_KEY, d) for d in ("subscriber", "ip", "record", "cryptopan")}) == 4
    for bad in ("", "Subscriber", "msisdn", "subscriber "):
        with pytest.raises(ValueError, match="domain"):
            subkey(TEST_KEY, bad)
        with pytest.raises(ValueError, match="domain"):
            Keyring.from_key(TEST_KEY).subkeys(bad)


def test_key_id_is_the_spec_digest():
    rng = np.random.default_rng(1)
    for key in [TEST_KEY, bytes(32), *(rng.bytes(32) for _ in range(20))]:
        expected = hashlib.sha256(b"telemetry-key-id" + key).hexdigest()[:16]
        assert key_id(key) == expected
        assert Keyring.from_key(key).current.key_id == expected


def test_keyring_subkeys_per_epoch_none_when_shredded():
    ring = three_epochs().shred(key_id(KEYS[1]))
    got = ring.subkeys("ip")
    assert got == [ref_hkdf_sha256(KEYS[0], b"", b"telemetry/v1/ip", 32), None,
                   ref_hkdf_sha256(KEYS[2], b"", b"telemetry/v1/ip", 32)]
    assert ring.key_ids() == [key_id(k) for k in KEYS]


# -- epochs -------------------------------------------------------------------------


def slow_epoch_index(ring: Keyring, times_us: list[int]) -> list[int]:
    out = []
    for t in times_us:
        covering = -1
        for i, epoch in enumerate(ring.epochs):
            if micros(epoch.valid_from) <= t:
                covering = i
        out.append(covering if covering >= 0 and ring.epochs[covering].key is not None else -1)
    return out


def test_epoch_index_boundaries():
    ring = three_epochs()
    times = [micros(T0) - 1, micros(T0), micros(T1) - 1, micros(T1), micros(T2) - 1, micros(T2),
             micros(T2) + 10**15, -(2**62), 2**62]
    got = ring.epoch_index(np.array(times, dtype=np.int64))
    assert got.dtype == np.int16
    assert got.tolist() == [-1, 0, 0, 1, 1, 2, 2, -1, 2]
    assert got.tolist() == slow_epoch_index(ring, times)


def test_epoch_index_shredded_epoch_does_not_fall_back_to_an_older_key():
    ring = three_epochs().shred(key_id(KEYS[1]))
    times = [micros(T0), micros(T1) - 1, micros(T1), micros(T2) - 1, micros(T2)]
    assert ring.epoch_index(np.array(times)).tolist() == [0, 0, -1, -1, 2]
    assert ring.current.key_id == key_id(KEYS[2])
    last_gone = three_epochs().shred(key_id(KEYS[2]))
    assert last_gone.epoch_index(np.array([micros(T2) + 1])).tolist() == [-1]
    assert last_gone.current.key_id == key_id(KEYS[1])  # latest epoch still holding a key


def test_epoch_index_random_against_slow_reference():
    rng = np.random.default_rng(7)
    ring = three_epochs().shred(key_id(KEYS[0]))
    edges = np.array([micros(T0), micros(T1), micros(T2)])
    times = np.concatenate([rng.integers(micros(T0) - 10**13, micros(T2) + 10**13, 500), edges - 1, edges])
    assert ring.epoch_index(times).tolist() == slow_epoch_index(ring, times.tolist())


def test_epoch_index_other_dtypes():
    ring = three_epochs()
    as_dt64 = np.array(["2025-12-31T23:59:59.999999", "2026-01-01T00:00:00", "NaT", "2026-07-01T12:30"],
                       dtype="datetime64[us]")
    assert ring.epoch_index(as_dt64).tolist() == [-1, 0, -1, 2]
    as_float = np.array([micros(T1), np.nan])  # what Arrow's to_numpy gives when nulls are present
    assert ring.epoch_index(as_float).tolist() == [1, -1]
    assert ring.epoch_index(np.array([], dtype=np.int64)).tolist() == []
    with pytest.raises(TypeError, match="start_us"):
        ring.epoch_index(np.array(["2026-01-01"]))


def test_generate_and_from_key_cover_the_beginning():
    ring = Keyring.generate()
    assert ring.epochs[0].valid_from == BEGINNING and len(ring.current.key) == 32
    assert Keyring.generate().current.key != ring.current.key
    assert ring.epoch_index(np.array([-(2**62), 0, 2**62])).tolist() == [0, 0, 0]
    assert Keyring.generate(T1).epochs[0].valid_from == T1


def test_times_are_utc_naive_means_utc():
    naive = Keyring.from_key(TEST_KEY, datetime(2026, 1, 1))
    assert naive.epochs[0].valid_from == T0
    offset = Keyring.from_key(TEST_KEY, datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert offset.epochs[0].valid_from == T0 and offset.epochs[0].valid_from.tzinfo == UTC


def test_rotate_appends_only_and_shred_keeps_the_epoch():
    ring = Keyring.from_key(KEYS[0], T1)
    for too_early in (T0, T1):
        with pytest.raises(ValueError, match="later than the newest"):
            ring.rotate(too_early)
    with pytest.raises(ValueError, match="same key_id"):
        ring.rotate(T2, key=KEYS[0])
    rotated = ring.rotate(T2)
    assert ring.key_ids() == [key_id(KEYS[0])]  # immutable
    assert len(rotated.epochs) == 2 and rotated.current.valid_from == T2
    gone = rotated.shred(key_id(KEYS[0]))
    assert gone.epochs[0].key is None and gone.epochs[0].state == "shredded"
    assert gone.epochs[0].valid_from == T1
    with pytest.raises(ValueError, match="no epoch"):
        rotated.shred("0" * 16)
    with pytest.raises(KeyMaterialError, match="every epoch"):
        gone.shred(rotated.current.key_id).current


def test_epoch_validation():
    with pytest.raises(ValueError, match="does not match"):
        Epoch(key_id(KEYS[0]), T0, KEYS[1])
    with pytest.raises(ValueError, match="key_id"):
        Epoch("ABCDEF0123456789", T0, None)
    with pytest.raises(ValueError, match="sorted"):
        Keyring((Epoch(key_id(KEYS[0]), T1, KEYS[0]), Epoch(key_id(KEYS[1]), T0, KEYS[1])))
    with pytest.raises(ValueError, match="at least one"):
        Keyring(())


def test_repr_and_str_never_show_key_bytes():
    ring = three_epochs()
    for obj in (ring, *ring.epochs):
        for text in (repr(obj), str(obj), f"{obj}"):
            assert_no_material(text, KEYS, "repr")
            for key in KEYS:
                assert repr(key)[2:-1] not in text
    assert key_id(KEYS[0]) in repr(ring)


def test_as_keyring():
    ring = three_epochs()
    assert as_keyring(ring) is ring
    assert as_keyring(TEST_KEY).current.key == TEST_KEY
    assert as_keyring(bytearray(TEST_KEY)).current.key_id == key_id(TEST_KEY)
    with pytest.raises(TypeError, match="key must be 32 raw bytes or a Keyring"):
        as_keyring(base64.b64encode(TEST_KEY).decode())
    with pytest.raises(ValueError, match="key must be 32 bytes; got 31"):
        as_keyring(TEST_KEY[:31])


def test_pickles_for_workers():
    import pickle

    ring = three_epochs().shred(key_id(KEYS[1]))
    assert pickle.loads(pickle.dumps(ring)) == ring


# -- key files ---------------------------------------------------------------------


def test_plain_round_trip_mode_0600_atomic(tmp_path):
    ring = three_epochs().shred(key_id(KEYS[1]))
    path = tmp_path / "keyring.json"
    old = os.umask(0)
    try:
        ring.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["keyring.json"]  # no temporary file left
    assert Keyring.load(path) == ring
    assert load_key_file(path) == (ring, False)
    assert Keyring.load(str(path)).epochs[1].key is None


def test_sealed_round_trip_and_errors(tmp_path):
    ring = three_epochs()
    path = tmp_path / "sealed.json"
    ring.save(path, PASSPHRASE)
    blob = path.read_bytes()
    assert_no_material(blob, KEYS, "sealed file")
    header = json.loads(blob)
    assert header["format"] == "telemetry-keyring-sealed"
    assert header["kdf"]["n"] >= 2**15 and header["kdf"]["r"] == 8 and header["kdf"]["p"] == 1
    assert len(base64.b64decode(header["kdf"]["salt"])) == 16
    assert len(base64.b64decode(header["cipher"]["nonce"])) == 12
    assert Keyring.load(path, PASSPHRASE) == ring
    assert load_key_file(path, PASSPHRASE)[1] is True
    with pytest.raises(KeyMaterialError) as wrong:
        Keyring.load(path, b"correct horse battery stapler")
    assert str(wrong.value) == f"cannot open key file {path}: wrong passphrase or the file was altered"
    with pytest.raises(PassphraseRequired, match="is sealed: pass --passphrase-file"):
        Keyring.load(path)
    ring.save(tmp_path / "again.json", PASSPHRASE)  # fresh salt and nonce every time
    again = json.loads((tmp_path / "again.json").read_bytes())
    assert again["kdf"]["salt"] != header["kdf"]["salt"] and again["cipher"]["nonce"] != header["cipher"]["nonce"]


def _flip_b64(text: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


TAMPER = {
    "salt": lambda d: d["kdf"].update(salt=_flip_b64(d["kdf"]["salt"], 3)),
    "nonce": lambda d: d["cipher"].update(nonce=_flip_b64(d["cipher"]["nonce"], 11)),
    "kdf-n": lambda d: d["kdf"].update(n=d["kdf"]["n"] // 2),
    "kdf-n-huge": lambda d: d["kdf"].update(n=2**40),
    "cipher-name": lambda d: d["cipher"].update(name="AES-128-GCM"),
    "ciphertext-first": lambda d: d.update(ciphertext=_flip_b64(d["ciphertext"], 0)),
    "ciphertext-last": lambda d: d.update(ciphertext=_flip_b64(d["ciphertext"], -1)),
    "tag": lambda d: d.update(tag=_flip_b64(d["tag"], 15)),
    "truncated": lambda d: d.update(ciphertext=base64.b64encode(base64.b64decode(d["ciphertext"])[:-1]).decode()),
    "extra-field": lambda d: d.update(comment="x"),
    "not-base64": lambda d: d.update(tag="!!!!"),
}


@pytest.mark.parametrize("part", sorted(TAMPER))
def test_tampered_sealed_file_is_one_clear_error(tmp_path, part):
    path = tmp_path / "sealed.json"
    Keyring.from_key(TEST_KEY).save(path, PASSPHRASE)
    document = json.loads(path.read_bytes())
    TAMPER[part](document)
    path.write_text(json.dumps(document))
    with pytest.raises(KeyMaterialError) as err:
        Keyring.load(path, PASSPHRASE)
    assert str(err.value) == f"cannot open key file {path}: wrong passphrase or the file was altered"


def test_any_flipped_byte_of_a_sealed_file_is_refused(tmp_path):
    path = tmp_path / "sealed.json"
    Keyring.from_key(TEST_KEY).save(path, PASSPHRASE)
    blob = path.read_bytes()
    significant = [i for i, c in enumerate(blob) if chr(c) not in " \n"]
    for i in significant[:: max(1, len(significant) // 12)]:
        broken = bytearray(blob)
        broken[i] ^= 0x01
        path.write_bytes(bytes(broken))
        with pytest.raises(KeyMaterialError) as err:
            Keyring.load(path, PASSPHRASE)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602, 0o700 | 0o001])
def test_open_permissions_are_refused(tmp_path, mode):
    path = tmp_path / "keyring.json"
    Keyring.from_key(TEST_KEY).save(path)
    os.chmod(path, mode)
    with pytest.raises(KeyMaterialError) as err:
        Keyring.load(path)
    message = str(err.value)
    assert f"(mode {mode:04o}); run: chmod 600 {path}" in message
    assert ("readable by others" in message) == bool(mode & 0o044)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_permissions_are_accepted(tmp_path, mode):
    path = tmp_path / "keyring.json"
    Keyring.from_key(TEST_KEY).save(path)
    os.chmod(path, mode)
    assert Keyring.load(path).current.key == TEST_KEY


def test_symlinks_are_followed_and_the_target_mode_checked(tmp_path):
    target = tmp_path / "real.json"
    Keyring.from_key(TEST_KEY).save(target)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert Keyring.load(link).current.key == TEST_KEY
    Keyring.from_key(KEYS[0]).save(link)  # rewriting keeps the link and replaces the target
    assert link.is_symlink() and Keyring.load(target).current.key == KEYS[0]
    os.chmod(target, 0o644)
    with pytest.raises(KeyMaterialError, match="readable by others"):
        Keyring.load(link)


def test_unreadable_or_foreign_files(tmp_path):
    with pytest.raises(KeyMaterialError, match="cannot read key file"):
        Keyring.load(tmp_path / "missing.json")
    for content, reason in [(b"\x00\xff", "not JSON"), (b'{"format": "x"}', "unknown format"),
                            (b'{"format": "telemetry-keyring", "version": 9, "epochs": []}', "version")]:
        path = tmp_path / "other.json"
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(KeyMaterialError, match=reason):
            Keyring.load(path)
    # a plain file whose key no longer matches its key_id was edited
    path = tmp_path / "edited.json"
    Keyring.from_key(TEST_KEY).save(path)
    document = json.loads(path.read_bytes())
    document["epochs"][0]["key"] = base64.b64encode(KEYS[0]).decode()
    path.write_text(json.dumps(document))
    with pytest.raises(KeyMaterialError) as err:
        Keyring.load(path)
    assert "does not match" in str(err.value)
    assert_no_material(str(err.value), [TEST_KEY, KEYS[0]], "error")


@pytest.mark.parametrize("sealed", [False, True])
def test_shred_removes_the_key_from_the_file_and_overwrites_the_old_one(tmp_path, sealed):
    passphrase = PASSPHRASE if sealed else None
    path = tmp_path / "keyring.json"
    ring = three_epochs()
    ring.save(path, passphrase)
    before = path.read_bytes()
    if not sealed:
        assert base64.b64encode(KEYS[1]) in before  # the search below can find it
    hard_link = tmp_path / "old-inode.json"
    os.link(path, hard_link)  # keeps the old inode reachable, to see that it was overwritten

    ring.shred(key_id(KEYS[1])).save(path, passphrase)

    after = path.read_bytes()
    assert_no_material(after, [KEYS[1]], "shredded key file")
    assert hard_link.read_bytes() == bytes(len(before))  # the old bytes are zeros now
    loaded = Keyring.load(path, passphrase)
    assert loaded.epochs[1].key is None and loaded.epochs[1].key_id == key_id(KEYS[1])
    assert [e.key for e in loaded.epochs] == [KEYS[0], None, KEYS[2]]
    if sealed:  # and the sealed plaintext no longer holds it either
        from telemetry.keys import _unseal

        assert_no_material(_unseal(json.loads(after), PASSPHRASE), [KEYS[1]], "sealed plaintext")


# -- TELEMETRY_KEY -------------------------------------------------------------------


def test_env_key(monkeypatch, tmp_path):
    monkeypatch.delenv("TELEMETRY_KEY", raising=False)
    assert Keyring.from_env() is None
    for text in (base64.b64encode(TEST_KEY).decode(), base64.urlsafe_b64encode(KEYS[2]).decode(),
                 base64.b64encode(TEST_KEY).decode().rstrip("=") + "\n"):
        monkeypatch.setenv("TELEMETRY_KEY", text)
        ring = Keyring.from_env()
        assert len(ring.epochs) == 1 and ring.epochs[0].valid_from == BEGINNING
        assert ring.current.key in (TEST_KEY, KEYS[2])
    monkeypatch.setenv("TELEMETRY_KEY", "   ")
    assert Keyring.from_env() is None
    cases = {
        "not*base64!": "not valid base64",
        base64.b64encode(TEST_KEY[:16]).decode(): "decodes to 16 bytes, not 32",
        base64.b64encode(TEST_KEY + b"x").decode(): "decodes to 33 bytes, not 32",
        json.dumps({"format": "telemetry-keyring"}): "not a keyring; pass a keyring with --key-file",
    }
    for text, message in cases.items():
        monkeypatch.setenv("TELEMETRY_KEY", text)
        with pytest.raises(KeyMaterialError, match=message):
            Keyring.from_env()
        with pytest.raises(KeyMaterialError, match=message):
            Keyring.resolve()


def test_resolve_prefers_the_key_file(monkeypatch, tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.from_key(KEYS[0]).save(path)
    monkeypatch.setenv("TELEMETRY_KEY", base64.b64encode(TEST_KEY).decode())
    assert Keyring.resolve(path).current.key == KEYS[0]
    assert Keyring.resolve().current.key == TEST_KEY
    monkeypatch.delenv("TELEMETRY_KEY")
    with pytest.raises(KeyMaterialError, match="no key: pass --key-file FILE or set TELEMETRY_KEY"):
        Keyring.resolve()


# -- shared CLI helpers --------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    from telemetry.cli.keys import add_key_arguments

    parser = argparse.ArgumentParser()
    add_key_arguments(parser)
    return parser.parse_args(list(argv))


def test_keyring_from_args(monkeypatch, tmp_path):
    from telemetry.cli.keys import keyring_from_args

    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    monkeypatch.delenv("TELEMETRY_PASSPHRASE", raising=False)
    monkeypatch.setenv("TELEMETRY_KEY", base64.b64encode(TEST_KEY).decode())
    assert keyring_from_args(_args()).current.key == TEST_KEY
    sealed = tmp_path / "sealed.json"
    Keyring.from_key(KEYS[0]).save(sealed, PASSPHRASE)
    with pytest.raises(KeyMaterialError, match="is sealed"):
        keyring_from_args(_args("--key-file", str(sealed)))
    pw = tmp_path / "pw"
    pw.write_bytes(PASSPHRASE + b"\n")
    pw.chmod(0o600)
    assert keyring_from_args(_args("--key-file", str(sealed), "--passphrase-file", str(pw))).current.key == KEYS[0]
    pw.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="passphrase file .* is readable by others"):
        keyring_from_args(_args("--key-file", str(sealed), "--passphrase-file", str(pw)))
    monkeypatch.setenv("TELEMETRY_PASSPHRASE", PASSPHRASE.decode())
    assert keyring_from_args(_args("--key-file", str(sealed))).current.key == KEYS[0]


def test_parse_time():
    from telemetry.cli.keys import parse_time

    assert parse_time("2026-01-01") == T0
    assert parse_time("2026-01-01T00:00:00") == T0
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T01:00:00+01:00") == T0
    assert parse_time(None) is None
    with pytest.raises(ConfigError, match="--valid-from: not an ISO 8601 time"):
        parse_time("next tuesday")


def test_import_does_not_load_numba():
    code = "import sys, telemetry.keys, telemetry.cli.keys; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the command line, as a subprocess -----------------------------------------------


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}


def _keys_in(path, passphrase: bytes | None = None) -> list[bytes]:
    return [e.key for e in Keyring.load(path, passphrase).epochs if e.key is not None]


def test_cli_init_rotate_list_shred(tmp_path, env):
    path = tmp_path / "keyring.json"
    seen_keys: list[bytes] = []
    outputs = []

    init = run_cli("keys", "init", "--out", str(path), "--valid-from", "2026-01-01", env=env)
    assert init.returncode == 0, init.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = Keyring.load(path)
    seen_keys += _keys_in(path)
    assert first.epochs[0].valid_from == T0 and first.current.key_id in init.stdout
    outputs.append(init)

    again = run_cli("keys", "init", "--out", str(path), env=env)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr and again.stderr.count("\n") == 1
    assert Keyring.load(path) == first  # untouched
    outputs.append(again)

    rotate = run_cli("keys", "rotate", "--key-file", str(path), "--valid-from", "2026-04-01T00:00:00Z", env=env)
    assert rotate.returncode == 0, rotate.stderr
    ring = Keyring.load(path)
    seen_keys += _keys_in(path)
    assert [e.valid_from for e in ring.epochs] == [T0, T1] and ring.epochs[0] == first.epochs[0]
    outputs.append(rotate)

    backwards = run_cli("keys", "rotate", "--key-file", str(path), "--valid-from", "2026-02-01", env=env)
    assert backwards.returncode == 2 and "later than the newest" in backwards.stderr
    outputs.append(backwards)

    listing = run_cli("keys", "list", "--key-file", str(path), env=env)
    assert listing.returncode == 0
    rows = [line.split() for line in listing.stdout.splitlines()[1:]]
    assert rows == [[ring.key_ids()[0], "2026-01-01T00:00:00Z", "active"],
                    [ring.key_ids()[1], "2026-04-01T00:00:00Z", "active", "(current)"]]
    outputs.append(listing)

    shred = run_cli("keys", "shred", "--key-file", str(path), "--key-id", ring.key_ids()[0], env=env)
    assert shred.returncode == 0, shred.stderr
    assert_no_material(path.read_bytes(), [seen_keys[0]], "key file after shred")
    assert Keyring.load(path).epochs[0].key is None
    outputs.append(shred)

    listing = run_cli("keys", "list", "--key-file", str(path), env=env)
    assert [line.split()[2] for line in listing.stdout.splitlines()[1:]] == ["shredded", "active"]
    outputs.append(listing)

    unknown = run_cli("keys", "shred", "--key-file", str(path), "--key-id", "0123456789abcdef", env=env)
    assert unknown.returncode == 2 and "no epoch with key id" in unknown.stderr
    outputs.append(unknown)

    forced = run_cli("keys", "init", "--out", str(path), "--force", env=env)
    assert forced.returncode == 0 and Keyring.load(path).key_ids() != ring.key_ids()
    seen_keys += _keys_in(path)
    outputs.append(forced)

    for i, res in enumerate(outputs):
        assert_no_material(res.stdout + res.stderr, seen_keys, f"output {i}")


def test_cli_sealed(tmp_path, env):
    path = tmp_path / "sealed.json"
    pw = tmp_path / "pw"
    pw.write_bytes(PASSPHRASE + b"\n")
    pw.chmod(0o600)
    outputs = []
    no_pw = run_cli("keys", "init", "--out", str(path), "--seal", env=env, input="")
    assert no_pw.returncode == 2 and "--seal needs a passphrase" in no_pw.stderr and not path.exists()
    init = run_cli("keys", "init", "--out", str(path), "--seal", "--passphrase-file", str(pw), env=env)
    assert init.returncode == 0, init.stderr
    assert "sealed" in init.stdout
    keys = _keys_in(path, PASSPHRASE)
    outputs += [no_pw, init]

    locked = run_cli("keys", "list", "--key-file", str(path), env=env, input="")
    assert locked.returncode == 2 and "is sealed: pass --passphrase-file" in locked.stderr
    wrong = run_cli("keys", "list", "--key-file", str(path), env={**env, "TELEMETRY_PASSPHRASE": "nope"})
    assert wrong.returncode == 2
    assert wrong.stderr == f"telemetry: error: cannot open key file {path}: wrong passphrase or the file was altered\n"
    with_env = {**env, "TELEMETRY_PASSPHRASE": PASSPHRASE.decode()}
    rotate = run_cli("keys", "rotate", "--key-file", str(path), env=with_env)
    assert rotate.returncode == 0, rotate.stderr
    ring, sealed = load_key_file(path, PASSPHRASE)
    assert sealed and len(ring.epochs) == 2  # still sealed after the rewrite
    keys += _keys_in(path, PASSPHRASE)
    listing = run_cli("keys", "list", "--key-file", str(path), "--passphrase-file", str(pw), env=env)
    assert listing.returncode == 0 and all(k in listing.stdout for k in ring.key_ids())
    outputs += [locked, wrong, rotate, listing]
    for i, res in enumerate(outputs):
        assert_no_material(res.stdout + res.stderr, keys, f"output {i}")
        assert PASSPHRASE.decode() not in res.stdout + res.stderr


def test_cli_list_from_env_and_refusals(tmp_path, env):
    with_key = {**env, "TELEMETRY_KEY": base64.b64encode(TEST_KEY).decode()}
    listing = run_cli("keys", "list", env=with_key)
    assert listing.returncode == 0 and key_id(TEST_KEY) in listing.stdout
    assert "beginning" in listing.stdout

    nokey = run_cli("keys", "list", env=env)
    assert nokey.returncode == 2 and nokey.stderr.count("\n") == 1 and "TELEMETRY_KEY" in nokey.stderr
    bad = run_cli("keys", "list", env={**env, "TELEMETRY_KEY": base64.b64encode(TEST_KEY[:31]).decode()})
    assert bad.returncode == 2 and "decodes to 31 bytes" in bad.stderr

    path = tmp_path / "keyring.json"
    Keyring.from_key(TEST_KEY).save(path)
    path.chmod(0o644)
    opened = run_cli("keys", "list", "--key-file", str(path), env=env)
    assert opened.returncode == 2
    assert opened.stderr == (
        f"telemetry: error: key file {path} is readable by others (mode 0644); run: chmod 600 {path}\n"
    )
    from_env = tmp_path / "from-env.json"
    stored = run_cli("keys", "init", "--out", str(from_env), "--from-env", env=with_key)
    assert stored.returncode == 0 and Keyring.load(from_env).current.key == TEST_KEY
    for res in (listing, nokey, bad, opened, stored):
        assert_no_material(res.stdout + res.stderr, [TEST_KEY], "output")
