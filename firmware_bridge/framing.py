"""Frames on the serial line: COBS, CRC-32, length limits and the protocol version.

A frame body is

    version u8 | type u8 | seq u16 | payload (0..MAX_PAYLOAD bytes) | crc32 u32

(integers big-endian; the CRC is zlib's CRC-32 over everything before it). The body is COBS-encoded,
so it contains no 0x00 byte, and written between two 0x00 delimiters. The leading delimiter ends any
partial frame that line noise left in the receiver's buffer, so every intact frame is read even
right after garbage; empty frames (two delimiters in a row) are ignored.

This module knows nothing about message types: `FrameDecoder` turns a byte stream into `Frame`s and
reports each bad frame as a `FrameError` after discarding it, which is how the link resynchronises.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from cobs import cobs

from latticelock.firmware_bridge.errors import ChecksumError, FrameError, OversizeFrameError, VersionError

PROTOCOL_VERSION = 2
DELIMITER = 0x00
HEADER = struct.Struct(">BBH")
CRC = struct.Struct(">I")
MAX_PAYLOAD = 1200
MIN_BODY = HEADER.size + CRC.size
MAX_BODY = MIN_BODY + MAX_PAYLOAD


def cobs_max_encoded_len(size: int) -> int:
    """An upper bound on the COBS encoding of `size` bytes: one code byte per 254 data bytes, plus one.

    It also covers the encoder this module used before the `cobs` package, which added a redundant
    final code byte after a trailing run of 254 non-zero bytes; the receiver accepts both forms.
    """
    return size + size // 254 + 1


# The largest run of bytes between two delimiters that can hold a legal frame.
MAX_ENCODED = cobs_max_encoded_len(MAX_BODY)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (the `cobs` package): no zero byte, at most `cobs_max_encoded_len` long."""
    return cobs.encode(bytes(data))


def cobs_decode(data: bytes) -> bytes:
    """Inverse of `cobs_encode`; raises FrameError on a zero byte or a block that runs past the end."""
    try:
        return cobs.decode(bytes(data))
    except cobs.DecodeError as exc:
        raise FrameError(f"bad COBS encoding: {exc}") from None


@dataclass(frozen=True)
class Frame:
    """One decoded frame: message type, sequence number (0 = not tied to a request) and raw payload."""

    type: int
    seq: int
    payload: bytes
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise FrameError(f"message type {self.type} does not fit in a byte")
        if not 0 <= self.seq <= 0xFFFF:
            raise FrameError(f"sequence number {self.seq} does not fit in 16 bits")
        if not 0 <= self.version <= 0xFF:
            raise FrameError(f"protocol version {self.version} does not fit in a byte")
        if len(self.payload) > MAX_PAYLOAD:
            raise OversizeFrameError(f"payload of {len(self.payload)} bytes exceeds the limit of {MAX_PAYLOAD}")


def encode_body(frame: Frame) -> bytes:
    """The frame body with its CRC-32, before COBS."""
    body = HEADER.pack(frame.version, frame.type, frame.seq) + bytes(frame.payload)
    return body + CRC.pack(zlib.crc32(body))


def encode_frame(frame: Frame) -> bytes:
    """The bytes to write on the line: delimiter, COBS(body), delimiter."""
    return b"\x00" + cobs_encode(encode_body(frame)) + b"\x00"


def decode_body(body: bytes) -> Frame:
    """Check a frame body (after COBS) and split it; the CRC is checked before the version."""
    if len(body) < MIN_BODY:
        raise FrameError(f"frame of {len(body)} bytes is shorter than the minimum of {MIN_BODY}")
    if len(body) > MAX_BODY:
        raise OversizeFrameError(f"frame of {len(body)} bytes exceeds the limit of {MAX_BODY}")
    content, (crc,) = body[: -CRC.size], CRC.unpack(body[-CRC.size :])
    if zlib.crc32(content) != crc:
        raise ChecksumError("frame CRC-32 mismatch")
    version, msg_type, seq = HEADER.unpack(content[: HEADER.size])
    if version != PROTOCOL_VERSION:
        raise VersionError(
            f"frame uses protocol version {version}; this side speaks version {PROTOCOL_VERSION}", seq=seq
        )
    return Frame(msg_type, seq, bytes(content[HEADER.size :]), version)


class FrameDecoder:
    """Turns a byte stream into frames: feed bytes in, pull frames out with `next_frame`.

    A bad frame is discarded and reported by raising FrameError from `next_frame`; the decoder stays
    usable, so the caller just calls `next_frame` again (that is the resynchronisation). A run of
    bytes longer than MAX_ENCODED without a delimiter is dropped as it arrives (memory stays bounded)
    and reported once; the rest of that run, up to the next delimiter, is skipped silently.
    """

    def __init__(self, max_encoded: int = MAX_ENCODED) -> None:
        self.max_encoded = max_encoded
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        """Append received bytes; frames are taken out by `next_frame`."""
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, None when more bytes are needed; raises FrameError for a bad one."""
        while True:
            end = self._buffer.find(DELIMITER)
            if end < 0:
                if len(self._buffer) > self.max_encoded:
                    self._buffer.clear()
                    if not self._discarding:
                        self._discarding = True
                        raise OversizeFrameError(
                            f"more than {self.max_encoded} bytes without a frame delimiter; discarded"
                        )
                return None
            encoded = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if not encoded:
                continue
            if len(encoded) > self.max_encoded:
                raise OversizeFrameError(
                    f"frame of {len(encoded)} encoded bytes exceeds the limit of {self.max_encoded}; discarded"
                )
            return decode_body(cobs_decode(encoded))
