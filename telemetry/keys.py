"""The keyring: epoch keys, their derivations and the key file (SPEC section 3).

A keyring is a tuple of :class:`Epoch` (key id, valid-from time, 32-byte key or
``None`` once shredded), sorted by valid-from. A record is pseudonymized with
the epoch covering its ``start_time``: the latest epoch whose valid-from is not
after it. Keyrings are immutable; :meth:`Keyring.rotate` and
:meth:`Keyring.shred` return new ones, :meth:`Keyring.save` writes them.

Key file: JSON, either plain (base64 keys) or sealed (scrypt + AES-256-GCM with
the header as associated data). The threat model and the decisions where the
spec is silent are in ``docs/keys.md``. No message raised here contains key
bytes or a passphrase.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import shlex
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from telemetry.errors import KeyMaterialError

if TYPE_CHECKING:
    import numpy as np

KEY_BYTES = 32
#: HKDF domains: the three pseudonym (HMAC) domains and the Crypto-PAn key (SPEC 12).
DOMAINS = ("subscriber", "ip", "record", "cryptopan")
#: "Valid since the beginning": earlier than any record a reader can produce.
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
ENV_KEY = "TELEMETRY_KEY"

FORMAT_PLAIN = "telemetry-keyring"
FORMAT_SEALED = "telemetry-keyring-sealed"
VERSION = 1
# 128 MiB and ~0.3 s per derivation: the OWASP recommendation for scrypt, far
# above the n=2**15 floor. Loading accepts a power of two from the floor up to what
# sealing writes, and r, p no larger than sealing's: an altered header cannot make a
# load cost more memory or time than opening a file this build sealed.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_SCRYPT_N_RANGE = (2**15, SCRYPT_N)
_MAX_FILE_BYTES = 16 << 20
_MAX_EPOCHS = 2**15 - 1  # epoch_index returns int16
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_ID = re.compile(r"[0-9a-f]{16}")


def key_id(key: bytes) -> str:
    """First 8 bytes of SHA-256(b"telemetry-key-id" + key), as 16 lower-case hex digits."""
    return hashlib.sha256(b"telemetry-key-id" + bytes(key)).digest()[:8].hex()


def subkey(key: bytes, domain: str) -> bytes:
    """HKDF-SHA256(key, length=32, salt=empty, info=b"telemetry/v1/" + domain)."""
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}; got {domain!r}")
    # salt=None is RFC 5869's "not provided": HashLen zero bytes, the same HMAC
    # key as an empty salt once HMAC pads it to the block size.
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"telemetry/v1/" + domain.encode())
    return hkdf.derive(bytes(key))


def _utc(when: datetime, name: str) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"{name} must be a datetime; got {type(when).__name__}")
    # naive means UTC, as for every time on the command line and in the inputs
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _micros(when: datetime) -> int:
    return (when - _UNIX) // timedelta(microseconds=1)


def format_time(when: datetime) -> str:
    """ISO 8601 with ``Z``; the beginning of time as ``beginning``."""
    return "beginning" if when == BEGINNING else when.isoformat().replace("+00:00", "Z")


def _check_key(key: Any, name: str = "key") -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be {KEY_BYTES} raw bytes or a Keyring; got {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{name} must be {KEY_BYTES} bytes; got {len(key)}")
    return key


@dataclass(frozen=True)
class Epoch:
    """One key epoch. ``key`` is ``None`` once shredded; it never appears in repr."""

    key_id: str
    valid_from: datetime
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "valid_from", _utc(self.valid_from, "valid_from"))
        if not (isinstance(self.key_id, str) and _KEY_ID.fullmatch(self.key_id)):
            raise ValueError("key_id must be 16 lower-case hex digits")
        if self.key is not None:
            object.__setattr__(self, "key", _check_key(self.key))
            if key_id(self.key) != self.key_id:
                raise ValueError(f"the key does not match key_id {self.key_id}")

    @property
    def shredded(self) -> bool:
        return self.key is None

    @property
    def state(self) -> str:
        return "shredded" if self.key is None else "active"

    def __repr__(self) -> str:
        return f"Epoch(key_id={self.key_id!r}, valid_from={format_time(self.valid_from)!r}, state={self.state!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class Keyring:
    """Key epochs sorted by ``valid_from``; see the module docstring."""

    epochs: tuple[Epoch, ...]

    def __post_init__(self) -> None:
        epochs = tuple(self.epochs)
        if not epochs or not all(isinstance(e, Epoch) for e in epochs):
            raise ValueError("a keyring needs at least one Epoch")
        if len(epochs) > _MAX_EPOCHS:
            raise ValueError(f"a keyring holds at most {_MAX_EPOCHS} epochs")
        for before, after in zip(epochs, epochs[1:]):
            if not before.valid_from < after.valid_from:
                raise ValueError("epochs must be sorted by strictly increasing valid_from")
        if len({e.key_id for e in epochs}) != len(epochs):
            raise ValueError("two epochs have the same key_id (the same key)")
        object.__setattr__(self, "epochs", epochs)

    def __repr__(self) -> str:
        return f"Keyring(epochs={list(self.epochs)!r})"

    __str__ = __repr__

    # -- construction -------------------------------------------------------

    @classmethod
    def generate(cls, valid_from: datetime | None = None) -> Keyring:
        """A new keyring with one random key, valid from ``valid_from`` (default: always)."""
        return cls.from_key(os.urandom(KEY_BYTES), valid_from)

    @classmethod
    def from_key(cls, key: bytes, valid_from: datetime | None = None) -> Keyring:
        """One epoch holding ``key`` (32 raw bytes), valid from ``valid_from`` (default: always)."""
        key = _check_key(key)
        return cls((Epoch(key_id(key), BEGINNING if valid_from is None else valid_from, key),))

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: bytes | None = None) -> Keyring:
        """Read a key file; sealed files need ``passphrase``. Raises KeyMaterialError."""
        return load_key_file(path, passphrase)[0]

    @classmethod
    def from_env(cls) -> Keyring | None:
        """The one key in ``TELEMETRY_KEY`` (base64 of 32 bytes), or None when unset or empty.

        Only a single key: keyrings with several epochs live in key files, which
        have permission checks and can be sealed; environments leak to child
        processes, ``/proc/PID/environ`` and CI logs.
        """
        text = os.environ.get(ENV_KEY, "").strip()
        if not text:
            return None
        remedy = "it must hold 32 random bytes in base64 (e.g. from: head -c 32 /dev/urandom | base64)"
        if text.startswith("{"):
            raise KeyMaterialError(f"{ENV_KEY} holds one base64 key, not a keyring; pass a keyring with --key-file FILE")
        padded = text + "=" * (-len(text) % 4)
        try:
            altchars = b"-_" if ("-" in text or "_" in text) else None
            key = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            raise KeyMaterialError(f"{ENV_KEY} is not valid base64; {remedy}") from None
        if len(key) != KEY_BYTES:
            raise KeyMaterialError(f"{ENV_KEY} decodes to {len(key)} bytes, not {KEY_BYTES}; {remedy}")
        return cls.from_key(key)

    @classmethod
    def resolve(
        cls, key_file: str | os.PathLike[str] | None = None, passphrase: bytes | None = None
    ) -> Keyring:
        """The key file if given, else ``TELEMETRY_KEY``, else KeyMaterialError with the remedy."""
        if key_file is not None:
            return cls.load(key_file, passphrase)
        keyring = cls.from_env()
        if keyring is None:
            raise KeyMaterialError(
                f"no key: pass --key-file FILE or set {ENV_KEY} "
                "(create a key file with: telemetry keys init --out FILE)"
            )
        return keyring

    # -- changes (each returns a new keyring) -------------------------------

    def rotate(self, valid_from: datetime, *, key: bytes | None = None) -> Keyring:
        """Add an epoch with a new random key (or ``key``) valid from ``valid_from`` on.

        Epochs are append-only: ``valid_from`` must be later than the newest
        epoch's, so records already pseudonymized keep their epoch.
        """
        when = _utc(valid_from, "valid_from")
        newest = self.epochs[-1].valid_from
        if when <= newest:
            raise ValueError(f"valid_from must be later than the newest epoch's ({format_time(newest)})")
        key = os.urandom(KEY_BYTES) if key is None else _check_key(key)
        return Keyring(self.epochs + (Epoch(key_id(key), when, key),))

    def shred(self, key_id: str) -> Keyring:
        """The keyring without the key of epoch ``key_id`` (kept as a shredded epoch)."""
        if key_id not in self.key_ids():
            raise ValueError(f"no epoch with key_id {key_id}; see: telemetry keys list")
        return Keyring(tuple(Epoch(e.key_id, e.valid_from) if e.key_id == key_id else e for e in self.epochs))

    def ended_before(self, when: datetime) -> list[str]:
        """Key ids of the epochs still holding a key whose whole validity ended at or
        before ``when``: an epoch is valid until the next one's valid-from, so the
        newest epoch never ends."""
        when = _utc(when, "when")
        return [e.key_id for e, successor in zip(self.epochs, self.epochs[1:])
                if e.key is not None and successor.valid_from <= when]

    # -- use -----------------------------------------------------------------

    @property
    def current(self) -> Epoch:
        """The latest epoch still holding a key."""
        for epoch in reversed(self.epochs):
            if epoch.key is not None:
                return epoch
        raise KeyMaterialError("every epoch of the keyring is shredded; add one with: telemetry keys rotate")

    def key_ids(self) -> list[str]:
        return [e.key_id for e in self.epochs]

    def subkeys(self, domain: str) -> list[bytes | None]:
        """The ``domain`` subkey of each epoch, None where shredded."""
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {', '.join(DOMAINS)}; got {domain!r}")
        return [None if e.key is None else subkey(e.key, domain) for e in self.epochs]

    @cached_property
    def _starts(self) -> np.ndarray:
        import numpy as np

        # "since the beginning" covers every representable time, even before year 1
        first = np.iinfo(np.int64).min
        return np.array([first if e.valid_from == BEGINNING else _micros(e.valid_from) for e in self.epochs],
                        dtype=np.int64)

    @cached_property
    def _usable(self) -> np.ndarray:
        import numpy as np

        # the extra False at the end is what index -1 ("before the first epoch") reads
        return np.array([e.key is not None for e in self.epochs] + [False], dtype=np.bool_)

    def epoch_index(self, start_us: np.ndarray) -> np.ndarray:
        """int16 index of the epoch covering each start time (int64 µs since the Unix epoch, UTC,
        or datetime64); -1 where no epoch covers it, its epoch is shredded, or the time is missing
        (NaN, NaT)."""
        import numpy as np  # lazily: the key commands do not need it

        times = np.asarray(start_us)
        missing = None
        if times.dtype.kind == "M":
            times = times.astype("datetime64[us]")
            missing = np.isnat(times)
            times = times.view(np.int64)
        elif times.dtype.kind == "f":
            missing = ~np.isfinite(times)
            times = np.where(missing, 0, times).astype(np.int64)
        elif times.dtype.kind in "iu":
            times = times.astype(np.int64, copy=False)
        else:
            raise TypeError(f"start_us must be integer microseconds or datetime64; got dtype {times.dtype}")
        index = np.searchsorted(self._starts, times, side="right") - 1
        index = np.where(self._usable[index], index, -1)
        if missing is not None:
            index[missing] = -1
        return index.astype(np.int16)

    # -- storage ---------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], passphrase: bytes | None = None) -> None:
        """Write the key file (sealed when ``passphrase`` is given), mode 0600, atomically.

        A file already at ``path`` is replaced by rename, then its old bytes are
        overwritten with zeros and synced, so shredded keys do not stay in the
        old inode (see docs/keys.md for what storage can still keep).
        """
        document = self._document()
        if passphrase is not None:
            document = _seal(document, _check_passphrase(passphrase))
        _replace_file(path, (json.dumps(document, indent=2) + "\n").encode())

    def _document(self) -> dict:
        epochs = [
            {
                "key_id": e.key_id,
                "valid_from": e.valid_from.isoformat().replace("+00:00", "Z"),
                "key": None if e.key is None else base64.b64encode(e.key).decode(),
            }
            for e in self.epochs
        ]
        return {"format": FORMAT_PLAIN, "version": VERSION, "epochs": epochs}


def as_keyring(key: bytes | Keyring) -> Keyring:
    """``key`` itself if a Keyring, else a one-epoch keyring of the 32 raw bytes."""
    if isinstance(key, Keyring):
        return key
    return Keyring.from_key(_check_key(key))


class PassphraseRequired(KeyMaterialError):
    """The key file is sealed and no passphrase was given."""


class _Altered(Exception):
    """A sealed file failed a structural check: reported like a failed tag."""


class _Invalid(ValueError):
    """A key file's content breaks a rule. The message names fields and epoch positions
    (or key ids already checked to be 16 hex digits), never a value from the file: only
    this exception's message reaches an error; any other is reported as "malformed"."""


