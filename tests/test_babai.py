"""Babai's nearest plane (numba): lattice vectors out, agreement with fpylll, noise tolerance, batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.hazmat.babai import babai_decode, babai_decode_many

from lattice_cases import Q, lattice_points, setup


seeds = st.binary(min_size=32, max_size=32)
shapes = st.sampled_from([(8, 4), (12, 6), (16, 8), (24, 8)])


@settings(max_examples=20, deadline=None)
@given(seed=seeds, shape=shapes, rng_seed=st.integers(0, 2**32 - 1))
def test_outputs_are_lattice_vectors(seed, shape, rng_seed):
    A, rb, solver = setup(seed, *shape)
    rng = np.random.default_rng(rng_seed)
    targets = rng.uniform(-3 * Q, 3 * Q, size=(20, shape[0]))
    V = babai_decode(rb, targets)
    assert V.dtype == np.int64 and V.shape == targets.shape
    assert solver.solve_many(V)[1].all()


@settings(max_examples=20, deadline=None)
@given(seed=seeds, shape=shapes, rng_seed=st.integers(0, 2**32 - 1))
def test_small_noise_decodes_to_the_lattice_vector(seed, shape, rng_seed):
    A, rb, solver = setup(seed, *shape)
    rng = np.random.default_rng(rng_seed)
    s, v = lattice_points(A, rng, 30)
    # |e| < min |b*_i| / 2 puts the target inside v's Babai cell, whatever e's direction.
    noise = rng.normal(size=v.shape)
    noise *= (0.499 * np.sqrt(rb.bstar_sqnorm.min()) * rng.uniform(0, 1, size=(30, 1))) / np.linalg.norm(noise, axis=1, keepdims=True)
    V = babai_decode(rb, v + noise)
    np.testing.assert_array_equal(solver.solve_many(V)[0], s)
    np.testing.assert_array_equal(V % Q, v)


def test_agrees_with_fpylll_nearest_plane():
    from fpylll import FPLLL, GSO, IntegerMatrix

    _, rb, _ = setup(bytes(range(32)), 24, 8)
    rng = np.random.default_rng(5)
    targets = rng.uniform(0, Q, size=(200, 24))
    V = babai_decode(rb, targets)
    FPLLL.set_precision(128)
    M = GSO.Mat(IntegerMatrix.from_matrix(rb.basis.tolist()), float_type="mpfr")
    M.update_gso()
    for t, v in zip(targets, V):
        coeffs = np.array(M.babai(tuple(float(x) for x in t)), dtype=np.int64)
        np.testing.assert_array_equal(coeffs @ rb.basis, v)


def test_integer_targets_and_lattice_points_are_fixed_points():
    A, rb, _ = setup(bytes(32), 16, 8)
    _, v = lattice_points(A, np.random.default_rng(0), 50)
    np.testing.assert_array_equal(babai_decode(rb, v.astype(np.float64)), v)


def test_many_matches_one_at_a_time():
    rng = np.random.default_rng(1)
    bases = [setup(bytes([i]) * 32, 16, 8)[1] for i in range(5)]
    targets = rng.uniform(0, Q, size=(5, 16))
    expected = np.concatenate([babai_decode(rb, t[None]) for rb, t in zip(bases, targets)])
    np.testing.assert_array_equal(babai_decode_many(bases, targets), expected)
    assert babai_decode_many([], np.zeros((0, 16))).shape == (0, 16)


def test_m48_decodes_noisy_records():
    A, rb, solver = setup(bytes(range(32)), 48, 16, 20)
    rng = np.random.default_rng(2)
    s, v = lattice_points(A, rng, 200)
    targets = v + rng.normal(0, 0.2 * np.sqrt(rb.bstar_sqnorm.min()) / np.sqrt(48), size=v.shape)
    np.testing.assert_array_equal(solver.solve_many(babai_decode(rb, targets))[0], s)


def test_bad_targets():
    _, rb, _ = setup(bytes(32), 8, 4)
    assert babai_decode(rb, np.zeros((0, 8))).shape == (0, 8)
    for bad in (np.zeros((2, 7)), np.zeros(8), np.full((1, 8), np.nan), np.full((1, 8), 2.0**33)):
        with pytest.raises(ValueError):
            babai_decode(rb, bad)
    with pytest.raises(ValueError):
        babai_decode_many([rb], np.zeros((2, 8)))
    with pytest.raises(ValueError):
        babai_decode_many([rb, setup(bytes(32), 12, 4)[1]], np.zeros((2, 8)))


def test_threaded_path_matches_the_serial_path():
    from latticelock.kernels.hazmat import babai

    rng = np.random.default_rng(8)
    _, rb, _ = setup(bytes(32), 8, 4)
    k = babai.PARALLEL_MIN_BATCH
    targets = rng.uniform(0, Q, size=(k, 8))
    serial = np.concatenate([babai_decode(rb, chunk) for chunk in np.array_split(targets, 8)])
    np.testing.assert_array_equal(babai_decode(rb, targets), serial)
    bases = [rb, setup(bytes([1]) * 32, 8, 4)[1]] * (k // 2)
    serial = np.concatenate([babai_decode_many(bases[i : i + 512], targets[i : i + 512]) for i in range(0, k, 512)])
    np.testing.assert_array_equal(babai_decode_many(bases, targets), serial)
