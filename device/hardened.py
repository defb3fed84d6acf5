"""Hardened mode: the microcontroller holds the key to the helper data and decides every face itself.

The host's part, every exchange through `firmware_bridge.client.McuClient`:
- `ensure_lattice`: at first provisioning, reduce a fresh device lattice and upload its decoding
  tables (the chip checks them against the lattice it expands from the seed).
- `enrol`: two-phase across chip and flash. The chip stages the new record (ENROLL_FACE: it draws the
  secret, computes c = A s + e, seals it, keeps the digest as *pending*), the host stores the sealed
  record durably under that generation, then the chip makes it active (COMMIT_USER). `reconcile`,
  run whenever the device opens the chip, finishes or rolls back whatever a crash interrupted, so
  the pair always holds either the old user or the new one.
- `HardenedMatcher`: one counted session per unlock attempt; the users' sealed records are loaded,
  each usable frame's probe vector e' is sent, and the chip answers pending, accept or reject.

Nothing the host keeps or sends lets it recompute c, the secret or a key: the probe vector is what
the camera sees now (computed from the live frame, never stored), and the sealed blob is ciphertext
under a key derived from the chip's pepper.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from latticelock.device.errors import DeviceError, EnrolmentError, StoreError
from latticelock.device.policy import Decision, PolicyConfig, Verdict
from latticelock.device.store import FlashStore, StoredUser

if TYPE_CHECKING:
    from latticelock.firmware_bridge.client import McuClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealedUser:
    name: str
    generation: int
    parameter_set: str
    lattice: bytes
    sealed: bytes


def sealed_users(store: FlashStore, active: dict[str, int] | None = None) -> tuple[list[SealedUser], list[tuple[str, str]]]:
    """The store's hardened users, and (name, reason) for each entry that is not one. With `active` (the
    chip's active generation per user), records the chip would refuse are left out with their reason:
    one stale record must not spoil every user's counted attempt."""
    from latticelock.kernels.errors import KernelsError
    from latticelock.kernels.recipe import sealed_fields

    users, skipped = [], []
    for user in store.users():
        try:
            record = user.record()
            lattice, sealed = sealed_fields(record)
        except KernelsError as exc:
            skipped.append((user.name, str(exc)))
            continue
        if active is not None and active.get(user.name) != user.generation:
            skipped.append((user.name, f"generation {user.generation} is not the microcontroller's "
                                       f"({active.get(user.name) or 'none'}); re-enrol this user"))
            continue
        users.append(SealedUser(user.name, user.generation, record.parameter_set, lattice, sealed))
    return users, skipped


def ensure_lattice(mcu: "McuClient", parameter_set: str) -> bytes:
    """The chip's lattice id, provisioning a fresh device lattice for `parameter_set` first if it has none
    (with the largest radius any record may have, for unlocking and for the wallet, and the probe floor)."""
    import math

    from latticelock.firmware_bridge.lattice_match import LatticeTables
    from latticelock.kernels.params import get_parameter_set
    from latticelock.kernels.recipe import device_lattice, min_probe_sq, wallet_parameter_set

    lattice_id = mcu.hello().lattice_id
    if any(lattice_id):
        return lattice_id
    lattice = device_lattice(os.urandom(32), parameter_set)
    tables = LatticeTables.from_float(lattice.q, lattice.n, lattice.basis, lattice.mu, lattice.proj, lattice.bstar_sqnorm)
    wallet_cap = min(lattice.max_radius, get_parameter_set(wallet_parameter_set(parameter_set)).radius)
    return mcu.provision_lattice(lattice.parameter_set, lattice.seed, tables.to_bytes(), math.floor(lattice.max_radius**2),
                                 math.floor(wallet_cap**2), min_probe_sq(parameter_set))


