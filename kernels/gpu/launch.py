"""Batched decoder calls on the GPU: pack, copy in, launch one thread per target, copy out.

Same signatures, checks, errors and results as the numba kernels in `latticelock.kernels.babai` and
`latticelock.kernels.cvp`: the inputs are validated and the exact CVP results finished (the "within
radius" decision on the integer vector, the node-budget error) by the CPU module's own helpers.
The secret s is then recovered on the CPU by `latticelock.kernels.recover.SecretSolver` (exact
integer arithmetic mod q, a few hundred operations per candidate: not worth a transfer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latticelock.kernels import babai as cpu_babai
from latticelock.kernels import cvp as cpu_cvp
from latticelock.kernels.gpu import runtime
from latticelock.kernels.gpu.layout import PackedBasis, pack_many, pack_one
from latticelock.kernels.lattice import ReducedBasis


@dataclass(frozen=True)
class Launch:
    """Raw kernel output and timings of one batch (what the benchmark reads)."""

    vectors: np.ndarray  # int64 [k, m]
    found: np.ndarray | None  # bool [k] before the exact radius check (cvp only)
    exhausted: np.ndarray | None  # bool [k] (cvp only)
    nodes: np.ndarray | None  # int64 [k] enumeration nodes visited (cvp only)
    centre_terms: np.ndarray | None  # int64 [k] terms x_i - c_j mu[j, i] computed (cvp only)
    kernel_s: float  # the kernel alone, from CUDA events
    total_s: float  # copies in and out included (packing excluded)


def launch(packed: PackedBasis, targets: np.ndarray, bound: float | None = None, max_nodes: int = 0) -> Launch:
    """Run Babai (bound None) or the closest-vector search within sqrt(bound) on checked targets."""
    k, m = targets.shape
    if k == 0:
        flags = np.zeros(0, dtype=bool) if bound is not None else None
        counts = np.zeros(0, dtype=np.int64) if bound is not None else None
        return Launch(np.zeros((0, m), dtype=np.int64), flags, flags, counts, counts, 0.0, 0.0)
    grid = ((k + runtime.BLOCK - 1) // runtime.BLOCK, 1, 1)
    block = (runtime.BLOCK, 1, 1)
    with runtime.active() as cuda:
        name = ("babai" if bound is None else "cvp") + ("_many" if packed.many else "_one")
        function = runtime.module(m).get_function(name)
        owned: list = []  # device buffers, freed before leaving the context

        def alloc(nbytes: int):
            owned.append(cuda.mem_alloc(nbytes))
            return owned[-1]

        def upload(array: np.ndarray):
            owned.append(cuda.to_device(array))
            return owned[-1]

        def upload_layout(array: np.ndarray):
            if not packed.many:
                return upload(array)
            # stacked [k, e] -> element-major [e, k], on the device
            rows, cols = array.shape
            out = alloc(array.nbytes)
            grid = ((cols + 31) // 32, (rows + 31) // 32, 1)
            transpose = runtime.module(m).get_function("transpose8")
            transpose(upload(array), out, np.int64(rows), np.int64(cols), grid=grid, block=(32, 8, 1))
            return out

        try:
            begin, start, stop, end = (cuda.Event() for _ in range(4))
            begin.record()
            d_targets = upload(targets)
            d_proj, d_mu, d_basis = (upload_layout(a) for a in (packed.proj, packed.mu, packed.basis))
            d_out = alloc(8 * k * m)
            if bound is None:
                start.record()
                function(d_targets, np.int64(k), d_proj, d_mu, d_basis, d_out, grid=grid, block=block)
                stop.record()
            else:
                d_sqnorm = upload_layout(packed.sqnorm)
                d_found, d_status, d_nodes, d_terms = alloc(k), alloc(k), alloc(8 * k), alloc(8 * k)
                start.record()
                function(
                    d_targets, np.int64(k), np.float64(bound), np.int64(max_nodes), d_proj, d_sqnorm, d_mu, d_basis,
                    d_out, d_found, d_status, d_nodes, d_terms, grid=grid, block=block,
                )
                stop.record()
            vectors = cuda.from_device(d_out, (k, m), np.int64)
            found = exhausted = nodes = terms = None
            if bound is not None:
                found = cuda.from_device(d_found, (k,), np.uint8).astype(bool)
                exhausted = cuda.from_device(d_status, (k,), np.uint8) == 1
                nodes = cuda.from_device(d_nodes, (k,), np.int64)
                terms = cuda.from_device(d_terms, (k,), np.int64)
            end.record()
            end.synchronize()
            kernel_s, total_s = stop.time_since(start) / 1e3, end.time_since(begin) / 1e3
        finally:
            for buffer in owned:
                buffer.free()
    return Launch(vectors, found, exhausted, nodes, terms, kernel_s, total_s)


def _finish_cvp(result: Launch, targets: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    status = np.where(result.exhausted, cpu_cvp._EXHAUSTED, cpu_cvp._COMPLETE).astype(np.int64)
    return cpu_cvp._finish(targets, result.vectors.copy(), result.found.copy(), status, radius)


def babai_decode(rb: ReducedBasis, targets: np.ndarray) -> np.ndarray:
    """Babai's nearest-plane lattice vector int64[k, m] for each row of ``targets`` float64[k, m]."""
    targets = cpu_babai.check_targets(targets, rb.m)
    return launch(pack_one(rb), targets).vectors


def babai_decode_many(rbs: list[ReducedBasis], targets: np.ndarray) -> np.ndarray:
    """Row i of ``targets`` decoded against ``rbs[i]`` (one candidate against many records)."""
    if len(rbs) != len(targets):
        raise ValueError(f"need one basis per target, got {len(rbs)} bases and {len(targets)} targets")
    if len(rbs) == 0:
        return np.zeros((0, np.shape(targets)[1] if np.ndim(targets) == 2 else 0), dtype=np.int64)
    packed = pack_many(rbs)
    targets = cpu_babai.check_targets(targets, packed.m)
    return launch(packed, targets).vectors


def cvp_decode(
    rb: ReducedBasis, targets: np.ndarray, radius: float, max_nodes: int = cpu_cvp.DEFAULT_MAX_NODES
) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest lattice vectors int64[k, m] within ``radius`` and found bool[k] (see cvp.cvp_decode)."""
    radius = cpu_cvp._check_radius(radius, max_nodes)
    targets = cpu_babai.check_targets(targets, rb.m)
    bound = radius * radius * (1.0 + cpu_cvp.RADIUS_SLACK)
    return _finish_cvp(launch(pack_one(rb), targets, bound, int(max_nodes)), targets, radius)


def cvp_decode_many(
    rbs: list[ReducedBasis], targets: np.ndarray, radius: float, max_nodes: int = cpu_cvp.DEFAULT_MAX_NODES
) -> tuple[np.ndarray, np.ndarray]:
    """Row i of ``targets`` decoded exactly against ``rbs[i]`` (see cvp.cvp_decode_many)."""
    radius = cpu_cvp._check_radius(radius, max_nodes)
    if len(rbs) != len(targets):
        raise ValueError(f"need one basis per target, got {len(rbs)} bases and {len(targets)} targets")
    if len(rbs) == 0:
        m = np.shape(targets)[1] if np.ndim(targets) == 2 else 0
        return np.zeros((0, m), dtype=np.int64), np.zeros(0, dtype=np.bool_)
    packed = pack_many(rbs)
    targets = cpu_babai.check_targets(targets, packed.m)
    bound = radius * radius * (1.0 + cpu_cvp.RADIUS_SLACK)
    return _finish_cvp(launch(packed, targets, bound, int(max_nodes)), targets, radius)
