"""Two-phase enrolment across the microcontroller and the host store (issue 11, case 4).

The device's own enrolment (`device.hardened.enrol`) against the simulator over a socket, killed at
each step: after FACE_ENROLLED, after the host stored the record, after COMMIT_USER. At the next start
`reconcile` must leave the old user (record and key) or the new one, never a mix: the face that
unlocks is the one whose record the store holds, and the chip's active generation is the store's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from device_fakes import DIM, PARAMETER_SET, PROJECTION, person_centre
from mcu_bench import ITERATIONS, PASSCODE, SEED, Clock, code, face, lattice, provisioned, tables

from latticelock.device import hardened
from latticelock.device.store import FlashStore
from latticelock.firmware_bridge import mcu_state
from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.client import McuClient
from latticelock.firmware_bridge.messages import Outcome, Purpose
from latticelock.firmware_bridge.simulator import embedded
from latticelock.kernels.recipe import probe_vector

OLD, NEW = 1, 2


class Crash(BaseException):
    """The device losing power at this point."""


def embedding(person: int, seed: int) -> np.ndarray:
    x = person_centre(person) + np.random.default_rng(seed).normal(scale=0.02, size=DIM)
    return x / np.linalg.norm(x)


class Device:
    """A host store and a simulated chip on one state directory, restartable."""

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "mcu"
        self.store = FlashStore(root / "store")
        self.clock = Clock()

    @contextlib.contextmanager
    def chip(self, provisioning: bool = False) -> Iterator[McuClient]:
        with embedded(self.state_dir, provisioning, clock=self.clock, passcode_iterations=ITERATIONS) as (client, _):
            yield client

    def who_unlocks(self, client: McuClient, person: int) -> str | None:
        users, _ = hardened.sealed_users(self.store)
        client.open_session(Purpose.UNLOCK, 2, 3)
        for user in users:
            client.load_record(user.name, user.generation, user.sealed)
        for seed in range(3):
            verdict = client.probe(probe_vector(embedding(person, seed), PARAMETER_SET, projection=PROJECTION))
            if verdict.outcome is not Outcome.PENDING:
                return verdict.user
        raise AssertionError("no decision in 3 probes")

    def enrol(self, client: McuClient, user: str, person: int) -> hardened.HardenedEnrolment:
        return hardened.enrol(self.store, client, user, embedding(person, 100), PARAMETER_SET, projection=PROJECTION)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    device = Device(tmp_path)
    with device.chip(provisioning=True) as client:
        client.set_passcode(PASSCODE)
        client.provision_lattice(PARAMETER_SET, SEED, tables(PARAMETER_SET).to_bytes(), int(lattice(PARAMETER_SET).max_radius**2),
                                 int(lattice(PARAMETER_SET).max_radius**2), 0)
    return device


def crash_after(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    real = getattr(owner, name)

    def then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise Crash(name)

    monkeypatch.setattr(owner, name, then_crash)


STEPS = {"after FACE_ENROLLED": "enroll_face", "after the host stored": "put", "after COMMIT": "commit_user"}
# What the pair holds once reconciled: the old enrolment survives only a crash before the store has the new one.
SURVIVES = {"after FACE_ENROLLED": "old", "after the host stored": "new", "after COMMIT": "new"}


def consistent(device: Device, client: McuClient) -> dict[str, int]:
    """The chip's active generations, after checking they are the store's and nothing is pending."""
    on_chip = {e.name: e for e in client.list_users()}
    assert all(e.pending_generation == 0 for e in on_chip.values())
    stored = {u.name: u.generation for u in device.store.users()}
    assert {name: e.active_generation for name, e in on_chip.items()} == stored
    return stored


def enrol_then_crash(device: Device, monkeypatch: pytest.MonkeyPatch, step: str, first: tuple[str, int]) -> None:
    """Enrol `first` (name, person), then ann's NEW face, losing power at `step`."""
    with device.chip(provisioning=True) as client:
        client.passcode(PASSCODE)
        device.enrol(client, *first)
        crash_after(monkeypatch, device.store if STEPS[step] == "put" else client, STEPS[step])
        with pytest.raises(Crash):
            device.enrol(client, "ann", NEW)
        monkeypatch.undo()


