"""Hardened mode end to end on the device: enrolment sealed by the simulated microcontroller, unlock and
wallet decided by it, collisions refused, crashes reconciled, lockouts survivable by the owner.

Perception is faked (tests/device_fakes.py); the kernels, the store, the device loop and the simulated
microcontroller (over a real socket, `firmware_bridge.simulator.embedded`) are the real ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from device_fakes import PARAMETER_SET, RECIPE_OPTIONS, FakePipeline, write_frames
from latticelock.device import hardened
from latticelock.device.clock import ManualClock
from latticelock.device.enrol import EnrolConfig, enrol
from latticelock.device.errors import DeviceError, EnrolmentError
from latticelock.device.loop import Authenticator
from latticelock.device.sources import SourceOptions, open_source
from latticelock.device.store import FlashStore
from latticelock.firmware_bridge.errors import LockedOutError, PasscodeRequiredError
from latticelock.firmware_bridge.keys import verify_signature, verify_unlock, wallet_proof_message
from latticelock.firmware_bridge.messages import Purpose
from latticelock.firmware_bridge.simulator import embedded

PASSCODE = "246810"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock():
    return Clock()


@pytest.fixture()
def device(tmp_path, clock):
    """(store, client, simulator): a hardened store and a provisioned chip with its passcode set."""
    store = FlashStore(tmp_path / "store")
    with embedded(tmp_path / "mcu", provisioning=True, clock=clock, passcode_iterations=1000) as (mcu, sim):
        mcu.set_passcode(PASSCODE)
        yield store, mcu, sim


def enrol_person(tmp_path, store, mcu, user, person, seeds=range(5)):
    folder = write_frames(tmp_path / f"enrol_{user}_{person}_{seeds[0]}", person, seeds)
    with open_source(f"dir://{folder}") as source:
        return enrol(user, source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=len(seeds)),
                     mcu=mcu, recipe_options=RECIPE_OPTIONS)


def attempt(tmp_path, auth, person, seeds, purpose=Purpose.UNLOCK, account=0, message=b""):
    folder = write_frames(tmp_path / f"probe_{person}_{seeds[0]}", person, seeds)
    with open_source(f"dir://{folder}", SourceOptions(fps=10), ManualClock()) as source:
        return auth.unlock(source, purpose, account, message)


def authenticator(store, mcu):
    return Authenticator(store, FakePipeline(), mcu=mcu, recipe_options=RECIPE_OPTIONS)


def test_the_chip_decides_and_signs(tmp_path, device):
    store, mcu, _ = device
    result = enrol_person(tmp_path, store, mcu, "alice", 1)
    assert result.hardened and result.user.scheme_id == "l2fe-hash-mcu" and len(result.public_key) == 32
    enrol_person(tmp_path, store, mcu, "bob", 2)
    auth = authenticator(store, mcu)
    genuine = attempt(tmp_path, auth, 1, [100, 101, 102])
    assert genuine.accepted and genuine.user == "alice" and genuine.key is None
    assert genuine.proof.public_key == result.public_key
    assert verify_unlock(genuine.proof.public_key, genuine.proof.nonce, "alice", genuine.proof.signature)
    assert {f.outcome for f in genuine.frames} == {"sent to the microcontroller"}
    impostor = attempt(tmp_path, auth, 3, [300, 301, 302])
    assert not impostor.accepted and impostor.proof is None and "microcontroller" in impostor.verdict.reason
    assert [e["result"] for e in auth.lockout.read_log()] == ["accept", "reject"]


def test_the_wallet_key_lives_in_the_chip(tmp_path, device):
    store, mcu, _ = device
    enrol_person(tmp_path, store, mcu, "alice", 1)
    auth = authenticator(store, mcu)
    signed = attempt(tmp_path, auth, 1, [100, 101], Purpose.WALLET_SIGN, 0, b"pay 5 to bob")
    assert verify_signature(signed.proof.public_key, b"pay 5 to bob", signed.proof.signature)
    again = attempt(tmp_path, auth, 1, [110, 111], Purpose.WALLET_ADDRESS, 0)
    assert again.proof.public_key == signed.proof.public_key  # the account's key is stable
    assert verify_signature(again.proof.public_key, wallet_proof_message(again.proof.nonce), again.proof.signature)
    other = attempt(tmp_path, auth, 1, [120, 121], Purpose.WALLET_ADDRESS, 1)
    assert other.proof.public_key != again.proof.public_key
    assert not attempt(tmp_path, auth, 3, [300, 301], Purpose.WALLET_SIGN, 0, b"pay 5 to eve").accepted


def test_a_colliding_enrolment_is_refused_and_leaves_nothing(tmp_path, device):
    store, mcu, _ = device
    enrol_person(tmp_path, store, mcu, "alice", 1)
    with pytest.raises(EnrolmentError, match="unlocks the record of 'alice'"):
        enrol_person(tmp_path, store, mcu, "mallory", 1, seeds=range(50, 55))
    assert "mallory" not in store
    assert [e.name for e in mcu.list_users()] == ["alice"]


def test_hardened_and_plain_decide_alike(tmp_path, device):
    """The chip's match and the host recipe's exact CVP make the same decision on the same frames."""
    store, mcu, _ = device
    plain = FlashStore(tmp_path / "plain", mode="plain")
    folder = write_frames(tmp_path / "enrol", 1, range(5))
    for target, chip in ((store, mcu), (plain, None)):
        with open_source(f"dir://{folder}") as source:
            enrol("alice", source, FakePipeline(noise=0.0), target, PARAMETER_SET, EnrolConfig(frames=5), mcu=chip,
                  recipe_options=RECIPE_OPTIONS)
    auths = authenticator(store, mcu), authenticator(plain, None)
    outcomes = []
    for noise in (0.02, 0.06, 0.1, 0.14, 0.2):
        for auth in auths:
            auth.frames.pipeline = FakePipeline(noise=noise)
        decisions = {attempt(tmp_path / f"n{noise}_{i}", auth, 1, [int(noise * 1000), int(noise * 1000) + 1]).accepted
                     for i, auth in enumerate(auths)}
        assert len(decisions) == 1, f"hardened and plain disagree at noise {noise}"
        outcomes.append(decisions.pop())
    assert outcomes[0] and not outcomes[-1]  # the sweep crosses the threshold


@pytest.mark.parametrize("crash", ["after the chip staged it", "after the store wrote it"])
def test_an_interrupted_reenrolment_leaves_the_old_user_or_the_new_one(tmp_path, device, monkeypatch, crash):
    store, mcu, _ = device
    enrol_person(tmp_path, store, mcu, "alice", 1)
    enrol_person(tmp_path, store, mcu, "bob", 2)

    class PowerCut(BaseException):
        pass

    def cut(*args, **kwargs):
        raise PowerCut

    if crash == "after the chip staged it":
        monkeypatch.setattr(FlashStore, "put", cut)
    else:
        monkeypatch.setattr(type(mcu), "commit_user", cut)
    with pytest.raises(PowerCut):
        # alice re-enrols with another face (person 4): the old record must keep working, or the new one.
        enrol_person(tmp_path, store, mcu, "alice", 4, seeds=range(40, 45))
    monkeypatch.undo()
    auth = authenticator(store, mcu)  # reconciles on start
    old = attempt(tmp_path, auth, 1, [100, 101]).accepted
    new = attempt(tmp_path, auth, 4, [400, 401]).accepted
    assert (old, new) == ((True, False) if crash == "after the chip staged it" else (False, True))
    assert attempt(tmp_path, auth, 2, [200, 201]).user == "bob"
    assert all(not e.pending_generation for e in mcu.list_users())


def test_an_interrupted_removal_is_finished(tmp_path, device, monkeypatch):
    store, mcu, _ = device
    enrol_person(tmp_path, store, mcu, "alice", 1)
    enrol_person(tmp_path, store, mcu, "bob", 2)
    monkeypatch.setattr(FlashStore, "delete", lambda self, name: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        hardened.remove(store, mcu, "bob")
    monkeypatch.undo()
    assert "bob" in store and [e.name for e in mcu.list_users()] == ["alice"]
    done = hardened.reconcile(store, mcu)
    assert "bob" not in store and any("bob" in line for line in done)


def test_the_owner_of_five_users_survives_twenty_impostor_attempts(tmp_path, device, clock):
    """Issue 11, case 1: attempts, not MACs, are counted; back-off never becomes permanent; the passcode ends it."""
    store, mcu, sim = device
    for user, person in zip(("ana", "ben", "cid", "dee", "eve"), range(1, 6)):
        enrol_person(tmp_path, store, mcu, user, person)
    auth = authenticator(store, mcu)
    refused = 0
    for i in range(20):
        try:
            assert not attempt(tmp_path / f"imp{i}", auth, 9, [900 + 2 * i, 901 + 2 * i]).accepted
        except LockedOutError as exc:
            refused += 1
            clock.now += exc.retry_after + 1  # the impostor waits out every back-off
        except PasscodeRequiredError:
            refused += 1
    status = mcu.status()
    assert status["failures"] == 10 and status["passcode_required"] and refused >= 10
    with pytest.raises(PasscodeRequiredError):
        attempt(tmp_path, auth, 5, [500, 501])
    mcu.passcode(PASSCODE)
    owner = attempt(tmp_path, auth, 5, [510, 511])
    assert owner.accepted and owner.user == "eve" and mcu.status()["failures"] == 0


def test_each_attempt_counts_once_whatever_the_number_of_users(tmp_path, device):
    store, mcu, _ = device
    for user, person in zip(("ana", "ben", "cid", "dee", "eve"), range(1, 6)):
        enrol_person(tmp_path, store, mcu, user, person)
    auth = authenticator(store, mcu)
    for i in range(4):
        attempt(tmp_path / f"imp{i}", auth, 9, [900 + 2 * i, 901 + 2 * i])
    assert mcu.status()["failures"] == 4
    # The fifth user, alphabetically last, still gets in on the fifth attempt.
    assert attempt(tmp_path, auth, 5, [500, 501]).user == "eve" and mcu.status()["failures"] == 0


def test_a_hardened_store_needs_its_chip_and_its_records(tmp_path, device):
    store, mcu, _ = device
    with pytest.raises(DeviceError, match="attach its microcontroller"):
        Authenticator(store, FakePipeline(), recipe_options=RECIPE_OPTIONS)
    with pytest.raises(EnrolmentError, match="attach its microcontroller"):
        enrol_person(tmp_path, store, None, "alice", 1)
    enrol_person(tmp_path, store, mcu, "alice", 1)
    # A baseline record planted on the flash is skipped with its reason, not an AttributeError.
    from latticelock.kernels.scheme import get_scheme

    FlashStore(store.path, allow_insecure_baselines=True).put("mallory", get_scheme("unprotected").enroll(np.ones(512)))
    auth = authenticator(store, mcu)
    assert auth.user_names == ["alice"] and auth.skipped[0][0] == "mallory"
    assert "unprotected" in auth.skipped[0][1]


def test_a_stale_record_is_left_out_and_spoils_no_one_elses_attempt(tmp_path, device):
    """A store restored from an old backup holds alice's previous generation, which the chip refuses:
    alice is reported (re-enrol), bob's attempt is not burned on her record."""
    store, mcu, _ = device
    enrol_person(tmp_path, store, mcu, "alice", 1)
    enrol_person(tmp_path, store, mcu, "bob", 2)
    backup = store.get("alice").path.read_bytes()
    enrol_person(tmp_path, store, mcu, "alice", 1, seeds=range(10, 15))
    store.get("alice").path.write_bytes(backup)
    done = hardened.reconcile(store, mcu)
    assert any("re-enrol" in line and "alice" in line for line in done)
    auth = authenticator(store, mcu)
    assert auth.user_names == ["bob"] and "re-enrol" in dict(auth.skipped)["alice"]
    assert attempt(tmp_path, auth, 2, [200, 201]).user == "bob"
    assert mcu.status()["failures"] == 0


