"""Babai's nearest-plane decoder (numba, batched): the paper's reference decoder and the fast path.

Precision: float64 throughout, reading the float64 Gram-Schmidt data of :class:`ReducedBasis`
(see lattice.py for why float64 suffices). The output is exact: the integer coefficients are
rounded in float64 and the lattice vector is then formed in int64 from the integer basis.

The operation order is fixed so that the GPU twin can reproduce every decision bit for bit:
  1. x_i = sum_{j=0..m-1} t_j * proj[j, i], summed in increasing j (no fused multiply-add);
  2. for i = m-1 down to 0: c_i = floor(x_i + 0.5); then for j = 0..i-1: x_j = x_j - c_i * mu[i, j];
  3. v = sum_i c_i * basis[i] in int64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from latticelock.kernels.hazmat.lattice import ReducedBasis

MAX_TARGET = 2.0**32


@njit(cache=True)
def gs_coordinates(t, proj, x):
    """x = t @ proj, summed in increasing j: the Gram-Schmidt coordinates of t (shared with cvp)."""
    m = t.shape[0]
    for i in range(m):
        acc = 0.0
        for j in range(m):
            acc += t[j] * proj[j, i]
        x[i] = acc


@njit(cache=True)
def _nearest_plane(t, basis, proj, mu, out):
    m = t.shape[0]
    x = np.empty(m)
    gs_coordinates(t, proj, x)
    for i in range(m - 1, -1, -1):
        c = np.floor(x[i] + 0.5)
        for j in range(i):
            x[j] -= c * mu[i, j]
        ci = np.int64(c)
        if ci != 0:
            for j in range(m):
                out[j] += ci * basis[i, j]


# Waking numba's worker threads costs tens of microseconds (milliseconds on a loaded machine), more than
# a few thousand ~1 us decodes: smaller batches run on the calling thread. The serial and threaded
# kernels are separate functions because numba's on-disk cache keys compiled code by function, not by
# its parallel flag.
PARALLEL_MIN_BATCH = 4096


@njit(cache=True)
def _one_basis_serial(basis, proj, mu, targets, out):
    for r in range(targets.shape[0]):
        _nearest_plane(targets[r], basis, proj, mu, out[r])


@njit(cache=True, parallel=True)
def _one_basis_parallel(basis, proj, mu, targets, out):
    for r in prange(targets.shape[0]):
        _nearest_plane(targets[r], basis, proj, mu, out[r])


@njit(cache=True)
def _many_bases_serial(bases, projs, mus, targets, out):
    for r in range(targets.shape[0]):
        _nearest_plane(targets[r], bases[r], projs[r], mus[r], out[r])


@njit(cache=True, parallel=True)
def _many_bases_parallel(bases, projs, mus, targets, out):
    for r in prange(targets.shape[0]):
        _nearest_plane(targets[r], bases[r], projs[r], mus[r], out[r])


def check_targets(targets: np.ndarray, m: int) -> np.ndarray:
    targets = np.ascontiguousarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != m:
        raise ValueError(f"targets must have shape [k, {m}], got {targets.shape}")
    # Bounded targets keep every coefficient and the int64 result far from overflow.
    if not np.all(np.abs(targets) < MAX_TARGET):
        raise ValueError(f"targets must be finite and below {MAX_TARGET:.0e} in absolute value")
    return targets


def babai_decode(rb: ReducedBasis, targets: np.ndarray) -> np.ndarray:
    """Babai's nearest-plane lattice vector int64[k, m] for each row of ``targets`` float64[k, m]."""
    targets = check_targets(targets, rb.m)
    out = np.zeros(targets.shape, dtype=np.int64)
    if targets.shape[0]:
        kernel = _one_basis_parallel if len(targets) >= PARALLEL_MIN_BATCH else _one_basis_serial
        kernel(rb.basis, rb.proj, rb.mu, targets, out)
    return out


def stack_bases(rbs: list[ReducedBasis]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(basis int64[k,m,m], proj float64[k,m,m], mu float64[k,m,m], bstar_sqnorm float64[k,m]) of k bases."""
    if not rbs:
        raise ValueError("need at least one basis")
    m = rbs[0].m
    if any(rb.m != m for rb in rbs):
        raise ValueError("all bases must have the same dimension")
    return (
        np.stack([rb.basis for rb in rbs]),
        np.stack([rb.proj for rb in rbs]),
        np.stack([rb.mu for rb in rbs]),
        np.stack([rb.bstar_sqnorm for rb in rbs]),
    )


def babai_decode_many(rbs: list[ReducedBasis], targets: np.ndarray) -> np.ndarray:
    """Row i of ``targets`` decoded against ``rbs[i]`` (one candidate against many records)."""
    if len(rbs) != len(targets):
        raise ValueError(f"need one basis per target, got {len(rbs)} bases and {len(targets)} targets")
    if len(rbs) == 0:
        return np.zeros((0, np.shape(targets)[1] if np.ndim(targets) == 2 else 0), dtype=np.int64)
    bases, projs, mus, _ = stack_bases(rbs)
    targets = check_targets(targets, bases.shape[1])
    out = np.zeros(targets.shape, dtype=np.int64)
    kernel = _many_bases_parallel if len(targets) >= PARALLEL_MIN_BATCH else _many_bases_serial
    kernel(bases, projs, mus, targets, out)
    return out