@pytest.mark.parametrize("step", list(STEPS))
def test_issue11_4_a_reenrolment_killed_at_any_step_leaves_the_old_user_or_the_new(device: Device, step: str,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    enrol_then_crash(device, monkeypatch, step, ("ann", OLD))
    with device.chip() as client:
        done = hardened.reconcile(device.store, client)
        assert len(done) == (0 if step == "after COMMIT" else 1)
        assert consistent(device, client) == {"ann": 1 if SURVIVES[step] == "old" else 2}
        client.passcode(PASSCODE)
        unlocks = {"old": device.who_unlocks(client, OLD), "new": device.who_unlocks(client, NEW)}
    assert unlocks == {"old": "ann" if SURVIVES[step] == "old" else None, "new": "ann" if SURVIVES[step] == "new" else None}


@pytest.mark.parametrize("step", list(STEPS))
def test_issue11_4_a_first_enrolment_killed_at_any_step_leaves_no_user_or_the_new(device: Device, step: str,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    enrol_then_crash(device, monkeypatch, step, ("bob", 3))
    with device.chip() as client:
        hardened.reconcile(device.store, client)
        expected = {"bob": 1} if SURVIVES[step] == "old" else {"bob": 1, "ann": 1}
        assert consistent(device, client) == expected
        client.passcode(PASSCODE)
        assert device.who_unlocks(client, NEW) == ("ann" if "ann" in expected else None)
        assert device.who_unlocks(client, 3) == "bob"


def test_issue11_4_a_removal_killed_between_chip_and_store_is_finished(device: Device,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with device.chip(provisioning=True) as client:
        client.passcode(PASSCODE)
        device.enrol(client, "ann", OLD)
        device.enrol(client, "bob", 3)
        crash_after(monkeypatch, client, "remove_user")
        with pytest.raises(Crash):
            hardened.remove(device.store, client, "ann")
        monkeypatch.undo()
    with device.chip() as client:
        assert hardened.reconcile(device.store, client) == [
            "removed 'ann' from the store: the microcontroller no longer knows it (interrupted removal)"]
        assert consistent(device, client) == {"bob": 1}


def test_the_old_record_stops_opening_once_the_new_one_is_committed(device: Device) -> None:
    with device.chip(provisioning=True) as client:
        client.passcode(PASSCODE)
        first = device.enrol(client, "ann", OLD)
        old_sealed = hardened.sealed_users(device.store)[0][0].sealed
        second = device.enrol(client, "ann", NEW)
        assert first.public_key != second.public_key
        client.open_session(Purpose.UNLOCK, 2, 3)
        with pytest.raises(Exception, match="REJECTED"):
            client.load_record("ann", 1, old_sealed)


# --- the chip's side of the two phases -------------------------------------------------------------


@pytest.fixture
def bench(tmp_path: Path):
    bench = provisioned(tmp_path, Clock(), {"ann": 1})
    bench.start(provisioning=True)
    bench.admin()
    return bench


def test_a_pending_record_does_not_open_until_committed(bench) -> None:
    staged = bench.stage("ann", face(7))
    assert isinstance(staged, m.FaceEnrolled)
    assert bench.ask(m.ListUsers(0)).entries == m.encode_user_list([("ann", 1, 2)])
    bench.open()
    assert code(bench.ask(m.LoadRecord("ann", 2, staged.sealed))) == m.ErrorCode.REJECTED
    assert bench.ask(m.LoadRecord("ann", *bench.records["ann"])) == m.RecordLoaded("ann")


def test_commit_and_abort_need_the_pending_generation(bench) -> None:
    bench.stage("ann", face(7))
    assert code(bench.ask(m.CommitUser("ann", 3, bytes(32)))) == m.ErrorCode.UNKNOWN_USER
    assert code(bench.ask(m.CommitUser("bob", 2, bytes(32)))) == m.ErrorCode.UNKNOWN_USER
    assert bench.ask(m.AbortUser("ann")) == m.UserAborted("ann")
    assert code(bench.ask(m.AbortUser("ann"))) == m.ErrorCode.UNKNOWN_USER
    assert bench.ask(m.ListUsers(0)).entries == m.encode_user_list([("ann", 1, 0)])


def test_aborting_a_first_enrolment_forgets_the_user(bench) -> None:
    bench.stage("cy", face(7))
    assert bench.ask(m.AbortUser("cy")) == m.UserAborted("cy")
    assert "cy" not in bench.mcu.state.users


def test_generations_must_grow(bench) -> None:
    assert code(bench.stage("ann", face(7), generation=1)) == m.ErrorCode.MALFORMED


def test_the_65th_user_is_refused(bench) -> None:
    # 63 more slots taken by pending enrolments, written straight into the chip's state (a slot is a slot).
    for i in range(63):
        bench.mcu.state.users[f"u{i:02d}"] = mcu_state.UserSlot(pending_generation=1, pending_digest=bytes([i + 1]) * 32)
    assert code(bench.stage("zed", face(7))) == m.ErrorCode.STORAGE_FULL
    assert isinstance(bench.stage("ann", face(7)), m.FaceEnrolled)  # re-enrolling one of the 64 is fine


def test_generation_0_is_refused(bench) -> None:
    # Generation 0 is "none" in LIST_USERS: a user committed under it was active on the chip but listed
    # as neither active nor pending (what reconcile reads as a user the chip no longer knows), and no
    # host store holds a generation 0.
    answer = bench.stage("cy", face(7), generation=0)
    assert code(answer) == m.ErrorCode.MALFORMED and "generation" in answer.detail
    assert "cy" not in bench.mcu.state.users
