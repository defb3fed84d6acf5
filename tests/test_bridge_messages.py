"""Messages: every v2 type round-trips, and malformed payloads and unknown types are rejected clearly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.errors import MessageError, ProtocolError, UnknownMessageError


def _utf8(max_bytes: int, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(min_size=min_size, max_size=max_bytes).filter(lambda s: min_size <= len(s.encode("utf-8")) <= max_bytes)


def _bytes(size: int, low: int | None = None) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size if low is None else low, max_size=size)


users = _utf8(m.MAX_USER)
flags = st.booleans()
u8, u16, u32, u64 = (st.integers(0, 2**bits - 1) for bits in (8, 16, 32, 64))

STRATEGIES: dict[type[m.Message], st.SearchStrategy[m.Message]] = {
    m.Hello: st.builds(m.Hello),
    m.Status: st.builds(m.Status),
    m.SetPasscode: st.builds(m.SetPasscode, _utf8(m.MAX_PASSCODE, 0), _utf8(m.MAX_PASSCODE)),
    m.Passcode: st.builds(m.Passcode, _utf8(m.MAX_PASSCODE)),
    m.LatticeChunk: st.builds(m.LatticeChunk, u32, _bytes(m.MAX_CHUNK, 1)),
    m.LatticeCommit: st.builds(m.LatticeCommit, _utf8(m.MAX_SET_NAME), _bytes(32), u64, u64, u64, u32, _bytes(32)),
    m.OpenSession: st.builds(m.OpenSession, u8, u8, u8, u32, _bytes(m.MAX_MESSAGE, 0)),
    m.LoadRecord: st.builds(m.LoadRecord, users, u32, _bytes(m.MAX_SEALED, 1)),
    m.Probe: st.builds(m.Probe, _bytes(m.MAX_VECTOR, 1)),
    m.EnrollFace: st.builds(m.EnrollFace, users, u32, u64, u64, _bytes(m.MAX_VECTOR, 1)),
    m.CommitUser: st.builds(m.CommitUser, users, u32, st.binary(min_size=32, max_size=32)),
    m.AbortUser: st.builds(m.AbortUser, users),
    m.RemoveUser: st.builds(m.RemoveUser, users),
    m.ListUsers: st.builds(m.ListUsers, u8),
    m.CloseSession: st.builds(m.CloseSession),
    m.Version: st.builds(m.Version, u8, _utf8(m.MAX_FIRMWARE), _bytes(16), flags, u16, flags, _bytes(32)),
    m.StatusReport: st.builds(m.StatusReport, flags, u16, u16, u8, u32, flags, u16, u32, u16, u32, u32, flags),
    m.PasscodeSet: st.builds(m.PasscodeSet),
    m.PasscodeOk: st.builds(m.PasscodeOk, flags),
    m.ChunkOk: st.builds(m.ChunkOk, u32),
    m.LatticeReady: st.builds(m.LatticeReady, _bytes(32)),
    m.Session: st.builds(m.Session, _bytes(32), u8, u32),
    m.RecordLoaded: st.builds(m.RecordLoaded, users),
    m.VerdictMessage: st.builds(m.VerdictMessage, u8, _utf8(m.MAX_USER, 0), _bytes(32), _bytes(64), u8),
    m.FaceEnrolled: st.builds(m.FaceEnrolled, users, u32, _bytes(m.MAX_SEALED, 1), _bytes(32)),
    m.UserCommitted: st.builds(m.UserCommitted, users, u32),
    m.UserAborted: st.builds(m.UserAborted, users),
    m.Removed: st.builds(m.Removed, users),
    m.UserList: st.builds(m.UserList, u8, _bytes(m.MAX_LISTING, 0)),
    m.SessionClosed: st.builds(m.SessionClosed),
    m.Error: st.builds(m.Error, u8, u32, _utf8(m.MAX_DETAIL, 0)),
}
MESSAGES = st.one_of(*STRATEGIES.values())


def test_the_strategy_covers_every_message_type() -> None:
    assert set(STRATEGIES) == set(m.MESSAGE_TYPES.values())


@given(MESSAGES)
def test_encode_decode_round_trip(message: m.Message) -> None:
    payload = message.encode_payload()
    assert m.decode_message(message.TYPE, payload) == message


@given(MESSAGES, st.data())
def test_truncated_or_extended_payloads_are_rejected(message: m.Message, data: st.DataObject) -> None:
    payload = message.encode_payload()
    with pytest.raises(MessageError, match="trailing"):
        m.decode_message(message.TYPE, payload + data.draw(st.binary(min_size=1, max_size=8)))
    if payload:
        cut = data.draw(st.integers(0, len(payload) - 1))
        with pytest.raises(MessageError):
            m.decode_message(message.TYPE, payload[:cut])


def largest_payload(cls: type[m.Message]) -> int:
    """The longest payload the message's layout allows."""
    size = {m._Uint: lambda f: f.bits // 8, m._Flag: lambda f: 1, m._Fixed: lambda f: f.size,
            m._Text: lambda f: 1 + f.limit, m._Blob: lambda f: 2 + f.limit}
    return sum(size[type(field)](field) for field in cls.LAYOUT)


