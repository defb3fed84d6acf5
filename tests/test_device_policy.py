"""Multi-frame decision policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.device.errors import ConfigError
from latticelock.device.policy import AttemptPolicy, Decision, PolicyConfig


def run(policy, matches, dt=0.1):
    verdict = None
    for i, user in enumerate(matches):
        verdict = policy.observe(i * dt, user, None if user is None else f"key-{user}".encode())
        if verdict.decision is not Decision.PENDING:
            return verdict
    return policy.finish()


def test_accepts_on_the_kth_match_of_one_user():
    verdict = run(AttemptPolicy(PolicyConfig(k=2, n=5)), [None, "alice", None, "alice", "alice"])
    assert (verdict.decision, verdict.user, verdict.key, verdict.frames, verdict.matches) == (Decision.ACCEPT, "alice", b"key-alice", 4, 2)


def test_matches_of_different_users_do_not_add_up():
    verdict = run(AttemptPolicy(PolicyConfig(k=2, n=4)), ["alice", "bob", None, None])
    assert verdict.decision is Decision.REJECT and verdict.user is None and verdict.key is None


def test_rejects_as_soon_as_k_is_out_of_reach():
    verdict = run(AttemptPolicy(PolicyConfig(k=3, n=5)), [None, None, None, "alice", "alice"])
    assert verdict.decision is Decision.REJECT and verdict.frames == 3


def test_window_limits_the_attempt():
    policy = AttemptPolicy(PolicyConfig(k=2, n=5, window_s=1.0))
    assert policy.observe(0.0, "alice").decision is Decision.PENDING
    assert policy.tick(0.5).decision is Decision.PENDING
    assert policy.tick(1.5).decision is Decision.REJECT
    assert policy.observe(1.6, "alice").decision is Decision.REJECT


def test_late_match_outside_window_does_not_count():
    policy = AttemptPolicy(PolicyConfig(k=2, n=5, window_s=1.0))
    policy.observe(0.0, "alice")
    assert policy.observe(2.0, "alice").decision is Decision.REJECT


def test_decision_is_final_and_reset_starts_over():
    policy = AttemptPolicy(PolicyConfig(k=1, n=1))
    assert policy.observe(0, None).decision is Decision.REJECT
    assert policy.observe(0.1, "alice").decision is Decision.REJECT
    policy.reset()
    assert policy.observe(0.2, "alice").decision is Decision.ACCEPT


def test_finish_without_frames_rejects():
    verdict = AttemptPolicy().finish("no usable face")
    assert verdict.decision is Decision.REJECT and verdict.frames == 0 and verdict.reason == "no usable face"


@pytest.mark.parametrize("bad", [dict(k=0), dict(k=6, n=5), dict(window_s=0)])
def test_bad_settings(bad):
    with pytest.raises(ConfigError):
        PolicyConfig(**bad)


@settings(max_examples=300, deadline=None)
@given(k=st.integers(1, 5), extra=st.integers(0, 4), frames=st.lists(st.booleans(), min_size=0, max_size=12))
def test_single_user_rule_is_k_of_the_first_n(k, extra, frames):
    """For one user, acceptance is exactly 'at least k matches among the first n frames'."""
    n = k + extra
    verdict = run(AttemptPolicy(PolicyConfig(k=k, n=n)), ["alice" if f else None for f in frames])
    assert (verdict.decision is Decision.ACCEPT) == (sum(frames[:n]) >= k)
    assert verdict.frames <= n
