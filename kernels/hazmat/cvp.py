"""Exact closest-vector decoding within a radius: Schnorr-Euchner enumeration (numba, batched).

Bounded-distance decoding: for a target t and radius R, find the lattice vector v minimising |v - t|
among those with |v - t| <= R. Babai accepts a parallelepiped around each lattice vector; this decoder
accepts the ball, which is what makes acceptance equal "|e - e'| <= R" when R < lambda_1 / 2.

The search is the depth-first Schnorr-Euchner enumeration over Gram-Schmidt coordinates (as in fplll's
enumerator): at level i (from m-1 down to 0) the coefficient c_i zigzags around its centre
ctr_i = x_i - sum_{j>i} c_j mu[j, i] in order of increasing distance, and a branch is cut when the
partial squared distance sum_{j>=i} |b*_j|^2 (c_j - ctr_j)^2 exceeds the bound. The bound starts at R^2
and shrinks to the k-th best squared distance once k points are held (k = 1 for decoding), so the
search returns the exact nearest points. Centre partial sums are cached per level (fplll's trick).

Precision: float64 everywhere, reading the float64 Gram-Schmidt data of :class:`ReducedBasis` (see
lattice.py for why float64 is enough). Pruning uses R^2 (1 + 1e-9) so that a float error can never cut
a point at distance exactly R; the final "within R" decision is then made on |v - t|^2 computed from
the integer vector v, as sqrt(|v - t|^2) <= R in float64 (so a radius computed as a float64 norm of some
v - t includes that v). Ties (equal distances) keep the first point found.

A node budget bounds the work per target, so a hostile target or radius cannot hang the caller: a target
whose enumeration exceeds it is reported through :class:`EnumerationBudgetError`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from latticelock.kernels.hazmat.babai import check_targets, gs_coordinates, stack_bases
from latticelock.kernels.errors import KernelsError
from latticelock.kernels.hazmat.lattice import ReducedBasis

DEFAULT_MAX_NODES = 10_000_000
RADIUS_SLACK = 1e-9
# enumerate_within keeps max_points * m coefficients in memory; this caps it at 512 MiB.
MAX_POINT_ENTRIES = 1 << 26

_COMPLETE = 0
_EXHAUSTED = 1


class EnumerationBudgetError(KernelsError):
    """Enumeration for some targets needed more nodes than allowed; their results are incomplete.

    ``vectors``, ``found`` hold the results (complete for every target not flagged), ``exhausted``
    (bool[k]) flags the targets whose search was cut short.
    """

    def __init__(self, message: str, vectors: np.ndarray, found: np.ndarray, exhausted: np.ndarray) -> None:
        super().__init__(message)
        self.vectors = vectors
        self.found = found
        self.exhausted = exhausted


@njit(cache=True)
def _heap_sift_down(hd, hs, size, pos):
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        big = left
        if left + 1 < size and hd[left + 1] > hd[left]:
            big = left + 1
        if hd[big] <= hd[pos]:
            return
        hd[pos], hd[big] = hd[big], hd[pos]
        hs[pos], hs[big] = hs[big], hs[pos]
        pos = big


@njit(cache=True)
def _heap_sift_up(hd, hs, pos):
    while pos > 0:
        parent = (pos - 1) // 2
        if hd[parent] >= hd[pos]:
            return
        hd[pos], hd[parent] = hd[parent], hd[pos]
        hs[pos], hs[parent] = hs[parent], hs[pos]
        pos = parent


@njit(cache=True)
def _enumerate(t, proj, mu, sqnorm, bound, max_nodes, coeffs, hd, hs):
    """Keep the (up to) len(hd) nearest points within sqrt(bound) of t.

    coeffs[slot] holds a point's coefficients; the max-heap (hd distances, hs slots) orders them.
    Returns (points held, status, nodes visited).
    """
    m = t.shape[0]
    cap = hd.shape[0]
    x = np.empty(m)
    gs_coordinates(t, proj, x)
    # sig[i, k] = x_i - sum_{j >= k} c_j mu[j, i]; the centre of level i is sig[i, i + 1].
    sig = np.empty((m, m + 1))
    for i in range(m):
        sig[i, m] = x[i]
    # Lazy refresh (fplll's center_partsum_begin): on the way down from level i + 1, row i is recomputed
    # from column begin[i + 1], the highest level changed since that row was last brought up to date.
    begin = np.full(m, m - 1, dtype=np.int64)
    c = np.zeros(m)
    ctr = np.zeros(m)
    dx = np.zeros(m)
    ddx = np.zeros(m)
    partial = np.zeros(m + 1)
    limit = bound
    size = 0
    nodes = 0
    i = m - 1
    ctr[i] = x[i]
    c[i] = np.floor(ctr[i] + 0.5)
    dx[i] = 1.0 if ctr[i] >= c[i] else -1.0
    ddx[i] = dx[i]
    while True:
        nodes += 1
        if nodes > max_nodes:
            return size, _EXHAUSTED, nodes
        diff = c[i] - ctr[i]
        d = partial[i + 1] + diff * diff * sqnorm[i]
        if d <= limit:
            if i == 0:
                if size < cap:
                    for j in range(m):
                        coeffs[size, j] = c[j]
                    hd[size] = d
                    hs[size] = size
                    _heap_sift_up(hd, hs, size)
                    size += 1
                elif d < hd[0]:
                    slot = hs[0]
                    for j in range(m):
                        coeffs[slot, j] = c[j]
                    hd[0] = d
                    _heap_sift_down(hd, hs, size, 0)
                if size == cap and hd[0] < limit:
                    limit = hd[0]
                c[0] += dx[0]
                ddx[0] = -ddx[0]
                dx[0] = ddx[0] - dx[0]
                continue
            partial[i] = d
            hi = begin[i]
            i -= 1
            for k in range(hi, i, -1):
                sig[i, k] = sig[i, k + 1] - c[k] * mu[k, i]
            if hi > begin[i]:
                begin[i] = hi
            begin[i + 1] = i + 1
            ctr[i] = sig[i, i + 1]
            c[i] = np.floor(ctr[i] + 0.5)
            dx[i] = 1.0 if ctr[i] >= c[i] else -1.0
            ddx[i] = dx[i]
        else:
            i += 1
            if i == m:
                return size, _COMPLETE, nodes
            c[i] += dx[i]
            ddx[i] = -ddx[i]
            dx[i] = ddx[i] - dx[i]


@njit(cache=True)
def _closest(t, basis, proj, mu, sqnorm, bound, max_nodes, out):
    """Nearest point within sqrt(bound) into out (int64, zero if none); returns (found, status)."""
    m = t.shape[0]
    coeffs = np.zeros((1, m))
    hd = np.zeros(1)
    hs = np.zeros(1, dtype=np.int64)
    size, status, _ = _enumerate(t, proj, mu, sqnorm, bound, max_nodes, coeffs, hd, hs)
    if size == 0:
        return False, status
    for i in range(m):
        ci = np.int64(coeffs[0, i])
        if ci != 0:
            for j in range(m):
                out[j] += ci * basis[i, j]
    return True, status


# A decode costs microseconds to milliseconds, so threads pay off from small batches on; a single
# candidate (the usual unlock) stays on the calling thread. Serial and threaded kernels are separate
# functions because numba's on-disk cache keys compiled code by function, not by its parallel flag.
PARALLEL_MIN_BATCH = 16


@njit(cache=True)
def _one_basis_serial(basis, proj, mu, sqnorm, targets, bound, max_nodes, out, found, status):
    for r in range(targets.shape[0]):
        found[r], status[r] = _closest(targets[r], basis, proj, mu, sqnorm, bound, max_nodes, out[r])


@njit(cache=True, parallel=True)
def _one_basis_parallel(basis, proj, mu, sqnorm, targets, bound, max_nodes, out, found, status):
    for r in prange(targets.shape[0]):
        found[r], status[r] = _closest(targets[r], basis, proj, mu, sqnorm, bound, max_nodes, out[r])


@njit(cache=True)
def _many_bases_serial(bases, projs, mus, sqnorms, targets, bound, max_nodes, out, found, status):
    for r in range(targets.shape[0]):
        found[r], status[r] = _closest(targets[r], bases[r], projs[r], mus[r], sqnorms[r], bound, max_nodes, out[r])


@njit(cache=True, parallel=True)
def _many_bases_parallel(bases, projs, mus, sqnorms, targets, bound, max_nodes, out, found, status):
    for r in prange(targets.shape[0]):
        found[r], status[r] = _closest(targets[r], bases[r], projs[r], mus[r], sqnorms[r], bound, max_nodes, out[r])


def _check_radius(radius: float, max_nodes: int) -> float:
    radius = float(radius)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and >= 0, got {radius}")
    if not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
    return radius


def _finish(targets, out, found, status, radius) -> tuple[np.ndarray, np.ndarray]:
    # The enumeration pruned with a little slack; the exact decision is on the integer vector.
    found &= np.sqrt(np.sum((out - targets) ** 2, axis=1)) <= radius
    out[~found] = 0
    exhausted = status == _EXHAUSTED
    if np.any(exhausted):
        raise EnumerationBudgetError(
            f"closest-vector search exceeded its node budget for {int(exhausted.sum())} of {len(targets)} targets",
            out,
            found,
            exhausted,
        )
    return out, found


def cvp_decode(
    rb: ReducedBasis, targets: np.ndarray, radius: float, max_nodes: int = DEFAULT_MAX_NODES
) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest lattice vectors int64[k, m] to the rows of ``targets`` and found bool[k].

    found[i] is True iff the closest vector lies within ``radius`` of target i (else its row is zero).
    Raises EnumerationBudgetError if some target needs more than ``max_nodes`` enumeration nodes.
    """
    radius = _check_radius(radius, max_nodes)
    targets = check_targets(targets, rb.m)
    k = targets.shape[0]
    out = np.zeros((k, rb.m), dtype=np.int64)
    found = np.zeros(k, dtype=np.bool_)
    status = np.zeros(k, dtype=np.int64)
    if k:
        bound = radius * radius * (1.0 + RADIUS_SLACK)
        kernel = _one_basis_parallel if k >= PARALLEL_MIN_BATCH else _one_basis_serial
        kernel(rb.basis, rb.proj, rb.mu, rb.bstar_sqnorm, targets, bound, int(max_nodes), out, found, status)
    return _finish(targets, out, found, status, radius)


