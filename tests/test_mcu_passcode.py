"""The device passcode on the microcontroller: counted before it is checked, escalating delays, asked for
after a restart and after ten face failures, SET_PASSCODE's rules, and the administrator's window."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcu_bench import PASSCODE, Bench, Clock, code, genuine, make, provisioned

from latticelock.firmware_bridge import mcu_state
from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.errors import StateError


def status(bench: Bench) -> m.StatusReport:
    return bench.ask(m.Status())


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return provisioned(tmp_path, Clock(), {"ann": 1})


def test_wrong_passcodes_buy_escalating_delays(bench: Bench) -> None:
    delays = []
    for _ in range(10):
        answer = bench.ask(m.Passcode("not the passcode"))
        assert code(answer) == m.ErrorCode.WRONG_PASSCODE
        delays.append(answer.retry_after_ms // 1000)
        bench.clock.advance(answer.retry_after_ms / 1000)
    assert delays == [0, 0, 0, 0, 60, 300, 900, 900, 3600, 3600]
    assert status(bench).passcode_failures == 10


def test_a_guess_during_the_delay_is_refused_uncounted_even_if_right(bench: Bench) -> None:
    for _ in range(5):
        bench.ask(m.Passcode("not the passcode"))
    refused = bench.ask(m.Passcode(PASSCODE))
    assert code(refused) == m.ErrorCode.LOCKED_OUT and refused.retry_after_ms == 60_000
    assert status(bench).passcode_failures == 5
    bench.clock.advance(60)
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    assert (status(bench).passcode_failures, status(bench).passcode_lockout_ms) == (0, 0)


def test_the_passcode_delay_survives_a_restart(bench: Bench) -> None:
    for _ in range(6):
        bench.clock.advance(status(bench).passcode_lockout_ms / 1000)
        bench.ask(m.Passcode("not the passcode"))
    bench.start()
    assert status(bench).passcode_lockout_ms == 300_000
    assert code(bench.ask(m.Passcode(PASSCODE))) == m.ErrorCode.LOCKED_OUT


def test_each_guess_is_on_flash_before_it_is_checked(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_save = mcu_state.save

    def save(state_dir, state):
        seen.append(state.passcode_failures)
        real_save(state_dir, state)

    monkeypatch.setattr(mcu_state, "save", save)
    bench.ask(m.Passcode("not the passcode"))
    bench.ask(m.Passcode(PASSCODE))
    assert seen[:3] == [1, 2, 0]  # counted, counted, then cleared once found right


def test_a_guess_that_cannot_be_counted_is_not_checked(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.start()  # the restart asks for the passcode
    monkeypatch.setattr(mcu_state, "save", broken_flash)
    answer = bench.ask(m.Passcode(PASSCODE))
    assert code(answer) == m.ErrorCode.INTERNAL and "flash" in answer.detail
    monkeypatch.undo()
    assert status(bench).passcode_required
    assert code(bench.attempt(genuine(1, 0))) == m.ErrorCode.PASSCODE_REQUIRED


def broken_flash(*_: object) -> None:
    raise StateError("cannot write microcontroller flash: injected failure")


def test_a_restart_asks_for_the_passcode_before_any_face(bench: Bench) -> None:
    bench.start()
    assert status(bench).passcode_required
    assert code(bench.attempt(genuine(1, 0))) == m.ErrorCode.PASSCODE_REQUIRED
    assert status(bench).failures == 0  # refused before counting
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    assert bench.attempt(genuine(1, 0), genuine(1, 1)).outcome == m.Outcome.ACCEPT


def test_no_passcode_is_asked_after_a_restart_without_users(tmp_path: Path) -> None:
    bench = provisioned(tmp_path, Clock())
    bench.start()
    assert not status(bench).passcode_required


def test_ten_face_failures_ask_for_the_passcode_which_clears_them(bench: Bench) -> None:
    for attempt in range(10):
        bench.clock.advance(status(bench).lockout_remaining_ms / 1000)
        bench.attempt(genuine(50, attempt), genuine(50, attempt + 100))
    report = status(bench)
    assert report.passcode_required and report.failures == 10 and report.lockout_remaining_ms == 960_000
    bench.clock.advance(960)
    assert code(bench.attempt(genuine(1, 0))) == m.ErrorCode.PASSCODE_REQUIRED
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    report = status(bench)
    assert (report.passcode_required, report.failures, report.lockout_remaining_ms) == (False, 0, 0)


# --- SET_PASSCODE ----------------------------------------------------------------------------------


def test_the_first_passcode_is_set_in_provisioning_mode_only(tmp_path: Path) -> None:
    clock = Clock()
    assert code(make(tmp_path, clock).handle(m.SetPasscode("", PASSCODE))) == m.ErrorCode.NOT_PROVISIONING
    kiosk = make(tmp_path, clock, provisioning=True)
    assert kiosk.handle(m.SetPasscode("", PASSCODE)) == m.PasscodeSet()
    assert kiosk.handle(m.Status()).admin  # setting it opens the window
    assert make(tmp_path, clock).handle(m.Hello()).passcode_set


@pytest.mark.parametrize("new", ["12345", "     ", "éééé"])
def test_a_passcode_has_at_least_six_characters(tmp_path: Path, new: str) -> None:
    kiosk = make(tmp_path, Clock(), provisioning=True)
    answer = kiosk.handle(m.SetPasscode("", new))
    assert code(answer) == m.ErrorCode.MALFORMED and "6 to 64" in answer.detail
    assert not kiosk.state.passcode_set


def test_a_long_passcode_of_64_bytes_is_accepted(tmp_path: Path) -> None:
    kiosk = make(tmp_path, Clock(), provisioning=True)
    assert kiosk.handle(m.SetPasscode("", "é" * 32)) == m.PasscodeSet()
    assert kiosk.handle(m.Passcode("é" * 32)) == m.PasscodeOk(True)


def test_changing_the_passcode_needs_the_current_one_counted_like_a_guess(bench: Bench) -> None:
    wrong = bench.ask(m.SetPasscode("not the passcode", "new passcode"))
    assert code(wrong) == m.ErrorCode.WRONG_PASSCODE and status(bench).passcode_failures == 1
    assert code(bench.ask(m.SetPasscode("", "new passcode"))) == m.ErrorCode.WRONG_PASSCODE
    assert bench.ask(m.SetPasscode(PASSCODE, "new passcode")) == m.PasscodeSet()  # outside provisioning mode too
    assert code(bench.ask(m.Passcode(PASSCODE))) == m.ErrorCode.WRONG_PASSCODE
    assert bench.ask(m.Passcode("new passcode")) == m.PasscodeOk(False)
    bench.start()
    assert bench.ask(m.Passcode("new passcode")) == m.PasscodeOk(False)


# --- the administrator's window --------------------------------------------------------------------


def test_the_window_opens_in_provisioning_mode_only_and_closes_after_300_s(bench: Bench) -> None:
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    assert not status(bench).admin
    bench.start(provisioning=True)
    assert not status(bench).admin  # a restart closes it
    assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(True)
    bench.clock.advance(300)
    assert status(bench).admin
    bench.clock.advance(0.001)
    assert not status(bench).admin
    assert code(bench.ask(m.RemoveUser("ann"))) == m.ErrorCode.NOT_AUTHORISED


def test_before_any_passcode_there_is_no_administrator(tmp_path: Path) -> None:
    kiosk = make(tmp_path, Clock(), provisioning=True)
    assert code(kiosk.handle(m.Passcode(PASSCODE))) == m.ErrorCode.NOT_AUTHORISED
    assert code(kiosk.handle(m.LatticeChunk(0, b"x"))) == m.ErrorCode.NOT_AUTHORISED
    assert code(kiosk.handle(m.OpenSession(m.Purpose.ENROL, 0, 0))) == m.ErrorCode.NO_LATTICE
