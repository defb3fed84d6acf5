"""The unlock loop, top to bottom: frames in, one decision out.

    auth = Authenticator(store, pipeline, mcu=client)      # reads the users once, warms the decoders
    result = auth.unlock(source)                           # one attempt; result.accepted, result.user

One attempt:
1. Refuse early while locked out (the microcontroller's count in hardened mode, the host's in plain).
2. Open a matcher: in hardened mode a counted session on the microcontroller, which holds the sealed
   helper data's key, decodes every probe against every user itself and answers only pending,
   accept or reject (`HardenedMatcher`); in plain mode an attempt of `kernels.recipe` over the
   plain records (`PlainMatcher`), whose k-of-n decision is `policy.AttemptPolicy`.
3. For each frame: detect, choose the face, quality gate, embed (`check_frame`). The attempt belongs
   to the first usable face's track; frames of any other face are skipped, never matched.
4. Each usable embedding goes to the matcher until it decides; the frame budget and the window
   bound the attempt whatever happens.
5. Log the attempt (no biometric data) and count it.

The face key (plain mode) lives in memory only and is handed to the caller in the result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from latticelock.device.errors import DeviceError
from latticelock.device.lockout import Lockout
from latticelock.device.policy import DEFAULT_POLICY, AttemptPolicy, Decision, PolicyConfig, Verdict
from latticelock.device.quality import QualityConfig, assess
from latticelock.device.sources import Frame, Source
from latticelock.device.store import FlashStore

if TYPE_CHECKING:
    from latticelock.firmware_bridge.client import McuClient
    from latticelock.kernels.recipe import Gallery
    from latticelock.models.pipeline import FacePipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameReport:
    index: int
    name: str
    outcome: str
    """"no face", "low quality: <reason>", "another face", "match <users>", "no match" or "sent"."""
    seconds: dict[str, float]
    """Wall time of each stage: detect, gate, embed, match."""


@dataclass
class UnlockResult:
    verdict: Verdict
    frames_read: int
    latency_s: float
    """Wall time from the attempt's first frame to the decision."""
    frames: list[FrameReport] = field(default_factory=list)
    key: bytes | None = None
    """Plain mode: the accepted user's face key (memory only)."""

    @property
    def accepted(self) -> bool:
        return self.verdict.decision is Decision.ACCEPT

    @property
    def user(self) -> str | None:
        return self.verdict.user


class Matcher(Protocol):
    """One attempt's matching: an embedding in, the attempt's verdict so far out."""

    def observe(self, timestamp: float, embedding: np.ndarray) -> Verdict: ...

    def read(self, timestamp: float) -> Verdict: ...

    def finish(self, reason: str) -> Verdict: ...

    def close(self) -> None: ...


class PlainMatcher:
    """k-of-n over the recipe's candidates; the KDF runs once, for the candidate that reaches k."""

    def __init__(self, gallery: "Gallery", policy: PolicyConfig) -> None:
        self.attempt = gallery.attempt()
        self.policy = AttemptPolicy(policy)
        self.key: bytes | None = None
        self.last_outcome = ""

    def read(self, timestamp: float) -> Verdict:
        return self.policy.read(timestamp)

    def observe(self, timestamp: float, embedding: np.ndarray) -> Verdict:
        candidates = self.attempt.offer(embedding)
        users = sorted({c.user for c in candidates})
        self.last_outcome = f"match {', '.join(users)}" if users else "no match"
        ready = self.policy.observe(timestamp, candidates)
        while ready is not None:
            key = self.attempt.confirm(ready)
            if key is not None:
                self.key = key
                return self.policy.accept(ready)
            self.policy.drop(ready)
            ready = None
        return self.policy.status()

    def finish(self, reason: str) -> Verdict:
        return self.policy.reject(reason)

    def close(self) -> None:
        self.attempt.close()


