"""Hardened mode v2 as a thief meets it (PROTOCOL.md section 7): victims enrolled on a simulated
microcontroller through the device's own path, the host flash stolen, and what each threat model yields.

- `build_device`: a fresh chip in provisioning mode (the kiosk's jumper), the owner's passcode set,
  each user enrolled with `device.hardened.enrol` (which provisions a fresh device lattice on first use).
- `steal_device`: the host flash imaged and parsed back with the thief's tools (`image`, `inspect`).
- `offline_refusals`: what the thief's offline attacks make of a sealed record (each refuses it).
- `device_in_hand`: the stolen records and the live chip with its limits on. The thief sends one guess
  k times per counted session (so one attempt tests one face), waits out every back-off, and goes on
  until the chip demands the passcode or the guesses run out.
- `secrets_extracted`: the chip's flash read out (pepper, lattice seed): every blob opens, and the
  project's lattice attack runs on the device lattice, each candidate checked against the sealed tag.

The chip's clock is injected (`ChipClock`): back-off waits are added to it, never slept, and reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from latticelock.tools.errors import ToolsError

FLASH_ONLY, DEVICE_IN_HAND, SECRETS_EXTRACTED = "flash only", "device in hand", "mcu secrets extracted"
PASSCODE = "the owner's passcode"  # set by the owner at provisioning; no thief below learns it
ENROLMENT = 1_700_000_000.0  # the chip's clock at enrolment (seconds)
THEFT = ENROLMENT + 86_400.0  # a day later: the daily budget is full again


class ChipClock:
    """The chip's clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class HardenedDevice:
    root: Path  # mcu/ (the chip's internal flash), store/ (the host flash), flash.img (the stolen image)
    parameter_set: str
    public_keys: dict[str, bytes]  # user -> unlock public key the chip returned at enrolment (ground truth)
    refused: dict[str, str]  # user -> why the chip refused the enrolment (a collision with an earlier user)

    @property
    def state_dir(self) -> Path:
        return self.root / "mcu"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"


def build_device(root: Path, templates: Mapping[str, np.ndarray], parameter_set: str,
                 projection=None) -> HardenedDevice:
    """A new device in `root` (absent or empty) with `templates` (user -> embedding) enrolled in order."""
    from latticelock.device import hardened
    from latticelock.device.errors import EnrolmentError
    from latticelock.device.store import FlashStore
    from latticelock.firmware_bridge.simulator import embedded

    if root.exists() and any(root.iterdir()):
        raise ToolsError(f"{root} is not empty: a simulated device starts from a blank chip")
    store = FlashStore(root / "store", mode="hardened")
    keys, refused = {}, {}
    with embedded(root / "mcu", provisioning=True, clock=ChipClock(ENROLMENT)) as (client, _):
        client.set_passcode(PASSCODE)  # in provisioning mode this also opens the administrator's window
        for user, template in templates.items():
            try:
                keys[user] = hardened.enrol(store, client, user, template, parameter_set, projection).public_key
            except EnrolmentError as exc:  # the chip found this face unlocks an earlier user's record
                refused[user] = str(exc)
    return HardenedDevice(root, parameter_set, keys, refused)


@dataclass(frozen=True)
class StolenRecord:
    user: str
    generation: int
    record: object  # a kernels Record of scheme l2fe-hash-mcu

    @property
    def sealed(self) -> bytes:
        from latticelock.kernels.recipe import sealed_fields

        return sealed_fields(self.record)[1]


def steal_device(device: HardenedDevice) -> list[StolenRecord]:
    """Image the host flash as a thief does and parse it back with no secret."""
    from latticelock.tools.forensics.image import steal
    from latticelock.tools.forensics.inspect import inspect_image

    steal(device.store_dir, device.root / "flash.img")
    inspected = inspect_image(device.root / "flash.img")
    if inspected.corrupt or len(inspected.users) != len(device.public_keys):
        raise ToolsError(f"theft of {device.root} lost records: {inspected.corrupt}")
    return [StolenRecord(u.user, u.generation, u.record) for u in inspected.users]


