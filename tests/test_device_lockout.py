"""Persistent failure counting, exponential back-off and the attempt log."""

from __future__ import annotations

import pytest

from latticelock.device.clock import ManualClock
from latticelock.device.errors import ConfigError, LockedOutError
from latticelock.device.lockout import Lockout, LockoutPolicy
from latticelock.device.store import FlashStore


def make(tmp_path, clock):
    return Lockout(FlashStore(tmp_path / "s"), LockoutPolicy(free_attempts=5, base_delay_s=30, max_delay_s=600), clock=clock.now)


def test_five_free_failures_then_doubling_backoff(tmp_path):
    clock = ManualClock(1000.0)
    lockout = make(tmp_path, clock)
    for _ in range(4):
        lockout.check()
        lockout.record_failure(frames=5)
    lockout.check()
    lockout.record_failure(frames=5)
    with pytest.raises(LockedOutError) as info:
        lockout.check()
    assert info.value.retry_after == pytest.approx(30)
    clock.advance(30.01)
    lockout.check()
    lockout.record_failure()
    assert lockout.retry_after() == pytest.approx(60)
    clock.advance(60.01)
    lockout.record_failure()
    assert lockout.retry_after() == pytest.approx(120)


def test_backoff_is_capped():
    policy = LockoutPolicy(free_attempts=5, base_delay_s=30, max_delay_s=600)
    assert [policy.delay(f) for f in (4, 5, 6, 9, 10, 500)] == [0, 30, 60, 480, 600, 600]


def test_counters_survive_restarts_and_success_resets(tmp_path):
    clock = ManualClock(50.0)
    lockout = make(tmp_path, clock)
    for _ in range(6):
        lockout.record_failure()
    again = make(tmp_path, clock)
    assert again.state().failures == 6
    with pytest.raises(LockedOutError):
        again.check()
    clock.advance(1000)
    again.record_success("alice", frames=3)
    assert make(tmp_path, clock).state().failures == 0


def test_corrupt_counter_never_resets_to_zero(tmp_path):
    clock = ManualClock(10.0)
    lockout = make(tmp_path, clock)
    lockout.record_failure()
    lockout.counter_path.write_bytes(b"\x00" * 10)
    assert lockout.state().failures == 5


def test_attempt_log_has_fixed_fields_and_nothing_biometric(tmp_path):
    clock = ManualClock(7.0)
    lockout = make(tmp_path, clock)
    lockout.record_failure(frames=5, reason="no 2 of 5 frames within 5 s")
    lockout.record_success("alice", frames=2)
    lockout.log_attempt("no-face", reason="no usable face")
    entries = lockout.read_log()
    assert [e["result"] for e in entries] == ["reject", "accept", "no-face"]
    assert entries[1] == {"time": 7.0, "result": "accept", "user": "alice", "frames": 2, "reason": "", "failures": 0}
    assert all(set(e) <= {"time", "result", "user", "frames", "reason", "failures"} for e in entries)


def test_bad_policy():
    with pytest.raises(ConfigError):
        LockoutPolicy(free_attempts=0)


def test_a_clock_set_back_never_extends_the_wait_beyond_the_backoff(tmp_path):
    clock = ManualClock(10_000.0)
    lockout = make(tmp_path, clock)
    for _ in range(5):
        lockout.record_failure()
    clock._now = 100.0  # the wall clock was set back by hours
    assert lockout.retry_after() == pytest.approx(30)
    with pytest.raises(LockedOutError):
        lockout.check()


def test_corrupt_counter_from_the_future_still_backs_off_but_boundedly(tmp_path):
    clock = ManualClock(10.0)
    lockout = make(tmp_path, clock)
    lockout.record_failure()
    lockout.counter_path.write_bytes(b"\x00" * 10)  # its mtime is real time, far after the manual clock
    assert 0 < lockout.retry_after() <= 30


def test_a_torn_log_line_is_skipped(tmp_path):
    clock = ManualClock(7.0)
    lockout = make(tmp_path, clock)
    lockout.record_failure(frames=3)
    with open(lockout.log_path, "ab") as log:
        log.write(b'{"time": 8.0, "res')
    lockout.record_success("alice", frames=2)
    assert [e["result"] for e in lockout.read_log()] == ["reject", "accept"]
