"""The protocol's messages as typed dataclasses, with strict encoding and decoding of their payloads.

Each request type has a response type with the high bit set (HELLO 0x01 -> VERSION 0x81, ...);
ERROR (0x7F) may answer any request. Fields are checked when a message is built, so an invalid
message can be neither sent nor received; decoding rejects short, long (trailing bytes) and
out-of-range payloads and unknown types with a MessageError. Layout of every payload: PROTOCOL.md.

A message declares its payload once, as a `LAYOUT` of field codecs in wire order; the checks, the
encoder and the decoder all follow that one table, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from latticelock.firmware_bridge.errors import MessageError, UnknownMessageError

NONCE_SIZE = 32
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
DEVICE_ID_SIZE = 16
LATTICE_ID_SIZE = 32
SEED_SIZE = 32
DIGEST_SIZE = 32
MAX_USER = 64
MAX_FIRMWARE = 32
MAX_DETAIL = 128
MAX_PASSCODE = 64
MAX_SET_NAME = 32
MAX_CHUNK = 1024
MAX_SEALED = 512
MAX_VECTOR = 2 * 64
MAX_MESSAGE = 512
MAX_LISTING = 1024


class ErrorCode(IntEnum):
    BAD_FRAME = 0x01
    UNSUPPORTED_VERSION = 0x02
    UNKNOWN_TYPE = 0x03
    MALFORMED = 0x04
    UNEXPECTED = 0x05
    NOT_PROVISIONING = 0x06
    NO_SESSION = 0x07
    REJECTED = 0x08
    LOCKED_OUT = 0x09
    UNKNOWN_USER = 0x0A
    STORAGE_FULL = 0x0B
    INTERNAL = 0x0C
    PASSCODE_REQUIRED = 0x0D
    WRONG_PASSCODE = 0x0E
    NOT_AUTHORISED = 0x0F
    NO_LATTICE = 0x10
    COLLISION = 0x11
    LIMIT = 0x12
    RECORDS_MISSING = 0x13


class Purpose(IntEnum):
    """What a session is for; the first three are counted face attempts."""

    UNLOCK = 1
    WALLET_ADDRESS = 2
    WALLET_SIGN = 3
    ENROL = 4


class Outcome(IntEnum):
    PENDING = 0
    ACCEPT = 1
    REJECT = 2


class _Reader:
    """Reads fields off a payload; every short read and every trailing byte is a MessageError."""

    def __init__(self, name: str, payload: bytes) -> None:
        self.name = name
        self.data = bytes(payload)
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise MessageError(f"{self.name} payload is truncated ({len(self.data)} bytes)")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MessageError(f"{self.name} payload has {len(self.data) - self.pos} trailing bytes")


# --- field codecs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field(ABC):
    """One payload field: `attr` names the dataclass field, `kind` names it in error messages."""

    attr: str
    kind: str

    @abstractmethod
    def check(self, value: Any) -> None:
        """Raise MessageError unless `value` fits the field."""

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """The field's bytes; `value` has passed `check`."""

    @abstractmethod
    def decode(self, reader: _Reader) -> Any:
        """The field read off `reader` (checked afterwards, when the message is built)."""