def reconcile(store: FlashStore, mcu: "McuClient") -> list[str]:
    """Finish or undo enrolments and removals a crash interrupted; returns what was done, in words.

    A pending enrolment whose record the store holds is committed (with the blob's digest, which only
    the holder of the blob can give); any other pending one is aborted. A store user the chip no longer
    knows (a removal interrupted between chip and flash) is removed from the store. A store record of
    another generation than the chip's active one cannot be opened: it is reported, and left out of
    every attempt (`sealed_users(..., on_chip=...)`) until the user is re-enrolled."""
    from latticelock.kernels.recipe import SEALED_SCHEME_ID

    done = []
    on_chip = {entry.name: entry for entry in mcu.list_users()}
    active = {name: entry.active_generation for name, entry in on_chip.items()}
    stored = {user.name: user for user in sealed_users(store)[0]}
    for name, entry in on_chip.items():
        if not entry.pending_generation:
            continue
        user = stored.get(name)
        if user is not None and user.generation == entry.pending_generation:
            mcu.commit_user(name, entry.pending_generation, user.sealed)
            active[name] = entry.pending_generation
            done.append(f"committed {name!r} generation {entry.pending_generation} (stored before an interruption)")
        else:
            mcu.abort_user(name)
            done.append(f"rolled back {name!r}: its enrolment was interrupted before the record was stored")
    for user in store.users():
        if user.scheme_id != SEALED_SCHEME_ID:
            continue
        if user.name not in on_chip:
            store.delete(user.name)
            done.append(f"removed {user.name!r} from the store: the microcontroller no longer knows it (interrupted removal)")
        elif active[user.name] != user.generation:
            done.append(f"{user.name!r}: the store holds generation {user.generation}, the microcontroller "
                        f"{active[user.name] or 'none'}; re-enrol this user")
    for line in done:
        log.warning("reconciled: %s", line)
    return done


@dataclass(frozen=True)
class HardenedEnrolment:
    user: StoredUser
    public_key: bytes


def enrol(store: FlashStore, mcu: "McuClient", user: str, template: np.ndarray, parameter_set: str,
          projection=None) -> HardenedEnrolment:
    """Two-phase enrolment of `template` (see the module docstring); EnrolmentError on a collision."""
    from latticelock.firmware_bridge.errors import CollisionError
    from latticelock.firmware_bridge.messages import Purpose
    from latticelock.kernels.recipe import probe_vector, record_radii_sq, sealed_record

    from latticelock.kernels.params import OPERATING_POINTS

    point = OPERATING_POINTS.get(parameter_set)
    if point is None or point.far_per_attempt is None:
        raise EnrolmentError(f"{parameter_set} is not an operating point for a device (the paper's comparison sets "
                             "accept far too many strangers); use --purpose unlock or wallet")
    lattice_id = ensure_lattice(mcu, parameter_set)
    generation = store.next_generation(user)
    others, _ = sealed_users(store)
    mcu.open_session(Purpose.ENROL)
    try:
        for other in others:
            if other.name != user:
                mcu.load_record(other.name, other.generation, other.sealed)
        try:
            vector = probe_vector(template, parameter_set, projection=projection)
            staged = mcu.enroll_face(user, generation, *record_radii_sq(template, parameter_set, projection=projection), vector)
        except CollisionError as exc:
            raise EnrolmentError(f"{exc.detail}: enrolment refused, nothing stored") from None
        stored = store.put(user, sealed_record(parameter_set, lattice_id, staged.sealed), generation=generation)
        mcu.commit_user(user, generation, staged.sealed)
    finally:
        _close(mcu)
    return HardenedEnrolment(stored, staged.public_key)


def remove(store: FlashStore, mcu: "McuClient", user: str) -> None:
    """Forget `user` on the chip first, then on flash (an interruption between is reconciled)."""
    from latticelock.firmware_bridge.errors import McuError

    store.get(user)
    try:
        mcu.remove_user(user)
    except McuError as exc:
        if exc.name != "UNKNOWN_USER":
            raise
    store.delete(user)


def _close(mcu: "McuClient") -> None:
    from latticelock.firmware_bridge.errors import BridgeError

    try:
        mcu.close_session()
    except BridgeError as exc:
        log.warning("closing the microcontroller session failed: %s", exc)


