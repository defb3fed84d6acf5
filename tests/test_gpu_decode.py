"""The GPU decoders (CUDA C via PyCUDA) against their numba twins.

Three layers, so that most of it runs without a GPU:
- the CUDA source compiles with nvcc (where nvcc is installed);
- the same source, compiled as plain C++ (one thread per call) and run on the CPU, returns the same
  vectors, flags and budget decisions as the numba kernels: the algorithm is a faithful twin;
- on a CUDA device (PyCUDA installed), the real kernels agree with the numba kernels.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latticelock.kernels.hazmat import babai, cvp
from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.hazmat.gpu import layout, runtime
from latticelock.kernels.hazmat.lattice import ReducedBasis, qary_basis
from latticelock.tools.bench_decode import load_bases, make_targets, radius_for

Q = 65537
KINDS = ("noisy", "uniform", "gs-edge", "tie", "sphere")


@functools.lru_cache(maxsize=None)
def bases(m: int, n: int, count: int = 3) -> tuple[ReducedBasis, ...]:
    """BKZ-reduced bases of random q-ary lattices: by fpylll, else from $LATTICELOCK_DECODE_BASES.

    The GPU machine has no fpylll; there the bases come from a file written elsewhere by
    `latticelock bench decode --save-bases FILE` (an unreduced basis would make enumeration explode).
    """
    try:
        from fpylll import LLL  # noqa: F401
    except ImportError:
        path = os.environ.get("LATTICELOCK_DECODE_BASES")
        if not path:
            pytest.skip("fpylll not installed and LATTICELOCK_DECODE_BASES not set")
        stored = load_bases(Path(path)).get((m, n), [])
        if len(stored) < count:
            pytest.skip(f"{path} holds {len(stored)} bases for (m, n) = ({m}, {n}), need {count}")
        return tuple(stored[:count])
    from latticelock.kernels.hazmat.lattice import reduce_basis

    return tuple(
        reduce_basis(qary_basis(expand_matrix(bytes([m, n, j]) * 8 + bytes(8), m, n, Q), Q), 8, Q)
        for j in range(count)
    )


def test_importing_the_package_does_not_import_pycuda():
    code = "import sys, latticelock.kernels.hazmat.gpu, latticelock.kernels.hazmat.decode; print('pycuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unavailable_reason_is_given_exactly_when_unavailable():
    assert runtime.available() == (runtime.unavailable_reason() == "")


def test_build_options_reject_unsupported_dimensions():
    from latticelock.kernels.errors import KernelsError

    with pytest.raises(KernelsError, match="m="):
        runtime.build_options(runtime.MAX_DIMENSION + 1)


def test_many_bases_are_stacked_record_major():
    rbs = bases(32, 16)
    packed = layout.pack_many(list(rbs))
    for i, rb in enumerate(rbs):
        assert np.array_equal(packed.proj[i], rb.proj.ravel())
        assert np.array_equal(packed.mu[i], rb.mu.ravel())
        assert np.array_equal(packed.basis[i], rb.basis.ravel())
        assert np.array_equal(packed.sqnorm[i], rb.bstar_sqnorm)
    assert all(a.flags.c_contiguous for a in (packed.proj, packed.mu, packed.basis, packed.sqnorm))


# ---------------------------------------------------------------- nvcc


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("m", [32, 64])
def test_cuda_source_compiles_with_nvcc(tmp_path, m):
    src = tmp_path / "decoders.cu"
    src.write_text(runtime.source())
    cmd = ["nvcc", "--ptx", "-arch=sm_90", *runtime.build_options(m), "-o", str(tmp_path / "d.ptx"), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "d.ptx").read_text()
    for name in ("babai_one", "babai_many", "cvp_one", "cvp_many"):
        assert f".entry {name}(" in ptx
    # --fmad=false keeps a*b+c as two roundings, as numba computes it.
    assert "fma.rn.f64" not in ptx


# ---------------------------------------------------------------- the CUDA source as host C++

HOST_SHIM = r"""
#include <cmath>
#define __device__
#define __global__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __syncthreads()
template <typename T> inline T __ldg(const T* p) { return *p; }
struct Idx { long long x, y; };
static Idx blockIdx{0, 0}, blockDim{1, 1}, threadIdx{0, 0};
#include DECODERS
extern "C" void run_babai(int many, const double* t, long long k, const double* proj, const double* mu,
                          const long long* basis, long long* out) {
    for (long long i = 0; i < k; ++i) {
        blockIdx.x = i;
        if (many) babai_many(t, k, proj, mu, basis, out); else babai_one(t, k, proj, mu, basis, out);
    }
}
extern "C" void run_cvp(int many, const double* t, long long k, double bound, long long max_nodes,
                        const double* proj, const double* sq, const double* mu, const long long* basis,
                        long long* out, unsigned char* found, unsigned char* status, long long* nodes,
                        long long* terms) {
    for (long long i = 0; i < k; ++i) {
        blockIdx.x = i;
        if (many) cvp_many(t, k, bound, max_nodes, proj, sq, mu, basis, out, found, status, nodes, terms);
        else cvp_one(t, k, bound, max_nodes, proj, sq, mu, basis, out, found, status, nodes, terms);
    }
}
"""


@functools.lru_cache(maxsize=None)
def host_library(m: int, centre_cache: int, directory: str):
    src = f"{directory}/decoders.cu"
    with open(src, "w") as f:
        f.write(runtime.source())
    with open(f"{directory}/host.cpp", "w") as f:
        f.write(HOST_SHIM)
    lib = f"{directory}/host_{m}_{centre_cache}.so"
    # -ffp-contract=off: no fused multiply-add, as numba and nvcc --fmad=false.
    cmd = ["g++", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-std=c++17", f"-DLL_M={m}",
           f"-DLL_CENTRE_CACHE={centre_cache}", f'-DDECODERS="{src}"', "-o", lib, f"{directory}/host.cpp"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dll = ctypes.CDLL(lib)
    P = ctypes.c_void_p
    dll.run_babai.argtypes = [ctypes.c_int, P, ctypes.c_longlong, P, P, P, P]
    dll.run_cvp.argtypes = [ctypes.c_int, P, ctypes.c_longlong, ctypes.c_double, ctypes.c_longlong] + [P] * 9
    return dll


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def host_decode(dll, decoder, rbs, targets, radius, max_nodes=cvp.DEFAULT_MAX_NODES):
    """What the kernels compute, run through the host build; (vectors, found, exhausted)."""
    k, m = targets.shape
    many = len(rbs) > 1
    packed = layout.pack_many([rbs[i % len(rbs)] for i in range(k)]) if many else layout.pack_one(rbs[0])
    if many:  # the element-major layout the device makes with transpose8
        packed = layout.PackedBasis(m, *(np.ascontiguousarray(a.T) for a in (packed.proj, packed.sqnorm, packed.mu, packed.basis)), True)
    out = np.zeros((k, m), dtype=np.int64)
    if decoder == "babai":
        dll.run_babai(int(many), _ptr(targets), k, _ptr(packed.proj), _ptr(packed.mu), _ptr(packed.basis), _ptr(out))
        return out, None, None
    found, status = np.zeros(k, np.uint8), np.zeros(k, np.uint8)
    nodes, terms = np.zeros(k, np.int64), np.zeros(k, np.int64)
    bound = radius * radius * (1 + cvp.RADIUS_SLACK)
    dll.run_cvp(int(many), _ptr(targets), k, bound, max_nodes, _ptr(packed.proj), _ptr(packed.sqnorm),
                _ptr(packed.mu), _ptr(packed.basis), _ptr(out), _ptr(found), _ptr(status), _ptr(nodes), _ptr(terms))
    try:
        vectors, ok = cvp._finish(targets, out, found.astype(bool), status.astype(np.int64), radius)
        return vectors, ok, np.zeros(k, dtype=bool)
    except cvp.EnumerationBudgetError as exc:
        return exc.vectors, exc.found, exc.exhausted


def cpu_decode(decoder, rbs, targets, radius, max_nodes=cvp.DEFAULT_MAX_NODES):
    k = len(targets)
    many = len(rbs) > 1
    per = [rbs[i % len(rbs)] for i in range(k)]
    if decoder == "babai":
        return (babai.babai_decode_many(per, targets) if many else babai.babai_decode(rbs[0], targets)), None, None
    try:
        if many:
            vectors, ok = cvp.cvp_decode_many(per, targets, radius, max_nodes)
        else:
            vectors, ok = cvp.cvp_decode(rbs[0], targets, radius, max_nodes)
        return vectors, ok, np.zeros(k, dtype=bool)
    except cvp.EnumerationBudgetError as exc:
        return exc.vectors, exc.found, exc.exhausted


def assert_same(a, b):
    for x, y in zip(a, b):
        if x is None:
            assert y is None
        else:
            assert np.array_equal(x, y)


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("centre_cache", [0, 1])
@pytest.mark.parametrize("decoder", ["babai", "cvp"])
@pytest.mark.parametrize("many", [False, True])
def test_cuda_source_on_host_matches_numba(tmp_path_factory, centre_cache, decoder, many):
    m, n = 24, 12
    dll = host_library(m, centre_cache, str(tmp_path_factory.mktemp("host")))
    rbs = bases(m, n) if many else bases(m, n)[:1]
    rng = np.random.default_rng(centre_cache * 4 + many * 2 + (decoder == "cvp"))
    for kind in KINDS:
        targets, radius = make_targets(kind, list(rbs), 300, radius_for(m, n), rng)
        targets = np.ascontiguousarray(targets)
        assert_same(host_decode(dll, decoder, rbs, targets, radius), cpu_decode(decoder, rbs, targets, radius))


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_cuda_source_on_host_spends_the_node_budget_as_numba(tmp_path_factory):
    m, n = 24, 12
    dll = host_library(m, 0, str(tmp_path_factory.mktemp("host")))
    rbs = bases(m, n)[:1]
    targets, radius = make_targets("noisy", list(rbs), 300, radius_for(m, n), np.random.default_rng(5))
    targets = np.ascontiguousarray(targets)
    host = host_decode(dll, "cvp", rbs, targets, radius, max_nodes=40)
    assert host[2].any() and not host[2].all()
    assert_same(host, cpu_decode("cvp", rbs, targets, radius, max_nodes=40))


# ---------------------------------------------------------------- the GPU

needs_gpu = pytest.mark.skipif(not runtime.available(), reason=f"no GPU decoders: {runtime.unavailable_reason()}")


def gpu_decode(decoder, rbs, targets, radius, max_nodes=cvp.DEFAULT_MAX_NODES):
    from latticelock.kernels.hazmat import gpu

    k = len(targets)
    many = len(rbs) > 1
    per = [rbs[i % len(rbs)] for i in range(k)]
    if decoder == "babai":
        return (gpu.babai_decode_many(per, targets) if many else gpu.babai_decode(rbs[0], targets)), None, None
    try:
        if many:
            vectors, ok = gpu.cvp_decode_many(per, targets, radius, max_nodes)
        else:
            vectors, ok = gpu.cvp_decode(rbs[0], targets, radius, max_nodes)
        return vectors, ok, np.zeros(k, dtype=bool)
    except cvp.EnumerationBudgetError as exc:
        return exc.vectors, exc.found, exc.exhausted


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("decoder", ["babai", "cvp"])
@pytest.mark.parametrize("many", [False, True])
@pytest.mark.parametrize("shape", [(32, 16), (48, 16)])
def test_gpu_matches_numba(decoder, many, shape):
    m, n = shape
    rbs = bases(m, n) if many else bases(m, n)[:1]
    rng = np.random.default_rng(m + many)
    for kind in KINDS:
        targets, radius = make_targets(kind, list(rbs), 2000, radius_for(m, n), rng)
        assert_same(gpu_decode(decoder, rbs, targets, radius), cpu_decode(decoder, rbs, targets, radius))


@pytest.mark.gpu
@needs_gpu
def test_gpu_spends_the_node_budget_as_numba():
    rbs = bases(32, 16)[:1]
    targets, radius = make_targets("noisy", list(rbs), 500, radius_for(32, 16), np.random.default_rng(9))
    result = gpu_decode("cvp", rbs, targets, radius, max_nodes=40)
    assert result[2].any()
    assert_same(result, cpu_decode("cvp", rbs, targets, radius, max_nodes=40))


@pytest.mark.gpu
@needs_gpu
def test_gpu_rejects_what_the_cpu_rejects_and_handles_empty_batches():
    from latticelock.kernels.hazmat import gpu

    rb = bases(32, 16)[0]
    for fn in (babai.babai_decode, gpu.babai_decode):
        with pytest.raises(ValueError):
            fn(rb, np.zeros((3, 31)))
        with pytest.raises(ValueError):
            fn(rb, np.full((1, 32), np.nan))
    assert gpu.babai_decode(rb, np.zeros((0, 32))).shape == (0, 32)
    vectors, found = gpu.cvp_decode(rb, np.zeros((0, 32)), 10.0)
    assert vectors.shape == (0, 32) and found.shape == (0,)
    with pytest.raises(ValueError):
        gpu.cvp_decode(rb, np.zeros((1, 32)), -1.0)
    with pytest.raises(ValueError):
        gpu.babai_decode_many([rb], np.zeros((2, 32)))


@pytest.mark.gpu
@needs_gpu
def test_resident_bases_are_reused_only_for_the_same_objects():
    from latticelock.kernels.hazmat import gpu

    one, other = bases(32, 16, 4)[:2], bases(32, 16, 4)[2:]
    rng = np.random.default_rng(11)
    for rbs in (one, other, one, one[::-1]):
        per = [rbs[i % 2] for i in range(64)]  # same length every time: only identity tells them apart
        targets, radius = make_targets("noisy", per, 64, radius_for(32, 16), rng)
        assert np.array_equal(gpu.babai_decode_many(per, targets), babai.babai_decode_many(per, targets))
        gv, gf = gpu.cvp_decode_many(per, targets, radius)
        cv, cf = cvp.cvp_decode_many(per, targets, radius)
        assert np.array_equal(gv, cv) and np.array_equal(gf, cf)