@dataclass(frozen=True)
class _Uint(_Field):
    """Unsigned big-endian integer of `bits` bits."""

    bits: int

    def check(self, value: Any) -> None:
        if not isinstance(value, int) or not 0 <= value < 1 << self.bits:
            raise MessageError(f"{self.kind} must be an integer in [0, 2**{self.bits})")

    def encode(self, value: int) -> bytes:
        return value.to_bytes(self.bits // 8, "big")

    def decode(self, reader: _Reader) -> int:
        return reader.uint(self.bits // 8)


@dataclass(frozen=True)
class _Flag(_Field):
    """One byte, 0 or 1; any other value is malformed rather than read as true."""

    def check(self, value: Any) -> None:
        if not isinstance(value, bool):
            raise MessageError(f"{self.kind} must be a bool")

    def encode(self, value: bool) -> bytes:
        return bytes([int(value)])

    def decode(self, reader: _Reader) -> bool:
        value = reader.uint(1)
        if value > 1:
            raise MessageError(f"{reader.name} has a boolean field of {value}; expected 0 or 1")
        return bool(value)


@dataclass(frozen=True)
class _Fixed(_Field):
    """Exactly `size` raw bytes (nonces, keys, signatures, MACs)."""

    size: int

    def check(self, value: Any) -> None:
        if not isinstance(value, (bytes, bytearray)) or len(value) != self.size:
            raise MessageError(f"{self.kind} must be {self.size} bytes")

    def encode(self, value: bytes) -> bytes:
        return bytes(value)

    def decode(self, reader: _Reader) -> bytes:
        return reader.take(self.size)


@dataclass(frozen=True)
class _Text(_Field):
    """UTF-8 text behind a u8 byte count, at most `limit` bytes (and not empty unless `allow_empty`)."""

    limit: int
    allow_empty: bool = False

    def check(self, value: Any) -> None:
        if not isinstance(value, str):
            raise MessageError(f"{self.kind} must be a string")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise MessageError(f"{self.kind} is not encodable as UTF-8") from None
        if size > self.limit or (size == 0 and not self.allow_empty):
            low = "0" if self.allow_empty else "1"
            raise MessageError(f"{self.kind} must be {low} to {self.limit} bytes of UTF-8, got {size}")

    def encode(self, value: str) -> bytes:
        raw = value.encode("utf-8")
        return bytes([len(raw)]) + raw

    def decode(self, reader: _Reader) -> str:
        raw = reader.take(reader.uint(1))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(f"{reader.name} has a text field that is not valid UTF-8") from None


@dataclass(frozen=True)
class _Blob(_Field):
    """`low` to `limit` raw bytes behind a u16 byte count."""

    limit: int
    low: int = 1

    def check(self, value: Any) -> None:
        if not isinstance(value, (bytes, bytearray)) or not self.low <= len(value) <= self.limit:
            raise MessageError(f"{self.kind} must be {self.low} to {self.limit} bytes")

    def encode(self, value: bytes) -> bytes:
        return len(value).to_bytes(2, "big") + bytes(value)

    def decode(self, reader: _Reader) -> bytes:
        return reader.take(reader.uint(2))


_USER = _Text("user", "user name", MAX_USER)


class Message:
    """Base of every message: a type code and its payload `LAYOUT`, which drives checks and codec."""

    TYPE: ClassVar[int]
    LAYOUT: ClassVar[tuple[_Field, ...]] = ()

    def __post_init__(self) -> None:
        for field in self.LAYOUT:
            field.check(getattr(self, field.attr))

    def encode_payload(self) -> bytes:
        return b"".join(field.encode(getattr(self, field.attr)) for field in self.LAYOUT)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Message:
        reader = _Reader(cls.__name__, payload)
        message = cls(**{field.attr: field.decode(reader) for field in cls.LAYOUT})
        reader.end()
        return message


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    TYPE: ClassVar[int] = 0x01


@dataclass(frozen=True)
class Status(Message):
    TYPE: ClassVar[int] = 0x02


@dataclass(frozen=True)
class SetPasscode(Message):
    TYPE: ClassVar[int] = 0x03
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Text("current", "current passcode", MAX_PASSCODE, allow_empty=True),
        _Text("new", "new passcode", MAX_PASSCODE),
    )
    current: str
    new: str


@dataclass(frozen=True)
class Passcode(Message):
    TYPE: ClassVar[int] = 0x04
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Text("passcode", "passcode", MAX_PASSCODE),)
    passcode: str


@dataclass(frozen=True)
class LatticeChunk(Message):
    TYPE: ClassVar[int] = 0x05
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Uint("offset", "chunk offset", 32), _Blob("data", "chunk", MAX_CHUNK))
    offset: int
    data: bytes


