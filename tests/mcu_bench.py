"""A provisioned microcontroller for the bridge tests (not collected: no `test_` prefix).

`Mcu` driven directly with an injected clock and a cheap passcode KDF, on a small device lattice
(parameter set l2fe-facenet-m32, m = 32, radius 150.7). Faces are integer vectors in the lattice's
projected space: `face(person)` is a template, `genuine(person, seed)` a nearby probe of the same
person (|e - e'| about 15, far inside the radius), and two people are about 400 apart (far outside).
`Bench` plays the host: it keeps each user's sealed record and generation, as the host store does.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.lattice_match import LatticeTables
from latticelock.firmware_bridge.mcu import Mcu
from latticelock.kernels.params import get_parameter_set
from latticelock.kernels.recipe import DeviceLattice, device_lattice

PARAMETER_SET = "l2fe-facenet-m32"
SEED = bytes(range(32))
RADIUS_SQ = int(get_parameter_set(PARAMETER_SET).radius ** 2)  # the set's radius, in the chip's integer units
PASSCODE = "correct horse"
ITERATIONS = 1000
START = 1_700_000_000.0


class Clock:
    """The microcontroller's clock, moved by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@functools.lru_cache(maxsize=None)
def lattice(parameter_set: str = PARAMETER_SET, seed: bytes = SEED) -> DeviceLattice:
    return device_lattice(seed, parameter_set)


@functools.lru_cache(maxsize=None)
def tables(parameter_set: str = PARAMETER_SET, seed: bytes = SEED) -> LatticeTables:
    lat = lattice(parameter_set, seed)
    return LatticeTables.from_float(lat.q, lat.n, lat.basis, lat.mu, lat.proj, lat.bstar_sqnorm)


def face(person: int, m: int = 32) -> np.ndarray:
    return np.random.default_rng(person).integers(-120, 121, size=m)


def genuine(person: int, seed: int, m: int = 32) -> np.ndarray:
    return face(person, m) + np.random.default_rng(10_000 + seed).integers(-4, 5, size=m)


def vec(values) -> bytes:
    return m.encode_vector(values)


def code(answer: m.Message) -> int:
    assert isinstance(answer, m.Error), answer
    return answer.code


def make(state_dir: Path, clock: Clock, provisioning: bool = False, **options) -> Mcu:
    return Mcu(state_dir, provisioning=provisioning, clock=clock, passcode_iterations=ITERATIONS, **options)


def upload(mcu: Mcu, data: bytes, radius: int, seed: bytes = SEED, parameter_set: str = PARAMETER_SET,
           wallet_radius: int | None = None, min_probe_sq: int = 0) -> m.Message:
    """LATTICE_CHUNKs then LATTICE_COMMIT (the wallet radius is `radius` unless given, no probe floor unless
    given); the last answer."""
    for offset in range(0, len(data), m.MAX_CHUNK):
        answer = mcu.handle(m.LatticeChunk(offset, data[offset : offset + m.MAX_CHUNK]))
        if not isinstance(answer, m.ChunkOk):
            return answer
    wallet = radius if wallet_radius is None else wallet_radius
    return mcu.handle(m.LatticeCommit(parameter_set, seed, radius, wallet, min_probe_sq, len(data), hashlib.sha256(data).digest()))


def provision(mcu: Mcu, wallet_radius_sq: int | None = None, min_probe_sq: int = 0) -> bytes:
    """Set the passcode (first provisioning) and upload the device lattice (its wallet radius as loose as
    its unlock radius unless given, no probe floor unless given); the lattice id."""
    assert mcu.handle(m.SetPasscode("", PASSCODE)) == m.PasscodeSet()
    lat = lattice()
    ready = upload(mcu, tables().to_bytes(), int(lat.max_radius**2), wallet_radius=wallet_radius_sq, min_probe_sq=min_probe_sq)
    assert isinstance(ready, m.LatticeReady), ready
    return ready.lattice_id


