"""The kiosk's device side: every operation the operator's page offers, on the device code the command line uses.

- the chip and the operator: `chip_state`, `set_first_passcode`, `sign_in`, `admin_open`;
- reading: `overview` (users, the chip's counters and lockout, recent attempts);
- work on the device: `start_enrolment` (a thread, `enrolment.EnrolmentJob`), `delete`, `test_unlock`.

Work on the device runs one at a time: an enrolment, a removal and an unlock attempt each hold the
chip's single session and the one camera, so a second is refused in words (`KioskBusyError`)
rather than queued behind a capture of unknown length. The page never receives an embedding, a
key or a record: users are listed by name, size and generation, a key by its fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from latticelock.device.enrol import EnrolConfig, capture_good_frames, make_template, store_template
from latticelock.device.errors import (
    ChipUnreachableError,
    DeviceError,
    KioskBusyError,
    KioskError,
    SignInRequiredError,
    StoreError,
    UnknownUserError,
)
from latticelock.device.kiosk.chip import Chip
from latticelock.device.kiosk.enrolment import EnrolmentJob, EnrolmentOutcome
from latticelock.device.kiosk.operators import SignInLimiter
from latticelock.device.lockout import Lockout
from latticelock.device.sources import Source, SourceOptions, open_source
from latticelock.device.store import FlashStore, StoredUser, check_user_name
from latticelock.kernels.params import DEFAULT_SET

if TYPE_CHECKING:
    from latticelock.firmware_bridge.client import McuClient
    from latticelock.models.pipeline import FacePipeline

log = logging.getLogger(__name__)

RECENT_ATTEMPTS = 10
# How long a removal waits for the device (a double-clicked delete queues behind the first click).
DELETE_WAIT_S = 10.0


@dataclass(frozen=True)
class SourceChoice:
    """A frame source the operator may pick: a camera, or a replay standing in for one."""

    label: str
    uri: str


@dataclass(frozen=True)
class UserRow:
    name: str
    parameter_set: str
    protection: str
    """"hardened" (sealed to the microcontroller) or "plain"."""
    enrolled: str
    generation: int
    record_bytes: int


@dataclass(frozen=True)
class ChipState:
    description: str
    error: str = ""
    passcode_set: bool = False
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Overview:
    users: list[UserRow]
    corrupt: list[str]
    chip: ChipState
    attempts: list[dict[str, Any]]
    """The latest first: time (UTC, words), result, user, frames, reason."""


@dataclass(frozen=True)
class UnlockOutcome:
    accepted: bool
    user: str | None
    reason: str
    latency_s: float
    frames_read: int
    usable_frames: int
    signature_verified: bool
    frames: list[tuple[str, str]]
    """(frame name, what the attempt made of it)."""


def check_name(name: str) -> str:
    """A user name the kiosk accepts, or KioskError saying what is wrong with it."""
    if not name:
        raise KioskError("give the user's name")
    if "/" in name or "\\" in name:
        raise KioskError("a user name may not contain '/' or '\\'")
    try:
        check_user_name(name)
    except StoreError as exc:
        raise KioskError(str(exc)) from None
    return name


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fingerprint(public_key: bytes) -> str:
    """The first 16 bytes of the key's SHA-256, in groups: enough for a person to compare, not the key."""
    digest = hashlib.sha256(public_key).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def in_words(exc: BaseException) -> str:
    """One line for the operator about a refusal or failure from the chip, the source, the store or the models."""
    from latticelock.firmware_bridge.errors import LockedOutError, NotProvisioningError, WrongPasscodeError

    if isinstance(exc, WrongPasscodeError):
        line = "wrong passcode"
        if exc.retry_after > 0:
            line += f"; the microcontroller takes the next guess in {exc.retry_after:.0f} s"
        return line
    if isinstance(exc, LockedOutError):
        return f"the microcontroller refuses this for another {exc.retry_after:.0f} s ({exc.detail})"
    if isinstance(exc, NotProvisioningError):
        return "the microcontroller is not in provisioning mode (the kiosk jumper): enrolment and removal are refused"
    return str(exc)


