"""TensorRT backend: engines built from the same ONNX files, cached, run with PyCUDA buffers on a CUDA stream.

Written against the TensorRT 10 Python API (name-based I/O tensors and `execute_async_v3`); the
decisions that need no TensorRT live in `tensorrt_plan` and are tested there. TensorRT and PyCUDA
are imported only here and only when this backend is opened, so the CPU path never needs them;
without them, opening it raises ModelsError naming what is missing, never a silent fallback.

Engines are cached in `<model cache>/tensorrt/` under a key of the model's sha256, the TensorRT
version, the GPU name and compute capability, the precision and the optimisation profile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latticelock.models import tensorrt_plan as plan
from latticelock.models.errors import ModelsError

WORKSPACE_BYTES = 1 << 30


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise ModelsError(
            f"TensorRT is not installed: {exc}. It ships with JetPack on Jetson devices "
            "(or as NVIDIA's `tensorrt` wheels on desktops); use --inference-backend onnxruntime otherwise"
        ) from exc
    return tensorrt


def _import_pycuda():
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise ModelsError(f"PyCUDA is not installed: {exc}. Install the project with its `gpu` extra") from exc
    return cuda


def unavailable_reason() -> str | None:
    """Why the TensorRT backend cannot be opened here, or None if TensorRT and PyCUDA both import."""
    try:
        _import_tensorrt()
        _import_pycuda()
    except ModelsError as exc:
        return str(exc)
    return None


class TensorRTBackend:
    """One ONNX model as a TensorRT engine on CUDA device `device`; same `run` contract as the ONNX Runtime backend."""

    def __init__(
        self,
        onnx_path: Path,
        precision: str | None = None,
        batch: plan.DimRange = plan.DEFAULT_BATCH,
        side: plan.DimRange = plan.DEFAULT_SIDE,
        device: int = 0,
    ) -> None:
        trt = _import_tensorrt()
        cuda = _import_pycuda()
        from latticelock.models.assets import cache_dir, sha256_file, write_atomically

        self._trt, self._cuda = trt, cuda
        try:
            cuda.init()
            gpu = cuda.Device(device)
        except cuda.Error as exc:
            raise ModelsError(f"no usable CUDA device {device}: {exc}") from exc
        # TensorRT works in the CUDA runtime's primary context; PyCUDA must use the same one.
        self._context_cuda = gpu.retain_primary_context()
        self._context_cuda.push()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._profiles = plan.build_profiles(plan.declared_inputs(onnx_path), batch, side)
            self._profiles_by_name = {p.name: p for p in self._profiles}
            builder = trt.Builder(self._logger)
            self.precision = plan.choose_precision(precision, builder.platform_has_fast_fp16)
            major, minor = gpu.compute_capability()
            key = plan.engine_key(
                sha256_file(onnx_path), trt.__version__, f"{gpu.name()} sm_{major}{minor}", self.precision, self._profiles
            )
            folder = cache_dir() / "tensorrt"
            self.engine_path = folder / plan.engine_filename(onnx_path, key, self.precision)
            if not self.engine_path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                write_atomically(self.engine_path, self._build(builder, onnx_path))
            self._engine = trt.Runtime(self._logger).deserialize_cuda_engine(self.engine_path.read_bytes())
            if self._engine is None:
                raise ModelsError(f"TensorRT could not load engine {self.engine_path}; delete it to rebuild")
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._allocate()
        finally:
            self._context_cuda.pop()

    def _build(self, builder, onnx_path: Path) -> bytes:
        trt = self._trt
        # Networks are always explicit-batch in TensorRT 10, so no creation flags are needed.
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(Path(onnx_path).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelsError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for p in self._profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelsError(f"TensorRT failed to build an engine for {onnx_path} (see its log above)")
        return bytes(serialized)

    def _allocate(self) -> None:
        trt, cuda = self._trt, self._cuda
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        # Output sizes at the profile maximum: set every input to its largest shape and ask the context.
        for p in self._profiles:
            self._context.set_input_shape(p.name, p.max)
        tensors = [(n, n in self.input_names, self._dtypes[n], tuple(self._context.get_tensor_shape(n))) for n in names]
        self._buffers = {}
        for buffer in plan.plan_buffers(tensors):
            memory = cuda.mem_alloc(buffer.nbytes)
            self._buffers[buffer.name] = memory
            self._context.set_tensor_address(buffer.name, int(memory))
        self._max_batch = min(p.max[0] for p in self._profiles)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = plan.check_feeds(feeds, self._profiles, self._dtypes)
        total = next(iter(feeds.values())).shape[0]
        if total == 0:
            # Nothing to run; the output shapes still come from the engine (batch 1, then 0 rows).
            self._context_cuda.push()
            try:
                shapes = self._set_shapes({n: (self._profiles_by_name[n].min[0],) + a.shape[1:] for n, a in feeds.items()})
            finally:
                self._context_cuda.pop()
            return {n: np.empty((0,) + shape[1:], self._dtypes[n]) for n, shape in shapes.items()}
        chunks = [self._run_chunk({n: a[s] for n, a in feeds.items()}) for s in plan.batch_chunks(total, self._max_batch)]
        return {n: np.concatenate([c[n] for c in chunks]) for n in self.output_names}

    def _set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Give the context the input shapes of the next call; returns the resolved output shapes."""
        for name, shape in shapes.items():
            self._profiles_by_name[name].check(shape)
            if not self._context.set_input_shape(name, shape):
                raise ModelsError(f"TensorRT rejected shape {list(shape)} for input {name!r}")
        return {n: tuple(self._context.get_tensor_shape(n)) for n in self.output_names}

    def _run_chunk(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        self._context_cuda.push()
        try:
            shapes = self._set_shapes({n: a.shape for n, a in feeds.items()})
            outputs = {n: cuda.pagelocked_empty(shape, self._dtypes[n]) for n, shape in shapes.items()}
            for name, array in feeds.items():
                cuda.memcpy_htod_async(self._buffers[name], array, self._stream)
            if not self._context.execute_async_v3(stream_handle=self._stream.handle):
                raise ModelsError("TensorRT failed to enqueue inference")
            for name, host in outputs.items():
                cuda.memcpy_dtoh_async(host, self._buffers[name], self._stream)
            self._stream.synchronize()
        finally:
            self._context_cuda.pop()
        return {n: np.array(a) for n, a in outputs.items()}
