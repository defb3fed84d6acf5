"""The flash store: what the device keeps on disk, and nothing else.

Layout of a store directory:

    STORE               format header: magic, format version, mode (hardened or plain), SHA-256
    users/<hex>.rec     one file per user (file name = hex of the UTF-8 user name)
    lockout.bin         failed-attempt counters (see `lockout`)
    attempts.log        JSON lines, one per unlock attempt, without biometric data
    LOCK                advisory lock held by writers

A user file holds exactly: the user name, the scheme id, the fuzzy extractor's record bytes (for
L2FE-Hash: parameter-set id, seed, helper vector c, salt, verifier), an enrolment generation
counter and the enrolment time. Never an embedding, an image or a key. Every file ends with a
SHA-256 of what precedes it; a file that fails it (or its magic, or its version) is reported and
skipped while the other users keep working. Writes go through `atomic.write_atomic`.

User file, little-endian:

    magic b"LLUR" | u16 version | u16 name length | name | u8 scheme-id length | scheme id
    | u32 generation | u64 enrolled_at (unix s) | u32 record length | record | 32-byte SHA-256
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from latticelock.device.atomic import TMP_PREFIX, remove_durably, remove_leftovers, write_atomic
from latticelock.device.errors import (
    CorruptEntryError,
    InsecureSchemeError,
    StoreError,
    StoreVersionError,
    UnknownUserError,
)

log = logging.getLogger(__name__)

STORE_MAGIC = b"LATTICELOCK-STORE\n"
STORE_VERSION = 2
USER_MAGIC = b"LLUR"
USER_VERSION = 2
# What a store holds: hardened records (matched by the microcontroller) or, only on explicit request,
# plain L2FE-Hash records (matched on the host; a stolen flash gives the face back).
MODES = ("hardened", "plain")


def accepts(mode: str, scheme_id: str) -> bool:
    """Whether a store of `mode` holds records of `scheme_id` (facts from `kernels.families`)."""
    from latticelock.kernels.errors import RecordError
    from latticelock.kernels.families import family

    try:
        what = family(scheme_id)
    except RecordError:
        return False
    return what.needs_mcu if mode == "hardened" else not (what.baseline or what.needs_mcu)
DIGEST_SIZE = 32
MAX_NAME_BYTES = 64
MAX_RECORD_BYTES = 4 << 20
USER_SUFFIX = ".rec"

_USER_HEAD = struct.Struct("<4sHH")
_USER_MID = struct.Struct("<IQI")


class StorableRecord(Protocol):
    """What the store needs from a scheme's record (`latticelock.kernels.record.Record`)."""

    scheme_id: str

    def to_bytes(self) -> bytes: ...


@contextlib.contextmanager
def file_errors(path: Path) -> Iterator[None]:
    """Turn an OS error on one of the store's own files into a StoreError naming it (a file replaced by a
    directory or a link is damage or tampering, never something to follow or crash on)."""
    try:
        yield
    except IsADirectoryError:
        raise StoreError(f"{path} is a directory where the store keeps a file: the store is damaged") from None
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc} (links are not followed in a store)") from None


def check_user_name(name: str) -> bytes:
    """The UTF-8 bytes of a valid user name, or StoreError saying what is wrong with it."""
    if not isinstance(name, str) or not name:
        raise StoreError("user name must be a non-empty string")
    if not name.isprintable() or name.strip() != name:
        raise StoreError(f"user name {name!r} has control characters or surrounding spaces")
    raw = name.encode("utf-8")
    if len(raw) > MAX_NAME_BYTES:
        raise StoreError(f"user name is {len(raw)} bytes of UTF-8; at most {MAX_NAME_BYTES} are allowed")
    return raw


@dataclass(frozen=True)
class StoredUser:
    """One enrolled user as read from flash."""

    name: str
    scheme_id: str
    record_bytes: bytes
    generation: int
    enrolled_at: int
    path: Path

    def record(self) -> Any:
        """The parsed scheme record (raises the kernels' RecordError if its own checks fail)."""
        from latticelock.kernels.record import parse_record

        return parse_record(self.record_bytes)

    @property
    def parameter_set(self) -> str | None:
        """The record's parameter set (its operating point), or None if the record is unreadable."""
        from latticelock.kernels.errors import KernelsError

        try:
            return self.record().parameter_set
        except KernelsError:
            return None


