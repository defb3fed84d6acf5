"""The kernels' safe recipe: enrol, one attempt over many users, one KDF per decision, and what the host
prepares for the microcontroller. Synthetic faces in a synthetic projection's span (tests/device_fakes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from device_fakes import PARAMETER_SET, PROJECTION, RECIPE_OPTIONS, person_centre
from latticelock.kernels import recipe
from latticelock.kernels.errors import RecordError
from latticelock.kernels.hazmat import rep
from latticelock.kernels.params import get_parameter_set
from latticelock.kernels.record import parse_record
from latticelock.kernels.scheme import get_scheme

OPTIONS = {k: v for k, v in RECIPE_OPTIONS.items() if k != "backend"}


def near(person: int, distance: float, seed: int) -> np.ndarray:
    """A unit embedding `distance` away from the person's centre within the projection's span (projected units)."""
    direction = np.random.default_rng(seed).normal(size=32) @ PROJECTION.components[:32].astype(np.float64)
    x = person_centre(person) + distance * direction / np.linalg.norm(direction)
    return x / np.linalg.norm(x)


@pytest.fixture(scope="module")
def gallery():
    records = {name: recipe.enrol(person_centre(p), PARAMETER_SET, label=name.encode(), **OPTIONS)
               for name, p in (("ann", 1), ("bob", 2), ("cid", 3))}
    return recipe.Gallery(records, **OPTIONS)


def test_offer_names_the_users_whose_lattice_decodes_the_probe_and_confirm_gives_the_key(gallery):
    with gallery.attempt() as attempt:
        (candidate,) = attempt.offer(near(2, 0.02, 0))
        assert candidate.user == "bob"
        key = attempt.confirm(candidate)
        assert isinstance(key, bytes) and len(key) == 32
        assert attempt.offer(near(7, 0.0, 1)) == ()
    with gallery.attempt() as again:
        assert again.confirm(again.offer(near(2, 0.03, 2))[0]) == key  # the same key every time


def test_frames_of_one_face_share_one_candidate_and_one_kdf(gallery, monkeypatch):
    calls = []
    real = rep.derive
    monkeypatch.setattr(rep, "derive", lambda *a, **k: calls.append(1) or real(*a, **k))
    with gallery.attempt() as attempt:
        candidates = [attempt.offer(near(1, 0.02, seed))[0] for seed in range(4)]
        assert len({c.secret_id for c in candidates}) == 1
        assert all(attempt.confirm(c) is not None for c in candidates)
    assert len(calls) == 1


def test_offer_many_is_offer_for_each_probe(gallery):
    probes = np.stack([near(1, 0.02, 5), near(9, 0.0, 6), near(3, 0.01, 7)])
    with gallery.attempt() as attempt:
        together = attempt.offer_many(probes)
        alone = [attempt.offer(p) for p in probes]
    assert together == alone and [tuple(c.user for c in cs) for cs in together] == [("ann",), (), ("cid",)]


def test_a_record_opens_only_under_its_own_name():
    ann = recipe.enrol(person_centre(1), PARAMETER_SET, label=b"ann", **OPTIONS)
    with recipe.Gallery({"mallory": ann}, **OPTIONS).attempt() as attempt:
        (candidate,) = attempt.offer(person_centre(1))
        assert attempt.confirm(candidate) is None  # decodes, but the verifier is bound to "ann"


def test_the_gallery_refuses_what_it_cannot_match_naming_the_user():
    with pytest.raises(RecordError, match="'eve'.*evaluation baseline"):
        recipe.Gallery({"eve": get_scheme("unprotected").enroll(np.ones(512))})
    sealed = recipe.sealed_record(PARAMETER_SET, bytes(32), b"ciphertext")
    with pytest.raises(RecordError, match="'sam'.*microcontroller"):
        recipe.Gallery({"sam": sealed})
    good = recipe.enrol(person_centre(1), PARAMETER_SET, label=b"x", **OPTIONS)
    fields = dict(good.fields)
    fields["c"] = fields["c"][:-1]
    with pytest.raises(RecordError, match="'tom'"):
        recipe.Gallery({"tom": type(good)(good.scheme_id, good.parameter_set, fields)}, **OPTIONS)


def test_collisions_are_found_before_enrolment(gallery):
    assert gallery.collisions(near(1, 0.02, 8)) == ["ann"]
    assert gallery.collisions(near(8, 0.0, 9)) == []


def test_a_wallet_attempt_holds_records_to_the_wallets_radius(gallery, monkeypatch):
    from latticelock.kernels import params

    # A lattice whose wallet point is half the record's radius: a probe between the two unlocks, signs nothing.
    p = get_parameter_set(PARAMETER_SET)
    wallet = params.L2FEParams(**{**p.__dict__, "name": "test-wallet", "radius": p.radius / 2, "probe_floor": 0.0})
    monkeypatch.setitem(params.PARAMETER_SETS, wallet.name, wallet)
    monkeypatch.setattr(params, "DEFAULT_FOR_PURPOSE", {"wallet": wallet.name}, raising=False)
    fresh = recipe.Gallery({"ann": recipe.enrol(person_centre(1), PARAMETER_SET, label=b"ann", **OPTIONS)}, **OPTIONS)
    probe = near(1, 0.75 * p.threshold, 10)
    with fresh.attempt() as unlock, fresh.attempt(wallet=True) as sign:
        assert [c.user for c in unlock.offer(probe)] == ["ann"] and sign.offer(probe) == ()


def test_what_the_host_prepares_for_the_microcontroller():
    p = get_parameter_set("l2fe-facenet-m64")
    e = recipe.probe_vector(person_centre(1), p.name, projection=PROJECTION)
    assert e.dtype == np.int64 and e.shape == (p.m,) and np.all(np.abs(e) < 2**15)
    wallet = get_parameter_set("l2fe-wallet-far1e-5")  # a comparison set's record: the wallet point's ceiling
    assert recipe.record_radii_sq(person_centre(1), p.name, projection=PROJECTION) == (int(p.radius**2), int(wallet.radius**2))
    record = parse_record(recipe.sealed_record(p.name, bytes(range(32)), b"blob").to_bytes())
    assert recipe.sealed_fields(record) == (bytes(range(32)), b"blob")
    with pytest.raises(RecordError):
        recipe.sealed_fields(recipe.enrol(person_centre(1), PARAMETER_SET, label=b"x", **OPTIONS))
    with pytest.raises(RecordError, match="32-byte lattice id"):
        recipe.sealed_fields(parse_record(recipe.sealed_record(p.name, b"short", b"blob").to_bytes()))
    lattice = recipe.device_lattice(bytes(32), PARAMETER_SET)
    q = get_parameter_set(PARAMETER_SET)
    assert lattice.basis.shape == (q.m, q.m) and lattice.max_radius >= q.radius