def load_key_file(path: str | os.PathLike[str], passphrase: bytes | None = None) -> tuple[Keyring, bool]:
    """The keyring in the key file at ``path`` and whether the file is sealed."""
    raw = read_private(path)
    shown = os.fspath(path)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise KeyMaterialError(f"key file {shown} is not a telemetry keyring (not JSON)") from None
    fmt = document.get("format") if isinstance(document, dict) else None
    if fmt == FORMAT_SEALED:
        if passphrase is None:
            raise PassphraseRequired(
                f"key file {shown} is sealed: pass --passphrase-file FILE or set TELEMETRY_PASSPHRASE"
            )
        passphrase = _check_passphrase(passphrase)
        try:
            document = json.loads(_unseal(document, passphrase))
        except (_Altered, ValueError, RecursionError):
            raise KeyMaterialError(f"cannot open key file {shown}: wrong passphrase or the file was altered") from None
    elif fmt != FORMAT_PLAIN:
        raise KeyMaterialError(f"key file {shown} is not a telemetry keyring (unknown format)")
    try:
        return _from_document(document), fmt == FORMAT_SEALED
    except _Invalid as exc:
        raise KeyMaterialError(f"key file {shown} is not a valid telemetry keyring ({exc})") from None
    except (KeyError, TypeError, ValueError, RecursionError):  # their messages may quote values
        raise KeyMaterialError(f"key file {shown} is not a valid telemetry keyring (malformed)") from None


