"""The firmware without a transport: answers, signatures, its flash (state files, corruption, format 1,
write failures) and any frame at all."""

from __future__ import annotations

import hashlib

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcu_bench import PASSCODE, RADIUS_SQ, Bench, Clock, code, genuine, make, provision, provisioned, tables, upload, vec

from latticelock.firmware_bridge import lattice_match as lm
from latticelock.firmware_bridge import mcu_state
from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.errors import StateError
from latticelock.firmware_bridge.framing import Frame
from latticelock.firmware_bridge.sealing import ChipKeys, SealError, seal, sealed_size, unseal
from latticelock.firmware_bridge.keys import (
    derive_ed25519,
    public_key_bytes,
    sign_unlock,
    unlock_key,
    verify_signature,
    verify_unlock,
    wallet_proof_message,
)

FACE_KEY = bytes(range(32))


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


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return provisioned(tmp_path, Clock(), {"ann": 1, "bob": 2})


def test_hello_and_status_describe_the_chip(bench: Bench) -> None:
    version = bench.ask(m.Hello())
    assert (version.protocol, version.provisioning, version.passcode_set, version.max_payload) == (2, False, True, 1200)
    assert version.device_id == bench.mcu.state.device_id and any(version.lattice_id)
    report = bench.ask(m.Status())
    assert (report.users, report.failures, report.max_failures, report.attempts_left_today) == (2, 0, 5, 98)


def test_an_unlock_is_signed_by_the_enrolled_key_over_the_session_nonce(bench: Bench) -> None:
    session = bench.open()
    bench.ask(m.Probe(vec(genuine(2, 0))))
    verdict = bench.ask(m.Probe(vec(genuine(2, 1))))
    assert (verdict.outcome, verdict.user, verdict.public_key) == (m.Outcome.ACCEPT, "bob", bench.public_keys["bob"])
    assert verify_unlock(verdict.public_key, session.nonce, "bob", verdict.signature)


def test_nonces_are_fresh(bench: Bench) -> None:
    nonces = {bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3)).nonce for _ in range(4)}
    assert len(nonces) == 4


def test_wallet_sessions_sign_with_the_account_key(bench: Bench) -> None:
    session = bench.open(m.Purpose.WALLET_ADDRESS, account=7)
    bench.ask(m.Probe(vec(genuine(1, 0))))
    proof = bench.ask(m.Probe(vec(genuine(1, 1))))
    assert proof.public_key != bench.public_keys["ann"]
    assert verify_signature(proof.public_key, wallet_proof_message(session.nonce), proof.signature)
    bench.open(m.Purpose.WALLET_SIGN, account=7, message=b"pay 3 to carol")
    bench.ask(m.Probe(vec(genuine(1, 2))))
    signed = bench.ask(m.Probe(vec(genuine(1, 3))))
    assert signed.public_key == proof.public_key
    assert verify_signature(signed.public_key, b"pay 3 to carol", signed.signature)


@pytest.mark.parametrize("purpose, message", [(m.Purpose.WALLET_SIGN, b""), (m.Purpose.UNLOCK, b"x"), (9, b"")])
def test_a_session_purpose_must_fit_its_message(bench: Bench, purpose: int, message: bytes) -> None:
    assert code(bench.ask(m.OpenSession(purpose, 2, 3, 0, message))) == m.ErrorCode.MALFORMED


def test_answers_are_requests_only(bench: Bench) -> None:
    assert code(bench.ask(m.RecordLoaded("ann"))) == m.ErrorCode.UNEXPECTED


def test_enrolment_probes_and_face_enrolments_keep_to_their_sessions(bench: Bench) -> None:
    bench.start(provisioning=True)
    bench.admin()
    bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0))
    assert code(bench.ask(m.Probe(vec(genuine(1, 0))))) == m.ErrorCode.UNEXPECTED
    bench.open()
    assert code(bench.ask(m.EnrollFace("cy", 1, 1000, 1000, vec(genuine(3, 0))))) == m.ErrorCode.UNEXPECTED


# --- sealed records --------------------------------------------------------------------------------


def test_a_sealed_record_round_trips_both_radii() -> None:
    keys = ChipKeys.from_pepper(bytes(range(32)))
    c, tag = np.arange(32, dtype=np.int64) * 2047, bytes(range(100, 132))
    blob = seal(keys, bytes(16), bytes(32), "ann", 3, c, tag, 22_710, 5_677)
    assert len(blob) == sealed_size(32)
    opened = unseal(keys, bytes(16), bytes(32), "ann", 3, blob, 32)
    assert (opened.radius_sq, opened.wallet_radius_sq, opened.tag) == (22_710, 5_677, tag)
    assert np.array_equal(opened.c, c)


