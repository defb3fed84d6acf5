"""The CUDA side of the GPU decoders: one PyCUDA context, and the decoder module compiled per dimension.

PyCUDA is imported here and only here, on first use, so that `latticelock.kernels` never needs it.
The device's primary context is retained (shared with any other CUDA user in the process, such as
TensorRT) and pushed around each call, so the decoders work from whichever thread calls them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from functools import lru_cache
from importlib import resources
from typing import Iterator

from latticelock.kernels.errors import KernelsError

SOURCE_NAME = "decoders.cu"
# Largest dimension the kernels are built for: per-thread state is a few arrays of m doubles.
MAX_DIMENSION = 128
# The CPU twins are compiled by numba without fast-math, so LLVM never contracts a*b+c into one
# rounding; nvcc does by default, which would move results near rounding boundaries.
NVCC_OPTIONS = ("--fmad=false", "-O3", "-std=c++17")
BLOCK = 128
# How the enumeration finds each level's centre (same bits either way, see decoders.cu): recompute it
# (default) or keep fplll's table of partial sums in local memory; set to 1 to measure the latter.
CENTRE_CACHE_ENV = "LATTICELOCK_GPU_CENTRE_CACHE"

_lock = threading.Lock()
_state: dict[str, object] = {}


def source() -> str:
    """The CUDA C source of the decoders (shipped beside this module)."""
    return resources.files("latticelock.kernels.hazmat.gpu").joinpath(SOURCE_NAME).read_text()


def _probe() -> tuple[object | None, str]:
    """(primary context, "") when a CUDA device can be used, else (None, why not)."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        return None, f"PyCUDA is not installed ({exc})"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return None, "no CUDA device found"
        context = cuda.Device(0).retain_primary_context()
    except cuda.Error as exc:
        return None, f"CUDA could not be initialised ({exc})"
    return context, ""


def _context() -> tuple[object | None, str]:
    with _lock:
        if "context" not in _state:
            _state["context"], _state["reason"] = _probe()
        return _state["context"], str(_state["reason"])


def available() -> bool:
    return _context()[0] is not None


def unavailable_reason() -> str:
    """Why the GPU backend cannot run here ("" when it can)."""
    return _context()[1]


@contextlib.contextmanager
def active() -> Iterator[object]:
    """The CUDA driver module with the decoder context current on this thread."""
    context, reason = _context()
    if context is None:
        raise KernelsError(f"GPU decoders unavailable: {reason}")
    import pycuda.driver as cuda

    context.push()
    try:
        yield cuda
    finally:
        cuda.Context.pop()


def build_options(m: int) -> list[str]:
    """nvcc options for the module of dimension m."""
    if not 1 <= m <= MAX_DIMENSION:
        raise KernelsError(f"GPU decoders support 1 <= m <= {MAX_DIMENSION}, got m={m}")
    cache = 1 if os.environ.get(CENTRE_CACHE_ENV, "0") == "1" else 0
    return [*NVCC_OPTIONS, f"-DLL_M={m}", f"-DLL_CENTRE_CACHE={cache}"]


def module(m: int):
    """The decoder module built for dimension m (nvcc's output is also cached on disk by PyCUDA)."""
    return _module(tuple(build_options(m)))


@lru_cache(maxsize=None)
def _module(options: tuple[str, ...]):
    from pycuda.compiler import SourceModule

    return SourceModule(source(), options=list(options), no_extern_c=True)


def device_name() -> str:
    with active() as cuda:
        return cuda.Context.get_device().name()
