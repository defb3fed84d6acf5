"""Operator sessions, their CSRF tokens, and the kiosk's own limit on sign-in attempts.

Sessions live in this process only (a restart signs everyone out, as the chip's restart does): the
browser holds a random id in an HttpOnly, SameSite=Strict cookie, the kiosk holds what it means.
Every visitor gets a session and a CSRF token before signing in, so the sign-in form itself is
protected; signing in issues a new id (an id planted before sign-in is worth nothing after it).

A signed-in session lasts as long as the microcontroller's administrator window (300 s from the
passcode, `firmware_bridge/PROTOCOL.md` section 4): past it the chip refuses enrolment and removal
anyway, so the operator signs in again rather than meeting a refusal halfway through.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

ADMIN_WINDOW_S = 300.0
ANONYMOUS_IDLE_S = 3600.0
MAX_SESSIONS = 256


@dataclass
class OperatorSession:
    id: str
    csrf: str
    expires: float
    signed_in_at: float | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)
    """(kind, text) shown once on the next page: kind is "ok" or "error"."""

    @property
    def signed_in(self) -> bool:
        return self.signed_in_at is not None

    def flash(self, kind: str, text: str) -> None:
        self.messages.append((kind, text))

    def take_messages(self) -> list[tuple[str, str]]:
        messages, self.messages = self.messages, []
        return messages


class Sessions:
    """The kiosk's operator sessions, by id; expired ones are forgotten when next looked at."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, admin_window_s: float = ADMIN_WINDOW_S) -> None:
        self.clock = clock
        self.admin_window_s = admin_window_s
        self._lock = threading.Lock()
        self._sessions: dict[str, OperatorSession] = {}

    def get(self, session_id: str | None) -> OperatorSession | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= self.clock():
                del self._sessions[session_id]
                return None
            return session

    def new(self) -> OperatorSession:
        """A fresh anonymous session. Past MAX_SESSIONS the oldest anonymous one is forgotten: they cost nothing
        to make, so a flood of them must not push out an operator who signed in (that took the passcode)."""
        session = OperatorSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock() + ANONYMOUS_IDLE_S)
        with self._lock:
            while len(self._sessions) >= MAX_SESSIONS:
                anonymous = [s for s in self._sessions.values() if not s.signed_in] or list(self._sessions.values())
                del self._sessions[min(anonymous, key=lambda s: s.expires).id]
            self._sessions[session.id] = session
        return session

    def sign_in(self, session: OperatorSession) -> OperatorSession:
        """The signed-in successor of `session`: new id and token, lasting the administrator window."""
        now = self.clock()
        signed = OperatorSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.admin_window_s, now,
                                 list(session.messages))
        with self._lock:
            self._sessions.pop(session.id, None)
            self._sessions[signed.id] = signed
        return signed

    def end(self, session: OperatorSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def window_left(self, session: OperatorSession) -> float:
        """Seconds left of a signed-in session (0 for an anonymous one)."""
        return max(0.0, session.expires - self.clock()) if session.signed_in else 0.0


def csrf_ok(session: OperatorSession | None, token: str | None) -> bool:
    """Whether `token` is the session's CSRF token (compared in constant time)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


class SignInLimiter:
    """At most `failures` wrong passcodes per `period` seconds at this kiosk, on top of the chip's own delays.

    The chip is the real limit (it counts every guess on its flash); this one answers a burst at once,
    without a round trip and without spending the chip's free guesses."""

    def __init__(self, failures: int = 5, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()

    def wait(self) -> float:
        """Seconds until the next sign-in attempt is taken (0: now)."""
        with self._lock:
            now = self.clock()
            while self._recent and self._recent[0] <= now - self.period:
                self._recent.popleft()
            if len(self._recent) < self.failures:
                return 0.0
            return self._recent[0] + self.period - now

    def failed(self) -> None:
        with self._lock:
            self._recent.append(self.clock())
