"""The multi-frame unlock decision: accept when k frames of one attempt decode the same user's secret.

An attempt is the first `n` usable frames (a face of the attempt's one face track that passed the
quality gate and was matched against the enrolled records) seen within `window_s` seconds of its
first usable frame, and at most `max_frames` frames read in all. A frame "matches" a candidate when
the candidate's lattice decodes it within the radius; frames of one face decode to the same secret,
so the policy counts matches per candidate (user and secret), and only a candidate with `k` matches
is confirmed with the KDF: one Argon2id per decision, however many frames matched. A confirmed
candidate accepts; one that fails confirmation is dropped and the attempt goes on. The attempt is
rejected as soon as acceptance can no longer happen (too few frames left, the window has passed, or
`max_frames` were read).

Limits: `DEVICE_LIMITS` is the loosest policy the device allows; settings may only tighten it
(larger k, smaller n, window or frame budget), so no flag turns one attempt into many guesses. In
hardened mode the microcontroller enforces its own copy of these bounds per counted session.
`latticelock eval policy` measures what a policy gives, per attempt, by feeding this same class.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from latticelock.device.errors import ConfigError


@dataclass(frozen=True)
class PolicyConfig:
    k: int = 2
    """Matches of the same user (and secret) needed to accept (`--policy-k`)."""
    n: int = 3
    """Usable frames one attempt may use (`--policy-n`)."""
    window_s: float = 10.0
    """An attempt ends this many seconds after its first usable frame (`--policy-window`)."""
    max_frames: int = 30
    """Frames read per attempt, usable or not (`--policy-max-frames`)."""

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ConfigError(f"policy needs 1 <= k <= n, got k={self.k}, n={self.n}")
        if not self.window_s > 0:
            raise ConfigError(f"policy window must be positive, got {self.window_s}")
        if self.max_frames < 1:
            raise ConfigError(f"policy frame budget must be at least 1, got {self.max_frames}")

    def describe(self) -> str:
        return f"{self.k} of {self.n} frames within {self.window_s:g} s"

    def check_within(self, limits: "PolicyConfig") -> "PolicyConfig":
        """Self, if it is at least as strict as `limits`; ConfigError naming what is looser otherwise."""
        looser = []
        if self.k < limits.k:
            looser.append(f"k={self.k} < {limits.k}")
        if self.n > limits.n:
            looser.append(f"n={self.n} > {limits.n}")
        if self.window_s > limits.window_s:
            looser.append(f"window {self.window_s:g} s > {limits.window_s:g} s")
        if self.max_frames > limits.max_frames:
            looser.append(f"frame budget {self.max_frames} > {limits.max_frames}")
        if looser:
            raise ConfigError(f"policy may only be tightened: {', '.join(looser)} (device limits: {limits.describe()}, {limits.max_frames} frames)")
        return self


# The default and the loosest policy the device accepts (see `latticelock eval policy` for their rates).
DEFAULT_POLICY = PolicyConfig()
DEVICE_LIMITS = DEFAULT_POLICY


class Decision(enum.Enum):
    PENDING = "pending"
    ACCEPT = "accept"
    REJECT = "reject"


class Candidate(Protocol):
    """What a frame matched: a user and which of that user's decoded secrets (kernels.recipe.Candidate)."""

    user: str
    secret_id: int


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    user: str | None = None
    frames: int = 0
    matches: int = 0
    reason: str = ""


class AttemptPolicy:
    """Feed it one observation per usable frame; it says which candidate to confirm and when the attempt is over."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or DEFAULT_POLICY
        self._start: float | None = None
        self._frames = 0
        self._read = 0
        self._matches: Counter = Counter()
        self._dropped: set = set()
        self._verdict: Verdict | None = None

    @property
    def frames(self) -> int:
        """Usable frames observed so far."""
        return self._frames

    @property
    def decided(self) -> Verdict | None:
        return self._verdict

    def read(self, timestamp: float) -> Verdict:
        """Any frame read (usable or not): the frame budget and the clock move."""
        if self._verdict is not None:
            return self._verdict
        self._read += 1
        if self._start is not None and timestamp - self._start > self.config.window_s:
            return self.reject(f"no {self.config.describe()}")
        if self._read > self.config.max_frames:
            return self.reject(f"no {self.config.describe()} in {self.config.max_frames} frames read")
        return self._pending()

    def observe(self, timestamp: float, candidates: Sequence[Candidate]) -> Candidate | None:
        """One usable frame and what it matched; returns the candidate that now has k matches (to confirm), if any."""
        if self._verdict is not None:
            return None
        if self._start is None:
            self._start = timestamp
        self._frames += 1
        ready = None
        for candidate in dict.fromkeys(candidates):
            key = (candidate.user, candidate.secret_id)
            if key in self._dropped:
                continue
            self._matches[key] += 1
            if self._matches[key] >= self.config.k and ready is None:
                ready = candidate
        if ready is None:
            self._check_hope()
        return ready

    def accept(self, candidate: Candidate) -> Verdict:
        """The confirmed candidate wins the attempt."""
        key = (candidate.user, candidate.secret_id)
        self._verdict = Verdict(Decision.ACCEPT, candidate.user, self._frames, self._matches[key])
        return self._verdict

    def drop(self, candidate: Candidate) -> Verdict:
        """The candidate failed confirmation (its secret is not the record's): it no longer counts."""
        key = (candidate.user, candidate.secret_id)
        self._dropped.add(key)
        self._matches.pop(key, None)
        if self._verdict is None:
            self._check_hope()
        return self._verdict or self._pending()

    def reject(self, reason: str) -> Verdict:
        if self._verdict is None:
            self._verdict = Verdict(Decision.REJECT, None, self._frames, self._best(), reason)
        return self._verdict

    def status(self) -> Verdict:
        return self._verdict or self._pending()

    def _best(self) -> int:
        return max(self._matches.values(), default=0)

    def _pending(self) -> Verdict:
        return Verdict(Decision.PENDING, None, self._frames, self._best())

    def _check_hope(self) -> None:
        if self._best() + (self.config.n - self._frames) < self.config.k:
            self.reject(f"no {self.config.describe()}")
