"""The unlock loop: grab, detect, choose, gate, embed, reproduce, decide, act.

Each usable frame is checked against every enrolled record at once: plain L2FE-Hash records of
one parameter set share one batched CVP decode (what `Scheme.identify` does, here spelled out with
the scheme's own `public_lattice` / `targets` / `decode` / `check_secret` steps so that a secret
already checked in this attempt is not run through Argon2id, or the microcontroller's MAC, again);
hardened records, whose verifier and masked c depend on the microcontroller's pepper, get a scheme
each with their user's MAC; their c is unmasked once per attempt (one MAC, memoised with the checked
secrets and dropped with them), so a genuine hardened attempt costs two MACs: the pad and the
verifier. The multi-frame policy decides; on acceptance with a microcontroller attached, the face
key derives the Ed25519 unlock key, which signs the MCU's fresh nonce. The face key lives in memory only and is
handed to the caller (the wallet) in the result, never written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from latticelock.device.errors import DeviceError
from latticelock.device.lockout import Lockout
from latticelock.device.policy import AttemptPolicy, Decision, PolicyConfig, Verdict
from latticelock.device.quality import QualityConfig, assess
from latticelock.device.sources import Frame, Source
from latticelock.device.store import FlashStore

if TYPE_CHECKING:
    from latticelock.firmware_bridge.client import McuClient
    from latticelock.models.pipeline import FacePipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameReport:
    index: int
    name: str
    outcome: str
    """"no face", "low quality: <reason>", "no match" or "match <user>"."""
    seconds: dict[str, float]
    """Wall time of each stage: detect, gate, embed, verify."""


@dataclass
class UnlockResult:
    verdict: Verdict
    frames_read: int
    latency_s: float
    """Wall time from the attempt's first frame to the decision (and the MCU's answer, if attached)."""
    mcu_unlocked: bool = False
    frames: list[FrameReport] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.verdict.decision is Decision.ACCEPT

    @property
    def user(self) -> str | None:
        return self.verdict.user

    @property
    def key(self) -> bytes | None:
        """The face key of the accepted user (memory only)."""
        return self.verdict.key


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
        scheme_options: dict | None = None,
        warm_up: bool = True,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.policy = policy or PolicyConfig()
        self.quality = quality or QualityConfig()
        self.lockout = lockout if lockout is not None else Lockout(store)
        self.mcu = mcu
        self.scheme_options = dict(scheme_options or {})
        self.reload()
        if warm_up:
            self.warm_up()

    def reload(self) -> None:
        """Read the enrolled users; rebuild each record's public lattice once; one scheme per parameter set.

        Hardened records get a scheme of their own whose MAC is bound to their user.
        """
        from latticelock.kernels.errors import KernelsError
        from latticelock.kernels.l2fe import SCHEME_ID_HARDENED
        from latticelock.kernels.scheme import get_scheme

        users = self.store.users()
        plain: dict[str, _Group] = {}
        groups: list[_Group] = []
        self.skipped: list[tuple[str, str]] = []
        for user in users:
            try:
                record = user.record()
                if record.scheme_id == SCHEME_ID_HARDENED:
                    if self.mcu is None:
                        raise DeviceError(f"user {user.name!r} was enrolled in hardened mode: attach the microcontroller (--mcu URL)")
                    group = _Group(get_scheme(record.parameter_set, mac=self._mac_for(user.name), **self.scheme_options))
                    groups.append(group)
                elif record.parameter_set in plain:
                    group = plain[record.parameter_set]
                else:
                    group = plain[record.parameter_set] = _Group(get_scheme(record.parameter_set, **self.scheme_options))
                    groups.append(group)
                group.add(user.name, record)
            except KernelsError as exc:
                log.warning("skipping user %r: unusable record (%s)", user.name, exc)
                self.skipped.append((user.name, str(exc)))
        self._groups = [g for g in groups if g.names]
        self.user_names = [name for g in self._groups for name in g.names]
        if not self.user_names:
            raise DeviceError(f"no usable users are enrolled in {self.store.path}")
        self._checked: dict[tuple[str, bytes], bytes | None] = {}
        self._pads: dict[str, np.ndarray | None] = {}

    def _forget(self) -> None:
        """Drop the attempt's memo of checked secrets and unmasking pads (memory only)."""
        self._checked = {}
        self._pads = {}

    def warm_up(self) -> None:
        """Compile the decoders now (the public bases were reduced in `reload`), so the first attempt is not slowed.

        Uniform random targets decode to nothing (they are nowhere near any lattice point within the
        radius), so no KDF runs and no MAC (not even a hardened record's pad) is asked of the microcontroller.
        """
        rng = np.random.default_rng()
        for group in self._groups:
            group.warm_up(rng)

    def _mac_for(self, user: str) -> Callable[[bytes], bytes]:
        return lambda data: self.mcu.pepper_mac(user, data)

    def match(self, embedding: np.ndarray) -> tuple[str | None, bytes | None]:
        """The first enrolled user whose record this embedding reproduces, with the face key.

        Within one attempt a secret that was already checked is not checked again: a genuine
        attempt costs one Argon2id (and, hardened, two MACs on the microcontroller: the pad that unmasks
        c and the verifier) however many of its frames match.
        """
        for group in self._groups:
            for name, record, secret in group.candidates(embedding, self._pads):
                memo = (name, secret_label(secret))
                if memo not in self._checked:
                    self._checked[memo] = group.scheme.check_secret(record, secret)
                if self._checked[memo] is not None:
                    return name, self._checked[memo]
        return None, None

    def check_frame(self, frame: Frame) -> tuple[FrameReport, bool, str | None, bytes | None]:
        """(report, usable, matched user, key) for one frame."""
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        face = self.pipeline.choose(self.pipeline.faces(frame.image), frame.image.shape)
        t1 = time.perf_counter()
        seconds["detect"] = t1 - t0
        if face is None:
            return FrameReport(frame.index, frame.name, "no face", seconds), False, None, None
        quality = assess(frame.image, face, self.quality)
        t2 = time.perf_counter()
        seconds["gate"] = t2 - t1
        if not quality.ok:
            return FrameReport(frame.index, frame.name, f"low quality: {quality.reasons[0]}", seconds), False, None, None
        embedding = self.pipeline.embed_faces(frame.image, [face])[0]
        t3 = time.perf_counter()
        seconds["embed"] = t3 - t2
        user, key = self.match(embedding)
        seconds["verify"] = time.perf_counter() - t3
        outcome = "no match" if user is None else f"match {user}"
        return FrameReport(frame.index, frame.name, outcome, seconds), True, user, key

    def unlock(self, source: Source) -> UnlockResult:
        """One unlock attempt on the frames of `source` (raises LockedOutError while backing off)."""
        self.lockout.check()
        self._forget()
        policy = AttemptPolicy(self.policy)
        reports: list[FrameReport] = []
        started: float | None = None
        verdict: Verdict | None = None
        for frame in source:
            if started is None:
                started = time.perf_counter()
            report, usable, user, key = self.check_frame(frame)
            reports.append(report)
            log.debug("frame %d %s: %s", frame.index, frame.name, report.outcome)
            verdict = policy.observe(frame.timestamp, user, key) if usable else policy.tick(frame.timestamp)
            if verdict.decision is not Decision.PENDING:
                break
        if verdict is None or verdict.decision is Decision.PENDING:
            verdict = policy.finish("no usable face" if policy.frames == 0 else "source ended before a decision")
        mcu_unlocked = False
        if verdict.decision is Decision.ACCEPT and self.mcu is not None:
            from latticelock.firmware_bridge.errors import BridgeError

            try:
                mcu_unlocked = self._unlock_mcu(verdict)
            except BridgeError as exc:
                # The attempt still belongs in the log even when the link fails mid-way.
                self.lockout.log_attempt("error", frames=verdict.frames, reason=f"microcontroller link: {type(exc).__name__}")
                self._forget()
                raise
            if not mcu_unlocked:
                verdict = Verdict(Decision.REJECT, frames=verdict.frames, matches=verdict.matches, reason="microcontroller rejected the signature")
        latency = 0.0 if started is None else time.perf_counter() - started
        if verdict.decision is Decision.ACCEPT:
            self.lockout.record_success(verdict.user, frames=verdict.frames)
        elif verdict.frames == 0:
            self.lockout.log_attempt("no-face", frames=0, reason=verdict.reason)
        else:
            self.lockout.record_failure(frames=verdict.frames, reason=verdict.reason)
        self._forget()
        return UnlockResult(verdict, len(reports), latency, mcu_unlocked, reports)

    def _unlock_mcu(self, verdict: Verdict) -> bool:
        from latticelock.firmware_bridge.errors import RejectedError
        from latticelock.firmware_bridge.keys import sign_unlock, unlock_key

        signing_key = unlock_key(verdict.key)
        nonce = self.mcu.get_challenge()
        try:
            self.mcu.unlock(verdict.user, sign_unlock(signing_key, nonce, verdict.user))
        except RejectedError as exc:
            log.warning("microcontroller rejected the unlock of %r: %s", verdict.user, exc)
            return False
        return True