@dataclass(frozen=True)
class LatticeCommit(Message):
    TYPE: ClassVar[int] = 0x06
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Text("parameter_set", "parameter set", MAX_SET_NAME),
        _Fixed("seed", "lattice seed", SEED_SIZE),
        _Uint("radius_sq", "largest radius squared", 64),
        _Uint("wallet_radius_sq", "wallet radius squared", 64),
        _Uint("min_probe_sq", "shortest probe squared", 64),
        _Uint("length", "tables length", 32),
        _Fixed("digest", "tables SHA-256", DIGEST_SIZE),
    )
    parameter_set: str
    seed: bytes
    radius_sq: int
    wallet_radius_sq: int
    min_probe_sq: int
    length: int
    digest: bytes


@dataclass(frozen=True)
class OpenSession(Message):
    TYPE: ClassVar[int] = 0x07
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Uint("purpose", "purpose", 8),
        _Uint("k", "matches needed", 8),
        _Uint("n", "probes allowed", 8),
        _Uint("account", "wallet account", 32),
        _Blob("message", "message to sign", MAX_MESSAGE, low=0),
    )
    purpose: int
    k: int
    n: int
    account: int = 0
    message: bytes = b""


@dataclass(frozen=True)
class LoadRecord(Message):
    TYPE: ClassVar[int] = 0x08
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER, _Uint("generation", "generation", 32), _Blob("sealed", "sealed helper data", MAX_SEALED))
    user: str
    generation: int
    sealed: bytes


@dataclass(frozen=True)
class Probe(Message):
    TYPE: ClassVar[int] = 0x09
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Blob("vector", "probe vector", MAX_VECTOR),)
    vector: bytes


@dataclass(frozen=True)
class EnrollFace(Message):
    TYPE: ClassVar[int] = 0x0A
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _USER,
        _Uint("generation", "generation", 32),
        _Uint("radius_sq", "unlock radius squared", 64),
        _Uint("wallet_radius_sq", "wallet radius squared", 64),
        _Blob("vector", "template vector", MAX_VECTOR),
    )
    user: str
    generation: int
    radius_sq: int
    wallet_radius_sq: int
    vector: bytes


@dataclass(frozen=True)
class CommitUser(Message):
    TYPE: ClassVar[int] = 0x0B
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER, _Uint("generation", "generation", 32), _Fixed("digest", "sealed blob SHA-256", DIGEST_SIZE))
    user: str
    generation: int
    digest: bytes


@dataclass(frozen=True)
class AbortUser(Message):
    TYPE: ClassVar[int] = 0x0C
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER,)
    user: str


@dataclass(frozen=True)
class RemoveUser(Message):
    TYPE: ClassVar[int] = 0x0D
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER,)
    user: str


@dataclass(frozen=True)
class ListUsers(Message):
    TYPE: ClassVar[int] = 0x0E
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Uint("start", "first entry", 8),)
    start: int = 0


@dataclass(frozen=True)
class CloseSession(Message):
    TYPE: ClassVar[int] = 0x0F


# --- responses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version(Message):
    TYPE: ClassVar[int] = 0x81
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Uint("protocol", "protocol version", 8),
        _Text("firmware", "firmware name", MAX_FIRMWARE),
        _Fixed("device_id", "device id", DEVICE_ID_SIZE),
        _Flag("provisioning", "provisioning flag"),
        _Uint("max_payload", "max payload", 16),
        _Flag("passcode_set", "passcode flag"),
        _Fixed("lattice_id", "lattice id", LATTICE_ID_SIZE),
    )
    protocol: int
    firmware: str
    device_id: bytes
    provisioning: bool
    max_payload: int
    passcode_set: bool
    lattice_id: bytes