def test_the_chip_seals_the_radii_it_was_given(bench: Bench) -> None:
    bench.start(provisioning=True)
    bench.admin()
    staged = bench.stage("cy", genuine(3, 0), wallet_radius_sq=RADIUS_SQ // 3)
    state, lattice = bench.mcu.state, bench.mcu.lattice
    opened = unseal(ChipKeys.from_pepper(state.pepper), state.device_id, lattice.lattice_id, "cy", 1, staged.sealed, 32)
    assert (opened.radius_sq, opened.wallet_radius_sq) == (RADIUS_SQ, RADIUS_SQ // 3)


def test_a_one_radius_v2_blob_is_refused_with_the_reason(bench: Bench) -> None:
    """The format before the wallet radius: its own label and one radius. unseal names it; the chip
    answers a foreign one like any other, and the user's own active one (an upgrade) with the reason."""
    state, lattice = bench.mcu.state, bench.mcu.lattice
    keys = ChipKeys.from_pepper(state.pepper)
    gen, blob = bench.records["ann"]
    current = unseal(keys, state.device_id, lattice.lattice_id, "ann", gen, blob, 32)
    plaintext = bytes([32]) + current.c.astype("<u4").tobytes() + current.tag + struct.pack("<Q", current.radius_sq)
    ad = b"latticelock/sealed/v2" + state.device_id + lattice.lattice_id + b"\x03ann" + struct.pack("<I", gen)
    nonce = os.urandom(12)
    old = nonce + ChaCha20Poly1305(keys.seal).encrypt(nonce, plaintext, ad)
    with pytest.raises(SealError, match="format v2"):
        unseal(keys, state.device_id, lattice.lattice_id, "ann", gen, old, 32)
    bench.open()
    assert bench.ask(m.LoadRecord("ann", gen, old)) == m.Error(m.ErrorCode.REJECTED, 0, "record refused")
    state.users["ann"].active_digest = hashlib.sha256(old).digest()  # a chip upgraded with ann's v2 record
    answer = bench.ask(m.LoadRecord("ann", gen, old))
    assert answer.code == m.ErrorCode.REJECTED and "format v2" in answer.detail and "enrol the user again" in answer.detail


# --- state files ---------------------------------------------------------------------------------


def test_state_round_trip_and_atomic_file(tmp_path: Path) -> None:
    state = mcu_state.McuState.fresh()
    state.users = {"alice": mcu_state.UserSlot(3, bytes([1]) * 32, 4, bytes([2]) * 32), "bøb": mcu_state.UserSlot(1, bytes([7]) * 32)}
    state.failures, state.lockouts, state.unlocks, state.locked_until_ms = 3, 2, 9, 123456
    state.passcode_failures, state.budget_milli, state.parameter_set = 6, 41_000, "l2fe-facenet-m32"
    state.lattice_radius_sq, state.wallet_radius_sq, state.min_probe_sq = 10_928_974, 5_533_436, 6_325_225
    mcu_state.save(tmp_path, state)
    assert mcu_state.load_or_create(tmp_path) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == [mcu_state.STATE_FILE]


def test_counters_users_and_the_lattice_survive_a_restart(bench: Bench) -> None:
    before = bench.mcu.state
    bench.start()
    assert bench.mcu.state == before and bench.mcu.lattice.lattice_id == bench.ask(m.Hello()).lattice_id


def state_path(tmp_path: Path) -> Path:
    return tmp_path / mcu_state.STATE_FILE


def resealed(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:10], "not a LatticeLock"),
        (lambda b: b"XXXX" + b[4:], "not a LatticeLock"),
        (lambda b: b[:4] + b"\x09" + b[5:], "format version 9"),
        (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "corrupt"),
        (lambda b: b[:-5] + b[-4:], "corrupt"),
        (lambda b: resealed(b[:-4] + b"\x00"), "malformed"),
        (lambda b: resealed(b[:-6]), "malformed"),
    ],
)
def test_corrupt_state_is_refused_not_replaced(tmp_path: Path, damage, message: str) -> None:
    provisioned(tmp_path, Clock(), {"ann": 1})
    damaged = damage(state_path(tmp_path).read_bytes())
    state_path(tmp_path).write_bytes(damaged)
    with pytest.raises(StateError, match=message):
        make(tmp_path, Clock())
    assert state_path(tmp_path).read_bytes() == damaged


