"""Counting, lockout and the bounds of a face attempt: issue 11's cases 1 to 3, replayed against v2.

Each test named `test_issue11_N_...` reproduces the attack of case N of issue 11 on the microcontroller
of hardened mode v2 and checks that it now fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mcu_bench import PASSCODE, RADIUS_SQ, Bench, Clock, code, face, genuine, provisioned, vec

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.mcu import MAX_PROBES

USERS = {"ann": 1, "bob": 2, "cat": 3, "dan": 4, "eve": 5}
IMPOSTOR = 99


def status(bench: Bench) -> m.StatusReport:
    return bench.ask(m.Status())


def outcome(answer: m.Message) -> m.Outcome:
    assert isinstance(answer, m.VerdictMessage), answer
    return m.Outcome(answer.outcome)


def impostor_attempt(bench: Bench, seed: int) -> m.Message:
    return bench.attempt(genuine(IMPOSTOR, seed), genuine(IMPOSTOR, seed + 1000), genuine(IMPOSTOR, seed + 2000))


def owner_attempt(bench: Bench, person: int, seed: int = 0) -> m.Message:
    return bench.attempt(genuine(person, seed), genuine(person, seed + 1), genuine(person, seed + 2))


def wait_out_the_lockout(bench: Bench) -> float:
    """Advance the clock past the back-off in force; the wait in seconds."""
    wait = status(bench).lockout_remaining_ms / 1000
    bench.clock.advance(wait)
    return wait


# --- case 1: the owner can always get back in --------------------------------------------------


def test_issue11_1_owner_of_five_users_unlocks_after_20_impostor_attempts_and_the_waits(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    waits, passcodes = [], 0
    for attempt in range(20):
        if status(bench).passcode_required:
            assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
            passcodes += 1
        if status(bench).lockout_remaining_ms:
            waits.append(wait_out_the_lockout(bench))
        before = status(bench).failures
        decodes = bench.mcu.counts.decodes
        assert outcome(impostor_attempt(bench, attempt)) == m.Outcome.REJECT
        # One count per attempt, with five users' records loaded and n = 3 probes decoded against each
        # (the chip never rejects before the n-th probe: that would tell which probe matched).
        assert status(bench).failures == before + 1
        assert bench.mcu.counts.decodes - decodes == 3 * len(USERS)
    assert waits == [30, 60, 120, 240, 480] * 2 and passcodes == 1
    assert status(bench).passcode_required
    assert code(owner_attempt(bench, USERS["eve"])) == m.ErrorCode.PASSCODE_REQUIRED
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    answer = owner_attempt(bench, USERS["eve"])
    assert outcome(answer) == m.Outcome.ACCEPT and answer.user == "eve"
    assert status(bench).failures == 0


def test_issue11_1_the_owner_gets_back_in_by_face_after_the_waits_alone(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    for attempt in range(9):  # one short of the passcode
        wait_out_the_lockout(bench)
        assert outcome(impostor_attempt(bench, attempt)) == m.Outcome.REJECT
    refused = owner_attempt(bench, USERS["eve"])
    assert code(refused) == m.ErrorCode.LOCKED_OUT and refused.retry_after_ms == 480_000
    bench.clock.advance(480)
    assert outcome(owner_attempt(bench, USERS["eve"])) == m.Outcome.ACCEPT
    assert (status(bench).failures, status(bench).lockout_remaining_ms) == (0, 0)


def test_issue11_1_five_bogus_sessions_lock_out_for_30_s_not_for_good(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    for _ in range(5):
        assert isinstance(bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3)), m.Session)
    refused = bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3))
    assert code(refused) == m.ErrorCode.LOCKED_OUT and refused.retry_after_ms == 30_000
    assert status(bench).failures == 5
    bench.clock.advance(30)
    assert outcome(owner_attempt(bench, USERS["ann"])) == m.Outcome.ACCEPT


def test_the_back_off_survives_a_restart(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    for attempt in range(5):
        impostor_attempt(bench, attempt)
    bench.start()
    assert status(bench).lockout_remaining_ms == 30_000
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)  # the restart asks for it; it lifts the lock
    assert status(bench).lockout_remaining_ms == 0


def test_the_back_off_is_capped(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS, passcode_after=40, backoff_max=3600)
    for attempt in range(30):
        wait_out_the_lockout(bench)
        impostor_attempt(bench, attempt)
    assert status(bench).lockout_remaining_ms == 3_600_000


# --- case 2: provisioning mode is no oracle ------------------------------------------------------


def test_issue11_2_face_sessions_are_counted_in_provisioning_mode_too(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    bench.start(provisioning=True)
    bench.admin()  # even inside the administrator's window
    for attempt in range(5):
        assert outcome(impostor_attempt(bench, attempt)) == m.Outcome.REJECT
    assert status(bench).failures == 5
    assert code(impostor_attempt(bench, 5)) == m.ErrorCode.LOCKED_OUT


def test_issue11_2_enrolment_needs_the_passcode_window(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    assert code(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0))) == m.ErrorCode.NOT_PROVISIONING
    bench.start(provisioning=True)
    assert code(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0))) == m.ErrorCode.NOT_AUTHORISED
    assert code(bench.ask(m.EnrollFace("mal", 1, RADIUS_SQ, RADIUS_SQ, vec(face(IMPOSTOR))))) == m.ErrorCode.NO_SESSION
    assert code(bench.ask(m.RemoveUser("ann"))) == m.ErrorCode.NOT_AUTHORISED
    assert code(bench.ask(m.Passcode("wrong passcode"))) == m.ErrorCode.WRONG_PASSCODE
    assert code(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0))) == m.ErrorCode.NOT_AUTHORISED
    bench.admin()
    assert isinstance(bench.stage("mal", face(IMPOSTOR)), m.FaceEnrolled)
    bench.clock.advance(301)  # the window closes
    assert not status(bench).admin
    assert code(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0))) == m.ErrorCode.NOT_AUTHORISED


def test_issue11_2_the_window_closing_mid_session_stops_enrolment(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), {"ann": 1})
    bench.start(provisioning=True)
    bench.admin()
    bench.clock.advance(295)
    assert isinstance(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0)), m.Session)
    bench.ask(m.LoadRecord("ann", *bench.records["ann"]))
    bench.clock.advance(10)
    assert code(bench.ask(m.EnrollFace("mal", 1, RADIUS_SQ, RADIUS_SQ, vec(face(IMPOSTOR))))) == m.ErrorCode.NOT_AUTHORISED


def test_issue11_2_every_enrolment_check_spends_the_daily_budget(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), {"ann": 1}, daily_attempts=5)  # ann's enrolment spent one
    bench.start(provisioning=True)
    bench.admin()
    left = [status(bench).attempts_left_today]
    collision = bench.stage("mal", genuine(1, 5))
    assert code(collision) == m.ErrorCode.COLLISION and "ann" in collision.detail
    left.append(status(bench).attempts_left_today)
    for person in (20, 21, 22):
        assert isinstance(bench.stage(f"p{person}", face(person)), m.FaceEnrolled)
        left.append(status(bench).attempts_left_today)
    assert left == [4, 3, 2, 1, 0]
    refused = bench.stage("p23", face(23))
    assert code(refused) == m.ErrorCode.LOCKED_OUT and "daily budget" in refused.detail
    assert [u for u, slot in bench.mcu.state.users.items() if slot.active] == ["ann"]


def test_a_collision_stores_nothing_and_needs_every_record_loaded(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), {"ann": 1, "bob": 2})
    bench.start(provisioning=True)
    bench.admin()
    assert isinstance(bench.ask(m.OpenSession(m.Purpose.ENROL, 0, 0)), m.Session)
    bench.ask(m.LoadRecord("ann", *bench.records["ann"]))
    missing = bench.ask(m.EnrollFace("mal", 1, RADIUS_SQ, RADIUS_SQ, vec(face(IMPOSTOR))))
    assert code(missing) == m.ErrorCode.RECORDS_MISSING
    assert code(bench.stage("mal", genuine(2, 9))) == m.ErrorCode.COLLISION
    assert "mal" not in bench.mcu.state.users


# --- case 3: one attempt tests a bounded number of faces ----------------------------------------


@pytest.mark.parametrize("k, n", [(1, 3), (1, 100), (2, 4), (3, 2), (0, 0), (2, MAX_PROBES + 1), (255, 255)])
def test_issue11_3_sessions_cannot_loosen_the_policy(tmp_path: Path, k: int, n: int) -> None:
    bench = provisioned(tmp_path, Clock(), {"ann": 1})
    answer = bench.ask(m.OpenSession(m.Purpose.UNLOCK, k, n))
    assert code(answer) == m.ErrorCode.LIMIT
    assert status(bench).failures == 0


@pytest.mark.parametrize("k, n", [(2, 3), (3, 3), (2, 2)])
def test_sessions_may_tighten_the_policy(tmp_path: Path, k: int, n: int) -> None:
    bench = provisioned(tmp_path, Clock(), {"ann": 1})
    session = bench.ask(m.OpenSession(m.Purpose.UNLOCK, k, n))
    assert isinstance(session, m.Session) and session.max_probes == n and session.ttl_ms == 15_000


def test_issue11_3_a_session_decodes_at_most_n_probes_then_ends(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    bench.open()
    answers = [bench.ask(m.Probe(vec(genuine(IMPOSTOR, i)))) for i in range(3)]
    assert [outcome(a) for a in answers] == [m.Outcome.PENDING, m.Outcome.PENDING, m.Outcome.REJECT]
    assert [a.probes_left for a in answers] == [2, 1, 0]
    assert code(bench.ask(m.Probe(vec(genuine(1, 0))))) == m.ErrorCode.NO_SESSION
    assert bench.mcu.counts.decodes == 3 * len(USERS)


def test_no_answer_tells_which_single_probe_matched(tmp_path: Path) -> None:
    """Probes of two different faces, one of them the owner's: the answers are those of two misses."""
    bench = provisioned(tmp_path, Clock(), USERS)
    bench.open()
    mixed = [outcome(bench.ask(m.Probe(vec(v)))) for v in (genuine(1, 0), genuine(IMPOSTOR, 0))]
    bench.open()
    misses = [outcome(bench.ask(m.Probe(vec(genuine(IMPOSTOR, i))))) for i in range(2)]
    assert mixed == misses == [m.Outcome.PENDING, m.Outcome.PENDING]


