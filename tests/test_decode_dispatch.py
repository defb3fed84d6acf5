"""The decoder dispatch: which backend runs, what reaches it, and that "auto" gives the CPU's results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.hazmat import babai, cvp, decode, gpu
from latticelock.kernels.errors import KernelsError
from latticelock.kernels.hazmat.lattice import ReducedBasis
from test_gpu_decode import bases

Q = 65537
M = 32


def basis(seed: int) -> ReducedBasis:
    return bases(M, 16, 4)[seed - 1]


class FakeGpu:
    """Stands in for latticelock.kernels.hazmat.gpu: records each call and answers with the CPU's result."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        return ""

    def babai_decode(self, rb, targets):
        self.calls.append(("babai_decode",))
        return babai.babai_decode(rb, targets)

    def babai_decode_many(self, rbs, targets):
        self.calls.append(("babai_decode_many",))
        return babai.babai_decode_many(rbs, targets)

    def cvp_decode(self, rb, targets, radius, max_nodes):
        self.calls.append(("cvp_decode", radius, max_nodes))
        return cvp.cvp_decode(rb, targets, radius, max_nodes)

    def cvp_decode_many(self, rbs, targets, radius, max_nodes):
        self.calls.append(("cvp_decode_many", radius, max_nodes))
        return cvp.cvp_decode_many(rbs, targets, radius, max_nodes)


@pytest.fixture
def fake_gpu(monkeypatch) -> FakeGpu:
    fake = FakeGpu()
    for name in ("available", "unavailable_reason", "babai_decode", "babai_decode_many", "cvp_decode", "cvp_decode_many"):
        monkeypatch.setattr(gpu, name, getattr(fake, name))
    return fake


def test_unknown_backend_is_an_error():
    with pytest.raises(KernelsError, match="unknown decoder backend"):
        decode.babai_decode(basis(1), np.zeros((1, M)), backend="tpu")


def test_gpu_backend_without_a_gpu_says_why(monkeypatch):
    monkeypatch.setattr(gpu, "available", lambda: False)
    monkeypatch.setattr(gpu, "unavailable_reason", lambda: "no CUDA device found")
    with pytest.raises(KernelsError, match="no CUDA device found"):
        decode.cvp_decode(basis(1), np.zeros((1, M)), 10.0, backend="gpu")


def test_auto_without_a_gpu_runs_the_cpu_kernels(monkeypatch):
    monkeypatch.setattr(gpu, "available", lambda: False)
    targets = np.random.default_rng(0).uniform(-Q / 2, Q / 2, size=(5, M))
    assert np.array_equal(decode.babai_decode(basis(1), targets), babai.babai_decode(basis(1), targets))


def test_auto_and_gpu_use_the_gpu_when_present_and_pass_everything(fake_gpu):
    rb, rbs = basis(1), [basis(1), basis(2)]
    targets = np.random.default_rng(1).uniform(-Q / 2, Q / 2, size=(2, M))
    decode.babai_decode(rb, targets)
    decode.babai_decode_many(rbs, targets, backend="gpu")
    decode.cvp_decode(rb, targets, 7.5, max_nodes=123)
    decode.cvp_decode_many(rbs, targets, 8.5, 456, backend="gpu")
    assert fake_gpu.calls == [
        ("babai_decode",),
        ("babai_decode_many",),
        ("cvp_decode", 7.5, 123),
        ("cvp_decode_many", 8.5, 456),
    ]


def test_cpu_backend_never_touches_the_gpu(fake_gpu):
    decode.cvp_decode(basis(1), np.zeros((1, M)), 10.0, backend="cpu")
    assert fake_gpu.calls == []


def test_budget_errors_pass_through_the_dispatch():
    targets = np.random.default_rng(2).uniform(-Q / 2, Q / 2, size=(4, M))
    with pytest.raises(cvp.EnumerationBudgetError):
        decode.cvp_decode(basis(1), targets, 1e6, max_nodes=3)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(1, 4), rng_seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40))
def test_auto_gives_the_cpu_results(seed, rng_seed, k):
    """On whatever backend "auto" picks here (the GPU where there is one), results equal the CPU's."""
    rng = np.random.default_rng(rng_seed)
    rb = basis(seed)
    points = babai.babai_decode(rb, rng.uniform(-Q / 2, Q / 2, size=(k, M)))
    targets = points + rng.normal(scale=40.0, size=(k, M))
    radius = 0.4 * rb.shortest_row_norm
    assert np.array_equal(decode.babai_decode(rb, targets), decode.babai_decode(rb, targets, backend="cpu"))
    auto, cpu = decode.cvp_decode(rb, targets, radius), decode.cvp_decode(rb, targets, radius, backend="cpu")
    assert np.array_equal(auto[0], cpu[0]) and np.array_equal(auto[1], cpu[1])
    rbs = [basis(1 + i % 4) for i in range(k)]
    many = decode.cvp_decode_many(rbs, targets, radius)
    many_cpu = decode.cvp_decode_many(rbs, targets, radius, backend="cpu")
    assert np.array_equal(many[0], many_cpu[0]) and np.array_equal(many[1], many_cpu[1])