def test_a_format_1_state_is_refused_with_the_migration_message(tmp_path: Path) -> None:
    make(tmp_path, Clock())
    data = state_path(tmp_path).read_bytes()
    state_path(tmp_path).write_bytes(data[:4] + b"\x01" + data[5:])
    with pytest.raises(StateError, match=r"format version 1;.*format-1 chip holds no sealed records: provision it afresh"):
        make(tmp_path, Clock())


def format_2(data: bytes) -> bytes:
    """A format-3 state file as format 2 wrote it: no probe floor in the lattice fields."""
    state = mcu_state.McuState.from_bytes(data)
    floor_at = (mcu_state._HEAD.size + mcu_state._COUNTERS.size + mcu_state._PASSCODE.size + mcu_state._BUDGET.size
                + 1 + len(state.parameter_set) + 32 + 8 + 8)
    assert data[floor_at : floor_at + 8] == state.min_probe_sq.to_bytes(8, "big")
    body = data[:4] + b"\x02" + data[5:floor_at] + data[floor_at + 8 : -4]
    return resealed(body)


def test_a_format_2_state_is_refused_saying_it_has_no_probe_floor(tmp_path: Path) -> None:
    """A format-2 chip would match the public mean face; it is refused, not read with no floor, and not replaced."""
    bench = provisioned(tmp_path, Clock(), {"ann": 1})
    old = format_2(state_path(tmp_path).read_bytes())
    state_path(tmp_path).write_bytes(old)
    with pytest.raises(StateError, match=r"format version 2; this build reads 3 \(a format-2 chip has no probe floor.*"
                                         r"provision it afresh, see PROTOCOL.md section 10\)"):
        bench.start()
    assert state_path(tmp_path).read_bytes() == old


def test_the_probe_floor_survives_a_restart(tmp_path: Path) -> None:
    bench = Bench(tmp_path, Clock())
    provision(bench.start(provisioning=True), min_probe_sq=123_456)
    bench.admin()
    bench.enrol("ann", genuine(1, 0))
    before = bench.mcu.state
    bench.start()
    assert bench.mcu.state == before and bench.mcu.state.min_probe_sq == 123_456
    assert mcu_state.McuState.from_bytes(state_path(tmp_path).read_bytes()).min_probe_sq == 123_456
    bench.ask(m.Passcode(PASSCODE))
    short = np.rint(genuine(1, 1) / 2).astype(int)
    assert int(genuine(1, 1) @ genuine(1, 1)) > 123_456 > int(short @ short)
    assert bench.attempt(short, short, short).outcome == m.Outcome.REJECT
    assert bench.mcu.last_probe.decodes == 0
    assert bench.attempt(genuine(1, 1), genuine(1, 2)).outcome == m.Outcome.ACCEPT


@pytest.mark.parametrize("floor", [lm.MAX_RADIUS_SQ, lm.MAX_RADIUS_SQ + 1, 2**64 - 1])
def test_a_malformed_probe_floor_provisions_nothing(tmp_path: Path, floor: int) -> None:
    chip = make(tmp_path, Clock(), provisioning=True)
    assert chip.handle(m.SetPasscode("", PASSCODE)) == m.PasscodeSet()
    answer = upload(chip, tables().to_bytes(), RADIUS_SQ, min_probe_sq=floor)
    assert code(answer) == m.ErrorCode.MALFORMED and "probe floor" in answer.detail
    assert chip.lattice is None and not chip.state.lattice_ready and chip.state.min_probe_sq == 0
    assert chip.handle(m.Hello()).lattice_id == bytes(32)
    assert not list(tmp_path.glob(mcu_state.LATTICE_FILE + ".*"))
    restarted = make(tmp_path, Clock())
    assert restarted.lattice is None and not restarted.state.lattice_ready


def test_the_largest_probe_floor_is_accepted(tmp_path: Path) -> None:
    chip = make(tmp_path, Clock(), provisioning=True)
    assert chip.handle(m.SetPasscode("", PASSCODE)) == m.PasscodeSet()
    assert isinstance(upload(chip, tables().to_bytes(), RADIUS_SQ, min_probe_sq=lm.MAX_RADIUS_SQ - 1), m.LatticeReady)
    assert make(tmp_path, Clock()).state.min_probe_sq == lm.MAX_RADIUS_SQ - 1


