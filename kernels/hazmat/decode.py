"""Decoder dispatch: the same batched calls on the GPU (PyCUDA) when present, else the numba CPU kernels.

Both backends return identical integer vectors, so callers (the device's multi-frame unlock, the
forensics dictionary attack) never care which one ran.
"""

from __future__ import annotations

import numpy as np

from latticelock.kernels.hazmat import babai, cvp
from latticelock.kernels.hazmat.cvp import DEFAULT_MAX_NODES
from latticelock.kernels.hazmat.lattice import ReducedBasis

BACKENDS = ("auto", "cpu", "gpu")


def _gpu(backend: str):
    """The GPU module when it should be used, else None; `gpu` without a GPU is an error."""
    if backend not in BACKENDS:
        from latticelock.kernels.errors import KernelsError

        raise KernelsError(f"unknown decoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cpu":
        return None
    from latticelock.kernels.hazmat import gpu

    if gpu.available():
        return gpu
    if backend == "gpu":
        from latticelock.kernels.errors import KernelsError

        raise KernelsError(f"decoder backend 'gpu' requested but unavailable: {gpu.unavailable_reason()}")
    return None


def babai_decode(rb: ReducedBasis, targets: np.ndarray, backend: str = "auto") -> np.ndarray:
    impl = _gpu(backend) or babai
    return impl.babai_decode(rb, targets)


def cvp_decode(
    rb: ReducedBasis, targets: np.ndarray, radius: float, max_nodes: int = DEFAULT_MAX_NODES, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    impl = _gpu(backend) or cvp
    return impl.cvp_decode(rb, targets, radius, max_nodes)


def babai_decode_many(rbs: list[ReducedBasis], targets: np.ndarray, backend: str = "auto") -> np.ndarray:
    impl = _gpu(backend) or babai
    return impl.babai_decode_many(rbs, targets)


def cvp_decode_many(
    rbs: list[ReducedBasis],
    targets: np.ndarray,
    radius: float,
    max_nodes: int = DEFAULT_MAX_NODES,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    impl = _gpu(backend) or cvp
    return impl.cvp_decode_many(rbs, targets, radius, max_nodes)
