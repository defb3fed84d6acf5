"""q-ary bases, their reduction and Gram-Schmidt data, and the reduced-basis cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.hazmat import lattice
from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.hazmat.lattice import gso, qary_basis, reduce_basis, reduced_basis_for
from latticelock.kernels.hazmat.recover import SecretSolver

Q = 65537
seeds = st.binary(min_size=32, max_size=32)


def exact_det(M: np.ndarray) -> int:
    """Determinant by fraction-free (Bareiss) elimination in Python integers."""
    a = [[int(v) for v in row] for row in M]
    n = len(a)
    sign, prev = 1, 1
    for k in range(n - 1):
        if a[k][k] == 0:
            swap = next((i for i in range(k + 1, n) if a[i][k] != 0), None)
            if swap is None:
                return 0
            a[k], a[swap] = a[swap], a[k]
            sign = -sign
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                a[i][j] = (a[i][j] * a[k][k] - a[i][k] * a[k][j]) // prev
        prev = a[k][k]
    return sign * a[n - 1][n - 1]


def coefficients(basis: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """Integer b with b @ basis == v exactly, or None."""
    b = np.rint(np.linalg.solve(basis.T.astype(float), v.astype(float))).astype(np.int64)
    return b if np.array_equal(b @ basis, v) else None


@settings(max_examples=25, deadline=None)
@given(seed=seeds, n=st.integers(1, 6), extra=st.integers(1, 8), data=st.data())
def test_qary_basis_generates_exactly_the_lattice(seed, n, extra, data):
    m = n + extra
    A = expand_matrix(seed, m, n, Q)
    basis = qary_basis(A, Q)
    assert basis.dtype == np.int64 and basis.shape == (m, m)
    # Every row is in L(A), and the index is 1 since det = det L(A) = q^(m-n).
    assert SecretSolver(A, Q).solve_many(basis)[1].all()
    assert abs(exact_det(basis)) == Q ** (m - n)
    # A s + q z has integer coordinates in the basis.
    s = np.array(data.draw(st.lists(st.integers(-Q, Q), min_size=n, max_size=n)), dtype=np.int64)
    z = np.array(data.draw(st.lists(st.integers(-2, 2), min_size=m, max_size=m)), dtype=np.int64)
    v = (A @ s) % Q + Q * z
    assert coefficients(basis, v) is not None


def test_reduction_keeps_the_lattice_and_gso_is_consistent():
    m, n = 24, 8
    A = expand_matrix(bytes(range(32)), m, n, Q)
    basis = qary_basis(A, Q)
    rb = reduce_basis(basis, 10, Q)
    assert rb.q == Q and rb.m == m
    assert abs(exact_det(rb.basis)) == Q ** (m - n)
    assert all(coefficients(basis, row) is not None for row in rb.basis)
    assert lattice.spans_qary_lattice(rb.basis, SecretSolver(A, Q), n)
    # Gram-Schmidt identities.
    np.testing.assert_allclose(rb.mu @ rb.bstar, rb.basis, atol=1e-6)
    gram = rb.bstar @ rb.bstar.T
    np.testing.assert_allclose(gram, np.diag(rb.bstar_sqnorm), atol=1e-6 * rb.bstar_sqnorm.max())
    np.testing.assert_allclose(rb.bstar @ rb.proj, np.eye(m), atol=1e-9)
    assert np.all(np.abs(np.tril(rb.mu, -1)) <= 0.51 + 1e-9) and np.all(np.triu(rb.mu, 1) == 0)
    assert abs(rb.log_det() - (m - n) * np.log(Q)) < 1e-6
    # Reduction shortens: the first vector is far below q.
    assert np.linalg.norm(rb.basis[0]) < Q / 10
    assert not rb.basis.flags.writeable and not rb.mu.flags.writeable


def test_reduction_is_deterministic():
    A = expand_matrix(bytes(32), 20, 8, Q)
    np.testing.assert_array_equal(reduce_basis(qary_basis(A, Q), 10, Q).basis, reduce_basis(qary_basis(A, Q), 10, Q).basis)


def test_bad_bases():
    with pytest.raises(ValueError):
        reduce_basis(np.eye(4, dtype=np.int64), 5)
    with pytest.raises(ValueError):
        gso(np.ones((3, 3), dtype=np.int64), Q)
    with pytest.raises(ValueError):
        qary_basis(np.zeros((6, 2), dtype=np.int64), Q)


def test_a_spurious_basis_is_not_accepted():
    A = expand_matrix(bytes(32), 12, 4, Q)
    solver = SecretSolver(A, Q)
    basis = qary_basis(A, Q)
    assert lattice.spans_qary_lattice(basis, solver, 4)
    sub = basis.copy()
    sub[0] *= 2  # index-2 sublattice
    assert not lattice.spans_qary_lattice(sub, solver, 4)
    other = qary_basis(expand_matrix(bytes([1]) * 32, 12, 4, Q), Q)
    assert not lattice.spans_qary_lattice(other, solver, 4)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATTICELOCK_CACHE", str(tmp_path))
    lattice._memory.clear()
    yield tmp_path / "bases"
    lattice._memory.clear()


def test_cache_round_trip(cache):
    seed = bytes(range(32))
    first = reduced_basis_for(seed, 24, 8, Q, 10)
    assert reduced_basis_for(seed, 24, 8, Q, 10) is first  # in-memory LRU
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".basis"
    lattice._memory.clear()
    again = reduced_basis_for(seed, 24, 8, Q, 10)
    assert again is not first
    np.testing.assert_array_equal(again.basis, first.basis)
    np.testing.assert_array_equal(again.proj, first.proj)
    # Another block size is another entry.
    reduced_basis_for(seed, 24, 8, Q, 4)
    assert len(list(cache.iterdir())) == 2


def test_a_cache_folder_passed_in_is_used_instead_of_the_default(cache, tmp_path):
    seed = bytes(range(1, 33))
    own = tmp_path / "evaluation"
    first = reduced_basis_for(seed, 20, 8, Q, 8, cache=own)
    assert [p.suffix for p in own.iterdir()] == [".basis"] and not cache.exists()
    # A later lookup naming no folder is served from memory: the basis depends on the lattice only.
    assert reduced_basis_for(seed, 20, 8, Q, 8) is first and not cache.exists()
    lattice._memory.clear()
    np.testing.assert_array_equal(reduced_basis_for(seed, 20, 8, Q, 8, cache=own).basis, first.basis)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign"])
def test_corrupt_cache_is_recomputed(cache, damage):
    seed = bytes(range(32))
    good = reduced_basis_for(seed, 20, 8, Q, 8).basis.copy()
    (path,) = cache.iterdir()
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncate":
        data = data[:-9]
    elif damage == "empty":
        data = bytearray()
    else:
        # A well-formed file for another seed, renamed to this key: the checksum holds, the key does not.
        lattice._memory.clear()
        reduced_basis_for(bytes(32), 20, 8, Q, 8)
        data = bytearray(next(p for p in cache.iterdir() if p != path).read_bytes())
    path.write_bytes(bytes(data))
    lattice._memory.clear()
    rb = reduced_basis_for(seed, 20, 8, Q, 8)
    np.testing.assert_array_equal(rb.basis, good)
    assert lattice._decode(path.read_bytes(), lattice._cache_key(seed, 20, 8, Q, 8), 20) is not None


@pytest.mark.parametrize("damage", ["sublattice", "unreduced"])
def test_a_wrong_basis_with_a_valid_checksum_is_recomputed(cache, damage):
    seed = bytes(range(32))
    good = reduced_basis_for(seed, 20, 8, Q, 8).basis.copy()
    (path,) = cache.iterdir()
    key = lattice._cache_key(seed, 20, 8, Q, 8)
    bad = good.copy()
    if damage == "sublattice":
        bad[0] *= 2
    else:
        bad[1] += 5 * bad[0]  # same lattice, no longer reduced
    path.write_bytes(lattice._encode(key, bad))
    lattice._memory.clear()
    np.testing.assert_array_equal(reduced_basis_for(seed, 20, 8, Q, 8).basis, good)


def test_unwritable_cache_still_works(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LATTICELOCK_CACHE", str(blocker))
    lattice._memory.clear()
    try:
        assert reduced_basis_for(bytes(32), 16, 4, Q, 4).m == 16
    finally:
        lattice._memory.clear()


def test_reduced_basis_for_rejects_bad_input(cache):
    with pytest.raises(ValueError):
        reduced_basis_for(bytes(31), 16, 4, Q, 4)
    with pytest.raises(ValueError):
        reduced_basis_for(bytes(32), 16, 4, Q, 17)
    with pytest.raises(ValueError):
        reduced_basis_for(bytes(32), 16, 4, 65536, 4)


def test_gaussian_heuristic_predicts_lambda1():
    from latticelock.kernels.hazmat.lattice import gaussian_heuristic

    # In these dimensions the shortest BKZ-10 row is lambda_1 (checked against fpylll in test_cvp.py).
    for m, n in [(16, 8), (24, 8)]:
        ratios = [
            reduce_basis(qary_basis(expand_matrix(bytes([i]) * 32, m, n, Q), Q), 10, Q).shortest_row_norm
            / gaussian_heuristic(m, n, Q)
            for i in range(10)
        ]
        assert 0.95 < np.median(ratios) < 1.08
        assert 0.75 < min(ratios) and max(ratios) < 1.25
    with pytest.raises(ValueError):
        gaussian_heuristic(8, 8, Q)


def _sha256(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a, dtype="<i8").tobytes()).hexdigest()


def test_pinned_bases():
    """The q-ary basis is pure integer arithmetic; the BKZ-20 basis comes from fpylll on x86-64.

    Babai's decisions depend on the reduced basis (exact CVP's do not), so a change in the second hash
    (a new fpylll, another architecture) means Babai may decide differently from earlier installations.
    """
    A = expand_matrix(bytes(range(32)), 32, 16, Q)
    assert _sha256(qary_basis(A, Q)) == "ecf8602efb0f81b3286716ec77f311348b8fe678d353ad6bf63b09db4cf5b967"
    assert _sha256(reduce_basis(qary_basis(A, Q), 20, Q).basis) == "44e70e2575525ee6c28e6e83c68ea5fd4258865a3a3a0f23334b55a190922e64"
