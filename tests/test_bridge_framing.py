"""Framing: COBS, CRC-32, length limits, version, and the stream decoder's resynchronisation."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latticelock.firmware_bridge.errors import (
    ChecksumError,
    FrameError,
    OversizeFrameError,
    VersionError,
)
from latticelock.firmware_bridge.framing import (
    MAX_ENCODED,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    cobs_decode,
    cobs_encode,
    cobs_max_encoded_len,
    decode_body,
    encode_body,
    encode_frame,
)

# Examples from the COBS paper / Wikipedia's table (a trailing run of 254 non-zero bytes needs no
# final code byte).
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
]


@pytest.mark.parametrize("raw, encoded", COBS_VECTORS)
def test_cobs_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


def test_cobs_decodes_the_earlier_encoders_redundant_final_code_byte() -> None:
    # Before the `cobs` package, our encoder ended a trailing 254-byte run with an extra 0x01; frames
    # from such a peer must still decode (and fit MAX_ENCODED).
    assert cobs_decode(b"\xff" + bytes(range(1, 255)) + b"\x01") == bytes(range(1, 255))


@given(st.binary(max_size=2000))
def test_cobs_round_trip_for_all_byte_strings(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= cobs_max_encoded_len(len(data))
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x03\x11\x00", b"\x00"])
def test_cobs_rejects_bad_encodings(bad: bytes) -> None:
    with pytest.raises(FrameError, match="COBS"):
        cobs_decode(bad)


@given(
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=MAX_PAYLOAD),
)
def test_frame_round_trip(msg_type: int, seq: int, payload: bytes) -> None:
    frame = Frame(msg_type, seq, payload)
    wire = encode_frame(frame)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert len(wire) - 2 <= MAX_ENCODED
    decoder = FrameDecoder()
    decoder.feed(wire)
    assert decoder.next_frame() == frame
    assert decoder.next_frame() is None


def test_bad_crc_is_rejected() -> None:
    body = bytearray(encode_body(Frame(0x01, 7, b"hello")))
    body[5] ^= 0x01
    with pytest.raises(ChecksumError, match="CRC-32"):
        decode_body(bytes(body))


def test_foreign_version_is_rejected_with_its_sequence_number() -> None:
    content = bytes([PROTOCOL_VERSION + 1, 0x01, 0x12, 0x34])
    body = content + zlib.crc32(content).to_bytes(4, "big")
    with pytest.raises(VersionError, match="version 2") as info:
        decode_body(body)
    assert info.value.seq == 0x1234


def test_short_frames_are_rejected() -> None:
    with pytest.raises(FrameError, match="shorter"):
        decode_body(b"\x01\x01\x00")


def test_oversize_payload_cannot_be_built() -> None:
    with pytest.raises(OversizeFrameError):
        Frame(0x01, 1, bytes(MAX_PAYLOAD + 1))


def test_oversize_body_is_rejected() -> None:
    content = bytes([PROTOCOL_VERSION, 1, 0, 1]) + bytes(MAX_PAYLOAD + 1)
    with pytest.raises(OversizeFrameError):
        decode_body(content + zlib.crc32(content).to_bytes(4, "big"))


def drain(decoder: FrameDecoder) -> list[Frame | FrameError]:
    out: list[Frame | FrameError] = []
    while True:
        try:
            frame = decoder.next_frame()
        except FrameError as exc:
            out.append(exc)
            continue
        if frame is None:
            return out
        out.append(frame)


def test_decoder_resynchronises_after_garbage_and_bad_frames() -> None:
    good = Frame(0x02, 9, b"")
    corrupt = bytearray(encode_frame(Frame(0x01, 1, b"abc")))
    corrupt[3] ^= 0xFF
    decoder = FrameDecoder()
    decoder.feed(b"\x13\x37garbage" + bytes(corrupt) + encode_frame(good))
    items = drain(decoder)
    assert isinstance(items[0], FrameError)
    assert items[-1] == good
    assert all(isinstance(item, FrameError) for item in items[:-1])


def test_decoder_handles_byte_at_a_time_input() -> None:
    frames = [Frame(0x01, n, bytes([n]) * n) for n in range(1, 20)]
    decoder = FrameDecoder()
    received = []
    for byte in b"".join(encode_frame(f) for f in frames):
        decoder.feed(bytes([byte]))
        received += drain(decoder)
    assert received == frames


def test_oversize_run_is_discarded_once_and_memory_stays_bounded() -> None:
    decoder = FrameDecoder()
    good = Frame(0x06, 3, b"")
    errors = []
    for _ in range(20):
        decoder.feed(b"\x55" * 1000)
        errors += drain(decoder)
        assert len(decoder._buffer) <= MAX_ENCODED + 1000
    decoder.feed(encode_frame(good))
    items = errors + drain(decoder)
    assert len([e for e in items if isinstance(e, OversizeFrameError)]) == 1
    assert items[-1] == good


def test_oversize_frame_with_delimiter_is_rejected() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00" + b"\x55" * (MAX_ENCODED + 1) + b"\x00" + encode_frame(Frame(0x01, 1, b"")))
    items = drain(decoder)
    assert isinstance(items[0], OversizeFrameError)
    assert items[-1] == Frame(0x01, 1, b"")