def test_a_user_listed_twice_is_refused(tmp_path: Path) -> None:
    state = mcu_state.McuState.fresh()
    state.users = {"alice": mcu_state.UserSlot(1, bytes([1]) * 32)}
    body = bytearray(state.to_bytes()[:-4])
    entry_size = 1 + 5 + 4 + 32 + 4 + 32
    body += body[-entry_size:]
    body[-(2 * entry_size + 2) : -(2 * entry_size)] = (2).to_bytes(2, "big")
    with pytest.raises(StateError, match="malformed"):
        mcu_state.McuState.from_bytes(resealed(bytes(body)))


@pytest.mark.parametrize("damage", [lambda b: b[:-1], lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], lambda b: b""])
def test_a_damaged_device_lattice_is_refused(tmp_path: Path, damage) -> None:
    provisioned(tmp_path, Clock())
    (path,) = tmp_path.glob(mcu_state.LATTICE_FILE + ".*")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StateError, match="device lattice"):
        make(tmp_path, Clock())


def test_a_missing_device_lattice_is_refused(tmp_path: Path) -> None:
    provisioned(tmp_path, Clock())
    for path in tmp_path.glob(mcu_state.LATTICE_FILE + ".*"):
        path.unlink()
    with pytest.raises(StateError, match="cannot read the device lattice"):
        make(tmp_path, Clock())


def test_a_state_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="not a directory"):
        make(tmp_path / "file", Clock())


def test_a_torn_temporary_file_from_a_power_cut_is_ignored_and_removed(bench: Bench) -> None:
    before = bench.mcu.state
    torn = bench.state_dir / ".mcu-dead.tmp"
    torn.write_bytes(before.to_bytes()[:20])
    assert bench.start().state == before
    assert not torn.exists()


# --- flash write failures --------------------------------------------------------------------------


def broken_flash(*_: object) -> None:
    raise StateError("cannot write microcontroller flash: injected failure")


def test_an_attempt_that_cannot_be_counted_opens_no_session(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcu_state, "save", broken_flash)
    answer = bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3))
    assert code(answer) == m.ErrorCode.INTERNAL and "flash" in answer.detail
    assert code(bench.ask(m.LoadRecord("ann", *bench.records["ann"]))) == m.ErrorCode.NO_SESSION
    assert code(bench.ask(m.Probe(vec(genuine(1, 0))))) == m.ErrorCode.NO_SESSION


