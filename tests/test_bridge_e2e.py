"""End to end: the simulator in a thread, the client over a pty pair and over socket:// on localhost.

The whole v2 exchange through `McuClient`: passcode, lattice upload, two-phase enrolment, a counted
unlock session with the chip's signature, the typed refusals, restarts, and a link that recovers from
bad frames.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcu_bench import ITERATIONS, PASSCODE, RADIUS_SQ, SEED, Clock, face, genuine, lattice, tables

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.client import McuClient
from latticelock.firmware_bridge.errors import (
    CollisionError,
    LinkError,
    LinkTimeoutError,
    LockedOutError,
    NotAuthorisedError,
    NotProvisioningError,
    PasscodeRequiredError,
    RejectedError,
    SessionError,
    WrongPasscodeError,
)
from latticelock.firmware_bridge.framing import MAX_ENCODED, Frame, encode_frame
from latticelock.firmware_bridge.keys import verify_unlock
from latticelock.firmware_bridge.link import open_link
from latticelock.firmware_bridge.messages import Outcome, Purpose
from latticelock.firmware_bridge.simulator import McuSimulator, run_simulator

TRANSPORTS = ["pty", "listen://127.0.0.1:0"]


class Bench:
    """A simulator on one state directory that can be restarted, in or out of provisioning mode."""

    def __init__(self, transport: str, state_dir: Path) -> None:
        self.transport = transport
        self.state_dir = state_dir
        self.clock = Clock()
        self.sim: McuSimulator | None = None
        self.clients: list[McuClient] = []
        self.records: dict[str, tuple[int, bytes]] = {}

    def client(self, provisioning: bool = False) -> McuClient:
        self.stop()
        self.sim = McuSimulator(self.transport, self.state_dir, provisioning=provisioning, clock=self.clock,
                                passcode_iterations=ITERATIONS).start()
        client = McuClient(open_link(self.sim.address, timeout=5.0))
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def enrol(self, mcu: McuClient, user: str, person: int) -> m.FaceEnrolled:
        mcu.open_session(Purpose.ENROL)
        for other, (generation, sealed) in self.records.items():
            mcu.load_record(other, generation, sealed)
        staged = mcu.enroll_face(user, self.records.get(user, (0, b""))[0] + 1, RADIUS_SQ, RADIUS_SQ, face(person))
        self.records[user] = (staged.generation, staged.sealed)
        mcu.commit_user(user, staged.generation, staged.sealed)
        mcu.close_session()
        return staged

    def unlock(self, mcu: McuClient, person: int, seed: int = 0):
        """One counted attempt with two probes of `person`; the last verdict and the session."""
        session = mcu.open_session(Purpose.UNLOCK, 2, 3)
        for user, (generation, sealed) in self.records.items():
            mcu.load_record(user, generation, sealed)
        # The chip decides at the k-th match, or rejects after the n-th probe (never earlier).
        for extra in range(3):
            verdict = mcu.probe(genuine(person, seed + extra))
            if verdict.outcome is not Outcome.PENDING:
                break
        return verdict, session


@pytest.fixture(params=TRANSPORTS, ids=["pty", "socket"])
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    bench = Bench(request.param, tmp_path)
    yield bench
    bench.stop()


def provisioned(bench: Bench, users: dict[str, int]) -> McuClient:
    """Passcode, lattice and `users` (name -> person) over the link; then a restart and the passcode."""
    kiosk = bench.client(provisioning=True)
    assert kiosk.hello().provisioning
    kiosk.set_passcode(PASSCODE)
    lattice_id = kiosk.provision_lattice("l2fe-facenet-m32", SEED, tables().to_bytes(), int(lattice().max_radius**2), int(lattice().max_radius**2), 0)
    assert kiosk.hello().lattice_id == lattice_id
    for user, person in users.items():
        bench.enrol(kiosk, user, person)
    mcu = bench.client()
    mcu.passcode(PASSCODE)
    return mcu


def test_provision_enrol_then_unlock_with_the_chips_signature(bench: Bench) -> None:
    mcu = provisioned(bench, {"ann": 1, "bob": 2})
    version = mcu.hello()
    assert (version.protocol, version.provisioning, version.passcode_set) == (2, False, True)
    verdict, session = bench.unlock(mcu, 2)
    assert (verdict.outcome, verdict.user) == (Outcome.ACCEPT, "bob")
    assert verify_unlock(verdict.public_key, session.nonce, "bob", verdict.signature)
    assert [(u.name, u.active_generation, u.pending_generation) for u in mcu.list_users()] == [("ann", 1, 0), ("bob", 1, 0)]
    assert mcu.status()["unlocks"] == 2  # the passcode, then the face


def test_another_face_is_rejected_and_a_foreign_record_refused(bench: Bench) -> None:
    mcu = provisioned(bench, {"ann": 1})
    verdict, _ = bench.unlock(mcu, 9)
    assert (verdict.outcome, verdict.user, verdict.signature) == (Outcome.REJECT, None, None)
    mcu.open_session(Purpose.UNLOCK, 2, 3)
    with pytest.raises(RejectedError, match="REJECTED"):
        mcu.load_record("bob", *bench.records["ann"])
    assert mcu.status()["failures"] == 2


def test_a_probe_without_a_session_is_a_session_error(bench: Bench) -> None:
    mcu = provisioned(bench, {"ann": 1})
    with pytest.raises(SessionError, match="NO_SESSION"):
        mcu.probe(genuine(1, 0))


def test_enrolment_needs_provisioning_mode_and_the_passcode(bench: Bench) -> None:
    mcu = provisioned(bench, {"ann": 1})
    with pytest.raises(NotProvisioningError, match="provisioning"):
        mcu.open_session(Purpose.ENROL)
    kiosk = bench.client(provisioning=True)
    with pytest.raises(NotAuthorisedError, match="passcode"):
        kiosk.open_session(Purpose.ENROL)
    with pytest.raises(WrongPasscodeError) as wrong:
        kiosk.passcode("not the passcode")
    assert wrong.value.retry_after == 0
    assert kiosk.passcode(PASSCODE) is True
    with pytest.raises(CollisionError, match="ann"):
        bench.enrol(kiosk, "eve", 1)
    assert kiosk.status()["users"] == 1


def test_lockout_and_the_restart_lock_persist_across_simulator_restarts(bench: Bench) -> None:
    mcu = provisioned(bench, {"ann": 1})
    for _ in range(5):
        mcu.open_session(Purpose.UNLOCK, 2, 3)
    with pytest.raises(LockedOutError, match="retry in 30 s") as info:
        mcu.open_session(Purpose.UNLOCK, 2, 3)
    assert info.value.retry_after == 30
    mcu = bench.client()
    with pytest.raises(PasscodeRequiredError):
        mcu.open_session(Purpose.UNLOCK, 2, 3)
    status = mcu.status()
    assert (status["failures"], status["lockouts"], status["lockout_remaining_s"]) == (5, 1, 30)
    mcu.passcode(PASSCODE)
    assert bench.unlock(mcu, 1)[0].outcome is Outcome.ACCEPT


def raw_answer(mcu: McuClient, timeout: float = 5.0) -> tuple[int, m.Message]:
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
    assert mcu.hello().protocol == 2

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
    mcu.link.send_frame(Frame(m.LoadRecord.TYPE, 13, b"\x03ann\x00"))
    seq, answer = raw_answer(mcu)
    assert (seq, answer.code) == (13, m.ErrorCode.MALFORMED) and "truncated" in answer.detail
    assert mcu.hello().protocol == 2


def test_a_silent_peer_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()[:2]
        with McuClient(open_link(f"socket://{host}:{port}", timeout=0.3)) as mcu:
            with pytest.raises(LinkTimeoutError, match="no answer to Hello within 0.30 s"):
                mcu.hello()
            with pytest.raises(TimeoutError):
                mcu.status()


def test_socket_simulator_serves_clients_one_after_another(tmp_path: Path) -> None:
    with McuSimulator("listen://127.0.0.1:0", tmp_path, passcode_iterations=ITERATIONS) as sim:
        for _ in range(3):
            with McuClient(open_link(sim.address, timeout=5.0)) as mcu:
                assert mcu.status()["users"] == 0


def test_a_session_outlives_the_connection_that_opened_it(tmp_path: Path) -> None:
    # Sessions have no owner: the next host connection inherits it (and its count).
    with McuSimulator("listen://127.0.0.1:0", tmp_path, provisioning=True, passcode_iterations=ITERATIONS) as sim:
        with McuClient(open_link(sim.address, timeout=5.0)) as mcu:
            mcu.set_passcode(PASSCODE)
            mcu.provision_lattice("l2fe-facenet-m32", SEED, tables().to_bytes(), int(lattice().max_radius**2), int(lattice().max_radius**2), 0)
            mcu.open_session(Purpose.ENROL)
        with McuClient(open_link(sim.address, timeout=5.0)) as mcu:
            assert mcu.enroll_face("ann", 1, RADIUS_SQ, RADIUS_SQ, face(1)).user == "ann"


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
        for _ in range(250):
            if ready:
                break
            stop.wait(0.02)
        with McuClient(open_link(ready[0], timeout=5.0)) as mcu:
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
