"""Recovery of s from A s mod q, and the modular linear algebra under it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.hazmat.recover import SecretSolver, independent_rows, inverse_mod

PRIMES = [257, 12289, 65537, 2**31 - 1]

seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, q=st.sampled_from(PRIMES), n=st.integers(1, 12), extra=st.integers(1, 12), data=st.data())
def test_solve_inverts_the_map(seed, q, n, extra, data):
    A = expand_matrix(seed, n + extra, n, q)
    solver = SecretSolver(A, q)
    s = np.array(data.draw(st.lists(st.integers(0, q - 1), min_size=n, max_size=n)), dtype=np.int64)
    v = np.array([sum(int(a) * int(b) for a, b in zip(row, s)) % q for row in A], dtype=np.int64)
    np.testing.assert_array_equal(solver.solve(v), s)
    # Any representative of v mod q is the same lattice point.
    z = np.array(data.draw(st.lists(st.integers(-3, 3), min_size=len(v), max_size=len(v))), dtype=np.int64)
    np.testing.assert_array_equal(solver.solve(v + q * z), s)
    S, ok = solver.solve_many(np.stack([v, v + q * z]))
    assert ok.all()
    np.testing.assert_array_equal(S, [s, s])


@settings(max_examples=40, deadline=None)
@given(seed=seeds, q=st.sampled_from(PRIMES), n=st.integers(1, 10))
def test_non_lattice_vectors_are_rejected(seed, q, n):
    m = n + 8
    A = expand_matrix(seed, m, n, q)
    solver = SecretSolver(A, q)
    v = np.array([sum(int(a) for a in row) % q for row in A], dtype=np.int64)  # A @ (1, ..., 1)
    assert solver.solve(v) is not None
    # Changing a coordinate outside the chosen rows breaks A s = v there, so v leaves the lattice.
    v[np.setdiff1d(np.arange(m), solver.rows)[0]] += 1
    assert solver.solve(v) is None
    S, ok = solver.solve_many(v[None, :])
    assert not ok[0] and not S.any()


@settings(max_examples=30, deadline=None)
@given(seed=seeds, q=st.sampled_from(PRIMES), n=st.integers(1, 12))
def test_inverse_mod(seed, q, n):
    M = expand_matrix(seed, n + 1, n, q)[:n]
    try:
        inv = inverse_mod(M, q)
    except ValueError:
        return  # singular (probability about 1/q)
    prod = np.array([[sum(int(M[i, k]) * int(inv[k, j]) for k in range(n)) % q for j in range(n)] for i in range(n)])
    np.testing.assert_array_equal(prod, np.eye(n, dtype=np.int64))


def test_rank_deficiency_is_reported():
    q = 65537
    A = expand_matrix(bytes(32), 10, 3, q)
    A[:, 2] = (2 * A[:, 0] + 5 * A[:, 1]) % q
    with pytest.raises(ValueError, match="rank 2"):
        SecretSolver(A, q)
    with pytest.raises(ValueError, match="singular"):
        inverse_mod(A[:3], q)


def test_rows_are_chosen_greedily():
    q = 65537
    A = expand_matrix(bytes(32), 10, 3, q)
    A[1] = A[0] * 7 % q  # dependent on row 0: skipped
    np.testing.assert_array_equal(independent_rows(A, q), [0, 2, 3])


def test_bad_vectors():
    solver = SecretSolver(expand_matrix(bytes(32), 10, 3, 65537), 65537)
    with pytest.raises(ValueError):
        solver.solve(np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError):
        solver.solve(np.zeros(10))
