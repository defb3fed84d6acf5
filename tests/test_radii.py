"""Per-record radii (`kernels.radii`): from the strangers' spread around each template, exact at the boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device_fakes import PARAMETER_SET, PROJECTION, RECIPE_OPTIONS, person_centre
from latticelock.kernels import recipe
from latticelock.kernels.errors import SchemeError
from latticelock.kernels.params import get_parameter_set
from latticelock.kernels.radii import radius_sq_at, record_radii_sq, stranger_moments, stranger_variances

P = get_parameter_set(PARAMETER_SET)
WALLET = get_parameter_set("l2fe-wallet-far1e-5")


def test_the_moments_are_those_of_independent_strangers():
    """Mean and spread of |e - x|^2 for x with independent coordinates of the projection's variances."""
    rng = np.random.default_rng(0)
    e = recipe.probe_vector(person_centre(1), P.name, projection=PROJECTION)
    x = rng.normal(size=(200_000, P.m)) * np.sqrt(stranger_variances(P, PROJECTION))
    d2 = np.sum((e - x) ** 2, axis=1)
    mean, sd = stranger_moments(P, PROJECTION, e)
    assert d2.mean() == pytest.approx(mean[0], rel=0.01) and d2.std() == pytest.approx(sd[0], rel=0.02)


def test_a_template_along_the_widest_spread_gets_the_smaller_radius():
    var = stranger_variances(P, PROJECTION)
    wide, narrow = np.zeros((2, P.m), np.int64)
    wide[np.argmax(var)] = narrow[np.argmin(var)] = 3000
    r_wide, r_narrow = radius_sq_at(P, PROJECTION, np.stack([wide, narrow]), P.stranger_z)
    assert r_wide < r_narrow  # same length, strangers spread more widely around the first


def test_no_radius_reaches_the_mean_face_or_beyond_the_lattices():
    rng = np.random.default_rng(1)
    e = rng.integers(-3000, 3001, size=(500, P.m)) // rng.integers(1, 200, size=(500, 1))
    e = e[np.any(e != 0, axis=1)]
    for z in (P.stranger_z, 0.0, 5.0):
        r2 = radius_sq_at(P, PROJECTION, e, z)
        assert np.all(r2 < np.sum(e * e, axis=1)) and np.all(r2 <= math.floor(P.radius**2))


def test_the_wallet_radius_is_the_tighter_and_a_mean_face_template_is_refused():
    e = recipe.probe_vector(person_centre(2), P.name, projection=PROJECTION)
    own, wallet = record_radii_sq(P, PROJECTION, e)
    assert 0 < wallet < own and wallet == radius_sq_at(WALLET, PROJECTION, e, WALLET.stranger_z)[0]
    with pytest.raises(SchemeError, match="mean face"):
        record_radii_sq(P, PROJECTION, np.zeros(P.m, np.int64))


def probe_at(e: np.ndarray, distance_sq: int) -> np.ndarray:
    """An integer vector at exactly this squared distance from e (a sum of squares of small integers)."""
    step = np.zeros_like(e)
    left, i = distance_sq, 0
    while left:
        step[i] = math.isqrt(left)
        left -= int(step[i]) ** 2
        i += 1
    return e + step


