"""Enrolment, the unlock loop, lockout and the wallet, on a plain store (hardened mode:
tests/test_device_hardened.py).

Perception is faked (tests/device_fakes.py); everything else is real: the L2FE-Hash scheme (with a
synthetic projection and a cheap KDF), the store, the policy.
"""

from __future__ import annotations

import numpy as np
import pytest

from device_fakes import RECIPE_OPTIONS, PARAMETER_SET, FakePipeline, person_centre, write_frames
from latticelock.device.enrol import EnrolConfig, consistent_subset, enrol, make_template
from latticelock.device.errors import DeviceError, EnrolmentError, LockedOutError
from latticelock.device.lockout import Lockout, LockoutPolicy
from latticelock.device.loop import Authenticator
from latticelock.device.policy import PolicyConfig
from latticelock.device.clock import ManualClock
from latticelock.device.sources import SourceOptions, open_source
from latticelock.device.store import FlashStore
from latticelock.device import wallet
from test_device_store import biometric_traces


@pytest.fixture()
def store(tmp_path):
    return FlashStore(tmp_path / "store", mode="plain")


def enrol_person(tmp_path, store, user, person, seeds=range(5), frames=5):
    folder = write_frames(tmp_path / f"enrol_{user}_{person}", person, seeds)
    with open_source(f"dir://{folder}") as source:
        return enrol(user, source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=frames), recipe_options=RECIPE_OPTIONS)


def attempt(tmp_path, auth, person, seeds, face=True, name="probe"):
    folder = write_frames(tmp_path / f"{name}_{person}_{seeds[0]}", person, seeds, face)
    with open_source(f"dir://{folder}", SourceOptions(fps=10), ManualClock()) as source:
        return auth.unlock(source)


def test_template_is_the_renormalised_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 512))
    t = make_template(x)
    expected = (x / np.linalg.norm(x, axis=1, keepdims=True)).mean(0)
    assert np.allclose(t, expected / np.linalg.norm(expected), atol=1e-6) and t.dtype == np.float32


def test_outliers_are_dropped_from_a_capture():
    same = np.stack([person_centre(1)] * 4) + np.random.default_rng(1).normal(scale=0.01, size=(4, 512))
    mixed = np.vstack([same, person_centre(2)[None, :]])
    assert consistent_subset(mixed, 1.0).tolist() == [0, 1, 2, 3]


def test_enrol_and_unlock_genuine_and_impostor(tmp_path, store):
    result = enrol_person(tmp_path, store, "alice", person=1)
    assert result.user.scheme_id == "l2fe-hash" and not result.hardened and len(result.capture.names) == 5
    enrol_person(tmp_path, store, "bob", person=2)
    auth = Authenticator(store, FakePipeline(), policy=PolicyConfig(k=2, n=3), recipe_options=RECIPE_OPTIONS)
    genuine = attempt(tmp_path, auth, 1, [100, 101, 102, 103])
    assert genuine.accepted and genuine.user == "alice" and len(genuine.key) == 32
    assert genuine.frames_read == 2 and genuine.frames[0].outcome == "match alice"
    bob = attempt(tmp_path, auth, 2, [200, 201])
    assert bob.accepted and bob.user == "bob" and bob.key != genuine.key
    impostor = attempt(tmp_path, auth, 3, [300, 301, 302, 303, 304, 305])
    assert not impostor.accepted and impostor.user is None and impostor.key is None
    assert impostor.frames_read == 2 and {f.outcome for f in impostor.frames} == {"no match"}
    log = auth.lockout.read_log()
    assert [e["result"] for e in log] == ["accept", "accept", "reject"]
    # The face key is reproducible: the same person gets the same key on another attempt.
    assert attempt(tmp_path, auth, 1, [110, 111]).key == genuine.key