def test_only_a_device_operating_point_is_enrolled_and_the_chip_caps_the_radius(tmp_path, device):
    """At the paper's 1% radius the centre of the projection (a vector anyone can send) reaches nearly
    every face: the device refuses that point, and the chip takes no radius beyond its lattice's nor one
    that reaches the mean face."""
    import math

    import numpy as np

    from latticelock.firmware_bridge.errors import McuError
    from latticelock.firmware_bridge.messages import Purpose
    from latticelock.kernels.params import get_parameter_set

    store, mcu, _ = device
    folder = write_frames(tmp_path / "enrol", 1, range(5))
    with open_source(f"dir://{folder}") as source, pytest.raises(EnrolmentError, match="not an operating point for a device"):
        enrol("alice", source, FakePipeline(), store, "l2fe-facenet-m64", EnrolConfig(frames=5), mcu=mcu,
              recipe_options=RECIPE_OPTIONS)
    enrol_person(tmp_path, store, mcu, "alice", 1)
    mcu.open_session(Purpose.ENROL)
    with pytest.raises(McuError, match="radius beyond the device lattice"):
        mcu.enroll_face("bob", 1, math.floor(get_parameter_set(PARAMETER_SET).radius**2) + 1, 1,
                        np.zeros(get_parameter_set(PARAMETER_SET).m, int))
    far = np.full(get_parameter_set(PARAMETER_SET).m, 360, int)  # |e| = 2880, within the lattice's cap
    with pytest.raises(McuError, match="mean face"):
        mcu.enroll_face("bob", 1, int(far @ far), 1, far)
