"""The protocol's messages as typed dataclasses, with strict encoding and decoding of their payloads.

Each request type has a response type with the high bit set (HELLO 0x01 -> VERSION 0x81, ...);
ERROR (0x7F) may answer any request. Fields are checked when a message is built, so an invalid
message can be neither sent nor received; decoding rejects short, long (trailing bytes) and
out-of-range payloads and unknown types with a MessageError. Layout of every payload: PROTOCOL.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from latticelock.firmware_bridge.errors import MessageError, UnknownMessageError

NONCE_SIZE = 32
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
MAC_SIZE = 32
DEVICE_ID_SIZE = 16
MAX_USER = 64
MAX_FIRMWARE = 32
MAX_DETAIL = 128
MAX_MAC_DATA = 1024


class ErrorCode(IntEnum):
    BAD_FRAME = 0x01
    UNSUPPORTED_VERSION = 0x02
    UNKNOWN_TYPE = 0x03
    MALFORMED = 0x04
    UNEXPECTED = 0x05
    NOT_PROVISIONING = 0x06
    NO_CHALLENGE = 0x07
    REJECTED = 0x08
    LOCKED_OUT = 0x09
    UNKNOWN_USER = 0x0A
    STORAGE_FULL = 0x0B
    INTERNAL = 0x0C


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

    def flag(self) -> bool:
        value = self.uint(1)
        if value > 1:
            raise MessageError(f"{self.name} has a boolean field of {value}; expected 0 or 1")
        return bool(value)

    def text(self) -> str:
        raw = self.take(self.uint(1))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(f"{self.name} has a text field that is not valid UTF-8") from None

    def blob(self) -> bytes:
        return self.take(self.uint(2))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MessageError(f"{self.name} payload has {len(self.data) - self.pos} trailing bytes")


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes([len(raw)]) + raw


def _check_text(kind: str, value: str, limit: int, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise MessageError(f"{kind} must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise MessageError(f"{kind} is not encodable as UTF-8") from None
    if size > limit or (size == 0 and not allow_empty):
        raise MessageError(f"{kind} must be {'0' if allow_empty else '1'} to {limit} bytes of UTF-8, got {size}")


def _check_bytes(kind: str, value: bytes, size: int) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != size:
        raise MessageError(f"{kind} must be {size} bytes")


def _check_flag(kind: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise MessageError(f"{kind} must be a bool")


def _check_uint(kind: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise MessageError(f"{kind} must be an integer in [0, 2**{bits})")


class Message:
    """Base of every message: a type code, a payload encoder and a strict payload decoder."""

    TYPE: ClassVar[int]

    def encode_payload(self) -> bytes:
        return b""

    @classmethod
    def decode_payload(cls, payload: bytes) -> Message:
        _Reader(cls.__name__, payload).end()
        return cls()


class _UserMixin:
    def _check_user(self) -> None:
        _check_text("user name", self.user, MAX_USER)


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    TYPE: ClassVar[int] = 0x01


@dataclass(frozen=True)
class GetChallenge(Message):
    TYPE: ClassVar[int] = 0x02


@dataclass(frozen=True)
class Unlock(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x03
    user: str
    signature: bytes

    def __post_init__(self) -> None:
        self._check_user()
        _check_bytes("signature", self.signature, SIGNATURE_SIZE)

    def encode_payload(self) -> bytes:
        return _text(self.user) + bytes(self.signature)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Unlock:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text(), r.take(SIGNATURE_SIZE))
        r.end()
        return msg


@dataclass(frozen=True)
class EnrollPubkey(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x04
    user: str
    public_key: bytes

    def __post_init__(self) -> None:
        self._check_user()
        _check_bytes("public key", self.public_key, PUBLIC_KEY_SIZE)

    def encode_payload(self) -> bytes:
        return _text(self.user) + bytes(self.public_key)

    @classmethod
    def decode_payload(cls, payload: bytes) -> EnrollPubkey:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text(), r.take(PUBLIC_KEY_SIZE))
        r.end()
        return msg


@dataclass(frozen=True)
class RemoveUser(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x05
    user: str

    def __post_init__(self) -> None:
        self._check_user()

    def encode_payload(self) -> bytes:
        return _text(self.user)

    @classmethod
    def decode_payload(cls, payload: bytes) -> RemoveUser:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text())
        r.end()
        return msg


@dataclass(frozen=True)
class Status(Message):
    TYPE: ClassVar[int] = 0x06


@dataclass(frozen=True)
class PepperMac(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x07
    user: str
    data: bytes

    def __post_init__(self) -> None:
        self._check_user()
        if not isinstance(self.data, (bytes, bytearray)) or not 1 <= len(self.data) <= MAX_MAC_DATA:
            raise MessageError(f"MAC input must be 1 to {MAX_MAC_DATA} bytes")

    def encode_payload(self) -> bytes:
        return _text(self.user) + struct.pack(">H", len(self.data)) + bytes(self.data)

    @classmethod
    def decode_payload(cls, payload: bytes) -> PepperMac:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text(), r.blob())
        r.end()
        return msg


# --- responses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version(Message):
    TYPE: ClassVar[int] = 0x81
    protocol: int
    firmware: str
    device_id: bytes
    provisioning: bool
    max_payload: int

    def __post_init__(self) -> None:
        _check_uint("protocol version", self.protocol, 8)
        _check_text("firmware name", self.firmware, MAX_FIRMWARE)
        _check_bytes("device id", self.device_id, DEVICE_ID_SIZE)
        _check_flag("provisioning flag", self.provisioning)
        _check_uint("max payload", self.max_payload, 16)

    def encode_payload(self) -> bytes:
        return (
            bytes([self.protocol])
            + _text(self.firmware)
            + bytes(self.device_id)
            + bytes([int(self.provisioning)])
            + struct.pack(">H", self.max_payload)
        )

    @classmethod
    def decode_payload(cls, payload: bytes) -> Version:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.uint(1), r.text(), r.take(DEVICE_ID_SIZE), r.flag(), r.uint(2))
        r.end()
        return msg


@dataclass(frozen=True)
class Challenge(Message):
    TYPE: ClassVar[int] = 0x82
    nonce: bytes
    ttl_ms: int

    def __post_init__(self) -> None:
        _check_bytes("nonce", self.nonce, NONCE_SIZE)
        _check_uint("challenge lifetime", self.ttl_ms, 32)

    def encode_payload(self) -> bytes:
        return bytes(self.nonce) + struct.pack(">I", self.ttl_ms)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Challenge:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.take(NONCE_SIZE), r.uint(4))
        r.end()
        return msg


@dataclass(frozen=True)
class Unlocked(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x83
    user: str

    def __post_init__(self) -> None:
        self._check_user()

    def encode_payload(self) -> bytes:
        return _text(self.user)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Unlocked:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text())
        r.end()
        return msg


@dataclass(frozen=True)
class Enrolled(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x84
    user: str
    replaced: bool

    def __post_init__(self) -> None:
        self._check_user()
        _check_flag("replaced flag", self.replaced)

    def encode_payload(self) -> bytes:
        return _text(self.user) + bytes([int(self.replaced)])

    @classmethod
    def decode_payload(cls, payload: bytes) -> Enrolled:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text(), r.flag())
        r.end()
        return msg


@dataclass(frozen=True)
class Removed(Message, _UserMixin):
    TYPE: ClassVar[int] = 0x85
    user: str

    def __post_init__(self) -> None:
        self._check_user()

    def encode_payload(self) -> bytes:
        return _text(self.user)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Removed:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.text())
        r.end()
        return msg


@dataclass(frozen=True)
class StatusReport(Message):
    TYPE: ClassVar[int] = 0x86
    provisioning: bool
    users: int
    failures: int
    max_failures: int
    lockout_remaining_ms: int
    lockouts: int
    unlocks: int

    _FIELDS: ClassVar[struct.Struct] = struct.Struct(">?HHBIII")

    def __post_init__(self) -> None:
        _check_flag("provisioning flag", self.provisioning)
        _check_uint("user count", self.users, 16)
        _check_uint("failure count", self.failures, 16)
        _check_uint("failure limit", self.max_failures, 8)
        _check_uint("lockout remaining", self.lockout_remaining_ms, 32)
        _check_uint("lockout count", self.lockouts, 32)
        _check_uint("unlock count", self.unlocks, 32)

    def encode_payload(self) -> bytes:
        return self._FIELDS.pack(
            self.provisioning,
            self.users,
            self.failures,
            self.max_failures,
            self.lockout_remaining_ms,
            self.lockouts,
            self.unlocks,
        )

    @classmethod
    def decode_payload(cls, payload: bytes) -> StatusReport:
        r = _Reader(cls.__name__, payload)
        provisioning = r.flag()
        msg = cls(provisioning, r.uint(2), r.uint(2), r.uint(1), r.uint(4), r.uint(4), r.uint(4))
        r.end()
        return msg


@dataclass(frozen=True)
class Mac(Message):
    TYPE: ClassVar[int] = 0x87
    mac: bytes

    def __post_init__(self) -> None:
        _check_bytes("MAC", self.mac, MAC_SIZE)

    def encode_payload(self) -> bytes:
        return bytes(self.mac)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Mac:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.take(MAC_SIZE))
        r.end()
        return msg


@dataclass(frozen=True)
class Error(Message):
    TYPE: ClassVar[int] = 0x7F
    code: int
    retry_after_ms: int = 0
    detail: str = ""

    def __post_init__(self) -> None:
        _check_uint("error code", self.code, 8)
        _check_uint("retry delay", self.retry_after_ms, 32)
        _check_text("error detail", self.detail, MAX_DETAIL, allow_empty=True)

    def encode_payload(self) -> bytes:
        return bytes([self.code]) + struct.pack(">I", self.retry_after_ms) + _text(self.detail)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Error:
        r = _Reader(cls.__name__, payload)
        msg = cls(r.uint(1), r.uint(4), r.text())
        r.end()
        return msg

    @property
    def code_name(self) -> str:
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"error 0x{self.code:02x}"


REQUESTS: tuple[type[Message], ...] = (Hello, GetChallenge, Unlock, EnrollPubkey, RemoveUser, Status, PepperMac)
RESPONSES: tuple[type[Message], ...] = (Version, Challenge, Unlocked, Enrolled, Removed, StatusReport, Mac, Error)
MESSAGE_TYPES: dict[int, type[Message]] = {cls.TYPE: cls for cls in REQUESTS + RESPONSES}
# The answer each request expects (ERROR aside).
RESPONSE_FOR: dict[type[Message], type[Message]] = dict(zip(REQUESTS, RESPONSES[:-1]))


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
