"""The stored record: a small, versioned, self-describing binary format with a checksum.

Layout (all integers little-endian):

    magic  b"LLRC"                       4 bytes
    format version                       u8   (this build writes and reads version 1)
    scheme id                            u8 length + ASCII   e.g. "l2fe-hash", "mrp"
    parameter-set id                     u8 length + ASCII   e.g. "l2fe-facenet-m32"
    field count                          u8
    per field: name                      u8 length + ASCII
               kind                      u8   0 = bytes, 1 = array
               (arrays) dtype code, ndim u8, u8, then ndim x u32 shape
               data length               u32, then the data
    checksum                             first 16 bytes of SHA-256 over everything before it

Every field is named and typed, so forensics tools can list a stolen record's contents without any
secret and without knowing the scheme. Readers check, in order: length, magic, version, checksum,
structure; each failure is a `RecordError` that says which.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from latticelock.kernels.errors import RecordError

MAGIC = b"LLRC"
FORMAT_VERSION = 1
CHECKSUM_BYTES = 16
_MIN_BYTES = len(MAGIC) + 1 + 1 + 1 + 1 + CHECKSUM_BYTES

_KIND_BYTES, _KIND_ARRAY = 0, 1
# Only fixed-size little-endian dtypes, so a record reads the same on every machine.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u4"),
    3: np.dtype("<i8"),
    4: np.dtype("<f4"),
    5: np.dtype("<f8"),
}
_DTYPE_CODES = {dt: code for code, dt in _DTYPES.items()}

FieldValue = bytes | np.ndarray


@dataclass(frozen=True)
class Record:
    """A scheme's stored data: which scheme and parameter set made it, and its named fields."""

    scheme_id: str
    parameter_set: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, text in (("scheme id", self.scheme_id), ("parameter-set id", self.parameter_set)):
            _check_name(label, text)
        frozen: dict[str, FieldValue] = {}
        for name, value in self.fields.items():
            _check_name("field name", name)
            if isinstance(value, (bytes, bytearray)):
                frozen[name] = bytes(value)
            elif isinstance(value, np.ndarray):
                dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
                if np.dtype(dtype).str not in {d.str for d in _DTYPES.values()}:
                    raise RecordError(f"field {name!r}: dtype {value.dtype} cannot be stored")
                array = np.ascontiguousarray(value, dtype=np.dtype(dtype).newbyteorder("<"))
                array.setflags(write=False)
                frozen[name] = array
            else:
                raise RecordError(f"field {name!r}: expected bytes or a numpy array, got {type(value).__name__}")
        if len(frozen) > 255:
            raise RecordError("a record holds at most 255 fields")
        object.__setattr__(self, "fields", MappingProxyType(frozen))

    def __getitem__(self, name: str) -> FieldValue:
        try:
            return self.fields[name]
        except KeyError:
            raise RecordError(f"{self.scheme_id} record has no field {name!r}") from None

    def expect(self, scheme_id: str, parameter_set: str | None = None, field_names: tuple[str, ...] | None = None) -> None:
        """Raise RecordError unless this record was made by `scheme_id` (and `parameter_set`) with exactly these fields."""
        if self.scheme_id != scheme_id:
            raise RecordError(f"record was made by scheme {self.scheme_id!r}, not {scheme_id!r}")
        if parameter_set is not None and self.parameter_set != parameter_set:
            raise RecordError(
                f"record is for parameter set {self.parameter_set!r}, but this scheme uses {parameter_set!r}"
            )
        if field_names is not None and tuple(sorted(self.fields)) != tuple(sorted(field_names)):
            raise RecordError(
                f"{scheme_id} record has fields {sorted(self.fields)}, expected exactly {sorted(field_names)}"
            )

    def describe(self) -> dict:
        """What a thief sees without any secret: scheme, parameter set, and each field's type and size."""
        described = {}
        for name, value in self.fields.items():
            if isinstance(value, bytes):
                described[name] = {"kind": "bytes", "bytes": len(value)}
            else:
                described[name] = {"kind": "array", "dtype": value.dtype.str, "shape": list(value.shape), "bytes": value.nbytes}
        return {"scheme": self.scheme_id, "parameter_set": self.parameter_set, "fields": described}

    def to_bytes(self) -> bytes:
        out = bytearray(MAGIC)
        out.append(FORMAT_VERSION)
        for text in (self.scheme_id, self.parameter_set):
            out += _pack_name(text)
        out.append(len(self.fields))
        for name, value in self.fields.items():
            out += _pack_name(name)
            if isinstance(value, bytes):
                out.append(_KIND_BYTES)
                data = value
            else:
                out.append(_KIND_ARRAY)
                out.append(_DTYPE_CODES[value.dtype])
                out.append(value.ndim)
                out += struct.pack(f"<{value.ndim}I", *value.shape)
                data = value.tobytes()
            out += struct.pack("<I", len(data))
            out += data
        out += hashlib.sha256(out).digest()[:CHECKSUM_BYTES]
        return bytes(out)