def cvp_decode_many(
    rbs: list[ReducedBasis], targets: np.ndarray, radius: float, max_nodes: int = DEFAULT_MAX_NODES
) -> tuple[np.ndarray, np.ndarray]:
    """Row i of ``targets`` decoded exactly against ``rbs[i]`` (one candidate against many records)."""
    radius = _check_radius(radius, max_nodes)
    if len(rbs) != len(targets):
        raise ValueError(f"need one basis per target, got {len(rbs)} bases and {len(targets)} targets")
    if len(rbs) == 0:
        m = np.shape(targets)[1] if np.ndim(targets) == 2 else 0
        return np.zeros((0, m), dtype=np.int64), np.zeros(0, dtype=np.bool_)
    bases, projs, mus, sqnorms = stack_bases(rbs)
    targets = check_targets(targets, bases.shape[1])
    k = targets.shape[0]
    out = np.zeros((k, bases.shape[1]), dtype=np.int64)
    found = np.zeros(k, dtype=np.bool_)
    status = np.zeros(k, dtype=np.int64)
    bound = radius * radius * (1.0 + RADIUS_SLACK)
    kernel = _many_bases_parallel if k >= PARALLEL_MIN_BATCH else _many_bases_serial
    kernel(bases, projs, mus, sqnorms, targets, bound, int(max_nodes), out, found, status)
    return _finish(targets, out, found, status, radius)