def secret_label(secret: np.ndarray) -> bytes:
    """The memo key of a lattice secret (in memory only, for one attempt)."""
    return np.ascontiguousarray(secret, dtype=np.int64).tobytes()


class _Group:
    """Records checked together: one scheme, their public lattices built once, one batched decode."""

    def __init__(self, scheme) -> None:
        self.scheme = scheme
        self.names: list[str] = []
        self.records: list = []
        self.lattices: list = []

    def add(self, name: str, record) -> None:
        """Check the record against the scheme and rebuild its public lattice (RecordError if unusable)."""
        lattice = self.scheme.public_lattice(record)
        self.names.append(name)
        self.records.append(record)
        self.lattices.append(lattice)

    def warm_up(self, rng: np.random.Generator) -> None:
        """Decode uniform random targets once, so the decoders are compiled before the first frame."""
        from latticelock.kernels.l2fe import centred

        p = self.scheme.params
        self.scheme.decode([lat.basis for lat in self.lattices], centred(rng.integers(0, p.q, size=(len(self.records), p.m)), p.q))

    def candidates(self, embedding: np.ndarray, pads: dict[str, np.ndarray | None]) -> Iterator[tuple[str, object, np.ndarray]]:
        """(user, record, secret) for every record whose lattice decodes this embedding within the radius.

        `pads` is the attempt's memo of each user's unmasking pad: a hardened record costs one MAC per attempt."""
        probe = np.asarray(embedding, dtype=np.float32)[None, :]
        for name, record in zip(self.names, self.records, strict=True):
            if name not in pads:
                pads[name] = self.scheme.pad(record)
        targets = np.concatenate([self.scheme.targets(r, probe, pads[n]) for n, r in zip(self.names, self.records, strict=True)])
        vectors, found = self.scheme.decode([lat.basis for lat in self.lattices], targets)
        for name, record, lattice, vector, ok in zip(self.names, self.records, self.lattices, vectors, found, strict=True):
            secret = lattice.solver.solve(vector) if ok else None
            if secret is not None:
                yield name, record, secret