@dataclass
class Bench:
    """One microcontroller on `state_dir` and what the host keeps: each user's (generation, sealed)."""

    state_dir: Path
    clock: Clock
    options: dict = field(default_factory=dict)
    records: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    public_keys: dict[str, bytes] = field(default_factory=dict)
    mcu: Mcu | None = None

    def start(self, provisioning: bool = False) -> Mcu:
        """(Re)start the chip from its flash, in or out of provisioning mode."""
        self.mcu = make(self.state_dir, self.clock, provisioning, **self.options)
        return self.mcu

    def ask(self, request: m.Message) -> m.Message:
        return self.mcu.handle(request)

    def admin(self) -> None:
        assert self.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(True)

    def stage(self, user: str, vector, generation: int | None = None, wallet_radius_sq: int = RADIUS_SQ) -> m.Message:
        """An ENROL session with every other user's record loaded, then ENROLL_FACE (no commit) at the
        unlock radius RADIUS_SQ and `wallet_radius_sq`."""
        if generation is None:
            generation = self.records.get(user, (0, b""))[0] + 1
        assert isinstance(self.ask(m.OpenSession(m.Purpose.ENROL, 0, 0)), m.Session)
        for other, (gen, sealed) in self.records.items():
            if other != user:
                assert self.ask(m.LoadRecord(other, gen, sealed)) == m.RecordLoaded(other)
        return self.ask(m.EnrollFace(user, generation, RADIUS_SQ, wallet_radius_sq, vec(vector)))

    def enrol(self, user: str, vector, wallet_radius_sq: int = RADIUS_SQ) -> m.FaceEnrolled:
        """Two-phase enrolment as the host does it: stage, store, commit."""
        staged = self.stage(user, vector, wallet_radius_sq=wallet_radius_sq)
        assert isinstance(staged, m.FaceEnrolled), staged
        self.records[user] = (staged.generation, staged.sealed)
        self.public_keys[user] = staged.public_key
        assert self.ask(m.CommitUser(user, staged.generation, hashlib.sha256(staged.sealed).digest())) == m.UserCommitted(user, staged.generation)
        self.ask(m.CloseSession())
        return staged

    def open(self, purpose: m.Purpose = m.Purpose.UNLOCK, k: int = 2, n: int = 3, **kw) -> m.Message:
        """OPEN_SESSION then LOAD_RECORD of every stored user; the session answer (or the refusal)."""
        session = self.ask(m.OpenSession(purpose, k, n, **kw))
        if isinstance(session, m.Session):
            for user, (gen, sealed) in self.records.items():
                assert self.ask(m.LoadRecord(user, gen, sealed)) == m.RecordLoaded(user)
        return session

    def attempt(self, *probes, purpose: m.Purpose = m.Purpose.UNLOCK, k: int = 2, n: int = 3, **kw) -> m.Message:
        """One face attempt: open, load, probe until a decision; the last answer."""
        answer = self.open(purpose, k, n, **kw)
        if not isinstance(answer, m.Session):
            return answer
        for probe in probes:
            answer = self.ask(m.Probe(vec(probe)))
            if not (isinstance(answer, m.VerdictMessage) and answer.outcome == m.Outcome.PENDING):
                break
        return answer


def provisioned(state_dir: Path, clock: Clock, users: dict[str, int] | None = None, **options) -> Bench:
    """A bench with the lattice provisioned and `users` (name -> person) enrolled, restarted out of
    provisioning mode with the passcode entered (as after the owner's first unlock)."""
    bench = Bench(state_dir, clock, options)
    provision(bench.start(provisioning=True))
    if users:
        bench.admin()
        for name, person in users.items():
            bench.enrol(name, face(person))
    bench.start()
    if users:
        assert bench.ask(m.Passcode(PASSCODE)) == m.PasscodeOk(False)
    return bench