def test_store_holds_nothing_biometric_after_enrol_and_unlock(tmp_path, store):
    enrol_person(tmp_path, store, "alice", person=1)
    auth = Authenticator(store, FakePipeline(), recipe_options=RECIPE_OPTIONS)
    assert attempt(tmp_path, auth, 1, [100, 101]).accepted
    assert not attempt(tmp_path, auth, 4, [400, 401, 402, 403, 404]).accepted
    assert {p.name for p in store.path.rglob("*") if p.is_file()} >= {"STORE", "lockout.bin", "attempts.log"}
    assert biometric_traces(store.path) == {}


def test_no_face_frames_do_not_count_as_failures(tmp_path, store):
    enrol_person(tmp_path, store, "alice", person=1)
    auth = Authenticator(store, FakePipeline(), recipe_options=RECIPE_OPTIONS)
    result = attempt(tmp_path, auth, 1, [1, 2, 3], face=False)
    assert not result.accepted and result.verdict.reason == "no usable face"
    assert auth.lockout.state().failures == 0


def test_reenrolment_replaces_the_user(tmp_path, store):
    enrol_person(tmp_path, store, "alice", person=1)
    enrol_person(tmp_path, store, "alice", person=5, seeds=range(50, 55))
    assert store.get("alice").generation == 2 and len(store.users()) == 1
    auth = Authenticator(store, FakePipeline(), recipe_options=RECIPE_OPTIONS)
    assert not attempt(tmp_path, auth, 1, [100, 101, 102, 103, 104]).accepted
    assert attempt(tmp_path, auth, 5, [500, 501]).user == "alice"


def test_enrolment_needs_enough_good_frames(tmp_path, store):
    folder = write_frames(tmp_path / "few", 1, range(3))
    write_frames(folder, 1, range(3, 6), face=False)
    with open_source(f"dir://{folder}") as source, pytest.raises(EnrolmentError, match=r"only 3 good frames .* 3 no face"):
        enrol("alice", source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=5), recipe_options=RECIPE_OPTIONS)
    assert store.users() == []


def test_enrolment_rejects_inconsistent_captures(tmp_path, store):
    folder = tmp_path / "mixed"
    for person in (1, 2, 3):
        write_frames(folder, person, [person * 10, person * 10 + 1])
    with open_source(f"dir://{folder}") as source, pytest.raises(EnrolmentError, match="inconsistent"):
        enrol("alice", source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=3, max_spread=0.5), recipe_options=RECIPE_OPTIONS)


def test_enrolment_replaces_an_outlier_with_a_later_frame(tmp_path, store):
    folder = write_frames(tmp_path / "outlier", 1, [1, 2])
    write_frames(folder, 0, [3])  # sorts first: the outlier is among the first four captures
    write_frames(folder, 1, [4, 5])
    with open_source(f"dir://{folder}") as source:
        result = enrol("alice", source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=4), recipe_options=RECIPE_OPTIONS)
    assert [n.rsplit("/", 1)[1] for n in result.capture.names] == ["p01_0001.png", "p01_0002.png", "p01_0004.png", "p01_0005.png"]
    assert result.capture.rejected["inconsistent with the other captures"] == 1


def test_lockout_blocks_attempts_after_five_failures(tmp_path, store):
    enrol_person(tmp_path, store, "alice", person=1)
    now = [1000.0]
    lockout = Lockout(store, LockoutPolicy(), clock=lambda: now[0])
    auth = Authenticator(store, FakePipeline(), lockout=lockout, recipe_options=RECIPE_OPTIONS)
    for i in range(5):
        assert not attempt(tmp_path, auth, 7, [700 + i], name=f"bad{i}").accepted
    with pytest.raises(LockedOutError):
        attempt(tmp_path, auth, 1, [100, 101])
    now[0] += 31
    assert attempt(tmp_path, auth, 1, [101, 102], name="late").accepted
    assert lockout.state().failures == 0


def test_empty_store_is_an_error(store):
    with pytest.raises(DeviceError, match="no usable users"):
        Authenticator(store, FakePipeline(), recipe_options=RECIPE_OPTIONS)