def offline_refusals(record, projection=None) -> dict[str, str]:
    """attack -> why it cannot run on a sealed record, in the words of the thief's own tools."""
    from latticelock.kernels.errors import KernelsError
    from latticelock.kernels.hazmat.rep import L2FERep
    from latticelock.kernels.recipe import Gallery
    from latticelock.tools.forensics.pipe import surrogate

    attempts = {
        "lattice": lambda: L2FERep(record.parameter_set, projection=projection).public_lattice(record),
        "dictionary": lambda: Gallery({"victim": record}, projection=projection),
        "pipe": lambda: surrogate(None, record),
    }
    refusals = {}
    for attack, run in attempts.items():
        try:
            run()
        except (KernelsError, ToolsError) as exc:
            refusals[attack] = str(exc)
        else:
            raise ToolsError(f"the {attack} attack took a sealed record: the flash-only rows would be wrong")
    return refusals


@dataclass(frozen=True)
class ChipRun:
    """One thief's session with a live chip."""

    cold: str  # the chip's answer to a face session right after a restart (a device taken switched off)
    k: int  # probes per attempt: the smallest k the chip allowed
    attempts: int  # counted sessions opened
    waited_s: float  # back-off waited out, on the injected clock
    answers: dict[str, int]  # what the chip returned, by name (ACCEPT, REJECT, LOCKED_OUT, PASSCODE_REQUIRED)
    accepted: dict[str, int]  # user -> index of the guess the chip signed for (signature and key checked)
    stopped_by: str


def _open(client, k: int):
    """OPEN_SESSION(UNLOCK) at the smallest k >= `k` the chip allows (a session refused for its k is not
    counted, so the thief may ask); returns (session, k)."""
    from latticelock.firmware_bridge.errors import McuError
    from latticelock.firmware_bridge.mcu import MAX_PROBES
    from latticelock.firmware_bridge.messages import Purpose

    while True:
        try:
            return client.open_session(Purpose.UNLOCK, k, k), k
        except McuError as exc:
            if exc.name != "LIMIT" or k >= MAX_PROBES:
                raise
            k += 1


def device_in_hand(device: HardenedDevice, stolen: list[StolenRecord], guesses: np.ndarray) -> ChipRun:
    """The thief with the whole device, taken while running (the owner had entered the passcode since its
    last start): `guesses` (probe vectors, int[G, m]) in order, one per counted attempt. After an accept
    the same guess is tried again without that user's record (it may open another user's too)."""
    from latticelock.firmware_bridge.errors import LockedOutError, McuError, PasscodeRequiredError
    from latticelock.firmware_bridge.keys import verify_unlock
    from latticelock.firmware_bridge.messages import Outcome
    from latticelock.firmware_bridge.simulator import embedded

    clock = ChipClock(THEFT)
    answers: Counter = Counter()
    accepted: dict[str, int] = {}
    attempts, waited, k, g = 0, 0.0, 1, 0
    left = list(stolen)
    stopped = "guesses exhausted" if len(guesses) else "no guesses"
    with embedded(device.state_dir, clock=clock) as (client, _):
        try:
            _open(client, k)
            cold = "SESSION"
            attempts += 1
        except McuError as exc:
            cold = exc.name
        client.passcode(PASSCODE)  # the owner's last unlock before the theft
        while g < len(guesses) and left:
            try:
                session, k = _open(client, k)
            except LockedOutError as exc:
                answers[exc.name] += 1
                clock.advance(exc.retry_after)
                waited += exc.retry_after
                continue
            except PasscodeRequiredError as exc:
                answers[exc.name] += 1
                stopped = exc.name
                break
            attempts += 1
            for r in left:
                client.load_record(r.user, r.generation, r.sealed)
            for _ in range(k):
                verdict = client.probe(guesses[g])
                if verdict.outcome is not Outcome.PENDING:
                    break
            answers[verdict.outcome.name] += 1
            if verdict.outcome is Outcome.ACCEPT:
                if (verdict.public_key == device.public_keys[verdict.user]
                        and verify_unlock(verdict.public_key, session.nonce, verdict.user, verdict.signature)):
                    accepted[verdict.user] = g
                left = [r for r in left if r.user != verdict.user]
            else:
                g += 1
        if not left:
            stopped = "every user accepted"
    return ChipRun(cold, k, attempts, waited, dict(answers), accepted, stopped)


