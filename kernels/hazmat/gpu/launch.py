"""Batched decoder calls on the GPU: bases resident on the device, targets in, one thread per target.

Same signatures, checks, errors and results as the numba kernels in `latticelock.kernels.hazmat.babai` and
`latticelock.kernels.hazmat.cvp`: the inputs are validated and the exact CVP results finished (the "within
radius" decision on the integer vector, the node-budget error) by the CPU module's own helpers.
The secret s is then recovered on the CPU by `latticelock.kernels.hazmat.recover.SecretSolver` (exact
integer arithmetic mod q, a few hundred operations per candidate: not worth a transfer).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from latticelock.kernels.hazmat import babai as cpu_babai
from latticelock.kernels.hazmat import cvp as cpu_cvp
from latticelock.kernels.hazmat.gpu import runtime
from latticelock.kernels.hazmat.gpu.layout import PackedBasis, pack_many, pack_one
from latticelock.kernels.hazmat.lattice import ReducedBasis


@dataclass(frozen=True)
class Launch:
    """Raw kernel output and timings of one batch (what the benchmark reads)."""

    vectors: np.ndarray  # int64 [k, m]
    found: np.ndarray | None  # bool [k] before the exact radius check (cvp only)
    exhausted: np.ndarray | None  # bool [k] (cvp only)
    nodes: np.ndarray | None  # int64 [k] enumeration nodes visited (cvp only)
    centre_terms: np.ndarray | None  # int64 [k] terms x_i - c_j mu[j, i] computed (cvp only)
    kernel_s: float  # the kernel alone, from CUDA events
    total_s: float  # with the copies of targets in and results out


@dataclass
class DeviceBasis:
    """Reduced-basis data on the GPU in the kernels' layout (element-major for many bases)."""

    m: int
    many: bool
    records: int  # bases held (1 for one basis)
    buffers: dict  # "proj", "sqnorm", "mu", "basis" -> DeviceAllocation

    def free(self) -> None:
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers = {}