def test_every_payload_fits_a_frame() -> None:
    from latticelock.firmware_bridge.framing import MAX_PAYLOAD

    sizes = {cls.__name__: largest_payload(cls) for cls in m.MESSAGE_TYPES.values()}
    assert max(sizes.values()) <= MAX_PAYLOAD, sizes
    assert sizes["LatticeChunk"] == 4 + 2 + m.MAX_CHUNK


def test_every_request_has_its_response_type() -> None:
    assert len(m.RESPONSE_FOR) == 15
    for request, response in m.RESPONSE_FOR.items():
        assert response.TYPE == request.TYPE | 0x80


@pytest.mark.parametrize("msg_type", [0x00, 0x10, 0x7E, 0x80, 0x90, 0xFF])
def test_unknown_types_are_rejected(msg_type: int) -> None:
    with pytest.raises(UnknownMessageError, match=f"unknown message type 0x{msg_type:02x}"):
        m.decode_message(msg_type, b"")


def test_unknown_type_is_a_protocol_error() -> None:
    assert issubclass(UnknownMessageError, ProtocolError)


@pytest.mark.parametrize(
    "msg_type, payload, reason",
    [
        (m.LoadRecord.TYPE, b"\x00" + bytes(4) + b"\x00\x01x", "user name"),
        (m.LoadRecord.TYPE, b"\x01\xff" + bytes(4) + b"\x00\x01x", "UTF-8"),
        (m.LoadRecord.TYPE, b"\x03ann" + bytes(4) + b"\x00\x05abc", "truncated"),
        (m.LoadRecord.TYPE, b"\x03ann" + bytes(4) + b"\x00\x00", "sealed helper data"),
        (m.LoadRecord.TYPE, b"\x03ann" + bytes(4) + b"\x02\x01" + bytes(513), "sealed helper data"),
        (m.Probe.TYPE, b"\x00\x00", "probe vector"),
        (m.Probe.TYPE, b"\x00\x82" + bytes(130), "probe vector"),
        (m.OpenSession.TYPE, b"\x01\x02\x03" + bytes(4) + b"\x02\x01" + bytes(513), "message to sign"),
        (m.PasscodeOk.TYPE, b"\x02", "boolean"),
        (m.LatticeCommit.TYPE, b"\x01x" + bytes(31), "truncated"),
        (m.Hello.TYPE, b"\x00", "trailing"),
        (m.Error.TYPE, b"\x08\x00\x00", "truncated"),
    ],
)
def test_malformed_payloads_are_rejected(msg_type: int, payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        m.decode_message(msg_type, payload)


@pytest.mark.parametrize(
    "build",
    [
        lambda: m.LoadRecord("", 1, b"x"),
        lambda: m.LoadRecord("x" * 65, 1, b"x"),
        lambda: m.LoadRecord("ann", -1, b"x"),
        lambda: m.LoadRecord("ann", 1, b""),
        lambda: m.Probe(bytes(m.MAX_VECTOR + 1)),
        lambda: m.OpenSession(1, 256, 3),
        lambda: m.Passcode(""),
        lambda: m.SetPasscode("", "x" * 65),
        lambda: m.Session(bytes(31), 3, 1000),
        lambda: m.VerdictMessage(1, "ann", bytes(32), bytes(63), 0),
        lambda: m.Error(256),
        lambda: m.Version(2, "fw", bytes(16), 1, 100, False, bytes(32)),
    ],
)
def test_invalid_messages_cannot_be_built(build) -> None:
    with pytest.raises(MessageError):
        build()


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=64))
def test_vectors_round_trip_as_int16(values: list[int]) -> None:
    blob = m.encode_vector(values)
    assert len(blob) == 2 * len(values) and m.decode_vector(blob) == values


@pytest.mark.parametrize("values", [[32768], [-32769]])
def test_vectors_beyond_int16_cannot_be_encoded(values: list[int]) -> None:
    with pytest.raises(MessageError, match="int16"):
        m.encode_vector(values)


@given(st.lists(st.tuples(users, u32, u32), max_size=10))
def test_user_lists_round_trip(entries: list[tuple[str, int, int]]) -> None:
    assert m.decode_user_list(m.encode_user_list(entries)) == entries


def test_error_code_names() -> None:
    assert m.Error(m.ErrorCode.RECORDS_MISSING).code_name == "RECORDS_MISSING"
    assert m.Error(0xEE).code_name == "error 0xee"