@dataclass(frozen=True)
class StatusReport(Message):
    TYPE: ClassVar[int] = 0x82
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Flag("provisioning", "provisioning flag"),
        _Uint("users", "user count", 16),
        _Uint("failures", "failure count", 16),
        _Uint("max_failures", "failure limit", 8),
        _Uint("lockout_remaining_ms", "lockout remaining", 32),
        _Flag("passcode_required", "passcode-required flag"),
        _Uint("passcode_failures", "passcode failure count", 16),
        _Uint("passcode_lockout_ms", "passcode lockout remaining", 32),
        _Uint("attempts_left_today", "daily attempts left", 16),
        _Uint("lockouts", "lockout count", 32),
        _Uint("unlocks", "unlock count", 32),
        _Flag("admin", "administrator flag"),
    )
    provisioning: bool
    users: int
    failures: int
    max_failures: int
    lockout_remaining_ms: int
    passcode_required: bool
    passcode_failures: int
    passcode_lockout_ms: int
    attempts_left_today: int
    lockouts: int
    unlocks: int
    admin: bool


@dataclass(frozen=True)
class PasscodeSet(Message):
    TYPE: ClassVar[int] = 0x83


@dataclass(frozen=True)
class PasscodeOk(Message):
    TYPE: ClassVar[int] = 0x84
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Flag("admin", "administrator flag"),)
    admin: bool


@dataclass(frozen=True)
class ChunkOk(Message):
    TYPE: ClassVar[int] = 0x85
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Uint("received", "bytes received", 32),)
    received: int


@dataclass(frozen=True)
class LatticeReady(Message):
    TYPE: ClassVar[int] = 0x86
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Fixed("lattice_id", "lattice id", LATTICE_ID_SIZE),)
    lattice_id: bytes


@dataclass(frozen=True)
class Session(Message):
    TYPE: ClassVar[int] = 0x87
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Fixed("nonce", "session nonce", NONCE_SIZE),
        _Uint("max_probes", "probes allowed", 8),
        _Uint("ttl_ms", "session lifetime", 32),
    )
    nonce: bytes
    max_probes: int
    ttl_ms: int


@dataclass(frozen=True)
class RecordLoaded(Message):
    TYPE: ClassVar[int] = 0x88
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER,)
    user: str


@dataclass(frozen=True)
class VerdictMessage(Message):
    TYPE: ClassVar[int] = 0x89
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Uint("outcome", "outcome", 8),
        _Text("user", "user name", MAX_USER, allow_empty=True),
        _Fixed("public_key", "public key", PUBLIC_KEY_SIZE),
        _Fixed("signature", "signature", SIGNATURE_SIZE),
        _Uint("probes_left", "probes left", 8),
    )
    outcome: int
    user: str
    public_key: bytes
    signature: bytes
    probes_left: int


@dataclass(frozen=True)
class FaceEnrolled(Message):
    TYPE: ClassVar[int] = 0x8A
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _USER,
        _Uint("generation", "generation", 32),
        _Blob("sealed", "sealed helper data", MAX_SEALED),
        _Fixed("public_key", "unlock public key", PUBLIC_KEY_SIZE),
    )
    user: str
    generation: int
    sealed: bytes
    public_key: bytes


@dataclass(frozen=True)
class UserCommitted(Message):
    TYPE: ClassVar[int] = 0x8B
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER, _Uint("generation", "generation", 32))
    user: str
    generation: int


@dataclass(frozen=True)
class UserAborted(Message):
    TYPE: ClassVar[int] = 0x8C
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER,)
    user: str


@dataclass(frozen=True)
class Removed(Message):
    TYPE: ClassVar[int] = 0x8D
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_USER,)
    user: str


@dataclass(frozen=True)
class UserList(Message):
    TYPE: ClassVar[int] = 0x8E
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_Uint("total", "user count", 8), _Blob("entries", "user entries", MAX_LISTING, low=0))
    total: int
    entries: bytes


@dataclass(frozen=True)
class SessionClosed(Message):
    TYPE: ClassVar[int] = 0x8F


