"""The link over pyserial's loop:// (what is written comes back): framing, timeouts, recovery."""

from __future__ import annotations

import pytest

from latticelock.firmware_bridge.client import McuClient, raise_for_error
from latticelock.firmware_bridge.errors import (
    ChecksumError,
    CollisionError,
    LinkError,
    LinkTimeoutError,
    LockedOutError,
    McuError,
    NotAuthorisedError,
    NotProvisioningError,
    OversizeFrameError,
    PasscodeRequiredError,
    ProtocolError,
    RejectedError,
    SessionError,
    UnknownMessageError,
    WrongPasscodeError,
)
from latticelock.firmware_bridge.framing import MAX_ENCODED, Frame, encode_frame
from latticelock.firmware_bridge.link import Link, open_link
from latticelock.firmware_bridge.messages import Error, ErrorCode, Hello, Status, decode_message
from latticelock.firmware_bridge.ports import open_pty


@pytest.fixture
def loop() -> Link:
    link = open_link("loop://", timeout=0.3)
    yield link
    link.close()


def test_send_and_receive_a_message(loop: Link) -> None:
    loop.send(Status(), seq=42)
    frame = loop.receive_frame()
    assert frame.seq == 42
    assert decode_message(frame.type, frame.payload) == Status()


def test_receive_times_out_and_the_link_stays_usable(loop: Link) -> None:
    with pytest.raises(LinkTimeoutError, match="no frame within"):
        loop.receive_frame(timeout=0.1)
    loop.send(Hello(), seq=1)
    assert loop.receive_frame().seq == 1


def test_bad_crc_is_reported_then_the_next_frame_is_read(loop: Link) -> None:
    corrupt = bytearray(encode_frame(Frame(Hello.TYPE, 5, b"")))
    corrupt[2] ^= 0x40
    loop.write(bytes(corrupt))
    loop.send(Status(), seq=6)
    with pytest.raises(ChecksumError):
        loop.receive_frame()
    assert loop.receive_frame().seq == 6


def test_garbage_and_oversize_runs_are_skipped(loop: Link) -> None:
    loop.write(b"\xaa" * (MAX_ENCODED + 50))
    loop.send(Status(), seq=7)
    with pytest.raises(OversizeFrameError):
        loop.receive_frame()
    assert loop.receive_frame().seq == 7


def test_request_over_loopback_returns_its_own_echo(loop: Link) -> None:
    # On loop:// the request itself comes back with its own sequence number: the request/answer
    # matching works without a peer.
    assert loop.request(Status()) == Status()


def test_request_skips_stale_answers_and_names_the_last_problem_on_timeout(loop: Link) -> None:
    loop.send(Status(), seq=loop._seq)  # not the number the next request will use
    assert loop.request(Hello()) == Hello()
    loop.write(b"\x00\x01\x02\x03\x00")
    loop.port.write = lambda data: len(data)  # the request vanishes on the wire
    with pytest.raises(LinkTimeoutError, match="no answer to Hello.*bad frame"):
        loop.request(Hello(), timeout=0.2)


def test_unknown_message_type_in_an_answer(loop: Link) -> None:
    loop.send_frame(Frame(0x6E, 9, b""))
    frame = loop.receive_frame()
    with pytest.raises(UnknownMessageError, match="0x6e"):
        decode_message(frame.type, frame.payload)


def test_open_link_reports_bad_urls() -> None:
    with pytest.raises(LinkError, match="cannot open"):
        open_link("nosuchscheme://x")
    with pytest.raises(LinkError, match="cannot open"):
        open_link("/dev/does-not-exist-latticelock")


def test_sequence_numbers_skip_zero(loop: Link) -> None:
    loop._seq = 0xFFFE
    assert [loop._next_seq() for _ in range(3)] == [0xFFFF, 1, 2]


def test_client_rejects_an_answer_of_the_wrong_type(loop: Link) -> None:
    # loop:// echoes each request back instead of its answer.
    client = McuClient(loop)
    with pytest.raises(ProtocolError, match="expected Version in answer to Hello, got Hello"):
        client.hello()
    with pytest.raises(ProtocolError, match="expected VerdictMessage in answer to Probe, got Probe"):
        client.probe([1, 2, 3])


# PROTOCOL.md section 3: the classes the host maps the refusals to; every other code is a plain McuError.
ERROR_CLASSES = {
    ErrorCode.REJECTED: RejectedError,
    ErrorCode.NO_SESSION: SessionError,
    ErrorCode.NOT_PROVISIONING: NotProvisioningError,
    ErrorCode.LOCKED_OUT: LockedOutError,
    ErrorCode.PASSCODE_REQUIRED: PasscodeRequiredError,
    ErrorCode.WRONG_PASSCODE: WrongPasscodeError,
    ErrorCode.NOT_AUTHORISED: NotAuthorisedError,
    ErrorCode.COLLISION: CollisionError,
}


@pytest.mark.parametrize("code", [*ErrorCode, 0xEE], ids=lambda c: getattr(c, "name", hex(c)))
def test_every_error_code_maps_to_its_exception(code: int) -> None:
    cls = ERROR_CLASSES.get(code, McuError)
    with pytest.raises(McuError) as info:
        raise_for_error(Error(code, 2500, "why"))
    assert type(info.value) is cls
    assert info.value.code == code and info.value.retry_after == 2.5
    assert "why" in str(info.value)


def test_a_lockout_says_when_to_retry() -> None:
    with pytest.raises(LockedOutError, match="LOCKED_OUT.*retry in 30 s"):
        raise_for_error(Error(ErrorCode.LOCKED_OUT, 30_000, "5 failed attempts"))


def test_a_peer_that_stops_reading_fails_the_write_instead_of_hanging() -> None:
    port, _ = open_pty(timeout=0.05)
    port.write_timeout = 0.2
    link = Link(port, timeout=0.3)
    try:
        with pytest.raises(LinkTimeoutError, match="stalled"):
            link.write(bytes(1 << 20))  # far more than a pty buffers, and nobody reads the other end
    finally:
        link.close()
