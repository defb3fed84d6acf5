"""Failed-attempt counting with exponential back-off that survives restarts, and the attempt log.

The counter lives in the store (`lockout.bin`, crash-safe writes, SHA-256). A counter file that
fails its checks never resets the count to zero: it is read as `free_attempts` failures at the
file's modification time, so corrupting it cannot buy an attacker fresh attempts. The clock is
wall-clock time (it must survive restarts) and injectable for tests.

The attempt log (`attempts.log`, JSON lines) records when, what result, which user on success and
how many frames were used; never embeddings, distances, images or keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from latticelock.device.atomic import write_atomic
from latticelock.device.errors import ConfigError, LockedOutError
from latticelock.device.store import FlashStore, file_errors

log = logging.getLogger(__name__)

LOCKOUT_MAGIC = b"LLLK"
LOCKOUT_VERSION = 1
_LOCKOUT = struct.Struct("<4sHId")
LOG_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures are free, and how the wait grows after them."""

    free_attempts: int = 5
    """Failures allowed before any wait (default 5)."""
    base_delay_s: float = 30.0
    """Wait after the first failure beyond the free ones; doubles with each further one (default 30 s)."""
    max_delay_s: float = 86400.0
    """Ceiling of the wait (default one day)."""

    def __post_init__(self) -> None:
        if self.free_attempts < 1 or self.base_delay_s <= 0 or self.max_delay_s < self.base_delay_s:
            raise ConfigError(f"invalid lockout policy {self}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th consecutive failure."""
        if failures < self.free_attempts:
            return 0.0
        exponent = min(failures - self.free_attempts, 64)
        return min(self.base_delay_s * 2.0**exponent, self.max_delay_s)


@dataclass(frozen=True)
class LockoutState:
    failures: int
    last_failure: float


class Lockout:
    """Persistent consecutive-failure counter of one store."""

    def __init__(self, store: FlashStore, policy: LockoutPolicy | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy = policy or LockoutPolicy()
        self.clock = clock
        self.counter_path = store.path / "lockout.bin"
        self.log_path = store.path / "attempts.log"

    def state(self) -> LockoutState:
        if not self.counter_path.exists() and not self.counter_path.is_symlink():
            return LockoutState(0, 0.0)
        with file_errors(self.counter_path):
            fd = os.open(self.counter_path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read()
        body, digest = data[:-32], data[-32:]
        if (
            len(data) != _LOCKOUT.size + 32
            or not hmac.compare_digest(hashlib.sha256(body).digest(), digest)
            or _LOCKOUT.unpack(body)[:2] != (LOCKOUT_MAGIC, LOCKOUT_VERSION)
        ):
            log.warning("%s fails its checks; counting %d failures", self.counter_path, self.policy.free_attempts)
            return LockoutState(self.policy.free_attempts, self.counter_path.stat().st_mtime)
        _, _, failures, last = _LOCKOUT.unpack(body)
        return LockoutState(failures, last)

    def _write(self, state: LockoutState) -> None:
        body = _LOCKOUT.pack(LOCKOUT_MAGIC, LOCKOUT_VERSION, state.failures, state.last_failure)
        with file_errors(self.counter_path):
            write_atomic(self.counter_path, body + hashlib.sha256(body).digest())

    def retry_after(self) -> float:
        """Seconds until the next attempt is allowed (0 when allowed now)."""
        state = self.state()
        delay = self.policy.delay(state.failures)
        remaining = state.last_failure + delay - self.clock()
        # Capped at the policy's delay: a clock set back (or a failure stamped in the future) must
        # not lock the owner out for longer than the back-off itself.
        return min(max(0.0, remaining), delay)

    def check(self) -> None:
        """Raise LockedOutError while the back-off after repeated failures lasts."""
        wait = self.retry_after()
        if wait > 0:
            failures = self.state().failures
            raise LockedOutError(f"locked out after {failures} failed attempts; try again in {wait:.0f} s", wait)

    def record_failure(self, frames: int = 0, reason: str = "no match") -> LockoutState:
        with self.store.locked():
            state = LockoutState(self.state().failures + 1, self.clock())
            self._write(state)
        self.log_attempt("reject", frames=frames, reason=reason, failures=state.failures)
        return state

    def record_success(self, user: str, frames: int = 0) -> None:
        with self.store.locked():
            if self.counter_path.exists():
                self._write(LockoutState(0, 0.0))
        self.log_attempt("accept", user=user, frames=frames, failures=0)

    def log_attempt(self, result: str, *, user: str | None = None, frames: int = 0, reason: str = "", failures: int | None = None) -> None:
        """Append one JSON line; the fields are fixed so nothing biometric can slip in."""
        entry = {"time": round(self.clock(), 3), "result": result, "user": user, "frames": int(frames), "reason": reason}
        if failures is not None:
            entry["failures"] = int(failures)
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self.store.locked(), file_errors(self.log_path):
            if self.log_path.exists() and self.log_path.lstat().st_size + len(line) > LOG_MAX_BYTES:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
            # O_NOFOLLOW: a link planted in place of the log must not redirect the write elsewhere.
            fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # end a line torn by a power cut, so this entry stays whole
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

    def read_log(self) -> list[dict]:
        """The logged attempts, oldest first; a line torn by a power cut is reported and skipped."""
        if not self.log_path.exists():
            return []
        with file_errors(self.log_path):
            fd = os.open(self.log_path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                text = handle.read().decode("utf-8", errors="replace")
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict):
                log.warning("%s line %d is not a log entry; skipped", self.log_path, number)
                continue
            entries.append(entry)
        return entries
