"""The q-ary lattice L(A) = {A s + q z}, its reduced basis, and a cache of reduced bases per seed.

Row-vector convention: lattice vectors are rows of length m, v = b @ basis for integer rows b.

Precision: the basis is exact (int64). The Gram-Schmidt data (mu, bstar, bstar_sqnorm, proj) are
float64, computed by fpylll's MatGSO in MPFR (long precision) and rounded once to float64. float64
is enough because the bases are BKZ-reduced (|mu| <= 0.51 off the diagonal, |b*_i| within a few
powers of two of each other) with integer entries below 2^31 in dimension <= a few hundred: the
relative error of every Gram-Schmidt quantity is ~1e-15, far below the gap between a decoding
decision's rounding boundary and the values decoders meet in practice. float64 is also the widest
type the GPU twins compute natively, so CPU and GPU read identical numbers.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latticelock.kernels.hazmat.expand import SEED_BYTES, check_dimensions, expand_matrix
from latticelock.kernels.hazmat.recover import SecretSolver, independent_rows, inverse_mod

CACHE_FORMAT = b"LLBASIS1"
MPFR_PRECISION = 128


def qary_basis(A: np.ndarray, q: int) -> np.ndarray:
    """Basis int64[m, m] (rows) of L(A) = {A s + q z : s in Z^n, z in Z^m} for A int[m, n] of rank n mod q.

    With I the first n rows of A independent mod q and B = A A_I^-1 mod q (so B_I = identity), the rows
    are the n columns of B (a 1 at coordinate I_j, entries of B elsewhere) and q e_k for each k not in I.
    Permuting coordinates to put I first makes it upper triangular with diagonal (1,...,1, q,...,q): this
    is the Hermite normal form up to that permutation, and det = q^(m-n).
    """
    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be 2-d, got shape {A.shape}")
    m, n = A.shape
    check_dimensions(m, n, q)
    A = np.mod(A.astype(np.int64), q)
    rows = independent_rows(A, q)
    Ainv = inverse_mod(A[rows], q)
    B = np.zeros((m, n), dtype=np.int64)
    for j in range(n):
        B = (B + A[:, j : j + 1] * Ainv[j : j + 1, :]) % q
    basis = np.zeros((m, m), dtype=np.int64)
    basis[:n] = B.T
    others = np.setdiff1d(np.arange(m), rows)
    basis[np.arange(n, m), others] = q
    return basis


def gaussian_heuristic(m: int, n: int, q: int) -> float:
    """Expected lambda_1 of a random q-ary lattice L(A), A in Z_q^(m x n): det^(1/m) / vol(unit m-ball)^(1/m).

    det L(A) = q^(m-n). For n = 16, q = 65537 the measured lambda_1 of random seeds sits around it:
    m = 32: 0.93-1.06 x GH (60 seeds), m = 48: 0.95-1.05 x (12 seeds), m = 64: 1.00-1.04 x (8 seeds).
    """
    check_dimensions(m, n, q)
    log_ball = (m / 2) * math.log(math.pi) - math.lgamma(m / 2 + 1)
    return math.exp(((m - n) * math.log(q) - log_ball) / m)


@dataclass(frozen=True, eq=False)
class ReducedBasis:
    """A reduced basis and the float64 Gram-Schmidt data the decoders read (arrays are read-only).

    basis: int64[m, m], rows b_i.  bstar: float64[m, m], rows b*_i (Gram-Schmidt, no normalisation).
    bstar_sqnorm: float64[m], |b*_i|^2.  mu: float64[m, m], b_i = b*_i + sum_{j<i} mu[i, j] b*_j,
    unit diagonal, zero above it.  proj: float64[m, m] = bstar.T / bstar_sqnorm, so that the
    Gram-Schmidt coordinates of a target t are x = t @ proj (t = sum_i x_i b*_i).
    q: the modulus of the q-ary lattice (q Z^m is a sublattice), or 0 if unknown.
    """

    basis: np.ndarray
    mu: np.ndarray
    bstar: np.ndarray
    bstar_sqnorm: np.ndarray
    proj: np.ndarray
    q: int

    @property
    def m(self) -> int:
        return self.basis.shape[0]

    @property
    def shortest_row_norm(self) -> float:
        """Norm of the shortest basis row: an upper bound on lambda_1.

        Equal to lambda_1 in small dimensions; at m = 48 and 64 (n = 16) BKZ-20 overshoots it by up to
        ~10%, so use :func:`gaussian_heuristic` (or an SVP solver) where lambda_1 itself matters.
        """
        return float(np.sqrt(np.min(np.sum(self.basis.astype(np.float64) ** 2, axis=1))))

    def log_det(self) -> float:
        """log of the lattice determinant, from the Gram-Schmidt norms."""
        return float(0.5 * np.sum(np.log(self.bstar_sqnorm)))


def gso(basis: np.ndarray, q: int = 0) -> ReducedBasis:
    """Wrap an integer basis with its Gram-Schmidt data (computed by fpylll in MPFR, stored as float64)."""
    from fpylll import FPLLL, GSO, IntegerMatrix

    basis = np.ascontiguousarray(np.asarray(basis, dtype=np.int64))
    m = basis.shape[0]
    if basis.shape != (m, m):
        raise ValueError(f"basis must be square, got shape {basis.shape}")
    previous = FPLLL.get_precision()
    FPLLL.set_precision(MPFR_PRECISION)
    try:
        M = GSO.Mat(IntegerMatrix.from_matrix(basis.tolist()), float_type="mpfr")
        M.update_gso()
        mu = np.eye(m)
        for i in range(m):
            for j in range(i):
                mu[i, j] = M.get_mu(i, j)
        sqnorm = np.array([M.get_r(i, i) for i in range(m)], dtype=np.float64)
    finally:
        FPLLL.set_precision(previous)
    if not np.all(sqnorm > 0):
        raise ValueError("basis rows are linearly dependent")
    # b* = mu^-1 b: mu is unit lower triangular with |entries| <= 0.51 after reduction, so this is well conditioned.
    bstar = np.linalg.solve(mu, basis.astype(np.float64))
    proj = np.ascontiguousarray(bstar.T / sqnorm[None, :])
    arrays = [basis, mu, bstar, sqnorm, proj]
    for a in arrays:
        a.setflags(write=False)
    return ReducedBasis(basis=basis, mu=mu, bstar=bstar, bstar_sqnorm=sqnorm, proj=proj, q=int(q))


def reduce_basis(basis: np.ndarray, block_size: int, q: int = 0) -> ReducedBasis:
    """LLL then BKZ-``block_size`` (fpylll, auto-abort, no pruning) of an integer basis.

    ``q`` (the modulus of a q-ary lattice) is recorded in the result; 0 when not given.
    """
    from fpylll import BKZ, LLL, IntegerMatrix

    basis = np.asarray(basis, dtype=np.int64)
    m = basis.shape[0]
    if basis.ndim != 2 or basis.shape != (m, m):
        raise ValueError(f"basis must be square, got shape {basis.shape}")
    if not isinstance(block_size, int) or not 2 <= block_size <= m:
        raise ValueError(f"block_size must be an int in [2, {m}], got {block_size!r}")
    M = IntegerMatrix.from_matrix(basis.tolist())
    LLL.reduction(M)
    if block_size > 2:
        # No pruning strategies: plain BKZ is deterministic and needs no data files (the fpylll wheel
        # ships none), so every installation derives the same basis, and Babai the same decisions.
        param = BKZ.Param(block_size=block_size, flags=BKZ.AUTO_ABORT)
        BKZ.reduction(M, param)
    reduced = np.zeros((m, m), dtype=np.int64)
    M.to_matrix(reduced)
    return gso(reduced, q)


def cache_dir() -> Path:
    """The default folder of cached bases: $LATTICELOCK_CACHE/bases, else ~/.cache/latticelock/bases.

    `$LATTICELOCK_CACHE` is the root of every LatticeLock cache, one subfolder per kind (`models`,
    `bases`, `embeddings`); this is the only place the kernels read it.
    """
    root = os.environ.get("LATTICELOCK_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "latticelock") / "bases"


def _cache_key(seed: bytes, m: int, n: int, q: int, block_size: int) -> bytes:
    return CACHE_FORMAT + bytes(seed) + struct.pack("<IIII", m, n, q, block_size)


def _encode(key: bytes, basis: np.ndarray) -> bytes:
    body = key + np.ascontiguousarray(basis, dtype="<i8").tobytes()
    return body + hashlib.sha256(body).digest()


def _decode(data: bytes, key: bytes, m: int) -> np.ndarray | None:
    """The cached basis, or None if the file is truncated, corrupt or for another key."""
    expected = len(key) + 8 * m * m + 32
    if len(data) != expected:
        return None
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest or body[: len(key)] != key:
        return None
    return np.frombuffer(body[len(key) :], dtype="<i8").reshape(m, m).astype(np.int64)


def spans_qary_lattice(basis: np.ndarray, solver: SecretSolver, n: int) -> bool:
    """True iff the rows of ``basis`` form a basis of L(A) (A and q from ``solver``).

    Every row must lie in L(A) (solvable mod q), and |det| must equal det L(A) = q^(m-n): a sublattice
    of index k >= 2 would have a determinant at least twice as large, far beyond the tolerance.
    """
    m = basis.shape[0]
    _, ok = solver.solve_many(basis)
    if not np.all(ok):
        return False
    sign, logdet = np.linalg.slogdet(basis.astype(np.float64))
    return sign != 0 and abs(logdet - (m - n) * np.log(solver.q)) < 0.1


def _is_lll_reduced(basis: np.ndarray) -> bool:
    """A planted basis of the right lattice but poorly reduced would slow the decoders: recompute it."""
    from fpylll import LLL, IntegerMatrix

    return bool(LLL.is_reduced(IntegerMatrix.from_matrix(basis.tolist())))


class _Memory:
    """The most recently used reduced bases, keyed by their lattice alone (seed, shape, q, block size):
    the folder a basis is kept in on disk does not change it, so a basis reduced into an evaluation's
    own cache folder serves the scheme's later lookups, which name no folder."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._bases: OrderedDict[bytes, ReducedBasis] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> ReducedBasis | None:
        with self._lock:
            rb = self._bases.get(key)
            if rb is not None:
                self._bases.move_to_end(key)
            return rb

    def put(self, key: bytes, rb: ReducedBasis) -> None:
        with self._lock:
            self._bases[key] = rb
            self._bases.move_to_end(key)
            while len(self._bases) > self._size:
                self._bases.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._bases.clear()