def _from_document(document: dict) -> Keyring:
    if set(document) != {"format", "version", "epochs"} or document["version"] != VERSION:
        raise _Invalid(f"unknown version or fields; this build reads version {VERSION}")
    if not isinstance(document["epochs"], list):
        raise _Invalid("epochs is not a list")
    epochs = []
    for number, item in enumerate(document["epochs"], 1):
        if not isinstance(item, dict) or set(item) != {"key_id", "valid_from", "key"}:
            raise _Invalid(f"epoch {number}: unknown or missing fields")
        try:
            key = None if item["key"] is None else base64.b64decode(item["key"], validate=True)
        except (TypeError, ValueError):
            raise _Invalid(f"epoch {number}: key is not base64") from None
        if key is not None and len(key) != KEY_BYTES:
            raise _Invalid(f"epoch {number}: key is not {KEY_BYTES} bytes")
        if not isinstance(item["valid_from"], str):
            raise _Invalid(f"epoch {number}: valid_from is not text")
        try:
            valid_from = datetime.fromisoformat(item["valid_from"])
        except ValueError:
            raise _Invalid(f"epoch {number}: valid_from is not an ISO 8601 time") from None
        try:
            epochs.append(Epoch(item["key_id"], valid_from, key))
        except ValueError as exc:  # Epoch's messages: rules, and key ids that passed its check
            raise _Invalid(f"epoch {number}: {exc}") from None
    try:
        return Keyring(tuple(epochs))
    except ValueError as exc:  # Keyring's messages name rules only
        raise _Invalid(str(exc)) from None


