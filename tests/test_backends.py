"""Inference backends: ONNX Runtime errors, TensorRT refusing clearly when absent, and the TensorRT code path
driven end to end through a stand-in for the TensorRT 10 API.

TensorRT cannot be installed where this project is built, so `FakeTensorRT` implements the slice of
its documented Python API that `tensorrt_backend` calls (Builder, OnnxParser, optimisation profiles,
Runtime, name-based I/O tensors, execute_async_v3) and "executes" an engine by running the ONNX file
with ONNX Runtime on whatever the device buffers hold. The buffers are either `FakeCuda`'s host
memory or, on a GPU machine with PyCUDA, real device memory, so the PyCUDA calls are exercised too.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from latticelock.models import assets
from latticelock.models import tensorrt_plan as plan
from latticelock.models.backends import open_backend
from latticelock.models.errors import ModelsError

SMALL_BATCH = plan.DimRange(1, 2, 4)
SMALL_SIDE = plan.DimRange(12, 24, 64)


# -- ONNX Runtime and backend selection -------------------------------------------------------------


def test_unknown_backend() -> None:
    with pytest.raises(ModelsError, match="unknown inference backend 'cuda'"):
        open_backend(assets.mtcnn_onnx_paths()["rnet"], backend="cuda")


def test_onnxruntime_bad_threads_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ModelsError, match="threads must be >= 1"):
        open_backend(assets.mtcnn_onnx_paths()["rnet"], threads=0)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelsError, match="cannot load ONNX model"):
        open_backend(bad)


def test_tensorrt_missing_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail, as on this machine
    with pytest.raises(ModelsError, match="TensorRT is not installed"):
        open_backend(assets.mtcnn_onnx_paths()["pnet"], backend="tensorrt")
    from latticelock.models.tensorrt_backend import unavailable_reason

    assert unavailable_reason().startswith("TensorRT is not installed")


def test_pycuda_missing_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(_host_memory()))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(ModelsError, match="PyCUDA is not installed"):
        open_backend(assets.mtcnn_onnx_paths()["pnet"], backend="tensorrt")


# -- a stand-in for TensorRT 10 ----------------------------------------------------------------------


class _Memory:
    """How the fake engine reads and writes device buffers: a dict for FakeCuda, PyCUDA copies on a GPU."""

    def __init__(self, read, write, sync) -> None:
        self.read, self.write, self.sync = read, write, sync


def _host_memory() -> _Memory:
    return _Memory(
        lambda address, shape, dtype: FakeCuda.heap[address][: int(np.prod(shape)) * np.dtype(dtype).itemsize]
        .view(dtype)
        .reshape(shape)
        .copy(),
        lambda address, array: FakeCuda.store(address, array),
        lambda: None,
    )


class FakeTensorRT(types.ModuleType):
    __version__ = "10.0.0-fake"

    def __init__(self, memory: _Memory, fast_fp16: bool = True) -> None:
        super().__init__("tensorrt")
        self.memory = memory
        self.builds: list[dict] = []
        trt = self

        class Logger:
            WARNING = "warning"

            def __init__(self, severity) -> None:
                self.severity = severity

        class MemoryPoolType:
            WORKSPACE = "workspace"

        class BuilderFlag:
            FP16 = "fp16"

        class TensorIOMode:
            INPUT = "input"
            OUTPUT = "output"

        class Network:
            onnx: bytes = b""

        class OnnxParser:
            def __init__(self, network, logger) -> None:
                self.network, self.num_errors = network, 0

            def parse(self, data: bytes) -> bool:
                self.network.onnx = data
                return True

            def get_error(self, index):
                raise AssertionError("no parser errors in these tests")

        class Profile:
            def __init__(self) -> None:
                self.shapes = {}

            def set_shape(self, name, low, opt, high) -> None:
                self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

        class Config:
            def __init__(self) -> None:
                self.flags, self.pools, self.profiles = set(), {}, []

            def set_memory_pool_limit(self, pool, size) -> None:
                self.pools[pool] = size

            def set_flag(self, flag) -> None:
                self.flags.add(flag)

            def add_optimization_profile(self, profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

        class Builder:
            platform_has_fast_fp16 = fast_fp16

            def __init__(self, logger) -> None:
                pass

            def create_network(self, flags):
                assert flags == 0
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                trt.builds.append({"flags": set(config.flags), "profiles": [p.shapes for p in config.profiles]})
                return network.onnx  # the "engine" is the ONNX file, run later by ONNX Runtime

        class Context:
            def __init__(self, engine) -> None:
                self.engine, self.shapes, self.addresses = engine, {}, {}

            def set_input_shape(self, name, shape) -> bool:
                self.shapes[name] = tuple(shape)
                return True

            def get_tensor_shape(self, name):
                if name in self.engine.inputs:
                    return self.shapes[name]
                feeds = {n: np.zeros(s, np.float32) for n, s in self.shapes.items()}
                return self.engine.run(feeds)[name].shape

            def set_tensor_address(self, name, address) -> bool:
                self.addresses[name] = address
                return True

            def execute_async_v3(self, stream_handle) -> bool:
                trt.memory.sync()
                feeds = {n: trt.memory.read(self.addresses[n], s, np.float32) for n, s in self.shapes.items()}
                for name, value in self.engine.run(feeds).items():
                    trt.memory.write(self.addresses[name], value)
                return True

        class Engine:
            def __init__(self, data: bytes) -> None:
                self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
                self.inputs = [i.name for i in self.session.get_inputs()]
                self.outputs = [o.name for o in self.session.get_outputs()]
                self.num_io_tensors = len(self.inputs) + len(self.outputs)

            def run(self, feeds):
                return dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))

            def get_tensor_name(self, index: int) -> str:
                return (self.inputs + self.outputs)[index]

            def get_tensor_mode(self, name):
                return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

            def get_tensor_dtype(self, name):
                return "float32"

            def create_execution_context(self):
                return Context(self)

        class Runtime:
            def __init__(self, logger) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes):
                return Engine(data)

        self.Logger, self.MemoryPoolType, self.BuilderFlag, self.TensorIOMode = Logger, MemoryPoolType, BuilderFlag, TensorIOMode
        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime
        self.nptype = lambda dtype: {"float32": np.float32}[dtype]


class FakeCuda(types.ModuleType):
    """The PyCUDA driver calls the backend makes, over host memory (a dict of byte arrays)."""

    heap: dict[int, np.ndarray] = {}

    class Error(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        FakeCuda.heap = {}

    @staticmethod
    def store(address: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        target = FakeCuda.heap[address]
        assert data.size <= target.size, "write past the end of a device buffer"
        target[: data.size] = data

    def init(self) -> None:
        pass

    class Device:
        def __init__(self, index: int) -> None:
            pass

        def name(self) -> str:
            return "Fake GPU"

        def compute_capability(self):
            return (8, 7)

        def retain_primary_context(self):
            return types.SimpleNamespace(push=lambda: None, pop=lambda: None)

    class Stream:
        handle = 1

        def synchronize(self) -> None:
            pass

    def mem_alloc(self, nbytes: int) -> int:
        address = 4096 * (len(FakeCuda.heap) + 1)
        FakeCuda.heap[address] = np.zeros(nbytes, np.uint8)
        return address

    def memcpy_htod_async(self, dest, src, stream) -> None:
        FakeCuda.store(int(dest), src)

    def memcpy_dtoh_async(self, dest, src, stream) -> None:
        flat = dest.reshape(-1).view(np.uint8)
        flat[:] = FakeCuda.heap[int(src)][: flat.size]

    @staticmethod
    def pagelocked_empty(shape, dtype):
        return np.empty(shape, dtype)


@pytest.fixture
def fake_trt(monkeypatch, tmp_path: Path) -> FakeTensorRT:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = FakeCuda()
    trt = FakeTensorRT(_host_memory())
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda.driver)
    return trt


def _reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return open_backend(path, threads=1).run(feeds)


def _pnet_feed(height: int, width: int, batch: int = 1) -> dict[str, np.ndarray]:
    return {"input_1": np.random.default_rng(height).uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)}


def test_pnet_dynamic_sizes_through_the_tensorrt_path(fake_trt: FakeTensorRT, tmp_path: Path) -> None:
    from latticelock.models.tensorrt_backend import TensorRTBackend

    pnet = assets.mtcnn_onnx_paths()["pnet"]
    backend = TensorRTBackend(pnet, batch=SMALL_BATCH, side=SMALL_SIDE)
    assert backend.precision == "fp16" and fake_trt.builds[0]["flags"] == {"fp16"}
    assert fake_trt.builds[0]["profiles"] == [{"input_1": ((1, 12, 12, 3), (2, 24, 24, 3), (4, 64, 64, 3))}]
    assert backend.input_names == ["input_1"] and set(backend.output_names) == {"conv2d_4", "softmax"}
    for height, width in [(12, 12), (64, 40), (31, 57)]:
        feed = _pnet_feed(height, width)
        got, want = backend.run(feed), _reference(pnet, feed)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    with pytest.raises(ModelsError, match="axis 1 is 65; this engine accepts between 12 and 64"):
        backend.run(_pnet_feed(65, 20))
    assert backend.engine_path.parent == tmp_path / "models" / "tensorrt" and backend.engine_path.name.startswith("pnet.fp16.")


def test_large_batches_are_chunked_and_empty_batches_work(fake_trt: FakeTensorRT) -> None:
    from latticelock.models.tensorrt_backend import TensorRTBackend

    rnet = assets.mtcnn_onnx_paths()["rnet"]
    backend = TensorRTBackend(rnet, batch=SMALL_BATCH, side=SMALL_SIDE)
    feed = {"input_2": np.random.default_rng(0).uniform(-1, 1, (11, 24, 24, 3)).astype(np.float32)}
    got, want = backend.run(feed), _reference(rnet, feed)
    for name in want:
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    empty = backend.run({"input_2": np.zeros((0, 24, 24, 3), np.float32)})
    assert {n: a.shape for n, a in empty.items()} == {"dense_2": (0, 4), "softmax_1": (0, 2)}


def test_engines_are_cached_per_precision(fake_trt: FakeTensorRT) -> None:
    from latticelock.models.tensorrt_backend import TensorRTBackend

    onet = assets.mtcnn_onnx_paths()["onet"]
    first = TensorRTBackend(onet, batch=SMALL_BATCH)
    again = TensorRTBackend(onet, batch=SMALL_BATCH)
    assert len(fake_trt.builds) == 1 and again.engine_path == first.engine_path
    fp32 = TensorRTBackend(onet, precision="fp32", batch=SMALL_BATCH)
    assert len(fake_trt.builds) == 2 and fp32.engine_path != first.engine_path
    assert fake_trt.builds[1]["flags"] == set()


def test_no_fast_fp16_means_fp32(monkeypatch, fake_trt: FakeTensorRT) -> None:
    from latticelock.models.tensorrt_backend import TensorRTBackend

    monkeypatch.setattr(fake_trt.Builder, "platform_has_fast_fp16", False)
    backend = TensorRTBackend(assets.mtcnn_onnx_paths()["rnet"], batch=SMALL_BATCH)
    assert backend.precision == "fp32" and fake_trt.builds[0]["flags"] == set()


@pytest.mark.gpu
def test_tensorrt_path_with_real_pycuda_buffers(monkeypatch, tmp_path: Path) -> None:
    """Same flow with PyCUDA's real allocations, copies, stream and primary context (TensorRT still faked)."""
    cuda = pytest.importorskip("pycuda.driver", reason="PyCUDA is not installed")
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            pytest.skip("no CUDA device")
    except cuda.Error as exc:
        pytest.skip(f"CUDA unavailable: {exc}")
    from latticelock.models.tensorrt_backend import TensorRTBackend

    def read(address, shape, dtype):
        host = np.empty(shape, dtype)
        cuda.memcpy_dtoh(host, address)
        return host

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    memory = _Memory(read, lambda address, array: cuda.memcpy_htod(address, np.ascontiguousarray(array)),
                     lambda: cuda.Context.synchronize())
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(memory))
    pnet = assets.mtcnn_onnx_paths()["pnet"]
    backend = TensorRTBackend(pnet, batch=SMALL_BATCH, side=SMALL_SIDE)
    for height, width in [(12, 12), (64, 40), (31, 57)]:
        feed = _pnet_feed(height, width, batch=3)
        got, want = backend.run(feed), _reference(pnet, feed)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-6)
