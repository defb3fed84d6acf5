"""The firmware rules, without a transport: challenges, unlock, provisioning, pepper MAC, lockout, state."""

from __future__ import annotations

import hmac
import os
import zlib
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latticelock.firmware_bridge import mcu_state
from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.errors import StateError
from latticelock.firmware_bridge.framing import Frame
from latticelock.firmware_bridge.keys import (
    derive_ed25519,
    public_key_bytes,
    sign_unlock,
    unlock_key,
    verify_unlock,
)
from latticelock.firmware_bridge.mcu import Mcu

FACE_KEY = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(state_dir: Path, clock: Clock, provisioning: bool = False) -> Mcu:
    return Mcu(state_dir, provisioning=provisioning, clock=clock, max_failures=5, backoff_base=30.0)


def enrolled(tmp_path: Path, clock: Clock, user: str = "alice") -> Mcu:
    kiosk = make(tmp_path, clock, provisioning=True)
    assert kiosk.handle(m.EnrollPubkey(user, public_key_bytes(unlock_key(FACE_KEY)))) == m.Enrolled(user, False)
    return make(tmp_path, clock)


def unlock(mcu: Mcu, user: str = "alice", face_key: bytes = FACE_KEY) -> m.Message:
    challenge = mcu.handle(m.GetChallenge())
    assert isinstance(challenge, m.Challenge)
    return mcu.handle(m.Unlock(user, sign_unlock(unlock_key(face_key), challenge.nonce, user)))


def code(answer: m.Message) -> int:
    assert isinstance(answer, m.Error), answer
    return answer.code


def test_keys_are_deterministic_per_label_and_signatures_verify() -> None:
    key = unlock_key(FACE_KEY)
    assert public_key_bytes(key) == public_key_bytes(unlock_key(FACE_KEY))
    assert public_key_bytes(key) != public_key_bytes(derive_ed25519(FACE_KEY, b"latticelock/wallet/ed25519"))
    nonce = os.urandom(32)
    signature = sign_unlock(key, nonce, "alice")
    assert verify_unlock(public_key_bytes(key), nonce, "alice", signature)
    assert not verify_unlock(public_key_bytes(key), nonce, "bob", signature)
    assert not verify_unlock(public_key_bytes(key), os.urandom(32), "alice", signature)
    with pytest.raises(ValueError, match="32 bytes"):
        unlock_key(b"short")


def test_challenges_are_fresh(tmp_path: Path, clock: Clock) -> None:
    mcu = make(tmp_path, clock)
    nonces = {mcu.handle(m.GetChallenge()).nonce for _ in range(50)}
    assert len(nonces) == 50


