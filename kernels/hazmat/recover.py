"""Linear algebra modulo a prime q < 2^31, and recovery of s from a lattice vector v = A s mod q.

Exact integer arithmetic only (no floating point): every product of two residues is below 2^62, so
int64 holds it as long as each step is reduced mod q before the next multiplication.
"""

from __future__ import annotations

import numpy as np

from latticelock.kernels.hazmat.expand import check_dimensions


def _as_residues(A: np.ndarray, q: int) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim != 2 or not np.issubdtype(A.dtype, np.integer):
        raise ValueError(f"A must be a 2-d integer array, got shape {A.shape} dtype {A.dtype}")
    return np.mod(A.astype(np.int64), q)


def independent_rows(A: np.ndarray, q: int) -> np.ndarray:
    """Indices (increasing) of the first n rows of A (m x n) that are linearly independent mod q.

    Greedy in row order, so the choice is deterministic. Raises ValueError when A has rank < n mod q.
    """
    A = _as_residues(A, q)
    m, n = A.shape
    # Row echelon form of A^T: its pivot columns are the greedily chosen rows of A.
    M = np.ascontiguousarray(A.T)
    chosen = []
    r = 0
    for c in range(m):
        if r == n:
            break
        nonzero = np.flatnonzero(M[r:, c])
        if nonzero.size == 0:
            continue
        p = r + int(nonzero[0])
        if p != r:
            M[[r, p]] = M[[p, r]]
        M[r] = M[r] * pow(int(M[r, c]), -1, q) % q
        below = M[r + 1 :, c].copy()
        M[r + 1 :] = (M[r + 1 :] - below[:, None] * M[r]) % q
        chosen.append(c)
        r += 1
    if r < n:
        raise ValueError(f"A has rank {r} < n = {n} modulo q = {q}")
    return np.array(chosen, dtype=np.int64)


def inverse_mod(M: np.ndarray, q: int) -> np.ndarray:
    """Inverse of a square matrix modulo the prime q (Gauss-Jordan); ValueError if singular."""
    M = _as_residues(M, q)
    n = M.shape[0]
    if M.shape != (n, n):
        raise ValueError(f"need a square matrix, got shape {M.shape}")
    W = np.concatenate([M, np.eye(n, dtype=np.int64)], axis=1)
    for c in range(n):
        nonzero = np.flatnonzero(W[c:, c])
        if nonzero.size == 0:
            raise ValueError("matrix is singular modulo q")
        p = c + int(nonzero[0])
        if p != c:
            W[[c, p]] = W[[p, c]]
        W[c] = W[c] * pow(int(W[c, c]), -1, q) % q
        factors = W[:, c].copy()
        factors[c] = 0
        W = (W - factors[:, None] * W[c]) % q
    return np.ascontiguousarray(W[:, n:])


class SecretSolver:
    """Solves A s = v (mod q) for s, given a lattice vector v of L(A) = {A s + q z}.

    A set I of n rows of A that is invertible mod q is chosen once; then s = A_I^-1 v_I mod q, and
    the remaining rows check that v really is in the lattice.
    """

    def __init__(self, A: np.ndarray, q: int) -> None:
        A = np.asarray(A)
        if A.ndim != 2:
            raise ValueError(f"A must be 2-d, got shape {A.shape}")
        check_dimensions(A.shape[0], A.shape[1], q)
        self.q = int(q)
        self.A = _as_residues(A, self.q)
        self.rows = independent_rows(self.A, self.q)
        self.inverse = inverse_mod(self.A[self.rows], self.q)

    def solve(self, v: np.ndarray) -> np.ndarray | None:
        """s in [0, q)^n with A s = v mod q, or None when v is not a vector of the lattice."""
        v = np.asarray(v)
        if v.shape != (self.A.shape[0],) or not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"v must be an integer vector of length {self.A.shape[0]}, got {v.shape} {v.dtype}")
        v = np.mod(v.astype(np.int64), self.q)
        s = _matvec_mod(self.inverse, v[self.rows], self.q)
        if not np.array_equal(_matvec_mod(self.A, s, self.q), v):
            return None
        return s

    def solve_many(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of V at once: (S int64[k, n], ok bool[k]); rows with ok False are not lattice vectors (S zero)."""
        V = np.asarray(V)
        if V.ndim != 2 or V.shape[1] != self.A.shape[0] or not np.issubdtype(V.dtype, np.integer):
            raise ValueError(f"V must be integer [k, {self.A.shape[0]}], got {V.shape} {V.dtype}")
        V = np.mod(V.astype(np.int64), self.q)
        S = _matmul_mod(V[:, self.rows], self.inverse.T, self.q)
        ok = np.all(_matmul_mod(S, self.A.T, self.q) == V, axis=1)
        S[~ok] = 0
        return S, ok


def _matvec_mod(M: np.ndarray, x: np.ndarray, q: int) -> np.ndarray:
    return _matmul_mod(x[None, :], M.T, q)[0]


def _matmul_mod(X: np.ndarray, Y: np.ndarray, q: int) -> np.ndarray:
    """(X @ Y) mod q for residue matrices, accumulating one reduced product at a time (no int64 overflow)."""
    out = np.zeros((X.shape[0], Y.shape[1]), dtype=np.int64)
    for j in range(X.shape[1]):
        out = (out + X[:, j : j + 1] * Y[j : j + 1, :]) % q
    return out