class Kiosk:
    """One store, its microcontroller and the frame sources, behind the operator's page."""

    def __init__(
        self,
        store: FlashStore,
        chip: Chip,
        sources: Sequence[SourceChoice],
        pipeline_factory: Callable[[], "FacePipeline"],
        *,
        parameter_set: str = DEFAULT_SET,
        enrol_config: EnrolConfig | None = None,
        source_options: SourceOptions | None = None,
        recipe_options: dict | None = None,
        store_note: str = "",
    ) -> None:
        if store.mode != "hardened":
            raise KioskError(f"{store.path} is a {store.mode} store: the kiosk provisions hardened stores only "
                             "(records sealed to the microcontroller)")
        if not sources:
            raise KioskError("no frame source: give a camera or a replay (dir://FOLDER)")
        # cysignals (under fpylll, which reduces the device lattice at the first enrolment) installs signal
        # handlers when first imported, which Python allows on the main thread only; enrolments run on a
        # thread of their own, so the import happens here, where the kiosk is built.
        import fpylll  # noqa: F401
        self.store = store
        self.chip = chip
        self.sources = list(sources)
        self.parameter_set = parameter_set
        self.enrol_config = enrol_config or EnrolConfig()
        self.source_options = source_options or SourceOptions()
        self.recipe_options = dict(recipe_options or {})
        self.store_note = store_note
        self.limiter = SignInLimiter()
        self._pipeline_factory = pipeline_factory
        self._pipeline: "FacePipeline | None" = None
        self._device = threading.Lock()
        self._busy_with = ""
        self.job: EnrolmentJob | None = None

    # --- the chip and the operator --------------------------------------------------------------

    def chip_state(self) -> ChipState:
        """What the chip says of itself now; an unreachable chip is a state to show, not an error."""
        try:
            with self.chip.use() as client:
                hello = client.hello()
                return ChipState(self.chip.description, passcode_set=hello.passcode_set, status=client.status())
        except KioskError as exc:
            return ChipState(self.chip.description, error=str(exc))

    def set_first_passcode(self, new: str, again: str) -> None:
        """Set the device passcode on a chip that has none (provisioning mode), then sign in with it."""
        from latticelock.firmware_bridge.errors import McuError
        from latticelock.firmware_bridge.passcode import PasscodeFormatError, check_format

        if new != again:
            raise KioskError("the two passcodes differ")
        try:
            check_format(new)
        except PasscodeFormatError as exc:
            raise KioskError(str(exc)) from None
        with self.chip.use() as client:
            if client.hello().passcode_set:
                raise KioskError("the device passcode is already set: sign in with it")
            try:
                client.set_passcode(new)
            except McuError as exc:
                raise KioskError(in_words(exc)) from None
        self.sign_in(new)

    def sign_in(self, passcode: str) -> None:
        """Enter the passcode on the chip, which opens its administrator window; KioskError in words otherwise."""
        from latticelock.firmware_bridge.errors import McuError, WrongPasscodeError

        wait = self.limiter.wait()
        if wait > 0:
            raise KioskError(f"too many wrong passcodes at this kiosk: wait {wait:.0f} s")
        if not passcode:
            raise KioskError("type the device passcode")
        with self.chip.use() as client:
            try:
                admin = client.passcode(passcode)
            except WrongPasscodeError as exc:
                self.limiter.failed()
                raise KioskError(in_words(exc)) from None
            except McuError as exc:
                raise KioskError(in_words(exc)) from None
        if not admin:
            raise KioskError("the passcode is right, but the microcontroller is not in provisioning mode (the kiosk "
                             "jumper): it unlocked the device, and the kiosk cannot enrol or remove anyone")

    def admin_open(self) -> bool:
        """Whether the chip's administrator window is open now (False when the chip does not answer)."""
        try:
            with self.chip.use() as client:
                return bool(client.status()["admin"])
        except KioskError:
            return False

    def _require_admin(self, client: "McuClient") -> None:
        if not client.status()["admin"]:
            raise SignInRequiredError("the microcontroller's administrator window has closed: sign in again")

    # --- reading --------------------------------------------------------------------------------

    def overview(self) -> Overview:
        from latticelock.kernels.errors import KernelsError
        from latticelock.kernels.families import family

        scan = self.store.scan()
        users = []
        for user in scan.users:
            try:
                protection = "hardened" if family(user.scheme_id).needs_mcu else "plain"
            except KernelsError:
                protection = "unknown scheme"
            users.append(UserRow(user.name, user.parameter_set or "unreadable", protection, utc(user.enrolled_at),
                                 user.generation, len(user.record_bytes)))
        corrupt = [f"{entry.path.name}: {entry.reason}" for entry in scan.corrupt]
        attempts = []
        for entry in reversed(Lockout(self.store).read_log()[-RECENT_ATTEMPTS:]):
            when = entry.get("time")
            attempts.append({
                "time": utc(when) if isinstance(when, (int, float)) else "?",
                "result": str(entry.get("result", "?")), "user": entry.get("user") or "",
                "frames": entry.get("frames", 0), "reason": str(entry.get("reason", "")),
            })
        return Overview(users, corrupt, self.chip_state(), attempts)

    def known(self, name: str) -> bool:
        """Whether `name` is enrolled (False for a name the store could not even hold)."""
        try:
            return name in self.store
        except StoreError:
            return False

    # --- work on the device, one at a time ------------------------------------------------------

    def pipeline(self) -> "FacePipeline":
        """The face pipeline, built on first use (the serve command builds it before taking requests)."""
        if self._pipeline is None:
            self._pipeline = self._pipeline_factory()
        return self._pipeline

    def _claim(self, what: str, wait: float = 0.0) -> None:
        acquired = self._device.acquire(timeout=wait) if wait > 0 else self._device.acquire(blocking=False)
        if not acquired:
            raise KioskBusyError(f"the device is busy with {self._busy_with or 'another request'}: "
                                 "try again when it has finished")
        self._busy_with = what

    def _release(self) -> None:
        self._busy_with = ""
        self._device.release()

    @contextlib.contextmanager
    def _exclusive(self, what: str, wait: float = 0.0) -> Iterator[None]:
        self._claim(what, wait)
        try:
            yield
        finally:
            self._release()

    def _source(self, index: int) -> SourceChoice:
        if not 0 <= index < len(self.sources):
            raise KioskError("choose one of the listed sources")
        return self.sources[index]

    def _open(self, choice: SourceChoice) -> Source:
        return open_source(choice.uri, self.source_options)

    def start_enrolment(self, owner: str, name: str, source_index: int, replace: bool) -> EnrolmentJob:
        """Check the request, claim the device and start capturing in a thread; the job reports progress."""
        name = check_name(name)
        choice = self._source(source_index)
        replacing = self.known(name)
        if replacing and not replace:
            raise KioskError(f"{name!r} is already enrolled: tick \"replace\" to re-enrol them")
        self._claim(f"the enrolment of {name!r}")
        try:
            with self.chip.use() as client:
                self._require_admin(client)
            job = EnrolmentJob(owner, name, choice.label, self.enrol_config.frames, replacing)
            self.job = job
            threading.Thread(target=self._enrol, args=(job, choice), name=f"enrol {name}", daemon=True).start()
        except BaseException:
            self._release()
            raise
        return job

    def _enrol(self, job: EnrolmentJob, choice: SourceChoice) -> None:
        """The enrolment thread: capture, one template, sealed and stored through the chip (two-phase)."""
        from latticelock.kernels.errors import KernelsError
        from latticelock.models.errors import ModelsError

        try:
            try:
                job.status("opening the source")
                with self._open(choice) as source:
                    capture = capture_good_frames(source, self.pipeline(), self.enrol_config, on_frame=job.on_frame)
                template = make_template(capture.embeddings)
            except (DeviceError, KernelsError, ModelsError) as exc:
                job.fail(f"{in_words(exc)}; nothing was stored")
                return
            job.status("the microcontroller is sealing the record")
            try:
                stored, public_key = self._seal(job.user, template)
            finally:
                del template
            rejected = ", ".join(f"{n} {why}" for why, n in capture.rejected.most_common()) or "none"
            job.finish(EnrolmentOutcome(stored.name, stored.generation, stored.parameter_set or self.parameter_set,
                                        len(stored.record_bytes), public_key is not None,
                                        fingerprint(public_key) if public_key else "", len(capture.names),
                                        capture.seen, rejected))
            log.info("kiosk enrolled %r (generation %d)", stored.name, stored.generation)
        except KioskError as exc:
            job.fail(str(exc))
        except Exception as exc:  # the thread's end: an escaping error would leave the page waiting forever
            log.exception("enrolment of %r failed", job.user)
            job.fail(f"the enrolment failed unexpectedly ({type(exc).__name__}: {exc})")
        finally:
            self._release()

    def _seal(self, user: str, template: np.ndarray) -> tuple[StoredUser, bytes | None]:
        """`store_template` through the chip; every failure becomes a KioskError in words, the pair left consistent."""
        from latticelock.device.errors import EnrolmentError
        from latticelock.device.hardened import reconcile
        from latticelock.firmware_bridge.errors import McuError, NotAuthorisedError
        from latticelock.kernels.errors import KernelsError

        try:
            with self.chip.use() as client:
                self._require_admin(client)
                try:
                    return store_template(user, template, self.store, self.parameter_set, mcu=client,
                                          recipe_options=self.recipe_options)
                except NotAuthorisedError:
                    raise SignInRequiredError("the microcontroller's administrator window closed before the record "
                                              "was sealed: nothing was stored; sign in again and re-enrol") from None
                except EnrolmentError as exc:
                    raise KioskError(str(exc)) from None
                except (DeviceError, McuError, KernelsError) as exc:
                    # A refusal, or a store write that failed after the chip staged the record: undo the stage now.
                    reconcile(self.store, client)
                    raise KioskError(f"{in_words(exc)}; nothing was stored") from None
        except ChipUnreachableError as exc:
            raise KioskError(f"{exc}. The enrolment was interrupted: the kiosk completes or rolls it back when the "
                             "microcontroller answers again, and the dashboard then shows which") from None

    def delete(self, name: str) -> None:
        """Remove `name` from the chip, then the store (a double click's second request finds it gone)."""
        from latticelock.device.hardened import reconcile, remove
        from latticelock.firmware_bridge.errors import McuError

        with self._exclusive(f"the removal of {name!r}", wait=DELETE_WAIT_S):
            try:
                self.store.get(name)
            except UnknownUserError:
                raise KioskError(f"{name!r} is not enrolled (already deleted?)") from None
            with self.chip.use() as client:
                self._require_admin(client)
                try:
                    reconcile(self.store, client)
                    remove(self.store, client, name)
                except McuError as exc:
                    raise KioskError(in_words(exc)) from None
        log.info("kiosk deleted %r", name)

    def test_unlock(self, source_index: int) -> UnlockOutcome:
        """One real unlock attempt (counted by the chip like any other) on the chosen source."""
        from latticelock.device.loop import Authenticator
        from latticelock.firmware_bridge.errors import McuError, PasscodeRequiredError
        from latticelock.firmware_bridge.keys import verify_unlock

        choice = self._source(source_index)
        with self._exclusive("a test unlock"), self.chip.use() as client:
            try:
                auth = Authenticator(self.store, self.pipeline(), mcu=client, recipe_options=self.recipe_options)
                with self._open(choice) as source:
                    result = auth.unlock(source)
            except PasscodeRequiredError:
                raise SignInRequiredError("the microcontroller wants the device passcode before it takes faces "
                                          "again (after a restart or 10 failed attempts): sign in again") from None
            except McuError as exc:
                raise KioskError(in_words(exc)) from None
        proof = result.proof
        verified = proof is not None and verify_unlock(proof.public_key, proof.nonce, result.user, proof.signature)
        if result.accepted and not verified:
            raise KioskError("the microcontroller accepted, but its signature does not verify: the link or the chip is not ours")
        verdict = result.verdict
        return UnlockOutcome(result.accepted, verdict.user, verdict.reason, result.latency_s,
                             result.frames_read, verdict.frames, verified,
                             [(frame.name.rsplit("/", 1)[-1], frame.outcome) for frame in result.frames])
