"""The E8 decoder against brute force, and the lattice's defining properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.hazmat.e8 import decode_blocks, nearest_d8, nearest_e8


def e8_points_near_origin() -> np.ndarray:
    """Every E8 point with coordinates in [-1.5, 1.5]: integer or half-integer vectors with even sum."""
    ints = np.array(list(itertools.product((-1.0, 0.0, 1.0), repeat=8)))
    halves = np.array(list(itertools.product((-1.5, -0.5, 0.5, 1.5), repeat=8)))
    points = np.concatenate([ints, halves])
    return points[np.isclose(np.mod(points.sum(axis=1), 2), 0)]


POINTS = e8_points_near_origin()


def in_e8(v: np.ndarray) -> np.ndarray:
    twice = 2 * v
    integral = np.all(np.isclose(twice, np.round(twice)), axis=-1)
    same_kind = np.all(np.isclose(np.mod(twice, 2), np.mod(twice[..., :1], 2)), axis=-1)
    return integral & same_kind & np.isclose(np.mod(v.sum(axis=-1), 2), 0)


def test_brute_force_agrees_on_random_targets():
    # The nearest point lies within the covering radius (1) of y, so for y in [-1/2, 1/2]^8 it is in POINTS.
    rng = np.random.default_rng(8)
    y = rng.uniform(-0.5, 0.5, size=(300, 8))
    got = nearest_e8(y)
    d2 = ((y[:, None, :] - POINTS[None, :, :]) ** 2).sum(axis=2)
    best = d2.min(axis=1)
    np.testing.assert_allclose(((y - got) ** 2).sum(axis=1), best, atol=1e-12)
    assert np.all(in_e8(got))


def test_counts_of_the_lattice():
    assert len(POINTS[np.isclose((POINTS**2).sum(axis=1), 2)]) == 240  # the kissing number of E8


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=8, max_size=8),
    st.integers(0, len(POINTS) - 1),
)
def test_translation_by_a_lattice_vector(y, index):
    y = np.array(y)
    shift = POINTS[index] * 3  # 3v is in E8 too
    moved = nearest_e8(y + shift)
    assert in_e8(moved)
    # Same distance (the point itself may differ on a Voronoi boundary, where ties are legitimate).
    assert np.isclose(((y + shift - moved) ** 2).sum(), ((y - nearest_e8(y)) ** 2).sum())


def test_d8_parity_fix():
    # Rounding gives an odd sum; the worst-rounded coordinate goes the other way.
    assert nearest_d8(np.array([0.6, 0, 0, 0, 0, 0, 0, 0.1])).tolist() == [0, 0, 0, 0, 0, 0, 0, 0]
    assert nearest_d8(np.array([0.6, 0, 0, 0, 0, 0, 0, 0.45])).tolist() == [1, 0, 0, 0, 0, 0, 0, 1]
    assert nearest_d8(np.array([0.9, 0, 0, 0, 0, 0, 0, 0.0])).tolist() == [0, 0, 0, 0, 0, 0, 0, 0]
    out = nearest_d8(np.array([0.9, 0.2, 0, 0, 0, 0, 0, 0.0]))
    assert out.sum() % 2 == 0 and out.tolist() in ([1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0])


def test_blocks_and_shapes():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(3, 512)) * 4
    out = decode_blocks(y)
    assert out.shape == y.shape
    assert np.all(in_e8(out.reshape(3, 64, 8)))
    with pytest.raises(ValueError):
        decode_blocks(np.zeros(12))
    with pytest.raises(ValueError):
        nearest_e8(np.zeros(7))