def parse_record(data: bytes) -> Record:
    """Parse and check a stored record; raises RecordError saying what is wrong with it."""
    data = bytes(data)
    if len(data) < _MIN_BYTES:
        raise RecordError(f"record truncated: {len(data)} bytes, a record has at least {_MIN_BYTES}")
    if data[:4] != MAGIC:
        raise RecordError(f"not a LatticeLock record: magic {data[:4]!r}, expected {MAGIC!r}")
    version = data[4]
    if version > FORMAT_VERSION:
        raise RecordError(f"record format version {version} is newer than this build reads (up to {FORMAT_VERSION})")
    if version < 1:
        raise RecordError(f"record format version {version} does not exist")
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if hashlib.sha256(body).digest()[:CHECKSUM_BYTES] != checksum:
        raise RecordError("record checksum mismatch: the record is corrupt or truncated")
    reader = _Reader(body, 5)
    scheme_id = reader.name("scheme id")
    parameter_set = reader.name("parameter-set id")
    fields: dict[str, FieldValue] = {}
    for _ in range(reader.take(1, "field count")[0]):
        name = reader.name("field name")
        if name in fields:
            raise RecordError(f"record repeats field {name!r}")
        kind = reader.take(1, f"field {name!r} kind")[0]
        if kind == _KIND_BYTES:
            (length,) = struct.unpack("<I", reader.take(4, f"field {name!r} length"))
            fields[name] = reader.take(length, f"field {name!r} data")
        elif kind == _KIND_ARRAY:
            code, ndim = reader.take(2, f"field {name!r} dtype")
            if code not in _DTYPES:
                raise RecordError(f"field {name!r} has unknown dtype code {code}")
            shape = struct.unpack(f"<{ndim}I", reader.take(4 * ndim, f"field {name!r} shape"))
            (length,) = struct.unpack("<I", reader.take(4, f"field {name!r} length"))
            dtype = _DTYPES[code]
            if length != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise RecordError(f"field {name!r}: {length} bytes do not hold a {dtype} array of shape {shape}")
            fields[name] = np.frombuffer(reader.take(length, f"field {name!r} data"), dtype=dtype).reshape(shape)
        else:
            raise RecordError(f"field {name!r} has unknown kind {kind}")
    if reader.offset != len(body):
        raise RecordError(f"record has {len(body) - reader.offset} unexpected trailing bytes")
    return Record(scheme_id, parameter_set, fields)


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, count: int, what: str) -> bytes:
        if self.offset + count > len(self.data):
            raise RecordError(f"record truncated while reading {what}")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def name(self, what: str) -> str:
        raw = self.take(self.take(1, what)[0], what)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise RecordError(f"record {what} is not ASCII: {raw!r}") from None
        _check_name(what, text)
        return text


def _check_name(label: str, text: str) -> None:
    if not text or len(text) > 255 or not text.isascii() or not text.isprintable():
        raise RecordError(f"invalid {label} {text!r}: 1 to 255 printable ASCII characters")


def _pack_name(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes([len(raw)]) + raw