def test_issue11_3_malformed_probes_spend_the_session_too(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    bench.open()
    for _ in range(3):
        assert code(bench.ask(m.Probe(b"\x00\x01"))) == m.ErrorCode.MALFORMED
    refused = bench.ask(m.Probe(vec(genuine(1, 0))))
    assert code(refused) == m.ErrorCode.LIMIT and "spent" in refused.detail
    assert bench.mcu.counts.decodes == 0


def test_issue11_3_sessions_expire(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    bench.open()
    bench.clock.advance(15.001)
    expired = bench.ask(m.Probe(vec(genuine(1, 0))))
    assert code(expired) == m.ErrorCode.NO_SESSION and "expired" in expired.detail
    assert code(bench.ask(m.LoadRecord("ann", *bench.records["ann"]))) == m.ErrorCode.NO_SESSION


def test_issue11_3_a_new_session_replaces_the_old_one_and_is_counted(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    bench.open()
    assert isinstance(bench.ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3)), m.Session)
    assert status(bench).failures == 2
    # The first session's records are gone: the owner's face matches nothing in the new one.
    answers = [bench.ask(m.Probe(vec(genuine(1, i)))) for i in range(3)]
    assert outcome(answers[-1]) == m.Outcome.REJECT


def test_issue11_3_the_daily_budget_bounds_even_a_passcode_holder(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS, daily_attempts=17)  # the five enrolments spent five
    for attempt in range(12):
        if status(bench).passcode_required or status(bench).lockout_remaining_ms:
            assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
        assert outcome(impostor_attempt(bench, attempt)) == m.Outcome.REJECT
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    refused = impostor_attempt(bench, 12)
    assert code(refused) == m.ErrorCode.LOCKED_OUT and "daily budget" in refused.detail
    assert refused.retry_after_ms == round(86_400_000 / 17)
    assert code(owner_attempt(bench, 1)) == m.ErrorCode.LOCKED_OUT  # the owner too, until it refills
    bench.clock.advance(refused.retry_after_ms / 1000)
    assert status(bench).attempts_left_today == 1
    assert outcome(owner_attempt(bench, 1)) == m.Outcome.ACCEPT
    assert status(bench).attempts_left_today == 1  # an accepted attempt refunds its unit


def test_an_accept_clears_the_count_and_the_session(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    impostor_attempt(bench, 0)
    unlocks = status(bench).unlocks
    bench.open()
    first = bench.ask(m.Probe(vec(genuine(3, 0))))
    second = bench.ask(m.Probe(vec(genuine(3, 1))))
    assert (outcome(first), first.probes_left) == (m.Outcome.PENDING, 2)
    assert (outcome(second), second.user) == (m.Outcome.ACCEPT, "cat")
    assert (status(bench).failures, status(bench).unlocks) == (0, unlocks + 1)
    assert code(bench.ask(m.Probe(vec(genuine(3, 2))))) == m.ErrorCode.NO_SESSION


def test_lockout_refuses_faces_but_not_status_listing_or_closing(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    for attempt in range(5):
        impostor_attempt(bench, attempt)
    assert isinstance(bench.ask(m.Hello()), m.Version)
    assert status(bench).lockout_remaining_ms == 30_000
    assert bench.ask(m.ListUsers(0)).total == len(USERS)
    assert bench.ask(m.CloseSession()) == m.SessionClosed()
    for purpose in (m.Purpose.UNLOCK, m.Purpose.WALLET_ADDRESS):
        assert code(bench.ask(m.OpenSession(purpose, 2, 3))) == m.ErrorCode.LOCKED_OUT
    assert code(bench.ask(m.OpenSession(m.Purpose.WALLET_SIGN, 2, 3, 0, b"pay"))) == m.ErrorCode.LOCKED_OUT


def test_a_clock_set_backwards_cannot_stretch_the_lockout_beyond_the_cap(tmp_path: Path) -> None:
    # An RTC that loses its battery restarts in the past: the deadline then lies decades ahead. It used
    # to read "24 h left" for as long as the clock took to catch up, which was a permanent lockout.
    bench = provisioned(tmp_path, Clock(), USERS)
    for attempt in range(5):
        impostor_attempt(bench, attempt)
    bench.clock.advance(-10**7)
    assert status(bench).lockout_remaining_ms == 86_400_000
    bench.clock.advance(43_200)
    bench.start()  # the pulled-in deadline is kept: a restart does not push it out again
    assert status(bench).lockout_remaining_ms == 43_200_000
    bench.clock.advance(43_200)
    assert status(bench).lockout_remaining_ms == 0


def test_a_clock_set_backwards_cannot_stretch_the_passcode_delay_beyond_the_cap(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock(), USERS)
    for _ in range(5):
        bench.ask(m.Passcode("not the passcode"))
    bench.clock.advance(-10**7)
    assert code(bench.ask(m.Passcode(PASSCODE))) == m.ErrorCode.LOCKED_OUT
    assert status(bench).passcode_lockout_ms == 86_400_000
    bench.clock.advance(86_400)
    assert status(bench).passcode_lockout_ms == 0
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)


def test_wallet_sessions_answer_only_at_the_wallets_operating_point(tmp_path: Path) -> None:
    """A probe 100 units from the template: inside the unlock radius (~150), outside the wallet's (75).
    The chip unlocks, but its wallet keys do not sign for it: no record may have a wallet radius beyond the lattice's."""
    import hashlib

    import numpy as np
    from mcu_bench import SEED, tables

    bench = Bench(tmp_path, Clock())
    chip = bench.start(provisioning=True)
    assert chip.handle(m.SetPasscode("", PASSCODE)) == m.PasscodeSet()
    data = tables().to_bytes()
    for offset in range(0, len(data), m.MAX_CHUNK):
        chip.handle(m.LatticeChunk(offset, data[offset : offset + m.MAX_CHUNK]))
    ready = chip.handle(m.LatticeCommit("l2fe-facenet-m32", SEED, RADIUS_SQ, RADIUS_SQ // 4, 0, len(data), hashlib.sha256(data).digest()))
    assert isinstance(ready, m.LatticeReady)
    assert code(bench.stage("ann", face(1))) == m.ErrorCode.MALFORMED  # a wallet radius beyond the lattice's
    bench.enrol("ann", face(1), wallet_radius_sq=RADIUS_SQ // 4)
    direction = np.random.default_rng(5).normal(size=32)
    near = np.rint(face(1) + 100 * direction / np.linalg.norm(direction)).astype(int)
    assert bench.attempt(near, near).outcome == m.Outcome.ACCEPT
    assert bench.attempt(near, near, near, purpose=m.Purpose.WALLET_SIGN, message=b"pay").outcome == m.Outcome.REJECT
    assert bench.attempt(face(1), face(1), purpose=m.Purpose.WALLET_SIGN, message=b"pay").outcome == m.Outcome.ACCEPT


def test_wallet_sessions_use_the_records_own_wallet_radius(tmp_path: Path) -> None:
    """On a lattice whose wallet point is as loose as its unlock point, each record's own wallet radius
    decides: a probe 100 units from ann's template (inside her unlock radius ~150, outside her wallet
    radius ~75) unlocks but gets no wallet address, while bob, enrolled with the full radius for both,
    gets one at the same distance."""
    import numpy as np
    from mcu_bench import provision

    bench = Bench(tmp_path, Clock())
    provision(bench.start(provisioning=True))
    assert bench.mcu.state.wallet_radius_sq == bench.mcu.state.lattice_radius_sq >= RADIUS_SQ
    bench.admin()
    bench.enrol("ann", face(1), wallet_radius_sq=RADIUS_SQ // 4)
    bench.enrol("bob", face(2))
    direction = np.random.default_rng(5).normal(size=32)
    step = np.rint(100 * direction / np.linalg.norm(direction)).astype(int)
    near_ann, near_bob = face(1) + step, face(2) + step
    assert RADIUS_SQ // 4 < int(step @ step) <= RADIUS_SQ
    unlocked = bench.attempt(near_ann, near_ann)
    assert (unlocked.outcome, unlocked.user) == (m.Outcome.ACCEPT, "ann")
    assert bench.attempt(near_ann, near_ann, near_ann, purpose=m.Purpose.WALLET_ADDRESS).outcome == m.Outcome.REJECT
    assert bench.attempt(near_ann, near_ann, near_ann, purpose=m.Purpose.WALLET_SIGN, message=b"pay").outcome == m.Outcome.REJECT
    address = bench.attempt(near_bob, near_bob, purpose=m.Purpose.WALLET_ADDRESS)
    assert (address.outcome, address.user) == (m.Outcome.ACCEPT, "bob")
    inside = bench.attempt(genuine(1, 0), genuine(1, 1), purpose=m.Purpose.WALLET_ADDRESS)
    assert (inside.outcome, inside.user) == (m.Outcome.ACCEPT, "ann")


# --- the probe floor -----------------------------------------------------------------------------


def floored(tmp_path: Path, min_probe_sq: int, users: dict[str, int]) -> Bench:
    """`provisioned`, with the lattice's probe floor set to `min_probe_sq`."""
    from mcu_bench import provision

    bench = Bench(tmp_path, Clock())
    provision(bench.start(provisioning=True), min_probe_sq=min_probe_sq)
    bench.admin()
    for name, person in users.items():
        bench.enrol(name, face(person))
    bench.start()
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    return bench


def shrunk(vector, by: float):
    """`vector` moved `by` units toward the origin (the public mean face)."""
    import numpy as np

    length = float(np.linalg.norm(vector))
    return np.rint(vector * (length - by) / length).astype(int)


def test_a_probe_shorter_than_the_floor_matches_nothing_but_is_counted(tmp_path: Path) -> None:
    """ann's own face, and her face moved 100 units toward the mean face (inside her radius ~150, so it
    unlocks on a chip without a floor), against a floor between the two lengths: her face unlocks, the
    shorter probe (and her face halved) matches nothing, decodes nothing, and still spends a probe and
    the attempt."""
    import numpy as np

    f = face(1)
    near, half = shrunk(f, 100), np.rint(f / 2).astype(int)
    assert int((f - near) @ (f - near)) < RADIUS_SQ
    plain = floored(tmp_path / "plain", 0, {"ann": 1})
    assert plain.attempt(near, near).outcome == m.Outcome.ACCEPT
    floor = int(shrunk(f, 50) @ shrunk(f, 50))
    assert int(half @ half) < int(near @ near) < floor < int(f @ f)
    bench = floored(tmp_path / "floored", floor, {"ann": 1})
    assert bench.mcu.state.min_probe_sq == floor
    unlocked = bench.attempt(f, f)
    assert (unlocked.outcome, unlocked.user) == (m.Outcome.ACCEPT, "ann")
    assert bench.mcu.last_probe.decodes == 1
    for short in (near, half):
        assert isinstance(bench.open(), m.Session)
        for left in (2, 1):
            answer = bench.ask(m.Probe(vec(short)))
            assert (outcome(answer), answer.probes_left) == (m.Outcome.PENDING, left)
            assert bench.mcu.last_probe.decodes == 0
        assert outcome(bench.ask(m.Probe(vec(short)))) == m.Outcome.REJECT
        assert code(bench.ask(m.Probe(vec(f)))) == m.ErrorCode.NO_SESSION
    assert status(bench).failures == 2
    # A short probe spends one of the n probes, as a miss does: k = 2 of the 2 left still decide.
    unlocked = bench.attempt(near, f, f)
    assert (unlocked.outcome, unlocked.user) == (m.Outcome.ACCEPT, "ann")
    assert bench.attempt(near, near, f).outcome == m.Outcome.REJECT


@pytest.mark.parametrize("above, unlocks", [(0, True), (1, False)])
def test_the_floor_is_strict_and_enrolment_ignores_it(tmp_path: Path, above: int, unlocks: bool) -> None:
    """A probe exactly at the floor is decided as usual; one unit shorter matches nothing. Enrolment takes
    the template whatever the floor (the floor is about probes a thief can make, not templates)."""
    f = face(1)
    bench = floored(tmp_path, int(f @ f) + above, {"ann": 1})
    assert "ann" in bench.records
    expected = m.Outcome.ACCEPT if unlocks else m.Outcome.REJECT
    assert bench.attempt(f, f, f).outcome == expected
