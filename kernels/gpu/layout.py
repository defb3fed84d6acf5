"""Host-side packing of reduced bases and targets into the layouts the CUDA kernels read (numpy only).

One basis (many candidates against one record): each array as it is, C order; every thread reads
the same element at once. Many bases (target i against basis i): element-major, `packed[e, i]` is
element e of basis i, so a warp reading one element touches consecutive words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latticelock.kernels.errors import KernelsError


@dataclass(frozen=True)
class PackedBasis:
    """The Gram-Schmidt data and basis of one or many reduced bases, as the kernels read them."""

    m: int
    bstar: np.ndarray  # float64: [m*m] (one) or [m*m, k] (many)
    sqnorm: np.ndarray  # float64: [m] or [m, k]
    mu: np.ndarray  # float64: [m*m] or [m*m, k]
    basis: np.ndarray  # int64:   [m*m] or [m*m, k]
    many: bool


def _parts(rb) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    basis = np.asarray(rb.basis)
    m = basis.shape[0]
    bstar = np.asarray(rb.bstar, dtype=np.float64)
    sqnorm = np.asarray(rb.bstar_sqnorm, dtype=np.float64)
    mu = np.asarray(rb.mu, dtype=np.float64)
    if basis.shape != (m, m) or bstar.shape != (m, m) or sqnorm.shape != (m,) or mu.shape != (m, m):
        raise KernelsError(
            f"inconsistent reduced basis: basis {basis.shape}, bstar {bstar.shape}, "
            f"bstar_sqnorm {sqnorm.shape}, mu {mu.shape}"
        )
    return bstar, sqnorm, mu, basis.astype(np.int64, copy=False)


def pack_one(rb) -> PackedBasis:
    bstar, sqnorm, mu, basis = _parts(rb)
    return PackedBasis(
        m=basis.shape[0],
        bstar=np.ascontiguousarray(bstar).ravel(),
        sqnorm=np.ascontiguousarray(sqnorm),
        mu=np.ascontiguousarray(mu).ravel(),
        basis=np.ascontiguousarray(basis).ravel(),
        many=False,
    )


def pack_many(rbs) -> PackedBasis:
    parts = [_parts(rb) for rb in rbs]
    if not parts:
        raise KernelsError("no reduced bases given")
    m = parts[0][3].shape[0]
    if any(p[3].shape[0] != m for p in parts):
        raise KernelsError("all reduced bases of one batch must have the same dimension m")

    def interleave(index: int, dtype) -> np.ndarray:
        # [k, elements] -> [elements, k]
        stacked = np.stack([p[index].reshape(-1) for p in parts]).astype(dtype, copy=False)
        return np.ascontiguousarray(stacked.T)

    return PackedBasis(
        m=m,
        bstar=interleave(0, np.float64),
        sqnorm=interleave(1, np.float64),
        mu=interleave(2, np.float64),
        basis=interleave(3, np.int64),
        many=True,
    )


def check_targets(targets, m: int, k: int | None = None) -> np.ndarray:
    """targets as C-ordered float64 [k, m], with a clear error for anything else."""
    t = np.asarray(targets)
    if t.ndim != 2 or t.shape[1] != m:
        raise KernelsError(f"targets must have shape [k, {m}], got {t.shape}")
    if k is not None and t.shape[0] != k:
        raise KernelsError(f"need one target per basis: {k} bases but {t.shape[0]} targets")
    t = np.ascontiguousarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise KernelsError("targets contain NaN or infinity")
    return t
