"""Batched decoder calls on the GPU: pack, copy in, launch one thread per target, copy out.

Same signatures and results as the numba kernels in `latticelock.kernels.babai` and
`latticelock.kernels.cvp`. The secret s is then recovered on the CPU by
`latticelock.kernels.recover.SecretSolver` (exact integer arithmetic mod q, a few hundred operations
per candidate: not worth a transfer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latticelock.kernels.errors import KernelsError
from latticelock.kernels.gpu import runtime
from latticelock.kernels.gpu.layout import PackedBasis, check_targets, pack_many, pack_one


@dataclass(frozen=True)
class Timing:
    """Seconds spent in one call: kernel alone (CUDA events) and the whole call (copies included)."""

    kernel_s: float
    total_s: float


def _grid(k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return ((k + runtime.BLOCK - 1) // runtime.BLOCK, 1, 1), (runtime.BLOCK, 1, 1)


def _run(kernel_name: str, packed: PackedBasis, targets: np.ndarray, radius: float | None, max_nodes: int):
    """Launch one decoder; returns (vectors int64[k,m], found bool[k] | None, nodes int64[k] | None, kernel seconds)."""
    k, m = targets.shape
    out = np.empty((k, m), dtype=np.int64)
    if k == 0:
        return out, (np.zeros(0, dtype=bool) if radius is not None else None), np.zeros(0, dtype=np.int64), 0.0
    with runtime.active() as cuda:
        function = runtime.module(m).get_function(kernel_name + ("_many" if packed.many else "_one"))
        d_targets = cuda.to_device(targets)
        d_bstar = cuda.to_device(packed.bstar)
        d_sqnorm = cuda.to_device(packed.sqnorm)
        d_basis = cuda.to_device(packed.basis)
        d_out = cuda.mem_alloc(out.nbytes)
        start, stop = cuda.Event(), cuda.Event()
        grid, block = _grid(k)
        if radius is None:
            start.record()
            function(d_targets, np.int64(k), d_bstar, d_sqnorm, d_basis, d_out, grid=grid, block=block)
            stop.record()
            found = nodes = None
        else:
            d_mu = cuda.to_device(packed.mu)
            d_found = cuda.mem_alloc(k)
            d_nodes = cuda.mem_alloc(8 * k)
            start.record()
            function(
                d_targets, np.int64(k), np.float64(radius * radius), np.int64(max_nodes),
                d_bstar, d_sqnorm, d_mu, d_basis, d_out, d_found, d_nodes,
                grid=grid, block=block,
            )
            stop.record()
            found_bytes = np.empty(k, dtype=np.uint8)
            nodes = np.empty(k, dtype=np.int64)
        stop.synchronize()
        cuda.memcpy_dtoh(out, d_out)
        if radius is not None:
            cuda.memcpy_dtoh(found_bytes, d_found)
            cuda.memcpy_dtoh(nodes, d_nodes)
            found = found_bytes.astype(bool)
        return out, found, nodes, stop.time_since(start) / 1e3


def _radius(radius: float) -> float:
    r = float(radius)
    if not np.isfinite(r) or r < 0:
        raise KernelsError(f"radius must be a finite non-negative number, got {radius!r}")
    return r
