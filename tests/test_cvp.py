"""Exact closest-vector decoding and enumeration: against fpylll, against Babai, and its safety valve."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.hazmat.babai import babai_decode
from latticelock.kernels.hazmat.cvp import EnumerationBudgetError, cvp_decode, cvp_decode_many, enumerate_within

from lattice_cases import Q, lattice_points, setup


def dist(V: np.ndarray, T: np.ndarray) -> np.ndarray:
    return np.linalg.norm(V - T, axis=-1)


seeds = st.binary(min_size=32, max_size=32)
shapes = st.sampled_from([(8, 4), (12, 6), (16, 8), (20, 10)])


def test_agrees_with_fpylll_closest_vector():
    from fpylll import CVP, IntegerMatrix

    rng = np.random.default_rng(3)
    for i, (m, n) in enumerate([(8, 4), (12, 6), (16, 8), (20, 8)]):
        _, rb, _ = setup(bytes([i]) * 32, m, n)
        B = IntegerMatrix.from_matrix(rb.basis.tolist())
        targets = rng.integers(-Q, 2 * Q, size=(25, m)).astype(np.float64)
        V, found = cvp_decode(rb, targets, radius=1e9)
        assert found.all()
        for t, v in zip(targets, V):
            ref = np.array(CVP.closest_vector(B, tuple(int(x) for x in t)), dtype=np.int64)
            # Equal distance (a tie may pick another vector of the same length).
            assert np.sum((v - t) ** 2) == np.sum((ref - t) ** 2)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, shape=shapes, rng_seed=st.integers(0, 2**32 - 1))
def test_never_farther_than_babai(seed, shape, rng_seed):
    _, rb, solver = setup(seed, *shape)
    targets = np.random.default_rng(rng_seed).uniform(0, Q, size=(20, shape[0]))
    Vb = babai_decode(rb, targets)
    Vc, found = cvp_decode(rb, targets, radius=float(dist(Vb, targets).max()))
    assert found.all()
    assert solver.solve_many(Vc)[1].all()
    assert np.all(dist(Vc, targets) <= dist(Vb, targets) + 1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, shape=shapes, rng_seed=st.integers(0, 2**32 - 1))
def test_noise_below_half_the_minimum_distance_decodes(seed, shape, rng_seed):
    A, rb, solver = setup(seed, *shape)
    rng = np.random.default_rng(rng_seed)
    s, v = lattice_points(A, rng, 20)
    # The shortest BKZ vector is lambda_1 in these small dimensions (checked against fpylll's SVP below).
    radius = 0.499 * rb.shortest_row_norm
    noise = rng.normal(size=v.shape)
    noise *= radius * rng.uniform(0, 1, size=(20, 1)) / np.linalg.norm(noise, axis=1, keepdims=True)
    V, found = cvp_decode(rb, v + noise, radius)
    assert found.all()
    np.testing.assert_array_equal(solver.solve_many(V)[0], s)


def test_shortest_row_is_lambda1_in_small_dimensions():
    from fpylll import GSO, Enumeration, IntegerMatrix

    for m, n in [(8, 4), (12, 6), (16, 8), (20, 10)]:
        _, rb, _ = setup(bytes(range(32)), m, n)
        M = GSO.Mat(IntegerMatrix.from_matrix(rb.basis.tolist()), float_type="double")
        M.update_gso()
        # fpylll's SVP enumeration (zero excluded) up to the shortest row's length.
        ((shortest2, _),) = Enumeration(M).enumerate(0, m, rb.shortest_row_norm**2 * (1 + 1e-9), 0)
        assert np.isclose(np.sqrt(shortest2), rb.shortest_row_norm)


def test_outside_the_radius_is_not_found():
    A, rb, _ = setup(bytes(32), 16, 8)
    rng = np.random.default_rng(4)
    targets = rng.uniform(0, Q, size=(50, 16))
    V, found = cvp_decode(rb, targets, radius=1e9)
    d = dist(V, targets)
    V2, found2 = cvp_decode(rb, targets, radius=float(np.median(d)))
    np.testing.assert_array_equal(found2, d <= np.median(d))
    np.testing.assert_array_equal(V2[found2], V[found2])
    assert not V2[~found2].any()
    # A radius of exactly the distance still finds it (integer target, integer lattice).
    t = np.round(targets[:1])
    (v,), _ = cvp_decode(rb, t, 1e9)
    exact = float(np.sqrt(np.sum((v - t[0]) ** 2)))
    assert cvp_decode(rb, t, exact)[1][0]
    assert not cvp_decode(rb, t, np.nextafter(exact, 0) * (1 - 1e-12))[1][0]


def test_many_matches_one_at_a_time():
    rng = np.random.default_rng(5)
    bases = [setup(bytes([i]) * 32, 16, 8)[1] for i in range(6)]
    targets = rng.uniform(0, Q, size=(6, 16))
    pairs = [cvp_decode(rb, t[None], 400.0) for rb, t in zip(bases, targets)]
    V, found = cvp_decode_many(bases, targets, 400.0)
    np.testing.assert_array_equal(V, np.concatenate([p[0] for p in pairs]))
    np.testing.assert_array_equal(found, np.concatenate([p[1] for p in pairs]))
    assert cvp_decode_many([], np.zeros((0, 16)), 1.0)[0].shape == (0, 16)


def test_enumerate_within_matches_fpylll():
    from fpylll import GSO, Enumeration, IntegerMatrix

    _, rb, solver = setup(bytes(32), 8, 4)
    t = np.round(np.random.default_rng(0).uniform(0, Q, 8))
    radius = 2.5 * rb.shortest_row_norm
    P = enumerate_within(rb, t, radius, 100_000)
    M = GSO.Mat(IntegerMatrix.from_matrix(rb.basis.tolist()), float_type="double")
    M.update_gso()
    ref = Enumeration(M, nr_solutions=100_000).enumerate(0, 8, radius * radius, 0, target=M.from_canonical(tuple(t)))
    d2 = np.sum((P - t) ** 2, axis=1)
    assert len(P) == len(ref) > 100
    np.testing.assert_allclose(d2, np.sort([r[0] for r in ref]), rtol=1e-9)
    assert np.all(np.diff(d2) >= 0)
    assert len({tuple(p) for p in P}) == len(P)
    assert solver.solve_many(P)[1].all()
    # A cap keeps the nearest points.
    np.testing.assert_array_equal(np.sum((enumerate_within(rb, t, radius, 10) - t) ** 2, axis=1), d2[:10])
    # The closest point is the decoder's answer.
    np.testing.assert_array_equal(P[0], cvp_decode(rb, t[None], radius)[0][0])


def test_node_budget_stops_a_huge_enumeration():
    _, rb, _ = setup(bytes(32), 16, 8)
    t = np.zeros(16)
    with pytest.raises(EnumerationBudgetError) as info:
        enumerate_within(rb, t, 20 * rb.shortest_row_norm, 1000, max_nodes=10_000)
    err = info.value
    assert err.exhausted.all() and len(err.vectors) <= 1000
    targets = np.random.default_rng(6).uniform(0, Q, size=(4, 16))
    with pytest.raises(EnumerationBudgetError) as info:
        cvp_decode(rb, targets, 1e9, max_nodes=5)
    assert info.value.exhausted.all()


def test_m48():
    A, rb, solver = setup(bytes(range(32)), 48, 16, 20)
    rng = np.random.default_rng(7)
    s, v = lattice_points(A, rng, 100)
    radius = 0.45 * rb.shortest_row_norm
    noise = rng.normal(size=v.shape)
    noise *= radius * rng.uniform(0.5, 1, size=(100, 1)) / np.linalg.norm(noise, axis=1, keepdims=True)
    V, found = cvp_decode(rb, v + noise, radius)
    assert found.all()
    np.testing.assert_array_equal(solver.solve_many(V)[0], s)
    Vb = babai_decode(rb, v + noise)
    assert np.all(dist(V, v + noise) <= dist(Vb, v + noise) + 1e-9)


def test_bad_arguments():
    _, rb, _ = setup(bytes(32), 8, 4)
    for radius in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            cvp_decode(rb, np.zeros((1, 8)), radius)
    with pytest.raises(ValueError):
        cvp_decode(rb, np.zeros((1, 8)), 1.0, max_nodes=0)
    with pytest.raises(ValueError):
        enumerate_within(rb, np.zeros(8), 1.0, 0)
    with pytest.raises(ValueError):
        enumerate_within(rb, np.zeros(7), 1.0, 5)
    with pytest.raises(ValueError):
        cvp_decode_many([rb], np.zeros((2, 8)), 1.0)


def test_threaded_path_matches_the_serial_path():
    from latticelock.kernels.hazmat import cvp

    rng = np.random.default_rng(9)
    _, rb, _ = setup(bytes(32), 12, 6)
    k = 4 * cvp.PARALLEL_MIN_BATCH
    targets = rng.uniform(0, Q, size=(k, 12))
    chunks = np.array_split(targets, k // (cvp.PARALLEL_MIN_BATCH // 2))
    radius = 0.8 * rb.shortest_row_norm  # some targets within it, some not
    V, found = cvp_decode(rb, targets, radius)
    assert found.any() and not found.all()
    parts = [cvp_decode(rb, c, radius) for c in chunks]
    np.testing.assert_array_equal(V, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(found, np.concatenate([p[1] for p in parts]))
    bases = [rb, setup(bytes([1]) * 32, 12, 6)[1]] * (k // 2)
    V, found = cvp_decode_many(bases, targets, radius)
    step = cvp.PARALLEL_MIN_BATCH // 2
    parts = [cvp_decode_many(bases[i : i + step], targets[i : i + step], radius) for i in range(0, k, step)]
    np.testing.assert_array_equal(V, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(found, np.concatenate([p[1] for p in parts]))
