"""Bad input to the microcontroller's match (issue 16): malformed, oversized and out-of-range probes,
records that are not the user's active one, sessions left open, floods, and a long random stream of
hostile requests. Clear errors, counted where they should be, the chip keeps serving, and no error
says anything about any record.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from mcu_bench import PASSCODE, RADIUS_SQ, Bench, Clock, code, face, genuine, provision, provisioned, vec

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.framing import Frame

REFUSED = m.Error(m.ErrorCode.REJECTED, 0, "record refused")


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return provisioned(tmp_path / "a", Clock(), {"ann": 1, "bob": 2})


def status(bench: Bench) -> m.StatusReport:
    return bench.ask(m.Status())


# --- probe vectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob, reason",
    [
        (b"\x00\x01\x02", "odd number of bytes"),
        (vec(range(31)), "32 coordinates"),
        (vec(range(33)), "32 coordinates"),
        (vec(range(64)), "32 coordinates"),
    ],
)
def test_malformed_probes_are_refused_clearly_and_spend_a_probe(bench: Bench, blob: bytes, reason: str) -> None:
    bench.open()
    answer = bench.ask(m.Probe(blob))
    assert code(answer) == m.ErrorCode.MALFORMED and reason in answer.detail
    assert bench.ask(m.Probe(vec(genuine(1, 0)))).probes_left == 1  # the bad one counted as a probe
    assert bench.mcu.counts.decodes == 2


@pytest.mark.parametrize("size", [0, m.MAX_VECTOR + 2, 1100])
def test_empty_or_oversized_probe_blobs_do_not_parse(bench: Bench, size: int) -> None:
    bench.open()
    payload = struct.pack(">H", size) + bytes(size)
    answer = bench.mcu.handle_frame(Frame(m.Probe.TYPE, 5, payload))
    error = m.decode_message(answer.type, answer.payload)
    assert error.code == m.ErrorCode.MALFORMED and "probe vector must be 1 to 128 bytes" in error.detail


@pytest.mark.parametrize("value", [32767, -32768])
def test_extreme_coordinates_are_a_valid_probe_that_matches_nothing(bench: Bench, value: int) -> None:
    bench.open()
    assert bench.ask(m.Probe(vec([value] * 32))).outcome == m.Outcome.PENDING
    assert bench.ask(m.Probe(vec([-value - 1] * 32))).outcome == m.Outcome.PENDING
    assert bench.ask(m.Probe(vec([value] * 32))).outcome == m.Outcome.REJECT  # only n probes end a session


def test_out_of_range_coordinates_are_refused_on_a_smaller_modulus(bench: Bench) -> None:
    # With q = 65537 every int16 is within +-q/2; the chip still checks, for any provisioned q.
    bench.mcu.lattice.tables = dataclasses.replace(bench.mcu.lattice.tables, q=40_001)  # q/2 = 20000
    bench.open()
    answer = bench.ask(m.Probe(vec([20_001] + [0] * 31)))
    assert code(answer) == m.ErrorCode.MALFORMED and "within +-20000" in answer.detail


def test_probes_and_records_need_a_session(bench: Bench) -> None:
    assert code(bench.ask(m.Probe(vec(genuine(1, 0))))) == m.ErrorCode.NO_SESSION
    assert code(bench.ask(m.LoadRecord("ann", *bench.records["ann"]))) == m.ErrorCode.NO_SESSION
    assert status(bench).failures == 0


# --- records that are not the user's active one: one answer for every cause ----------------------


def test_every_foreign_record_gets_one_identical_refusal(bench: Bench, tmp_path: Path) -> None:
    other_device = provisioned(tmp_path / "b", Clock(), {"ann": 1})
    ann_gen, ann = bench.records["ann"]
    bob_gen, bob = bench.records["bob"]
    bench.start(provisioning=True)
    bench.admin()
    staged = bench.stage("ann", face(11))  # a pending generation 2, not committed
    bench.ask(m.CloseSession())
    flipped = bytearray(ann)
    flipped[40] ^= 1
    attempts = {
        "unknown user": m.LoadRecord("zoe", 1, ann),
        "another user's blob under this name": m.LoadRecord("ann", bob_gen, bob),
        "this blob under another name": m.LoadRecord("bob", ann_gen, ann),
        "another generation": m.LoadRecord("ann", 2, ann),
        "the pending generation": m.LoadRecord("ann", 2, staged.sealed),
        "another device's blob": m.LoadRecord("ann", 1, other_device.records["ann"][1]),
        "a bit flipped": m.LoadRecord("ann", 1, bytes(flipped)),
        "truncated": m.LoadRecord("ann", 1, ann[:-1]),
        "one byte": m.LoadRecord("ann", 1, b"\x00"),
    }
    bench.open()
    answers = {cause: bench.ask(request) for cause, request in attempts.items()}
    assert answers == dict.fromkeys(attempts, REFUSED)
    assert bench.ask(m.LoadRecord("ann", ann_gen, ann)) == m.RecordLoaded("ann")
    assert status(bench).failures == 1  # the session, once


def test_an_old_generation_stops_opening_after_reenrolment(bench: Bench) -> None:
    old = bench.records["ann"]
    bench.start(provisioning=True)
    bench.admin()
    bench.enrol("ann", face(12))
    bench.open()
    assert bench.ask(m.LoadRecord("ann", *old)) == REFUSED


def test_a_removed_users_record_stops_opening(bench: Bench) -> None:
    bench.start(provisioning=True)
    bench.admin()
    assert bench.ask(m.RemoveUser("bob")) == m.Removed("bob")
    bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3))
    assert bench.ask(m.LoadRecord("bob", *bench.records["bob"])) == REFUSED


# --- sessions left open, floods ------------------------------------------------------------------


def test_a_session_left_open_expires_and_is_wiped(bench: Bench) -> None:
    bench.open()
    assert bench.mcu._session.loaded
    bench.clock.advance(16)
    assert code(bench.ask(m.Probe(vec(genuine(1, 0))))) == m.ErrorCode.NO_SESSION
    assert bench.mcu._session is None
    assert status(bench).failures == 1


def test_a_flood_of_probes_decodes_n_and_the_chip_keeps_serving(bench: Bench) -> None:
    bench.open()
    answers = [bench.ask(m.Probe(vec(genuine(99, i)))) for i in range(1000)]
    assert [a.outcome for a in answers[:3]] == [m.Outcome.PENDING, m.Outcome.PENDING, m.Outcome.REJECT]
    assert {code(a) for a in answers[3:]} == {m.ErrorCode.NO_SESSION}
    assert bench.mcu.counts.decodes == 3 * 2
    assert status(bench).failures == 1
    assert bench.attempt(genuine(1, 0), genuine(1, 1)).outcome == m.Outcome.ACCEPT


def test_a_flood_of_sessions_runs_into_the_lockout_and_the_budget(bench: Bench) -> None:
    answers = [bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3)) for _ in range(100)]
    assert sum(isinstance(a, m.Session) for a in answers) == 5
    assert {code(a) for a in answers[5:]} == {m.ErrorCode.LOCKED_OUT}


def test_clock_jumps_end_a_session(bench: Bench) -> None:
    bench.open()
    bench.clock.advance(-1)
    assert code(bench.ask(m.Probe(vec(genuine(1, 0))))) == m.ErrorCode.NO_SESSION


def test_a_clock_set_backwards_refills_no_budget(bench: Bench) -> None:
    left = status(bench).attempts_left_today
    bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3))
    bench.clock.advance(-86_400)
    assert status(bench).attempts_left_today == left - 1
    bench.clock.advance(86_400 / 100 * 0.99)
    assert status(bench).attempts_left_today == left - 1


# --- a long hostile stream -----------------------------------------------------------------------


def hostile_requests(bench: Bench, rng: random.Random, count: int):
    """Every request type, with stolen, replayed and random fields, and random frames."""
    records = list(bench.records.items())
    names = ["ann", "bob", "zoe", "é" * 32, "x"]

    def blob(size: int) -> bytes:
        return rng.randbytes(size)

    def a_record() -> m.Message:
        user, (gen, sealed) = rng.choice(records)
        return m.LoadRecord(rng.choice([user, rng.choice(names)]), rng.choice([gen, gen + 1, 0, 2**32 - 1]),
                            rng.choice([sealed, sealed[:-1], blob(rng.randrange(1, 513))]))

    def a_vector() -> bytes:
        size = rng.choice([32, 32, 32, 31, 64, 1])
        return vec([rng.randrange(-32768, 32768) for _ in range(size)])

    makers = [
        lambda: m.Hello(), lambda: m.Status(), lambda: m.ListUsers(rng.randrange(256)), lambda: m.CloseSession(),
        lambda: m.Passcode(rng.choice(["wrong guess", PASSCODE[:-1], "x" * 64])),
        lambda: m.SetPasscode(rng.choice(["", "wrong guess"]), "a new passcode"),
        lambda: m.OpenSession(rng.choice([1, 2, 3, 4, 0, 255]), rng.randrange(4), rng.randrange(7),
                              rng.choice([0, 5, 2**31 - 1, 2**31, 2**32 - 1]), rng.choice([b"", b"pay"])),
        a_record, a_record,
        lambda: m.Probe(a_vector()), lambda: m.Probe(a_vector()), lambda: m.Probe(a_vector()),
        lambda: m.EnrollFace(rng.choice(names), rng.randrange(4), rng.choice([RADIUS_SQ, 0, 2**64 - 1]),
                                 rng.choice([RADIUS_SQ, RADIUS_SQ // 4, 0, 2**64 - 1]), a_vector()),
        lambda: m.CommitUser(rng.choice(names), rng.randrange(4), rng.randbytes(32)), lambda: m.AbortUser(rng.choice(names)),
        lambda: m.RemoveUser(rng.choice(names)),
        lambda: m.LatticeChunk(rng.choice([0, 1, 2**32 - 1]), blob(rng.randrange(1, 1025))),
        lambda: m.LatticeCommit("x", blob(32), rng.randrange(2**25), rng.randrange(2**25), rng.choice([0, 2**25, 2**64 - 1]),
                                      rng.randrange(100), blob(32)),
        lambda: Frame(rng.randrange(256), rng.randrange(1, 0x10000), blob(rng.randrange(300))),
    ]
    for _ in range(count):
        yield rng.choice(makers)()


@pytest.mark.parametrize("provisioning", [False, True], ids=["normal", "provisioning-jumper"])
def test_a_hostile_stream_gets_answers_and_no_more_decisions_than_counted_attempts(tmp_path: Path,
                                                                                   provisioning: bool) -> None:
    bench = provisioned(tmp_path, Clock(), {"ann": 1, "bob": 2})
    bench.start(provisioning=provisioning)
    bench.ask(m.Passcode(PASSCODE))  # the owner's, after the restart; the stream never has it
    bench.clock.advance(301)  # ...and the administrator window it opened (with the jumper) has closed
    rng = random.Random(2026)
    rejects, sessions, details = 0, 0, set()
    for request in hostile_requests(bench, rng, 4000):
        bench.clock.advance(rng.choice([0, 0, 0, 1, 20, 600]))
        frame = request if isinstance(request, Frame) else Frame(request.TYPE, 7, request.encode_payload())
        reply = bench.mcu.handle_frame(frame)
        assert reply.seq == frame.seq
        answer = m.decode_message(reply.type, reply.payload)
        assert isinstance(answer, m.RESPONSES)
        assert not (isinstance(answer, m.VerdictMessage) and answer.outcome == m.Outcome.ACCEPT)
        rejects += isinstance(answer, m.VerdictMessage) and answer.outcome == m.Outcome.REJECT
        sessions += isinstance(answer, m.Session) and answer.max_probes > 0
        if isinstance(answer, m.Error):
            details.add((answer.code, answer.detail))
    report = status(bench)
    assert report.users == 2 and sessions > 0 and rejects <= sessions
    assert bench.mcu.counts.decodes <= sessions * 3 * 2
    # Every error detail is one of a few fixed sentences (counts and type numbers aside), naming no user.
    templates = {re.sub(r"0x[0-9a-f]+|\d+", "#", detail) for _, detail in details}
    assert len(templates) < 40
    assert not any(name in detail for _, detail in details for name in ("ann", "bob"))


def test_every_kind_of_session_with_a_genuine_face_ends_in_a_well_formed_answer(bench: Bench) -> None:
    """The accept path for every purpose, policy, account and message (where a wallet account of 2^31
    used to raise out of the handler)."""
    purposes = [(m.Purpose.UNLOCK, b""), (m.Purpose.WALLET_ADDRESS, b""), (m.Purpose.WALLET_SIGN, bytes(m.MAX_MESSAGE)),
                (m.Purpose.UNLOCK, b"pay")]
    accepts = 0
    for (purpose, message), (k, n), account, person in itertools.product(
            purposes, [(2, 3), (3, 3), (1, 3)], [0, 2**31 - 1, 2**31], [2, 99]):
        if bench.mcu.state.failures >= 4:
            bench.ask(m.Passcode(PASSCODE))  # keep the back-off out of the way
        frames = [Frame(m.OpenSession.TYPE, 1, m.OpenSession(purpose, k, n, account, message).encode_payload())]
        frames += [Frame(m.LoadRecord.TYPE, 2, m.LoadRecord(u, g, s).encode_payload()) for u, (g, s) in bench.records.items()]
        frames += [Frame(m.Probe.TYPE, 3, m.Probe(vec(genuine(person, i))).encode_payload()) for i in range(4)]
        for frame in frames:
            reply = bench.mcu.handle_frame(frame)
            answer = m.decode_message(reply.type, reply.payload)
            assert reply.seq == frame.seq and isinstance(answer, m.RESPONSES)
            if isinstance(answer, m.VerdictMessage) and answer.outcome == m.Outcome.ACCEPT:
                assert answer.user == {1: "ann", 2: "bob"}[person]
                accepts += 1
    assert accepts == 3 * 2 * 2  # valid purpose, policy and account, genuine face


# --- enrolment radii -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "radius_sq, wallet_radius_sq",
    [
        (RADIUS_SQ // 8, RADIUS_SQ // 4),  # a wallet radius beyond the record's unlock radius
        (RADIUS_SQ, 0),
        (RADIUS_SQ, RADIUS_SQ // 4 + 1),  # beyond the lattice's wallet radius, within the unlock radius
        (RADIUS_SQ, 2**64 - 1),
    ],
)
def test_an_enrolment_with_a_bad_wallet_radius_is_refused_and_seals_nothing(tmp_path: Path, radius_sq: int,
                                                                             wallet_radius_sq: int) -> None:
    from mcu_bench import provision

    bench = Bench(tmp_path, Clock())
    provision(bench.start(provisioning=True), wallet_radius_sq=RADIUS_SQ // 4)
    bench.admin()
    bench.enrol("ann", face(1), wallet_radius_sq=RADIUS_SQ // 4)
    before, decodes = copy.deepcopy(bench.mcu.state), bench.mcu.counts.decodes
    assert isinstance(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0)), m.Session)
    assert bench.ask(m.LoadRecord("ann", *bench.records["ann"])) == m.RecordLoaded("ann")
    answer = bench.ask(m.EnrollFace("mal", 1, radius_sq, wallet_radius_sq, vec(face(12))))
    assert code(answer) == m.ErrorCode.MALFORMED and "wallet radius" in answer.detail
    assert "mal" not in bench.mcu.state.users and bench.mcu.state == before  # no pending record, no budget spent
    assert bench.mcu.counts.decodes == decodes  # refused before the collision check
    staged = bench.ask(m.EnrollFace("mal", 1, RADIUS_SQ, RADIUS_SQ // 4, vec(face(12))))
    assert isinstance(staged, m.FaceEnrolled)  # the same session, with radii in range


def test_no_record_may_accept_the_public_mean_face(tmp_path: Path) -> None:
    """e = 0 is a probe anyone can make: an enrolment whose radius reaches it is refused, nothing sealed."""
    bench = Bench(tmp_path, Clock())
    provision(bench.start(provisioning=True))
    bench.admin()
    short = face(3) // 4  # a face near the mean: shorter than the lattice's radius
    vector = vec(short)
    length_sq = int(short @ short)
    assert length_sq <= RADIUS_SQ  # the lattice's cap alone would let this radius through
    assert isinstance(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0)), m.Session)
    before = copy.deepcopy(bench.mcu.state)
    answer = bench.ask(m.EnrollFace("mal", 1, length_sq, length_sq // 2, vector))
    assert code(answer) == m.ErrorCode.MALFORMED and "mean face" in answer.detail
    assert bench.mcu.state == before
    assert isinstance(bench.ask(m.EnrollFace("mal", 1, length_sq - 1, length_sq // 2, vector)), m.FaceEnrolled)
