"""One enrolment as the operator's page sees it: progress, the verdict in words, the latest preview, the end.

The work itself runs in a thread (`station.Kiosk.start_enrolment`) and reports here; the page polls
`snapshot()` and streams `preview()`. Nothing here is an embedding, a key or a record: the outcome
holds a size, a generation and a fingerprint of the public key.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from latticelock.device.enrol import FrameCheck
from latticelock.device.kiosk.preview import annotate

RUNNING, DONE, FAILED = "running", "done", "failed"


@dataclass(frozen=True)
class EnrolmentOutcome:
    user: str
    generation: int
    parameter_set: str
    record_bytes: int
    hardened: bool
    key_fingerprint: str
    """SHA-256 of the unlock public key, abbreviated: enough to compare, never the key."""
    frames_used: int
    frames_read: int
    rejected: str


class EnrolmentJob:
    """The state of one enrolment, written by its worker thread and read by the operator's requests."""

    def __init__(self, owner: str, user: str, source: str, needed: int, replacing: bool) -> None:
        self.owner = owner
        """Id of the operator session that started it: only that session sees its preview."""
        self.user = user
        self.source = source
        self.replacing = replacing
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = RUNNING
        self._needed = needed
        self._good = 0
        self._frames = 0
        self._verdict = "starting"
        self._preview: bytes | None = None
        self._version = 0
        self._outcome: EnrolmentOutcome | None = None
        self._error = ""

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def outcome(self) -> EnrolmentOutcome | None:
        with self._lock:
            return self._outcome

    @property
    def error(self) -> str:
        with self._lock:
            return self._error

    def on_frame(self, check: FrameCheck) -> None:
        """Enrolment's per-frame callback: progress, verdict and a fresh preview."""
        preview = annotate(check)
        with self._changed:
            self._frames += 1
            self._good, self._needed, self._verdict = check.good, check.needed, check.verdict
            self._preview = preview
            self._version += 1
            self._changed.notify_all()

    def status(self, text: str) -> None:
        """A step that is not a frame (opening the source, the chip sealing the record) in words."""
        with self._changed:
            self._verdict = text
            self._version += 1
            self._changed.notify_all()

    def finish(self, outcome: EnrolmentOutcome) -> None:
        self._end(DONE, outcome=outcome)

    def fail(self, message: str) -> None:
        self._end(FAILED, error=message)

    def _end(self, state: str, outcome: EnrolmentOutcome | None = None, error: str = "") -> None:
        with self._changed:
            self._state, self._outcome, self._error = state, outcome, error
            # The face leaves memory with the enrolment: the page keeps the last frame it was shown.
            self._preview = None
            self._version += 1
            self._changed.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """What the page shows, JSON-ready."""
        with self._lock:
            return {
                "state": self._state, "user": self.user, "source": self.source, "good": self._good,
                "needed": self._needed, "frames": self._frames, "verdict": self._verdict, "error": self._error,
                "outcome": asdict(self._outcome) if self._outcome else None,
            }

    def preview(self, after: int, timeout: float) -> tuple[int, bytes | None, bool]:
        """(version, JPEG or None, finished), waiting up to `timeout` s for a version newer than `after`."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != after or self._state != RUNNING, timeout)
            return self._version, self._preview, self._state != RUNNING
