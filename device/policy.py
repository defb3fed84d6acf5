"""The multi-frame unlock decision: accept when k frames of one attempt match the same user.

An attempt is the first `n` usable frames (a face that passed the quality gate and was checked
against the enrolled records) seen within `window_s` seconds of the attempt's first frame. It is
accepted as soon as one user has `k` matches among them, and rejected as soon as that can no longer
happen (too few frames left, or the window has passed). Frames with no usable face do not count
towards `n`, only towards the clock. `latticelock eval policy` measures the false-accept and
false-reject rates per attempt that a choice of (k, n) gives, by feeding this same class.

Measured with the default set l2fe-facenet-m64 on the LFW identities of lfw_pairs.txt (602 people
enrolled from 3 images each, 6020 genuine and 10234 impostor attempts; `latticelock eval policy
--embeddings /work/data/lfw.npz --faces94 /work/data/faces94.npz --max-people 1000
--impostor-people 17`), FRR / FAR per attempt with 95% Wilson intervals:

    1/1  FRR 0.0030 [0.0019, 0.0047]  FAR 0.0101 [0.0083, 0.0122]
    1/3  FRR 0.0017 [0.0009, 0.0031]  FAR 0.0127 [0.0107, 0.0151]
    2/3  FRR 0.0017 [0.0009, 0.0031]  FAR 0.0093 [0.0076, 0.0113]   <- default
    2/5  FRR 0.0017 [0.0009, 0.0031]  FAR 0.0112 [0.0094, 0.0135]
    3/5  FRR 0.0017 [0.0009, 0.0031]  FAR 0.0094 [0.0077, 0.0114]

2 of 3 roughly halves 1/1's false rejects and lowers its false accepts, and decides after two
matching frames; more frames (n=5) buy no FRR and give an impostor more draws. On faces94 (18
people, controlled lighting, which brings different people closer together than LFW does) the
same LFW-calibrated threshold accepts about one impostor attempt in twenty (2/3: FAR 0.0458
[0.0274, 0.0753], FRR 0 of 180); with l2fe-facenet-m32 it was one in ten (0.0980).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from latticelock.device.errors import ConfigError


@dataclass(frozen=True)
class PolicyConfig:
    k: int = 2
    """Matches of the same user needed to accept (`--policy-k`, default 2)."""
    n: int = 3
    """Usable frames one attempt may use (`--policy-n`, default 3; 2 of 3 measured best of the k/n tried, see `latticelock eval policy`)."""
    window_s: float = 10.0
    """An attempt ends this many seconds after its first usable frame (`--policy-window`, default 10)."""

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ConfigError(f"policy needs 1 <= k <= n, got k={self.k}, n={self.n}")
        if self.window_s <= 0:
            raise ConfigError(f"policy window must be positive, got {self.window_s}")

    def describe(self) -> str:
        return f"{self.k} of {self.n} frames within {self.window_s:g} s"


class Decision(enum.Enum):
    PENDING = "pending"
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    user: str | None = None
    key: bytes | None = None
    frames: int = 0
    matches: int = 0
    reason: str = ""


class AttemptPolicy:
    """Feed it one observation per usable frame; it says when the attempt is decided."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.reset()

    def reset(self) -> None:
        self._start: float | None = None
        self._frames = 0
        self._matches: Counter[str] = Counter()
        self._keys: dict[str, bytes] = {}
        self._verdict: Verdict | None = None

    @property
    def frames(self) -> int:
        return self._frames

    def observe(self, timestamp: float, user: str | None, key: bytes | None = None) -> Verdict:
        """One usable frame at `timestamp`: `user` is whom it matched (None: nobody), with that user's key."""
        if self._verdict is not None:
            return self._verdict
        if self._start is None:
            self._start = timestamp
        elif timestamp - self._start > self.config.window_s:
            return self._decide(Decision.REJECT, reason=f"no {self.config.describe()}")
        self._frames += 1
        if user is not None:
            self._matches[user] += 1
            if key is not None:
                self._keys[user] = key
            if self._matches[user] >= self.config.k:
                return self._decide(Decision.ACCEPT, user=user)
        best = max(self._matches.values(), default=0)
        if best + (self.config.n - self._frames) < self.config.k:
            return self._decide(Decision.REJECT, reason=f"no {self.config.describe()}")
        return Verdict(Decision.PENDING, frames=self._frames, matches=best)

    def tick(self, timestamp: float) -> Verdict:
        """A frame without a usable face: only the clock moves."""
        if self._verdict is None and self._start is not None and timestamp - self._start > self.config.window_s:
            return self._decide(Decision.REJECT, reason=f"no {self.config.describe()}")
        return self._verdict or Verdict(Decision.PENDING, frames=self._frames, matches=max(self._matches.values(), default=0))

    def finish(self, reason: str = "source ended") -> Verdict:
        """The frames ran out before a decision: the attempt is rejected."""
        return self._verdict or self._decide(Decision.REJECT, reason=reason)

    def _decide(self, decision: Decision, user: str | None = None, reason: str = "") -> Verdict:
        matches = self._matches[user] if user else max(self._matches.values(), default=0)
        self._verdict = Verdict(decision, user, self._keys.get(user) if user else None, self._frames, matches, reason)
        return self._verdict