_memory = _Memory(256)


def _load_or_reduce(key: bytes, seed: bytes, m: int, n: int, q: int, block_size: int, folder: Path) -> ReducedBasis:
    A = expand_matrix(seed, m, n, q)
    path = folder / (hashlib.sha256(key).hexdigest() + ".basis")
    solver = SecretSolver(A, q)
    try:
        cached = _decode(path.read_bytes(), key, m)
    except OSError:
        cached = None
    if cached is not None and spans_qary_lattice(cached, solver, n) and _is_lll_reduced(cached):
        return gso(cached, q)
    rb = reduce_basis(qary_basis(A, q), block_size, q)
    _write_atomic(path, _encode(key, rb.basis))
    return rb


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see a half-written file.

    The cache is an optimisation: a read-only or full disk just means recomputing next time.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".basis")
        try:
            with io.FileIO(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def reduced_basis_for(
    seed: bytes, m: int, n: int, q: int, block_size: int, cache: Path | None = None
) -> ReducedBasis:
    """The BKZ-reduced basis of L(expand_matrix(seed, m, n, q)), cached in memory and on disk in the
    folder `cache` (default `cache_dir()`).

    The reduced basis is public (anyone holding the seed can compute it), so caching it leaks nothing.
    A cached file is trusted only after checking that it is an LLL-reduced basis of the same lattice.
    """
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes")
    check_dimensions(m, n, q)
    if not isinstance(block_size, int) or not 2 <= block_size <= m:
        raise ValueError(f"block_size must be an int in [2, {m}], got {block_size!r}")
    seed, m, n, q = bytes(seed), int(m), int(n), int(q)
    key = _cache_key(seed, m, n, q, block_size)
    rb = _memory.get(key)
    if rb is None:
        rb = _load_or_reduce(key, seed, m, n, q, block_size, cache_dir() if cache is None else Path(cache))
        _memory.put(key, rb)
    return rb
