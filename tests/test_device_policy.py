"""Multi-frame decision policy: k matches of one candidate (user and secret), bounded frames and time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.device.errors import ConfigError
from latticelock.device.policy import DEVICE_LIMITS, AttemptPolicy, Decision, PolicyConfig


@dataclass(frozen=True)
class C:
    user: str
    secret_id: int = 0


def run(policy, frames, dt=0.1, confirm=lambda c: True):
    """Feed one frame per entry (a list of candidates); confirm a ready candidate with `confirm`."""
    for i, candidates in enumerate(frames):
        if policy.read(i * dt).decision is not Decision.PENDING:
            break
        ready = policy.observe(i * dt, candidates)
        if ready is not None:
            if confirm(ready):
                return policy.accept(ready)
            policy.drop(ready)
        if policy.status().decision is not Decision.PENDING:
            break
    return policy.status() if policy.decided else policy.reject("source ended")


def test_accepts_on_the_kth_match_of_one_candidate():
    verdict = run(AttemptPolicy(PolicyConfig(k=2, n=5)), [[], [C("alice")], [], [C("alice")], [C("alice")]])
    assert (verdict.decision, verdict.user, verdict.frames, verdict.matches) == (Decision.ACCEPT, "alice", 4, 2)


def test_matches_of_different_users_or_secrets_do_not_add_up():
    assert run(AttemptPolicy(PolicyConfig(k=2, n=4)), [[C("alice")], [C("bob")], [], []]).decision is Decision.REJECT
    # Two frames that decode alice's lattice to different secrets are two different guesses.
    assert run(AttemptPolicy(PolicyConfig(k=2, n=2)), [[C("alice", 0)], [C("alice", 1)]]).decision is Decision.REJECT


def test_a_candidate_that_fails_confirmation_is_dropped_and_the_attempt_goes_on():
    policy = AttemptPolicy(PolicyConfig(k=2, n=5))
    verdict = run(policy, [[C("eve", 7), C("alice")], [C("eve", 7), C("alice")], [C("alice")]], confirm=lambda c: c.user == "alice")
    assert verdict.decision is Decision.ACCEPT and verdict.user == "alice"


def test_rejects_as_soon_as_k_is_out_of_reach():
    verdict = run(AttemptPolicy(PolicyConfig(k=3, n=5)), [[], [], [], [C("alice")], [C("alice")]])
    assert verdict.decision is Decision.REJECT and verdict.frames == 3


def test_window_and_frame_budget_limit_the_attempt():
    policy = AttemptPolicy(PolicyConfig(k=2, n=5, window_s=1.0))
    assert policy.read(0.0).decision is Decision.PENDING and policy.observe(0.0, [C("alice")]) is None
    assert policy.read(0.5).decision is Decision.PENDING
    assert policy.read(1.5).decision is Decision.REJECT
    assert policy.observe(1.6, [C("alice")]) is None and policy.status().decision is Decision.REJECT

    budget = AttemptPolicy(PolicyConfig(k=2, n=3, max_frames=4))
    assert all(budget.read(i).decision is Decision.PENDING for i in range(4))
    assert budget.read(4).decision is Decision.REJECT and "4 frames read" in budget.status().reason


def test_decision_is_final():
    policy = AttemptPolicy(PolicyConfig(k=1, n=3))
    assert run(policy, [[C("alice")]]).decision is Decision.ACCEPT
    assert policy.observe(1.0, [C("bob")]) is None and policy.status().user == "alice"


@pytest.mark.parametrize("k, n, window, frames", [(0, 3, 10, 30), (4, 3, 10, 30), (2, 3, 0, 30), (2, 3, -1, 30), (2, 3, 10, 0)])
def test_invalid_configs(k, n, window, frames):
    with pytest.raises(ConfigError):
        PolicyConfig(k=k, n=n, window_s=window, max_frames=frames)


def test_settings_may_only_tighten_the_device_limits():
    assert PolicyConfig(k=3, n=3, window_s=5, max_frames=10).check_within(DEVICE_LIMITS)
    for loose in (PolicyConfig(k=1, n=3), PolicyConfig(k=2, n=100_000), PolicyConfig(k=2, n=3, window_s=1e9),
                  PolicyConfig(k=2, n=3, max_frames=10_000)):
        with pytest.raises(ConfigError, match="may only be tightened"):
            loose.check_within(DEVICE_LIMITS)


@settings(max_examples=300, deadline=None)
@given(k=st.integers(1, 4), extra=st.integers(0, 3), frames=st.lists(st.lists(st.sampled_from("ab"), max_size=2), max_size=10))
def test_accept_iff_some_user_has_k_matches_in_the_first_n_frames(k, extra, frames):
    n = k + extra
    verdict = run(AttemptPolicy(PolicyConfig(k=k, n=n)), [[C(u) for u in f] for f in frames])
    counts = {u: 0 for u in "ab"}
    winner = None
    for f in frames[:n]:
        for u in dict.fromkeys(f):
            counts[u] += 1
            if counts[u] >= k and winner is None:
                winner = u
        if winner:
            break
    assert (verdict.decision is Decision.ACCEPT) == (winner is not None)
    if winner:
        assert verdict.user == winner