@dataclass(frozen=True)
class Proof:
    """What the chip signed when it accepted: the user's public key and its signature (over the session
    nonce for an unlock or a wallet address, over the message for a wallet signature)."""

    public_key: bytes
    signature: bytes
    nonce: bytes


class HardenedMatcher:
    """One attempt as a counted session on the chip; the chip's k-of-n rule decides."""

    def __init__(self, mcu: "McuClient", users: list[SealedUser], policy: PolicyConfig, purpose: int,
                 account: int = 0, message: bytes = b"", projection=None) -> None:
        from latticelock.kernels.recipe import shares_lattice

        if not users:
            raise DeviceError("no hardened users are enrolled")
        self.parameter_set = users[0].parameter_set
        if not all(shares_lattice(u.parameter_set, self.parameter_set) for u in users):
            raise StoreError("the store's hardened users do not share one device lattice")
        lattice_id = mcu.hello().lattice_id
        foreign = [u.name for u in users if u.lattice != lattice_id]
        if foreign:
            raise DeviceError(f"records of {', '.join(map(repr, foreign))} were sealed by another microcontroller or lattice")
        self.mcu = mcu
        self.users = users
        self.policy = policy
        self.purpose, self.account, self.message = purpose, account, message
        self.projection = projection
        self.session = None
        self.proof: Proof | None = None
        self.last_outcome = ""
        self._frames = 0
        self._read = 0
        self._start: float | None = None
        self._verdict: Verdict | None = None

    def _open(self) -> None:
        # Opened at the first usable face, not before: an attempt that never sees a face costs nothing.
        self.session = self.mcu.open_session(self.purpose, self.policy.k, self.policy.n, self.account, self.message)
        for user in self.users:
            self.mcu.load_record(user.name, user.generation, user.sealed)

    def read(self, timestamp: float) -> Verdict:
        """Any frame read: the host's own bounds (window, frame budget) end the attempt; the chip's session
        lifetime and probe count are the final ones."""
        self._read += 1
        if self._verdict is None:
            if self._start is not None and timestamp - self._start > self.policy.window_s:
                self._verdict = Verdict(Decision.REJECT, None, self._frames, 0, f"no {self.policy.describe()}")
            elif self._read > self.policy.max_frames:
                self._verdict = Verdict(Decision.REJECT, None, self._frames, 0,
                                        f"no {self.policy.describe()} in {self.policy.max_frames} frames read")
        return self._verdict or Verdict(Decision.PENDING, None, self._frames)

    def observe(self, timestamp: float, embedding: np.ndarray) -> Verdict:
        from latticelock.firmware_bridge.messages import Outcome
        from latticelock.kernels.recipe import probe_vector

        if self._verdict is not None:
            return self._verdict
        if self.session is None:
            self._start = timestamp
            self._open()
        self._frames += 1
        answer = self.mcu.probe(probe_vector(embedding, self.parameter_set, projection=self.projection))
        self.last_outcome = "sent to the microcontroller"
        if answer.outcome is Outcome.ACCEPT:
            self.proof = Proof(answer.public_key, answer.signature, self.session.nonce)
            self._verdict = Verdict(Decision.ACCEPT, answer.user, self._frames, self.policy.k)
        elif answer.outcome is Outcome.REJECT:
            self._verdict = Verdict(Decision.REJECT, None, self._frames, 0, f"no {self.policy.describe()} (microcontroller)")
        return self._verdict or Verdict(Decision.PENDING, None, self._frames)

    def spend(self) -> None:
        """Count this attempt on the chip even though no probe will be sent (a failed liveness check)."""
        if self.session is None:
            self._open()

    def finish(self, reason: str) -> Verdict:
        if self._verdict is None:
            self._verdict = Verdict(Decision.REJECT, None, self._frames, 0, reason)
        return self._verdict

    def close(self) -> None:
        # The chip ends a session itself on a decision; closing covers an attempt the host gave up on.
        if self.session is not None:
            _close(self.mcu)
        self.session = None