class Authenticator:
    """Unlock attempts against the users of one store."""

    def __init__(
        self,
        store: FlashStore,
        pipeline: "FacePipeline",
        *,
        policy: PolicyConfig | None = None,
        quality: QualityConfig | None = None,
        lockout: Lockout | None = None,
        mcu: "McuClient | None" = None,
        recipe_options: dict | None = None,
        warm_up: bool = True,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.policy = policy or DEFAULT_POLICY
        self.quality = quality or QualityConfig()
        self.lockout = lockout if lockout is not None else Lockout(store)
        self.mcu = mcu
        self.recipe_options = dict(recipe_options or {})
        self.reload()
        if warm_up:
            self.gallery.warm_up()

    def reload(self) -> None:
        """Read the enrolled users and rebuild their public lattices once (DeviceError if none is usable)."""
        from latticelock.kernels.errors import KernelsError
        from latticelock.kernels.recipe import Gallery

        records = {}
        self.skipped: list[tuple[str, str]] = []
        for user in self.store.users():
            try:
                record = user.record()
                Gallery({user.name: record}, **self.recipe_options)
            except KernelsError as exc:
                log.warning("skipping user %r: unusable record (%s)", user.name, exc)
                self.skipped.append((user.name, str(exc)))
            else:
                records[user.name] = record
        if not records:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped)
            raise DeviceError(f"no usable users are enrolled in {self.store.path}" + (f" ({reasons})" if reasons else ""))
        self.gallery = Gallery(records, **self.recipe_options)
        self.user_names = self.gallery.users

    def check_frame(self, frame: Frame) -> tuple[FrameReport, np.ndarray | None]:
        """(report, embedding) for one frame; the embedding is None when the frame has no usable face."""
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        face = self.pipeline.choose(self.pipeline.faces(frame.image), frame.image.shape)
        t1 = time.perf_counter()
        seconds["detect"] = t1 - t0
        if face is None:
            return FrameReport(frame.index, frame.name, "no face", seconds), None
        quality = assess(frame.image, face, self.quality)
        t2 = time.perf_counter()
        seconds["gate"] = t2 - t1
        if not quality.ok:
            return FrameReport(frame.index, frame.name, f"low quality: {quality.reasons[0]}", seconds), None
        embedding = self.pipeline.embed_faces(frame.image, [face])[0]
        seconds["embed"] = time.perf_counter() - t2
        return FrameReport(frame.index, frame.name, "usable", seconds), embedding

    def unlock(self, source: Source) -> UnlockResult:
        """One unlock attempt on the frames of `source` (raises LockedOutError while backing off)."""
        self.lockout.check()
        matcher = PlainMatcher(self.gallery, self.policy)
        reports: list[FrameReport] = []
        started: float | None = None
        verdict: Verdict | None = None
        try:
            for frame in source:
                if started is None:
                    started = time.perf_counter()
                verdict = matcher.read(frame.timestamp)
                if verdict.decision is not Decision.PENDING:
                    break
                report, embedding = self.check_frame(frame)
                if embedding is not None:
                    t0 = time.perf_counter()
                    verdict = matcher.observe(frame.timestamp, embedding)
                    report.seconds["match"] = time.perf_counter() - t0
                    report = FrameReport(report.index, report.name, matcher.last_outcome, report.seconds)
                reports.append(report)
                log.debug("frame %d %s: %s", frame.index, frame.name, report.outcome)
                if verdict.decision is not Decision.PENDING:
                    break
            if verdict is None or verdict.decision is Decision.PENDING:
                usable = any(r.outcome not in ("no face",) and not r.outcome.startswith("low quality") for r in reports)
                verdict = matcher.finish("source ended before a decision" if usable else "no usable face")
            key = matcher.key
        finally:
            matcher.close()
        latency = 0.0 if started is None else time.perf_counter() - started
        if verdict.decision is Decision.ACCEPT:
            self.lockout.record_success(verdict.user, frames=verdict.frames)
        elif verdict.frames == 0:
            self.lockout.log_attempt("no-face", frames=0, reason=verdict.reason)
        else:
            self.lockout.record_failure(frames=verdict.frames, reason=verdict.reason)
        return UnlockResult(verdict, len(reports), latency, reports, key)