def test_an_accept_that_cannot_be_recorded_signs_nothing(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.open()
    assert bench.ask(m.Probe(vec(genuine(1, 0)))).outcome == m.Outcome.PENDING
    monkeypatch.setattr(mcu_state, "save", broken_flash)
    answer = bench.ask(m.Probe(vec(genuine(1, 1))))
    assert code(answer) == m.ErrorCode.INTERNAL
    assert code(bench.ask(m.Probe(vec(genuine(1, 2))))) == m.ErrorCode.NO_SESSION


def test_an_enrolment_that_cannot_be_written_stages_nothing(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.start(provisioning=True)
    bench.admin()
    monkeypatch.setattr(mcu_state, "save", broken_flash)
    assert code(bench.stage("cy", genuine(3, 0))) == m.ErrorCode.INTERNAL
    monkeypatch.undo()
    assert code(bench.ask(m.CommitUser("cy", 1, bytes(32)))) == m.ErrorCode.UNKNOWN_USER


# --- any frame -------------------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(msg_type=st.integers(0, 255), seq=st.integers(0, 0xFFFF), payload=st.binary(max_size=300))
def test_any_frame_gets_a_well_formed_answer_with_its_sequence_number(bench: Bench, msg_type: int, seq: int,
                                                                      payload: bytes) -> None:
    answer = bench.mcu.handle_frame(Frame(msg_type, seq, payload))
    assert answer.seq == seq
    assert isinstance(m.decode_message(answer.type, answer.payload), m.RESPONSES)


def test_bad_frames_get_error_answers_with_their_sequence_number(bench: Bench) -> None:
    unknown = bench.mcu.handle_frame(Frame(0x42, 77, b""))
    assert (unknown.seq, m.decode_message(unknown.type, unknown.payload).code) == (77, m.ErrorCode.UNKNOWN_TYPE)
    malformed = bench.mcu.handle_frame(Frame(m.LoadRecord.TYPE, 78, b"\x03ann"))
    assert m.decode_message(malformed.type, malformed.payload).code == m.ErrorCode.MALFORMED


def test_the_passcode_never_leaves_in_an_answer(bench: Bench) -> None:
    answers = [bench.ask(r) for r in (m.Hello(), m.Status(), m.Passcode(PASSCODE), m.ListUsers(0))]
    secret = (bench.mcu.state.pepper, bench.mcu.state.passcode_verifier, PASSCODE.encode())
    assert not any(s in a.encode_payload() for a in answers for s in secret)


def test_a_wallet_account_beyond_2_31_is_refused_before_it_is_counted(bench: Bench) -> None:
    # It used to open, count, and on the owner's accept raise ValueError out of the handler: the
    # simulator's serving thread died, and the accept had already cleared the counter.
    refused = bench.ask(m.OpenSession(m.Purpose.WALLET_ADDRESS, 2, 3, 2**31))
    assert code(refused) == m.ErrorCode.MALFORMED and "account" in refused.detail
    assert bench.ask(m.Status()).failures == 0
    assert bench.attempt(genuine(1, 0), genuine(1, 1), purpose=m.Purpose.WALLET_ADDRESS, account=2**31 - 1).outcome == m.Outcome.ACCEPT


def fail_save(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the `call`-th flash write from now fail."""
    calls = []
    real = mcu_state.save

    def save(state_dir, state):
        calls.append(1)
        if len(calls) == call:
            broken_flash()
        real(state_dir, state)

    monkeypatch.setattr(mcu_state, "save", save)


def test_a_request_whose_flash_write_fails_has_no_effect(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    # INTERNAL means "the request had no effect": each of these used to take effect in memory (a new
    # passcode, a removed user, an unlocked device, a committed user), written to flash by the next save.
    bench.start(provisioning=True)
    fail_save(monkeypatch, 3)  # the guess is counted and cleared; then the passcode change is lost
    assert code(bench.ask(m.SetPasscode(PASSCODE, "a new passcode"))) == m.ErrorCode.INTERNAL
    monkeypatch.undo()
    assert code(bench.ask(m.Passcode("a new passcode"))) == m.ErrorCode.WRONG_PASSCODE
    fail_save(monkeypatch, 3)  # counted, cleared, then the unlock itself is lost
    assert code(bench.ask(m.Passcode(PASSCODE))) == m.ErrorCode.INTERNAL
    monkeypatch.undo()
    assert bench.ask(m.Status()).passcode_required and not bench.ask(m.Status()).admin
    bench.admin()
    staged = bench.stage("cy", genuine(3, 0))
    fail_save(monkeypatch, 1)
    assert code(bench.ask(m.CommitUser("cy", staged.generation, hashlib.sha256(staged.sealed).digest()))) == m.ErrorCode.INTERNAL
    monkeypatch.undo()
    fail_save(monkeypatch, 1)
    assert code(bench.ask(m.RemoveUser("ann"))) == m.ErrorCode.INTERNAL
    monkeypatch.undo()
    listed = m.decode_user_list(bench.ask(m.ListUsers(0)).entries)
    assert listed == [("ann", 1, 0), ("bob", 1, 0), ("cy", 0, 1)]


def test_a_power_cut_between_new_tables_and_the_state_leaves_a_chip_that_starts(tmp_path: Path, monkeypatch) -> None:
    """Replacing the lattice writes the tables under their own name first: the old state still starts."""
    chip = make(tmp_path, Clock(), provisioning=True)
    old_id = provision(chip)
    monkeypatch.setattr(mcu_state, "save", lambda state_dir, state: (_ for _ in ()).throw(StateError("power cut")))
    other = tables(seed=bytes(32))
    assert code(upload(chip, other.to_bytes(), RADIUS_SQ, seed=bytes(32))) == m.ErrorCode.INTERNAL
    monkeypatch.undo()
    assert make(tmp_path, Clock()).handle(m.Hello()).lattice_id == old_id


def test_two_simulator_processes_cannot_share_one_chips_flash(tmp_path: Path) -> None:
    import subprocess
    import sys

    make(tmp_path, Clock())
    code = ("import sys; from pathlib import Path; from latticelock.firmware_bridge.mcu import Mcu\n"
            "try:\n    Mcu(Path(sys.argv[1]))\nexcept Exception as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120).stdout
    assert "in use by another simulator process" in out