def upload(packed: PackedBasis) -> DeviceBasis:
    """Copy packed bases to the GPU; many bases are transposed there to element-major [e, k]."""
    with runtime.active() as cuda:
        buffers = {}
        for name in ("proj", "sqnorm", "mu", "basis"):
            array = getattr(packed, name)
            if not packed.many:
                buffers[name] = cuda.to_device(array)
                continue
            rows, cols = array.shape
            stacked = cuda.to_device(array)
            buffers[name] = cuda.mem_alloc(array.nbytes)
            grid = ((cols + 31) // 32, (rows + 31) // 32, 1)
            transpose = runtime.module(packed.m).get_function("transpose8")
            transpose(stacked, buffers[name], np.int64(rows), np.int64(cols), grid=grid, block=(32, 8, 1))
            cuda.Context.synchronize()
            stacked.free()
        return DeviceBasis(packed.m, packed.many, len(packed.sqnorm) if packed.many else 1, buffers)


class _Resident:
    """The bases of the latest call kept on the GPU, reused while the caller passes the same objects.

    A kiosk decodes each probe against the same enrolled records and a device each frame against the
    same record, so the bases cross the bus once. ReducedBasis is frozen with read-only arrays; bases
    whose arrays are writable are uploaded afresh on every call.
    """

    def __init__(self, many: bool) -> None:
        self.many = many
        self.refs: list[weakref.ref] = []
        self.device: DeviceBasis | None = None

    def get(self, rbs: list[ReducedBasis]) -> DeviceBasis:
        if self.device is not None and len(self.refs) == len(rbs) and all(r() is rb for r, rb in zip(self.refs, rbs)):
            return self.device
        self.clear()
        device = upload(pack_many(rbs) if self.many else pack_one(rbs[0]))
        if all(not a.flags.writeable for rb in rbs for a in (rb.proj, rb.bstar_sqnorm, rb.mu, rb.basis)):
            self.device, self.refs = device, [weakref.ref(rb) for rb in rbs]
        return device

    def release(self, device: DeviceBasis) -> None:
        if device is not self.device:
            device.free()


    def clear(self) -> None:
        if self.device is not None:
            self.device.free()
        self.device, self.refs = None, []


_lock = threading.Lock()
_resident = {False: _Resident(many=False), True: _Resident(many=True)}


@atexit.register
def _free_resident() -> None:
    # Free while the context still exists, rather than in finalisers at interpreter shutdown.
    with _lock:
        if any(cache.device is not None for cache in _resident.values()):
            with runtime.active():
                for cache in _resident.values():
                    cache.clear()


def launch(device: DeviceBasis, targets: np.ndarray, bound: float | None = None, max_nodes: int = 0) -> Launch:
    """Run Babai (bound None) or the closest-vector search within sqrt(bound) on checked targets."""
    k, m = targets.shape
    if k == 0:
        flags = np.zeros(0, dtype=bool) if bound is not None else None
        counts = np.zeros(0, dtype=np.int64) if bound is not None else None
        return Launch(np.zeros((0, m), dtype=np.int64), flags, flags, counts, counts, 0.0, 0.0)
    if device.m != m or (device.many and device.records != k):
        raise ValueError(f"bases for m={device.m} ({device.records} records) do not fit targets of shape {targets.shape}")
    grid = ((k + runtime.BLOCK - 1) // runtime.BLOCK, 1, 1)
    block = (runtime.BLOCK, 1, 1)
    d = device.buffers
    with runtime.active() as cuda:
        function = runtime.module(m).get_function(("babai" if bound is None else "cvp") + ("_many" if device.many else "_one"))
        owned: list = []  # this call's buffers, freed before leaving the context

        def alloc(nbytes: int):
            owned.append(cuda.mem_alloc(nbytes))
            return owned[-1]

        try:
            begin, start, stop, end = (cuda.Event() for _ in range(4))
            begin.record()
            owned.append(cuda.to_device(targets))
            d_targets = owned[-1]
            d_out = alloc(8 * k * m)
            if bound is None:
                start.record()
                function(d_targets, np.int64(k), d["proj"], d["mu"], d["basis"], d_out, grid=grid, block=block)
                stop.record()
            else:
                d_found, d_status, d_nodes, d_terms = alloc(k), alloc(k), alloc(8 * k), alloc(8 * k)
                start.record()
                function(
                    d_targets, np.int64(k), np.float64(bound), np.int64(max_nodes), d["proj"], d["sqnorm"], d["mu"],
                    d["basis"], d_out, d_found, d_status, d_nodes, d_terms, grid=grid, block=block,
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


def _decode(rbs: list[ReducedBasis], many: bool, targets: np.ndarray, bound: float | None, max_nodes: int) -> Launch:
    with _lock, runtime.active():
        cache = _resident[many]
        device = cache.get(rbs)
        try:
            return launch(device, targets, bound, max_nodes)
        finally:
            cache.release(device)


def _finish_cvp(result: Launch, targets: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    status = np.where(result.exhausted, cpu_cvp._EXHAUSTED, cpu_cvp._COMPLETE).astype(np.int64)
    return cpu_cvp._finish(targets, result.vectors.copy(), result.found.copy(), status, radius)


def babai_decode(rb: ReducedBasis, targets: np.ndarray) -> np.ndarray:
    """Babai's nearest-plane lattice vector int64[k, m] for each row of ``targets`` float64[k, m]."""
    targets = cpu_babai.check_targets(targets, rb.m)
    return _decode([rb], False, targets, None, 0).vectors


def babai_decode_many(rbs: list[ReducedBasis], targets: np.ndarray) -> np.ndarray:
    """Row i of ``targets`` decoded against ``rbs[i]`` (one candidate against many records)."""
    if len(rbs) != len(targets):
        raise ValueError(f"need one basis per target, got {len(rbs)} bases and {len(targets)} targets")
    if len(rbs) == 0:
        return np.zeros((0, np.shape(targets)[1] if np.ndim(targets) == 2 else 0), dtype=np.int64)
    if any(rb.m != rbs[0].m for rb in rbs):
        raise ValueError("all bases must have the same dimension")
    targets = cpu_babai.check_targets(targets, rbs[0].m)
    return _decode(list(rbs), True, targets, None, 0).vectors


def cvp_decode(
    rb: ReducedBasis, targets: np.ndarray, radius: float, max_nodes: int = cpu_cvp.DEFAULT_MAX_NODES
) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest lattice vectors int64[k, m] within ``radius`` and found bool[k] (see cvp.cvp_decode)."""
    radius = cpu_cvp._check_radius(radius, max_nodes)
    targets = cpu_babai.check_targets(targets, rb.m)
    bound = radius * radius * (1.0 + cpu_cvp.RADIUS_SLACK)
    return _finish_cvp(_decode([rb], False, targets, bound, int(max_nodes)), targets, radius)


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
    if any(rb.m != rbs[0].m for rb in rbs):
        raise ValueError("all bases must have the same dimension")
    targets = cpu_babai.check_targets(targets, rbs[0].m)
    bound = radius * radius * (1.0 + cpu_cvp.RADIUS_SLACK)
    return _finish_cvp(_decode(list(rbs), True, targets, bound, int(max_nodes)), targets, radius)