def test_unlock_with_the_enrolled_key(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    assert unlock(mcu) == m.Unlocked("alice")
    assert mcu.state.unlocks == 1


def test_wrong_key_and_unknown_user_are_rejected_alike(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    wrong = unlock(mcu, face_key=bytes(32))
    unknown = unlock(mcu, user="mallory")
    assert code(wrong) == code(unknown) == m.ErrorCode.REJECTED
    assert wrong.detail == unknown.detail
    assert mcu.state.failures == 2


def test_replayed_signature_fails(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    nonce = mcu.handle(m.GetChallenge()).nonce
    request = m.Unlock("alice", sign_unlock(unlock_key(FACE_KEY), nonce, "alice"))
    assert mcu.handle(request) == m.Unlocked("alice")
    assert code(mcu.handle(request)) == m.ErrorCode.NO_CHALLENGE
    mcu.handle(m.GetChallenge())
    assert code(mcu.handle(request)) == m.ErrorCode.REJECTED


def test_a_failed_unlock_consumes_the_nonce(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    nonce = mcu.handle(m.GetChallenge()).nonce
    assert code(mcu.handle(m.Unlock("alice", bytes(64)))) == m.ErrorCode.REJECTED
    late = m.Unlock("alice", sign_unlock(unlock_key(FACE_KEY), nonce, "alice"))
    assert code(mcu.handle(late)) == m.ErrorCode.NO_CHALLENGE


def test_challenges_expire(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    nonce = mcu.handle(m.GetChallenge()).nonce
    clock.now += 31
    answer = mcu.handle(m.Unlock("alice", sign_unlock(unlock_key(FACE_KEY), nonce, "alice")))
    assert code(answer) == m.ErrorCode.NO_CHALLENGE and "expired" in answer.detail


def test_enrolment_only_in_provisioning_mode(tmp_path: Path, clock: Clock) -> None:
    mcu = make(tmp_path, clock)
    assert code(mcu.handle(m.EnrollPubkey("eve", bytes(32)))) == m.ErrorCode.NOT_PROVISIONING
    assert code(mcu.handle(m.RemoveUser("eve"))) == m.ErrorCode.NOT_PROVISIONING
    assert mcu.state.users == {}


def test_reenrolment_replaces_and_removal_forgets(tmp_path: Path, clock: Clock) -> None:
    kiosk = make(tmp_path, clock, provisioning=True)
    assert kiosk.handle(m.EnrollPubkey("alice", bytes(32))) == m.Enrolled("alice", False)
    assert kiosk.handle(m.EnrollPubkey("alice", bytes([1]) * 32)) == m.Enrolled("alice", True)
    assert kiosk.handle(m.RemoveUser("alice")) == m.Removed("alice")
    assert code(kiosk.handle(m.RemoveUser("alice"))) == m.ErrorCode.UNKNOWN_USER
    assert make(tmp_path, clock).state.users == {}


def test_pepper_mac_is_hmac_sha256_under_a_persistent_pepper(tmp_path: Path, clock: Clock) -> None:
    kiosk = make(tmp_path, clock, provisioning=True)
    mac = kiosk.handle(m.PepperMac("alice", b"secret s")).mac
    pepper = mcu_state.load_or_create(tmp_path).pepper
    assert mac == hmac.new(pepper, b"\x05alice" + b"secret s", sha256).digest()
    assert make(tmp_path, clock, provisioning=True).handle(m.PepperMac("alice", b"secret s")).mac == mac
    assert kiosk.handle(m.PepperMac("alicf", b"secret s")).mac != mac
    other = make(tmp_path / "other", clock, provisioning=True)
    assert other.handle(m.PepperMac("alice", b"secret s")).mac != mac


def test_pepper_never_appears_in_any_answer(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    pepper = mcu.state.pepper
    answers = [mcu.handle(r) for r in (m.Hello(), m.Status(), m.GetChallenge(), m.PepperMac("alice", b"x"))]
    assert all(pepper not in a.encode_payload() for a in answers)


def test_pepper_macs_count_until_a_successful_unlock(tmp_path: Path, clock: Clock) -> None:
    mcu = enrolled(tmp_path, clock)
    for _ in range(4):
        assert isinstance(mcu.handle(m.PepperMac("alice", b"guess")), m.Mac)
    assert mcu.handle(m.Status()).failures == 4
    assert unlock(mcu) == m.Unlocked("alice")
    assert mcu.handle(m.Status()).failures == 0
    assert mcu_state.load_or_create(tmp_path).failures == 0


def test_provisioning_macs_are_not_counted(tmp_path: Path, clock: Clock) -> None:
    kiosk = make(tmp_path, clock, provisioning=True)
    for _ in range(10):
        assert isinstance(kiosk.handle(m.PepperMac("alice", b"gen")), m.Mac)
    assert kiosk.state.failures == 0


def test_lockout_after_five_attempts_with_exponential_backoff_that_survives_restarts(
    tmp_path: Path, clock: Clock
) -> None:
    mcu = enrolled(tmp_path, clock)
    for _ in range(5):
        assert isinstance(mcu.handle(m.PepperMac("alice", b"guess")), m.Mac)
    refused = mcu.handle(m.PepperMac("alice", b"guess"))
    assert code(refused) == m.ErrorCode.LOCKED_OUT and refused.retry_after_ms == 30_000
    assert code(unlock(mcu)) == m.ErrorCode.LOCKED_OUT

    restarted = make(tmp_path, clock)
    assert code(restarted.handle(m.PepperMac("alice", b"guess"))) == m.ErrorCode.LOCKED_OUT
    assert restarted.handle(m.Status()).lockout_remaining_ms == 30_000

    delays = []
    for _ in range(3):
        clock.now += restarted.lockout_remaining()
        assert isinstance(restarted.handle(m.PepperMac("alice", b"guess")), m.Mac)
        delays.append(restarted.lockout_remaining())
    assert delays == [60.0, 120.0, 240.0]
    assert restarted.handle(m.Status()).lockouts == 4

    clock.now += 240
    assert unlock(restarted) == m.Unlocked("alice")
    assert make(tmp_path, clock).state.failures == 0


def test_a_clock_set_backwards_does_not_stretch_the_lock(tmp_path: Path, clock: Clock) -> None:
    mcu = Mcu(tmp_path, clock=clock, max_failures=1, backoff_base=30.0, backoff_max=600.0)
    mcu.handle(m.PepperMac("alice", b"guess"))
    clock.now -= 10**6
    assert mcu.lockout_remaining() == 600.0


def test_requests_only(tmp_path: Path, clock: Clock) -> None:
    mcu = make(tmp_path, clock)
    assert code(mcu.handle(m.Unlocked("alice"))) == m.ErrorCode.UNEXPECTED


def test_bad_frames_get_error_answers_with_their_sequence_number(tmp_path: Path, clock: Clock) -> None:
    mcu = make(tmp_path, clock)
    unknown = mcu.handle_frame(Frame(0x42, 77, b""))
    assert unknown.seq == 77
    assert m.decode_message(unknown.type, unknown.payload).code == m.ErrorCode.UNKNOWN_TYPE
    malformed = mcu.handle_frame(Frame(m.Unlock.TYPE, 78, b"\x05alice"))
    assert m.decode_message(malformed.type, malformed.payload).code == m.ErrorCode.MALFORMED


def test_state_round_trip_and_atomic_file(tmp_path: Path) -> None:
    state = mcu_state.McuState.fresh()
    state.users = {"alice": bytes(32), "bøb": bytes([7]) * 32}
    state.failures, state.lockouts, state.unlocks, state.locked_until_ms = 3, 2, 9, 123456
    mcu_state.save(tmp_path, state)
    assert mcu_state.load_or_create(tmp_path) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == [mcu_state.STATE_FILE]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:10], "not a LatticeLock"),
        (lambda b: b"XXXX" + b[4:], "not a LatticeLock"),
        (lambda b: b[:4] + b"\x09" + b[5:], "format version 9"),
        (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "corrupt"),
    ],
)
def test_corrupt_state_is_refused_not_replaced(tmp_path: Path, clock: Clock, damage, message: str) -> None:
    make(tmp_path, clock)
    path = tmp_path / mcu_state.STATE_FILE
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StateError, match=message):
        make(tmp_path, clock)


def test_a_user_listed_twice_is_refused(tmp_path: Path) -> None:
    state = mcu_state.McuState.fresh()
    state.users = {"alice": bytes(32)}
    body = bytearray(state.to_bytes()[:-4])
    entry = body[-(1 + 5 + 32) :]
    body += entry
    body[-(2 * (1 + 5 + 32) + 2) : -(2 * (1 + 5 + 32))] = (2).to_bytes(2, "big")
    data = bytes(body) + zlib.crc32(body).to_bytes(4, "big")
    with pytest.raises(StateError, match="twice"):
        mcu_state.McuState.from_bytes(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(msg_type=st.integers(0, 255), seq=st.integers(0, 0xFFFF), payload=st.binary(max_size=200))
def test_any_frame_gets_a_well_formed_answer(tmp_path: Path, clock: Clock, msg_type: int, seq: int, payload: bytes) -> None:
    mcu = make(tmp_path, clock)
    answer = mcu.handle_frame(Frame(msg_type, seq, payload))
    assert answer.seq == seq
    assert isinstance(m.decode_message(answer.type, answer.payload), m.RESPONSES)


def test_no_mac_is_released_when_the_attempt_cannot_be_recorded(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    mcu = enrolled(tmp_path, clock)

    def broken_flash(*_: object) -> None:
        raise StateError("flash write failed")

    monkeypatch.setattr(mcu_state, "save", broken_flash)
    answer = mcu.handle(m.PepperMac("alice", b"guess"))
    assert code(answer) == m.ErrorCode.INTERNAL and "flash" in answer.detail


def test_a_torn_temporary_file_from_a_power_cut_is_ignored_and_removed(tmp_path: Path, clock: Clock) -> None:
    before = enrolled(tmp_path, clock).state
    torn = tmp_path / f".{mcu_state.STATE_FILE}.dead.tmp"
    torn.write_bytes(before.to_bytes()[:20])
    assert make(tmp_path, clock).state == before
    assert not torn.exists()