def enumerate_within(
    rb: ReducedBasis, target: np.ndarray, radius: float, max_points: int, max_nodes: int = DEFAULT_MAX_NODES
) -> np.ndarray:
    """Lattice vectors int64[p, m] within ``radius`` of ``target``, nearest first, at most ``max_points``.

    When more than ``max_points`` lie within the radius, the nearest ``max_points`` are returned (the
    search bound shrinks as it goes, so memory stays at max_points rows). Raises EnumerationBudgetError
    after ``max_nodes`` nodes (its ``vectors`` then hold the points found so far, nearest first).
    """
    radius = _check_radius(radius, max_nodes)
    target = check_targets(np.asarray(target, dtype=np.float64).reshape(1, -1), rb.m)[0]
    if not isinstance(max_points, (int, np.integer)) or not 1 <= max_points <= MAX_POINT_ENTRIES // rb.m:
        raise ValueError(f"max_points must be an int in [1, {MAX_POINT_ENTRIES // rb.m}], got {max_points!r}")
    coeffs = np.zeros((int(max_points), rb.m))
    hd = np.zeros(int(max_points))
    hs = np.zeros(int(max_points), dtype=np.int64)
    bound = radius * radius * (1.0 + RADIUS_SLACK)
    size, status, _ = _enumerate(target, rb.proj, rb.mu, rb.bstar_sqnorm, bound, int(max_nodes), coeffs, hd, hs)
    vectors = coeffs[np.sort(hs[:size])].astype(np.int64) @ rb.basis
    dist = np.sqrt(np.sum((vectors - target) ** 2, axis=1))
    order = np.argsort(dist, kind="stable")
    vectors = vectors[order[dist[order] <= radius]]
    if status == _EXHAUSTED:
        raise EnumerationBudgetError(
            f"enumeration within radius {radius} exceeded its budget of {max_nodes} nodes after {size} points",
            vectors,
            np.ones(len(vectors), dtype=np.bool_),
            np.array([True]),
        )
    return vectors
