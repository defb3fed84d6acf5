"""End to end: the simulator in a thread, the client over a pty pair and over socket:// on localhost."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.client import McuClient
from latticelock.firmware_bridge.errors import (
    ChallengeError,
    LinkError,
    LinkTimeoutError,
    LockedOutError,
    NotProvisioningError,
    RejectedError,
)
from latticelock.firmware_bridge.framing import MAX_ENCODED, Frame, encode_frame
from latticelock.firmware_bridge.keys import sign_unlock, unlock_key
from latticelock.firmware_bridge.link import open_link
from latticelock.firmware_bridge.simulator import McuSimulator, run_simulator

FACE_KEY = bytes(range(100, 132))
TRANSPORTS = ["pty", "listen://127.0.0.1:0"]


class Bench:
    """A simulator on one state directory that can be restarted, in or out of provisioning mode."""

    def __init__(self, transport: str, state_dir: Path) -> None:
        self.transport = transport
        self.state_dir = state_dir
        self.sim: McuSimulator | None = None
        self.clients: list[McuClient] = []

    def client(self, provisioning: bool = False) -> McuClient:
        self.stop()
        self.sim = McuSimulator(self.transport, self.state_dir, provisioning=provisioning).start()
        client = McuClient(open_link(self.sim.address, timeout=2.0))
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


@pytest.fixture(params=TRANSPORTS, ids=["pty", "socket"])
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    bench = Bench(request.param, tmp_path)
    yield bench
    bench.stop()


def enrol(bench: Bench, user: str = "alice") -> McuClient:
    kiosk = bench.client(provisioning=True)
    assert kiosk.hello().provisioning
    kiosk.enroll_face_key(user, FACE_KEY)
    return bench.client()


def test_enrol_then_unlock(bench: Bench) -> None:
    mcu = enrol(bench)
    version = mcu.hello()
    assert (version.protocol, version.provisioning) == (1, False)
    mcu.unlock_with_face_key("alice", FACE_KEY)
    assert mcu.status()["unlocks"] == 1


def test_wrong_face_key_is_rejected(bench: Bench) -> None:
    mcu = enrol(bench)
    with pytest.raises(RejectedError, match="REJECTED"):
        mcu.unlock_with_face_key("alice", bytes(32))
    with pytest.raises(RejectedError):
        mcu.unlock_with_face_key("nobody", FACE_KEY)
    mcu.unlock_with_face_key("alice", FACE_KEY)


def test_replayed_signature_fails(bench: Bench) -> None:
    mcu = enrol(bench)
    nonce = mcu.get_challenge()
    signature = sign_unlock(unlock_key(FACE_KEY), nonce, "alice")
    mcu.unlock("alice", signature)
    with pytest.raises(ChallengeError, match="NO_CHALLENGE"):
        mcu.unlock("alice", signature)
    mcu.get_challenge()
    with pytest.raises(RejectedError):
        mcu.unlock("alice", signature)


def test_enrolment_outside_provisioning_mode_is_refused(bench: Bench) -> None:
    mcu = bench.client()
    with pytest.raises(NotProvisioningError, match="provisioning"):
        mcu.enroll_face_key("eve", FACE_KEY)
    assert mcu.status()["users"] == 0


def test_lockout_persists_across_simulator_restarts(bench: Bench) -> None:
    mcu = enrol(bench)
    macs = {mcu.pepper_mac("alice", bytes([i])) for i in range(5)}
    assert len(macs) == 5
    with pytest.raises(LockedOutError, match="retry in 30 s") as info:
        mcu.pepper_mac("alice", b"one more")
    assert info.value.retry_after == pytest.approx(30, abs=1)

    mcu = bench.client()
    with pytest.raises(LockedOutError):
        mcu.unlock_with_face_key("alice", FACE_KEY)
    status = mcu.status()
    assert (status["failures"], status["lockouts"]) == (5, 1)
    assert 0 < status["lockout_remaining_s"] <= 30


def test_pepper_mac_is_stable_across_restarts(bench: Bench) -> None:
    mcu = enrol(bench)
    first = mcu.pepper_mac("alice", b"s")
    mcu.unlock_with_face_key("alice", FACE_KEY)
    assert bench.client().pepper_mac("alice", b"s") == first


def raw_answer(mcu: McuClient, timeout: float = 2.0) -> tuple[int, m.Message]:
    frame = mcu.link.receive_frame(timeout)
    return frame.seq, m.decode_message(frame.type, frame.payload)


def test_bad_frames_are_answered_with_errors_and_the_link_recovers(bench: Bench) -> None:
    mcu = bench.client()
    corrupt = bytearray(encode_frame(Frame(m.Hello.TYPE, 5, b"")))
    corrupt[2] ^= 0x10
    mcu.link.write(b"line noise" + bytes(corrupt))
    answers = [raw_answer(mcu), raw_answer(mcu)]
    assert all(seq == 0 and a.code == m.ErrorCode.BAD_FRAME for seq, a in answers)
    assert "CRC-32" in answers[1][1].detail
    assert mcu.hello().protocol == 1

    mcu.link.write(b"\x00" + b"\x11" * (MAX_ENCODED + 10) + b"\x00")
    seq, answer = raw_answer(mcu)
    assert (seq, answer.code) == (0, m.ErrorCode.BAD_FRAME) and "exceeds" in answer.detail
    assert mcu.status()["users"] == 0


def test_unknown_type_foreign_version_and_malformed_payload(bench: Bench) -> None:
    mcu = bench.client()
    mcu.link.send_frame(Frame(0x42, 11, b""))
    assert raw_answer(mcu) == (11, m.Error(m.ErrorCode.UNKNOWN_TYPE, detail="unknown message type 0x42"))
    mcu.link.send_frame(Frame(m.Hello.TYPE, 12, b"", version=9))
    seq, answer = raw_answer(mcu)
    assert (seq, answer.code) == (12, m.ErrorCode.UNSUPPORTED_VERSION)
    mcu.link.send_frame(Frame(m.Unlock.TYPE, 13, b"\x05alice\x00"))
    seq, answer = raw_answer(mcu)
    assert (seq, answer.code) == (13, m.ErrorCode.MALFORMED) and "truncated" in answer.detail
    assert mcu.hello().protocol == 1


def test_a_silent_peer_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()[:2]
        with McuClient(open_link(f"socket://{host}:{port}", timeout=0.3)) as mcu:
            with pytest.raises(LinkTimeoutError, match="no answer to Hello within 0.30 s"):
                mcu.hello()
            with pytest.raises(TimeoutError):
                mcu.status()


def test_socket_simulator_serves_clients_one_after_another(tmp_path: Path) -> None:
    with McuSimulator("listen://127.0.0.1:0", tmp_path) as sim:
        for _ in range(3):
            with McuClient(open_link(sim.address, timeout=2.0)) as mcu:
                assert mcu.status()["users"] == 0


def test_run_simulator_reports_its_address_and_stops(tmp_path: Path) -> None:
    stop = threading.Event()
    ready: list[str] = []
    thread = threading.Thread(
        target=run_simulator,
        args=("pty", tmp_path),
        kwargs={"provisioning": True, "stop_event": stop, "on_ready": ready.append},
    )
    thread.start()
    try:
        for _ in range(100):
            if ready:
                break
            stop.wait(0.02)
        with McuClient(open_link(ready[0], timeout=2.0)) as mcu:
            assert mcu.hello().provisioning
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_vanished_simulator_is_a_link_error_not_a_hang(bench: Bench) -> None:
    mcu = bench.client()
    assert mcu.status()["users"] == 0
    bench.sim.stop()
    bench.sim = None
    with pytest.raises(LinkError, match="serial link broken") as info:
        mcu.status()
    assert not isinstance(info.value, LinkTimeoutError)