def test_wallet_keys_come_from_the_face_key_only():
    face_key = bytes(range(32))
    signed = wallet.sign(face_key, b"pay 1 coin")
    assert signed.address == wallet.address(face_key) and signed.address.startswith("ll1") and len(signed.address) == 43
    assert wallet.verify(signed.public_key, b"pay 1 coin", signed.signature, signed.address)
    assert not wallet.verify(signed.public_key, b"pay 2 coins", signed.signature)
    assert not wallet.verify(signed.public_key, b"pay 1 coin", signed.signature, wallet.address(bytes(32)))
    assert wallet.address(face_key, account=1) != signed.address
    assert not wallet.verify(signed.public_key[:31], b"pay 1 coin", signed.signature, signed.address)  # False, not an exception
    assert wallet.sign(face_key, b"pay 1 coin").signature == signed.signature  # deterministic (RFC 8032)
    from latticelock.firmware_bridge.keys import public_key_bytes, unlock_key

    assert public_key_bytes(unlock_key(face_key)) != signed.public_key  # independent of the unlock key


def test_one_kdf_per_attempt_however_many_frames_match(tmp_path, store, monkeypatch):
    enrol_person(tmp_path, store, "alice", person=1)
    auth = Authenticator(store, FakePipeline(), policy=PolicyConfig(k=3, n=3), recipe_options=RECIPE_OPTIONS)
    from latticelock.kernels.hazmat import rep

    calls = []
    real = rep.derive
    monkeypatch.setattr(rep, "derive", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = attempt(tmp_path, auth, 1, [100, 101, 102])
    assert result.accepted and result.verdict.matches == 3 and len(calls) == 1
    assert attempt(tmp_path, auth, 1, [120, 121, 122]).accepted and len(calls) == 2  # the memo lives for one attempt


def test_a_record_the_scheme_refuses_is_skipped(tmp_path, store):
    from latticelock.kernels.record import Record

    enrol_person(tmp_path, store, "alice", person=1)
    good = store.get("alice").record()
    fields = dict(good.fields)
    fields["c"] = fields["c"][:-1]
    store.put("mallory", Record(good.scheme_id, good.parameter_set, fields))
    auth = Authenticator(store, FakePipeline(), recipe_options=RECIPE_OPTIONS)
    assert auth.user_names == ["alice"] and auth.skipped[0][0] == "mallory"
    assert attempt(tmp_path, auth, 1, [100, 101]).user == "alice"


def test_consistent_subset_matches_pairwise_distances():
    rng = np.random.default_rng(3)
    x = np.vstack([person_centre(1) + rng.normal(scale=0.03, size=(6, 512)), person_centre(2)[None, :]])
    pairwise = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    medoid = int(np.argmin(pairwise.sum(axis=1)))
    for spread in (0.1, 0.5, 1.0, 2.0):
        assert consistent_subset(x, spread).tolist() == np.flatnonzero(pairwise[medoid] <= spread).tolist()


def test_an_attempt_belongs_to_one_face_track(tmp_path, store):
    """Issue 10: frames of another face are never matched, so an attempt cannot mix people."""
    enrol_person(tmp_path, store, "alice", person=1)
    auth = Authenticator(store, FakePipeline(box_shift=100), recipe_options=RECIPE_OPTIONS)
    folder = tmp_path / "mixed"
    write_frames(folder, 0, [0])  # an impostor steps in first (even person: the left box; p00_ sorts first)...
    write_frames(folder, 1, [1, 2, 3])  # ...then alice, elsewhere in the frame: another track
    with open_source(f"dir://{folder}", SourceOptions(fps=10), ManualClock()) as source:
        mixed = auth.unlock(source)
    assert not mixed.accepted and [f.outcome for f in mixed.frames[1:]] == ["another face"] * 3
    assert attempt(tmp_path, auth, 1, [4, 5]).accepted