def centre_first(rep, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Guesses for the chip, in the thief's order: the zero probe vector (the projection's centre, which
    every face's probe vector is measured from), then `faces` (the public mean face, k-means centroids);
    as probe vectors int[G, m], and the embedding each stands for."""
    from latticelock.kernels.hazmat.rep import preprocess
    from latticelock.tools.forensics.lattice_attack import embedding_of

    p, proj = rep.params, rep.projection
    centre = np.zeros(p.m, dtype=np.int64)
    return (np.concatenate([centre[None, :], preprocess(p, proj, faces)]),
            np.concatenate([embedding_of(centre, p, proj)[None, :], faces]))


def device_in_hand_runs(device: HardenedDevice, stolen: list[StolenRecord],
                        strategies: Mapping[str, np.ndarray]) -> dict[str, ChipRun]:
    """`device_in_hand` once per strategy (name -> guesses), each meeting the chip as it was when stolen:
    its flash is restored between thieves, as if each had stolen an identical device."""
    from latticelock.firmware_bridge.mcu_state import STATE_FILE, write_region

    at_theft = (device.state_dir / STATE_FILE).read_bytes()
    runs = {}
    for name, guesses in strategies.items():
        write_region(device.state_dir, STATE_FILE, at_theft)
        runs[name] = device_in_hand(device, stolen, guesses)
    return runs


@dataclass(frozen=True)
class Extracted:
    user: str
    key: bool  # the recovered secret gives the unlock key the chip returned at enrolment
    e: np.ndarray | None  # the recovered projected face (c - A s), None when the attack found no secret
    evaluations: int  # tag (HMAC) checks spent


def secrets_extracted(device: HardenedDevice, stolen: list[StolenRecord], centres_e: np.ndarray, radius: float,
                      budget: int, bkz_block: int | None = None) -> list[Extracted]:
    """The thief who read the chip's flash (pepper, lattice seed): open every blob and run the project's
    lattice attack on c = A s + e over the device lattice, candidates in the plain attack's order."""
    from latticelock.firmware_bridge.keys import public_key_bytes, unlock_key
    from latticelock.firmware_bridge.mcu_state import STATE_FILE, McuState
    from latticelock.firmware_bridge.sealing import ChipKeys, face_key, secret_tag, tags_equal, unseal
    from latticelock.kernels.hazmat.cvp import enumerate_within
    from latticelock.kernels.hazmat.expand import expand_matrix
    from latticelock.kernels.hazmat.lattice import reduced_basis_for
    from latticelock.kernels.hazmat.recover import SecretSolver
    from latticelock.kernels.params import get_parameter_set
    from latticelock.kernels.recipe import sealed_fields
    from latticelock.tools.forensics.lattice_attack import LatticeTarget, attack_with_verifier, candidate_points

    state = McuState.from_bytes((device.state_dir / STATE_FILE).read_bytes())
    keys = ChipKeys.from_pepper(state.pepper)
    p = get_parameter_set(state.parameter_set)
    seed = state.lattice_seed
    basis = reduced_basis_for(seed, p.m, p.n, p.q, bkz_block or p.bkz_block)
    solver = SecretSolver(expand_matrix(seed, p.m, p.n, p.q), p.q)
    out = []
    for r in stolen:
        lattice_id, sealed = sealed_fields(r.record)
        opened = unseal(keys, state.device_id, lattice_id, r.user, r.generation, sealed, p.m)
        target = LatticeTarget(opened.c, basis, solver)
        points = candidate_points(target, centres_e, radius, budget, enumerate_within)

        def check(s: np.ndarray, r: StolenRecord = r, tag: bytes = opened.tag) -> bool:
            return tags_equal(secret_tag(keys, r.user, r.generation, s), tag)

        hit = attack_with_verifier(target, points, check, budget)
        key = hit.s is not None and public_key_bytes(unlock_key(face_key(keys, r.user, r.generation, hit.s))) == device.public_keys[r.user]
        out.append(Extracted(r.user, key, hit.e, hit.evaluations))
    return out