def test_a_record_accepts_exactly_within_its_own_radius_for_each_purpose():
    """Unlock within the record's radius, the wallet within its wallet radius, to the unit."""
    from latticelock.kernels.hazmat.rep import L2FERep, centred

    template = person_centre(3)
    record = recipe.enrol(template, PARAMETER_SET, label=b"ann", **RECIPE_OPTIONS)
    own, wallet = (int(v) for v in record["radius_sq"])
    assert (own, wallet) == recipe.record_radii_sq(template, PARAMETER_SET, projection=PROJECTION)
    rep = L2FERep(PARAMETER_SET, projection=PROJECTION, backend="cpu")
    assert (rep.record_radius_sq(record), rep.record_radius_sq(record, wallet=True)) == (own, wallet)
    (entry,) = recipe.Gallery({"ann": record}, **RECIPE_OPTIONS)._groups[PARAMETER_SET]
    assert (entry.radius_sq, entry.wallet_radius_sq) == (own, wallet)
    lattice = rep.public_lattice(record)
    e = recipe.probe_vector(template, PARAMETER_SET, projection=PROJECTION)
    for r2 in (wallet, wallet + 1, own, own + 1):
        target = centred(record["c"].astype(np.int64) - probe_at(e, r2), P.q)[None, :]
        for limit in (own, wallet):
            _, found = rep.decode_within(lattice.basis, target, [limit])
            assert bool(found[0]) == (r2 <= limit)


def test_a_record_whose_radii_were_changed_on_flash_opens_for_no_one():
    """The radii are in the verifier's KDF label: widened ones (say, to let the mean face in) make the
    record useless rather than loose. Radii above today's ceiling (an older calibration) are held to it."""
    from latticelock.kernels.hazmat.rep import L2FERep
    from latticelock.kernels.l2fe import L2FEScheme
    from latticelock.kernels.record import Record

    scheme = L2FEScheme(PARAMETER_SET, label=b"ann", **RECIPE_OPTIONS)
    template = person_centre(4)
    record = scheme.enroll(template)
    own, wallet = (int(v) for v in record["radius_sq"])
    widened = Record(record.scheme_id, record.parameter_set, {**record.fields, "radius_sq": np.array([own + 1, wallet], np.int64)})
    assert scheme.verify_many(record, template[None, :])[0] is not None
    assert scheme.verify_many(widened, template[None, :]) == [None]
    with recipe.Gallery({"ann": widened}, **RECIPE_OPTIONS).attempt() as attempt:
        assert all(attempt.confirm(c) is None for c in attempt.offer(template))
    cap = math.floor(P.radius**2)
    older = Record(record.scheme_id, record.parameter_set, {**record.fields, "radius_sq": np.array([cap + 5000, cap + 10], np.int64)})
    rep = L2FERep(PARAMETER_SET, projection=PROJECTION)
    assert (rep.record_radius_sq(older), rep.record_radius_sq(older, wallet=True)) == (cap, cap)


def test_a_probe_shorter_than_the_floor_matches_nothing():
    """The mean face and faces pulled toward it are probes anyone can make; no real face is that short."""
    from latticelock.kernels.l2fe import L2FEScheme
    from latticelock.kernels.radii import min_probe_sq

    template = person_centre(5)
    record = recipe.enrol(template, PARAMETER_SET, label=b"ann", **RECIPE_OPTIONS)
    gallery = recipe.Gallery({"ann": record}, **RECIPE_OPTIONS)
    # Half the template and the rest outside the projection: the same direction at half the length,
    # within the record's radius of it.
    outside = np.random.default_rng(0).normal(size=template.shape)
    outside -= PROJECTION.components.T.astype(np.float64) @ (PROJECTION.components.astype(np.float64) @ outside)
    shrunk = 0.5 * template + np.sqrt(0.75) * outside / np.linalg.norm(outside)
    e, short = (recipe.probe_vector(x, PARAMETER_SET, projection=PROJECTION) for x in (template, shrunk))
    assert int(short @ short) < min_probe_sq(P) <= int(e @ e)
    assert int(np.sum((e - short) ** 2)) <= int(record["radius_sq"][0])  # only the floor keeps it out
    with gallery.attempt() as attempt:
        assert [c.user for c in attempt.offer(template)] == ["ann"] and attempt.offer(shrunk) == ()
    scheme = L2FEScheme(PARAMETER_SET, label=b"ann", **RECIPE_OPTIONS)
    assert scheme.verify_many(record, shrunk[None, :]) == [None] and scheme.verify_many(record, template[None, :])[0] is not None