@dataclass(frozen=True)
class Error(Message):
    TYPE: ClassVar[int] = 0x7F
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _Uint("code", "error code", 8),
        _Uint("retry_after_ms", "retry delay", 32),
        _Text("detail", "error detail", MAX_DETAIL, allow_empty=True),
    )
    code: int
    retry_after_ms: int = 0
    detail: str = ""

    @property
    def code_name(self) -> str:
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"error 0x{self.code:02x}"


REQUESTS: tuple[type[Message], ...] = (
    Hello, Status, SetPasscode, Passcode, LatticeChunk, LatticeCommit, OpenSession, LoadRecord, Probe,
    EnrollFace, CommitUser, AbortUser, RemoveUser, ListUsers, CloseSession,
)
RESPONSES: tuple[type[Message], ...] = (
    Version, StatusReport, PasscodeSet, PasscodeOk, ChunkOk, LatticeReady, Session, RecordLoaded, VerdictMessage,
    FaceEnrolled, UserCommitted, UserAborted, Removed, UserList, SessionClosed, Error,
)
MESSAGE_TYPES: dict[int, type[Message]] = {cls.TYPE: cls for cls in REQUESTS + RESPONSES}
# The answer each request expects (ERROR aside).
RESPONSE_FOR: dict[type[Message], type[Message]] = dict(zip(REQUESTS, RESPONSES[:-1], strict=True))


def _check_layouts() -> None:
    # A layout that misses, repeats or misorders a dataclass field would encode a different payload
    # than PROTOCOL.md describes; refuse to import rather than speak it.
    for cls in MESSAGE_TYPES.values():
        declared = [f.name for f in dataclasses.fields(cls)]
        if [f.attr for f in cls.LAYOUT] != declared:
            raise TypeError(f"{cls.__name__}.LAYOUT {[f.attr for f in cls.LAYOUT]} does not match its fields {declared}")
    if len(MESSAGE_TYPES) != len(REQUESTS) + len(RESPONSES):
        raise TypeError("two message classes share a type code")
    for request, response in RESPONSE_FOR.items():
        if response.TYPE != request.TYPE | 0x80:
            raise TypeError(f"{response.__name__} does not answer {request.__name__}")


_check_layouts()


def clip_detail(text: str) -> str:
    """Shorten a human-readable detail so that it fits an ERROR message."""
    raw = text.encode("utf-8")[:MAX_DETAIL]
    return raw.decode("utf-8", errors="ignore")


def decode_message(msg_type: int, payload: bytes) -> Message:
    """The message of type `msg_type`; UnknownMessageError for a type the protocol does not define."""
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        raise UnknownMessageError(f"unknown message type 0x{msg_type:02x}")
    return cls.decode_payload(payload)


def encode_vector(values) -> bytes:
    """A probe or template vector on the wire: int16 big-endian per coordinate."""
    import struct

    try:
        return struct.pack(f">{len(values)}h", *(int(v) for v in values))
    except struct.error:
        raise MessageError("vector coordinates must fit int16") from None


def decode_vector(blob: bytes) -> list[int]:
    import struct

    if len(blob) % 2:
        raise MessageError("vector has an odd number of bytes")
    return list(struct.unpack(f">{len(blob) // 2}h", blob))


def encode_user_list(entries: list[tuple[str, int, int]]) -> bytes:
    """(name, active generation, pending generation) entries: u8 name length | name | u32 | u32 each."""
    out = bytearray()
    for name, active, pending in entries:
        raw = name.encode("utf-8")
        out += bytes([len(raw)]) + raw + active.to_bytes(4, "big") + pending.to_bytes(4, "big")
    return bytes(out)


def decode_user_list(blob: bytes) -> list[tuple[str, int, int]]:
    reader = _Reader("USERS", blob)
    entries = []
    while reader.pos < len(reader.data):
        raw = reader.take(reader.uint(1))
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError("user list has a name that is not UTF-8") from None
        entries.append((name, reader.uint(4), reader.uint(4)))
    return entries
