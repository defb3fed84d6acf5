"""Small q-ary lattices shared by the decoder tests (not collected: no `test_` prefix)."""

from __future__ import annotations

import functools

import numpy as np

from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.hazmat.lattice import ReducedBasis, qary_basis, reduce_basis
from latticelock.kernels.hazmat.recover import SecretSolver

Q = 65537


@functools.lru_cache(maxsize=None)
def setup(seed: bytes, m: int, n: int, block: int = 8) -> tuple[np.ndarray, ReducedBasis, SecretSolver]:
    """A = expand(seed), its BKZ-reduced q-ary basis and a secret solver, built once per argument set."""
    A = expand_matrix(seed, m, n, Q)
    return A, reduce_basis(qary_basis(A, Q), block, Q), SecretSolver(A, Q)


def lattice_points(A: np.ndarray, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k random secrets s and their lattice points A s mod q."""
    s = rng.integers(0, Q, size=(k, A.shape[1]))
    # Exact A s mod q: entries < 2^17, n <= 16 terms, far below 2^63.
    return s, (s @ A.T) % Q
