"""The unlock loop, top to bottom: frames in, one decision out.

    auth = Authenticator(store, pipeline, mcu=client)      # reads the users, warms the models and decoders
    result = auth.unlock(source)                           # one attempt; result.accepted, result.user

One attempt:
1. Open a matcher: in hardened mode a counted session on the microcontroller (opened at the first
   usable face), which holds the key to the sealed helper data, decodes every probe against every
   user itself and answers only pending, accept or reject (`hardened.HardenedMatcher`); in plain mode
   an attempt of `kernels.recipe` over the plain records (`PlainMatcher`), whose k-of-n decision is
   `policy.AttemptPolicy` with one KDF for the candidate that reaches k. A lockout refuses here.
2. Frames flow through `frames.FramePipeline`: capture, tracked detection, quality gate and FaceNet
   overlap in threads, so the next frame is detected while this one is embedded.
3. The attempt belongs to the first usable face's track: frames of any other face ("another face")
   are never matched, so one attempt cannot mix people.
4. Each usable embedding goes to the matcher until it decides; the frame budget and the window bound
   the attempt whatever happens (settings may only tighten them).
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
from latticelock.device.policy import DEFAULT_POLICY, DEVICE_LIMITS, AttemptPolicy, Decision, PolicyConfig, Verdict
from latticelock.device.frames import FramePipeline
from latticelock.device.quality import QualityConfig
from latticelock.device.sources import Source
from latticelock.device.store import FlashStore

if TYPE_CHECKING:
    from latticelock.device.hardened import Proof
    from latticelock.device.liveness import LiveAttempt, Liveness
    from latticelock.firmware_bridge.client import McuClient
    from latticelock.kernels.recipe import Gallery
    from latticelock.models.pipeline import FacePipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameReport:
    index: int
    name: str
    outcome: str
    """"no face", "low quality: <reason>", "another face", "match <users>", "no match" or "sent to the microcontroller"."""
    seconds: dict[str, float]
    """Wall time of each stage: detect, gate, embed, match, and latency (frame in to result out)."""


@dataclass
class UnlockResult:
    verdict: Verdict
    frames_read: int
    latency_s: float
    """Wall time from the first usable frame entering the pipeline to the decision (0 with none)."""
    frames: list[FrameReport] = field(default_factory=list)
    key: bytes | None = None
    """Plain mode: the accepted user's face key (memory only)."""
    proof: "Proof | None" = None
    """Hardened mode: the microcontroller's signature and the public key that checks it."""

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

    def __init__(self, gallery: "Gallery", policy: PolicyConfig, wallet: bool = False) -> None:
        self.attempt = gallery.attempt(wallet)
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
    """Unlock attempts against the users of one store (hardened: through the microcontroller; plain: on the host)."""

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
        # Whatever the settings say, an attempt is never looser than the device's limits.
        self.policy = (policy or DEFAULT_POLICY).check_within(DEVICE_LIMITS)
        self.quality = quality or QualityConfig()
        self.lockout = lockout if lockout is not None else Lockout(store)
        self.hardened = store.mode == "hardened"
        if self.hardened and mcu is None:
            raise DeviceError(f"{store.path} is a hardened store: attach its microcontroller (--mcu URL)")
        self.mcu = mcu
        self.recipe_options = dict(recipe_options or {})
        self.frames = FramePipeline(pipeline, quality=self.quality)
        self.reload()
        if warm_up:
            # Models, decoders and the numba kernels compiled now: the first attempt is as fast as the tenth.
            self.frames.warm_up()
            if not self.hardened:
                self.gallery.warm_up()

    def reload(self) -> None:
        """Read the enrolled users (DeviceError if none is usable); hardened: reconcile with the chip first."""
        if self.hardened:
            from latticelock.device.hardened import reconcile, sealed_users

            reconcile(self.store, self.mcu)
            active = {entry.name: entry.active_generation for entry in self.mcu.list_users()}
            self.sealed, self.skipped = sealed_users(self.store, active)
            self.user_names = [u.name for u in self.sealed]
        else:
            self.gallery, self.skipped = _plain_gallery(self.store, self.recipe_options)
            self.user_names = self.gallery.users if self.gallery else []
        for name, why in self.skipped:
            log.warning("skipping user %r: unusable record (%s)", name, why)
        if not self.user_names:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped)
            raise DeviceError(f"no usable users are enrolled in {self.store.path}" + (f" ({reasons})" if reasons else ""))

    def _matcher(self, purpose: int, account: int, message: bytes) -> Matcher:
        if self.hardened:
            from latticelock.device.hardened import HardenedMatcher

            return HardenedMatcher(self.mcu, self.sealed, self.policy, purpose, account, message,
                                   self.recipe_options.get("projection"))
        self.lockout.check()
        return PlainMatcher(self.gallery, self.policy, wallet=purpose != 1)

    def unlock(self, source: Source, purpose: int = 1, account: int = 0, message: bytes = b"",
               liveness: "Liveness | None" = None) -> UnlockResult:
        """One attempt on the frames of `source`: an unlock (purpose 1), or a wallet address (2) / signature
        over `message` (3) for `account`. With `liveness`, the face must first pass the head-turn challenge
        (`device.liveness`) on one track; its frames up to the turn are then matched. Raises the
        microcontroller's refusals (locked out, passcode required) after logging them, and the host's
        LockedOutError in plain mode."""
        from latticelock.firmware_bridge.errors import BridgeError

        matcher = self._matcher(purpose, account, message)
        challenge = liveness.start() if liveness is not None else None
        reports: list[FrameReport] = []
        started: float | None = None
        verdict: Verdict | None = None
        track: int | None = None
        held: list[tuple[float, np.ndarray]] = []  # usable frames seen while the challenge runs
        try:
            with self.frames.run(source) as results:
                for r in results:
                    verdict = matcher.read(r.frame.timestamp)
                    if verdict.decision is not Decision.PENDING:
                        break
                    seconds = dict(r.seconds)
                    if challenge is not None:
                        outcome, verdict = self._liveness_step(challenge, r, held, matcher)
                    elif not r.usable:
                        outcome = r.reason
                    elif track is not None and r.track_id != track:
                        outcome = "another face"
                    else:
                        track = r.track_id
                        t0 = time.perf_counter()
                        verdict = matcher.observe(r.frame.timestamp, r.embedding)
                        seconds["match"] = time.perf_counter() - t0
                        outcome = matcher.last_outcome
                    if r.usable and started is None:
                        # Latency counts from the moment the first usable frame entered the pipeline.
                        started = time.perf_counter() - r.seconds.get("latency", 0.0)
                    if challenge is not None and challenge.passed:
                        challenge, track = None, r.track_id  # matching goes on with this track only
                    reports.append(FrameReport(r.frame.index, r.frame.name, outcome, seconds))
                    log.debug("frame %d %s: %s", r.frame.index, r.frame.name, outcome)
                    if verdict.decision is not Decision.PENDING:
                        break
            if verdict is None or verdict.decision is Decision.PENDING:
                if challenge is not None:
                    verdict = self._liveness_failed(matcher, challenge.finish().reason)
                else:
                    verdict = matcher.finish("source ended before a decision" if track is not None else "no usable face")
        except BridgeError as exc:
            # A refusal or a broken link mid-attempt still belongs in the log.
            self.lockout.log_attempt("refused", frames=len(reports), reason=f"microcontroller: {exc}")
            raise
        finally:
            matcher.close()
        latency = 0.0 if started is None else time.perf_counter() - started
        self._count(verdict)
        return UnlockResult(verdict, len(reports), latency, reports, getattr(matcher, "key", None), getattr(matcher, "proof", None))

    def _liveness_step(self, challenge: "LiveAttempt", r, held: list, matcher: Matcher) -> tuple[str, Verdict]:
        """Feed one frame to the head-turn check; when it passes, match the frames held so far."""
        from latticelock.device.liveness import Observation

        height, width = r.frame.image.shape[:2]
        seen = challenge.check.observe(Observation.from_faces(r.frame.timestamp, (width, height), r.found, r.face,
                                                              track=r.track_id, matched=r.usable))
        if seen.decision is Decision.REJECT:
            return f"liveness: {seen.reason}", self._liveness_failed(matcher, seen.reason)
        if seen.decision is Decision.PENDING:
            if r.usable and abs(seen.motion.yaw_change if seen.motion else 0.0) < challenge.check.config.baseline_max_yaw_deg:
                held.append((r.frame.timestamp, r.embedding))  # near-frontal frames of the track, matched once alive
            return ("liveness: " + (f"turn your head to your {seen.challenge[seen.steps_done]}" if seen.challenge else "waiting for a frontal face")), matcher.read(r.frame.timestamp)
        challenge.passed = True
        verdict = matcher.read(r.frame.timestamp)
        for timestamp, embedding in held:
            verdict = matcher.observe(timestamp, embedding)
            if verdict.decision is not Decision.PENDING:
                break
        return f"liveness passed ({' then '.join(seen.challenge)}); {matcher.last_outcome or 'matching'}", verdict

    def _liveness_failed(self, matcher: Matcher, reason: str) -> Verdict:
        # A failed challenge is a failed attempt: counted where attempts are counted (the chip, in hardened mode).
        spend = getattr(matcher, "spend", None)
        if spend is not None:
            spend()
        matcher.finish(f"liveness: {reason}")
        return Verdict(Decision.REJECT, None, 1, 0, f"liveness: {reason}")

    def _count(self, verdict: Verdict) -> None:
        if verdict.decision is Decision.ACCEPT:
            self.lockout.record_success(verdict.user, frames=verdict.frames)
        elif verdict.frames == 0:
            self.lockout.log_attempt("no-face", frames=0, reason=verdict.reason)
        elif self.hardened:
            # The chip counted it; the host only logs.
            self.lockout.log_attempt("reject", frames=verdict.frames, reason=verdict.reason)
        else:
            self.lockout.record_failure(frames=verdict.frames, reason=verdict.reason)


def _plain_gallery(store: FlashStore, options: dict) -> tuple["Gallery | None", list[tuple[str, str]]]:
    """The recipe's gallery of the store's usable plain records, and (name, reason) for the others."""
    from latticelock.kernels.errors import KernelsError
    from latticelock.kernels.recipe import Gallery

    records, skipped = {}, []
    for user in store.users():
        try:
            record = user.record()
            Gallery({user.name: record}, **options)
        except KernelsError as exc:
            skipped.append((user.name, str(exc)))
        else:
            records[user.name] = record
    return (Gallery(records, **options) if records else None), skipped
