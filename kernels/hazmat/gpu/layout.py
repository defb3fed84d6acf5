"""Host-side packing of reduced bases for the CUDA kernels (numpy only).

One basis (many candidates against one record): each array flat, C order; every thread of a warp
reads the same element at once. Many bases (target i against basis i): stacked record-major here,
`packed[i, e]` element e of basis i; the device transposes them to element-major (`[e, i]`), so a
warp reading one element touches consecutive words (a transpose on the host is far slower).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latticelock.kernels.hazmat.babai import stack_bases


@dataclass(frozen=True)
class PackedBasis:
    """The data of one or many reduced bases that the kernels read, in their layout."""

    m: int
    proj: np.ndarray  # float64 [m*m] (one) or [k, m*m] (many): Gram-Schmidt coordinates x = t @ proj
    sqnorm: np.ndarray  # float64 [m] or [k, m]: |b*_i|^2
    mu: np.ndarray  # float64 [m*m] or [k, m*m]
    basis: np.ndarray  # int64 [m*m] or [k, m*m]
    many: bool


def pack_one(rb) -> PackedBasis:
    def flat(a, dtype) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=dtype).ravel()

    return PackedBasis(
        m=rb.m,
        proj=flat(rb.proj, np.float64),
        sqnorm=flat(rb.bstar_sqnorm, np.float64),
        mu=flat(rb.mu, np.float64),
        basis=flat(rb.basis, np.int64),
        many=False,
    )


def pack_many(rbs) -> PackedBasis:
    """k bases stacked record-major (checked as the CPU checks them: at least one, same m)."""
    bases, projs, mus, sqnorms = stack_bases(rbs)
    k, m = sqnorms.shape

    def stacked(a: np.ndarray, dtype) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=dtype).reshape(k, -1)

    return PackedBasis(
        m=m,
        proj=stacked(projs, np.float64),
        sqnorm=stacked(sqnorms, np.float64),
        mu=stacked(mus, np.float64),
        basis=stacked(bases, np.int64),
        many=True,
    )