@dataclass(frozen=True)
class CorruptEntry:
    """A stored file that failed its checks, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class StoreScan:
    users: list[StoredUser]
    corrupt: list[CorruptEntry]


def encode_user(name: str, scheme_id: str, record_bytes: bytes, generation: int, enrolled_at: int) -> bytes:
    raw_name = check_user_name(name)
    raw_scheme = scheme_id.encode("ascii")
    if not 0 < len(raw_scheme) < 256:
        raise StoreError(f"scheme id {scheme_id!r} must be 1..255 ASCII characters")
    if len(record_bytes) > MAX_RECORD_BYTES:
        raise StoreError(f"record is {len(record_bytes)} bytes; at most {MAX_RECORD_BYTES} are stored")
    body = b"".join(
        [
            _USER_HEAD.pack(USER_MAGIC, USER_VERSION, len(raw_name)),
            raw_name,
            bytes([len(raw_scheme)]),
            raw_scheme,
            _USER_MID.pack(generation, enrolled_at, len(record_bytes)),
            record_bytes,
        ]
    )
    return body + hashlib.sha256(body).digest()


def decode_user(data: bytes, path: Path) -> StoredUser:
    """Parse one user file; CorruptEntryError names the first check that fails."""
    if len(data) < _USER_HEAD.size + DIGEST_SIZE:
        raise CorruptEntryError(f"{path}: truncated ({len(data)} bytes)")
    magic, version, name_len = _USER_HEAD.unpack_from(data)
    if magic != USER_MAGIC:
        raise CorruptEntryError(f"{path}: not a LatticeLock user record (bad magic)")
    body, digest = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise CorruptEntryError(f"{path}: checksum mismatch (corrupt or torn)")
    if version != USER_VERSION:
        raise CorruptEntryError(f"{path}: user record format version {version}; this build reads version {USER_VERSION}")
    try:
        pos = _USER_HEAD.size
        name = body[pos : pos + name_len].decode("utf-8")
        pos += name_len
        scheme_len = body[pos]
        scheme_id = body[pos + 1 : pos + 1 + scheme_len].decode("ascii")
        pos += 1 + scheme_len
        generation, enrolled_at, record_len = _USER_MID.unpack_from(body, pos)
        pos += _USER_MID.size
    except (UnicodeDecodeError, IndexError, struct.error) as exc:
        raise CorruptEntryError(f"{path}: malformed header ({exc})") from None
    if pos + record_len != len(body):
        raise CorruptEntryError(f"{path}: record length {record_len} disagrees with the file size")
    return StoredUser(name, scheme_id, bytes(body[pos:]), generation, enrolled_at, path)


def _user_file_name(name: str) -> str:
    return check_user_name(name).hex() + USER_SUFFIX


def _check_header(path: Path) -> str:
    header = path / "STORE"
    try:
        data = header.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is not a LatticeLock store (no STORE header file)") from None
    if not data.startswith(STORE_MAGIC):
        raise StoreVersionError(f"{header}: foreign format (not a LatticeLock store header); refusing to use it")
    body, digest = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
    # The version is read before the length is judged: a newer format may have a longer header,
    # and it must be refused as newer, not reported as corrupt.
    if len(body) < len(STORE_MAGIC) + 2 or not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise StoreError(f"{header}: store header is corrupt (checksum mismatch)")
    (version,) = struct.unpack_from("<H", body, len(STORE_MAGIC))
    if version == 1:
        raise StoreVersionError(
            f"{path}: store format 1 holds records from before hardened mode v2 (the microcontroller now "
            "matches faces itself); re-enrol the users into a new store (README, \"Migrating from format 1\")"
        )
    if version != STORE_VERSION:
        newer = "a newer" if version > STORE_VERSION else "an older"
        raise StoreVersionError(
            f"{path}: store format version {version} was written by {newer} LatticeLock; "
            f"this build reads version {STORE_VERSION} only and refuses to touch it"
        )
    if len(body) != len(STORE_MAGIC) + 3 or body[-1] >= len(MODES):
        raise StoreError(f"{header}: store header is corrupt ({len(data)} bytes for format version {STORE_VERSION})")
    return MODES[body[-1]]


def scan_store(path: Path) -> StoreScan:
    """Every readable user of the store at `path` and every corrupt entry, without writing anything."""
    path = Path(path)
    _check_header(path)
    users: list[StoredUser] = []
    corrupt: list[CorruptEntry] = []
    users_dir = path / "users"
    entries = sorted(users_dir.iterdir()) if users_dir.is_dir() else []
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) or not entry.name.endswith(USER_SUFFIX):
            continue
        try:
            user = decode_user(entry.read_bytes(), entry)
            if _user_file_name(user.name) != entry.name:
                raise CorruptEntryError(f"{entry}: file name does not match the user name inside")
        except (CorruptEntryError, StoreError, OSError) as exc:
            log.warning("skipping corrupt store entry: %s", exc)
            corrupt.append(CorruptEntry(entry, str(exc)))
            continue
        users.append(user)
    return StoreScan(users, corrupt)


class FlashStore:
    """A directory of versioned, checksummed per-user records plus counters; one writer at a time (flock)."""

    def __init__(self, path: Path | str, *, create: bool = True, mode: str = "hardened", allow_insecure_baselines: bool = False) -> None:
        """Open the store at `path`, creating it in `mode` if `create` and there is none. `allow_insecure_baselines`
        lets forensics simulations store any scheme, baselines included."""
        self.path = Path(path).expanduser()
        self.allow_insecure_baselines = allow_insecure_baselines
        if mode not in MODES:
            raise StoreError(f"store mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not (self.path / "STORE").exists():
            if not create:
                raise StoreError(f"no LatticeLock store at {self.path}")
            self._create(mode)
        self.mode = _check_header(self.path)
        if self.users_dir.exists() and not self.users_dir.is_dir():
            raise StoreError(f"{self.users_dir} is not a directory; the store is damaged")
        with self.locked():
            remove_leftovers(self.path)
            # A store whose users/ folder was lost is still a store, with no users: recreate it.
            self.users_dir.mkdir(exist_ok=True, mode=0o700)
            remove_leftovers(self.users_dir)

    @property
    def users_dir(self) -> Path:
        return self.path / "users"

    def _create(self, mode: str) -> None:
        if self.path.is_dir() and any(self.path.iterdir()):
            raise StoreError(f"{self.path} exists and is not an empty directory; refusing to make a store there")
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.path / "users").mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create a store at {self.path}: {exc}") from None
        body = STORE_MAGIC + struct.pack("<H", STORE_VERSION) + bytes([MODES.index(mode)])
        write_atomic(self.path / "STORE", body + hashlib.sha256(body).digest())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive advisory lock for a read-modify-write of the store's files."""
        with file_errors(self.path / "LOCK"):
            fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def scan(self) -> StoreScan:
        return scan_store(self.path)

    def users(self) -> list[StoredUser]:
        """Every user that passes its checks (corrupt entries are logged and skipped)."""
        return self.scan().users

    def get(self, name: str) -> StoredUser:
        path = self.users_dir / _user_file_name(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UnknownUserError(f"no user named {name!r} is enrolled in {self.path}") from None
        user = decode_user(data, path)
        if user.name != name:
            raise CorruptEntryError(f"{path}: holds user {user.name!r}, expected {name!r}")
        return user

    def __contains__(self, name: str) -> bool:
        return (self.users_dir / _user_file_name(name)).exists()

    def next_generation(self, name: str) -> int:
        """The generation the next enrolment of `name` gets (1 for a new user)."""
        path = self.users_dir / _user_file_name(name)
        try:
            return decode_user(path.read_bytes(), path).generation + 1
        except FileNotFoundError:
            return 1
        except (CorruptEntryError, OSError) as exc:
            log.warning("replacing unreadable entry: %s", exc)
            return 1

    def put(self, name: str, record: StorableRecord, *, generation: int | None = None, now: float | None = None) -> StoredUser:
        """Enrol `name`, atomically replacing any earlier record of the same user (under `generation`, which
        must be newer than the stored one, or the next one)."""
        scheme_id = record.scheme_id
        if not accepts(self.mode, scheme_id) and not self.allow_insecure_baselines:
            raise InsecureSchemeError(
                f"a {self.mode} store does not hold {scheme_id!r} records (baselines, which leak the face, "
                "only in forensics simulations with allow_insecure_baselines=True)"
            )
        record_bytes = record.to_bytes()
        path = self.users_dir / _user_file_name(name)
        with self.locked():
            following = self.next_generation(name)
            if generation is None:
                generation = following
            elif generation < following:
                raise StoreError(f"generation {generation} of {name!r} is not newer than the stored {following - 1}")
            enrolled_at = int(time.time() if now is None else now)
            write_atomic(path, encode_user(name, scheme_id, record_bytes, generation, enrolled_at))
        return StoredUser(name, scheme_id, record_bytes, generation, enrolled_at, path)

    def delete(self, name: str) -> None:
        path = self.users_dir / _user_file_name(name)
        with self.locked():
            try:
                remove_durably(path)
            except FileNotFoundError:
                raise UnknownUserError(f"no user named {name!r} is enrolled in {self.path}") from None
