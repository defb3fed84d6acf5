"""Messages: every type round-trips, and malformed payloads and unknown types are rejected clearly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.errors import MessageError, ProtocolError, UnknownMessageError


def _utf8(max_bytes: int, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(min_size=min_size, max_size=max_bytes).filter(
        lambda s: min_size <= len(s.encode("utf-8")) <= max_bytes
    )


users = _utf8(m.MAX_USER)
u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)

STRATEGIES: dict[type[m.Message], st.SearchStrategy[m.Message]] = {
    m.Hello: st.builds(m.Hello),
    m.GetChallenge: st.builds(m.GetChallenge),
    m.Unlock: st.builds(m.Unlock, users, st.binary(min_size=64, max_size=64)),
    m.EnrollPubkey: st.builds(m.EnrollPubkey, users, st.binary(min_size=32, max_size=32)),
    m.RemoveUser: st.builds(m.RemoveUser, users),
    m.Status: st.builds(m.Status),
    m.PepperMac: st.builds(m.PepperMac, users, st.binary(min_size=1, max_size=m.MAX_MAC_DATA)),
    m.Version: st.builds(m.Version, u8, _utf8(m.MAX_FIRMWARE), st.binary(min_size=16, max_size=16), st.booleans(), u16),
    m.Challenge: st.builds(m.Challenge, st.binary(min_size=32, max_size=32), u32),
    m.Unlocked: st.builds(m.Unlocked, users),
    m.Enrolled: st.builds(m.Enrolled, users, st.booleans()),
    m.Removed: st.builds(m.Removed, users),
    m.StatusReport: st.builds(m.StatusReport, st.booleans(), u16, u16, u8, u32, u32, u32),
    m.Mac: st.builds(m.Mac, st.binary(min_size=32, max_size=32)),
    m.Error: st.builds(m.Error, u8, u32, _utf8(m.MAX_DETAIL, min_size=0)),
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


def test_every_request_has_its_response_type() -> None:
    for request, response in m.RESPONSE_FOR.items():
        assert response.TYPE == request.TYPE | 0x80


@pytest.mark.parametrize("msg_type", [0x00, 0x08, 0x80, 0x88, 0xFF])
def test_unknown_types_are_rejected(msg_type: int) -> None:
    with pytest.raises(UnknownMessageError, match=f"unknown message type 0x{msg_type:02x}"):
        m.decode_message(msg_type, b"")


def test_unknown_type_is_a_protocol_error() -> None:
    assert issubclass(UnknownMessageError, ProtocolError)


@pytest.mark.parametrize(
    "msg_type, payload, reason",
    [
        (m.Unlock.TYPE, b"\x00" + bytes(64), "user name"),
        (m.Unlock.TYPE, b"\x01\xff" + bytes(64), "UTF-8"),
        (m.Unlock.TYPE, b"\x05alice" + bytes(63), "truncated"),
        (m.Unlock.TYPE, bytes([65]) + b"a" * 65 + bytes(64), "user name"),
        (m.Enrolled.TYPE, b"\x05alice\x02", "boolean"),
        (m.PepperMac.TYPE, b"\x05alice\x00\x00", "MAC input"),
        (m.PepperMac.TYPE, b"\x05alice\x04\x01" + bytes(1025), "MAC input"),
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
        lambda: m.Unlock("", bytes(64)),
        lambda: m.Unlock("x" * 65, bytes(64)),
        lambda: m.Unlock("alice", bytes(63)),
        lambda: m.EnrollPubkey("alice", bytes(31)),
        lambda: m.PepperMac("alice", b""),
        lambda: m.Challenge(bytes(32), -1),
        lambda: m.Error(256),
        lambda: m.Version(1, "fw", bytes(16), 1, 100),
    ],
)
def test_invalid_messages_cannot_be_built(build) -> None:
    with pytest.raises(MessageError):
        build()


def test_error_code_names() -> None:
    assert m.Error(m.ErrorCode.LOCKED_OUT).code_name == "LOCKED_OUT"
    assert m.Error(0xEE).code_name == "error 0xee"