# -- sealing ---------------------------------------------------------------------


def _check_passphrase(passphrase: bytes) -> bytes:
    if not isinstance(passphrase, (bytes, bytearray)):
        raise TypeError(f"passphrase must be bytes; got {type(passphrase).__name__}")
    if not passphrase:
        raise ValueError("passphrase must not be empty")
    return bytes(passphrase)


def _aad(header: dict) -> bytes:
    # canonical form: what is authenticated is the header's meaning, not its layout
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _seal(document: dict, passphrase: bytes) -> dict:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(12)
    header = {
        "format": FORMAT_SEALED,
        "version": VERSION,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": {"name": "AES-256-GCM", "nonce": _b64(nonce)},
    }
    key = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(document).encode(), _aad(header))
    return {**header, "ciphertext": _b64(sealed[:-16]), "tag": _b64(sealed[-16:])}


def _unseal(document: dict, passphrase: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        header = {k: document[k] for k in ("format", "version", "kdf", "cipher")}
        if set(document) != set(header) | {"ciphertext", "tag"} or header["version"] != VERSION:
            raise _Altered
        kdf, cipher = header["kdf"], header["cipher"]
        if set(kdf) != {"name", "n", "r", "p", "salt"} or set(cipher) != {"name", "nonce"}:
            raise _Altered
        n, r, p = kdf["n"], kdf["r"], kdf["p"]
        if kdf["name"] != "scrypt" or cipher["name"] != "AES-256-GCM":
            raise _Altered
        if not all(type(v) is int for v in (n, r, p)):
            raise _Altered
        n_ok = _SCRYPT_N_RANGE[0] <= n <= _SCRYPT_N_RANGE[1] and n & (n - 1) == 0
        if not (n_ok and 1 <= r <= SCRYPT_R and 1 <= p <= SCRYPT_P):  # before deriving: see SCRYPT_N
            raise _Altered
        salt, nonce = _unb64(kdf["salt"]), _unb64(cipher["nonce"])
        ciphertext, tag = _unb64(document["ciphertext"]), _unb64(document["tag"])
        if len(salt) != 16 or len(nonce) != 12 or len(tag) != 16:
            raise _Altered
        key = _scrypt(passphrase, salt, n, r, p)
        return AESGCM(key).decrypt(nonce, ciphertext + tag, _aad(header))
    except (KeyError, TypeError, InvalidTag, binascii.Error):
        raise _Altered from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise _Altered
    return base64.b64decode(text, validate=True)


# -- files -------------------------------------------------------------------------


def _mode_problem(mode: int, shown: str, what: str) -> str | None:
    if os.name == "nt" or not mode & 0o077:  # Windows has no POSIX mode bits to check
        return None
    access = "readable" if mode & 0o044 else "accessible"
    return f"{what} {shown} is {access} by others (mode {mode & 0o777:04o}); run: chmod 600 {shlex.quote(shown)}"


def read_private(path: str | os.PathLike[str], what: str = "key file") -> bytes:
    """The bytes of a secret file, refused when group or others have any access to it.

    Symlinks are followed (Kubernetes mounts secrets through them); the mode
    checked is that of the file actually opened.
    """
    shown = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {what} {shown}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):  # opens for reading on POSIX; reading it fails
        os.close(fd)
        raise KeyMaterialError(f"cannot read {what} {shown}: it is a directory; name the file")
    with os.fdopen(fd, "rb") as handle:
        problem = _mode_problem(mode, shown, what)
        if problem:
            raise KeyMaterialError(problem)
        try:
            data = handle.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyMaterialError(f"cannot read {what} {shown}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise KeyMaterialError(f"{what} {shown} is larger than {_MAX_FILE_BYTES >> 20} MiB; not a key file")
    return data



def _replace_file(path: str | os.PathLike[str], data: bytes) -> None:
    shown = os.fspath(path)
    target = os.path.realpath(path)  # a symlinked key file stays a symlink to the new file
    directory = os.path.dirname(target) or "."
    old = _open_for_wipe(target, shown)
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            if os.name != "nt":
                os.fchmod(fd, 0o600)  # whatever the umask
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if old is not None:
            os.close(old)
        if isinstance(exc, OSError):
            raise KeyMaterialError(f"cannot write key file {shown}: {exc.strerror}") from None
        raise
    fsync_dir(directory)
    if old is not None:
        _wipe(old, shown)


def _open_for_wipe(target: str, shown: str) -> int | None:
    """A write handle on the file about to be replaced, kept to overwrite it afterwards."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        return None
    except PermissionError:
        try:  # a read-only (0400) key file of ours: make it writable to wipe it
            os.chmod(target, 0o600)
            fd = os.open(target, flags)
        except OSError as exc:
            raise KeyMaterialError(f"cannot overwrite key file {shown}: {exc.strerror}") from None
    except OSError as exc:
        raise KeyMaterialError(f"cannot overwrite key file {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise KeyMaterialError(f"cannot write key file {shown}: not a regular file")
    return fd


def _wipe(fd: int, shown: str) -> None:
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(min(size, 1 << 16))
        done = 0
        while done < size:
            done += os.pwrite(fd, zeros[: size - done], done)
        os.fsync(fd)
    except OSError as exc:
        raise KeyMaterialError(f"wrote key file {shown} but could not overwrite the old one: {exc.strerror}") from None
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable (a no-op where the platform cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some platforms and file systems cannot sync a directory
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
