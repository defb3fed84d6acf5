"""The decisions behind a TensorRT engine that need no TensorRT: profiles, cache keys, shapes and buffers.

`tensorrt_backend` asks this module what to build and how to feed it, so everything here is unit
tested on machines without TensorRT or a GPU.

- Profiles: every dynamic axis of an ONNX input gets a (min, opt, max) range. The leading axis is
  the batch; other dynamic axes are image sides (P-Net takes whole pyramid levels, so its height
  and width are dynamic). The ranges become one TensorRT optimisation profile.
- Cache key: an engine is only valid for the exact model bytes, TensorRT version, GPU, precision
  and profile it was built with, so all of them go into the key and the file name.
- Shapes: a feed is checked against the declared static axes and the profile ranges before it
  reaches TensorRT; batches larger than the profile's maximum are split into chunks.
- Buffers: device buffers are planned once, at the profile's maximum shapes, and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latticelock.models.errors import ModelsError

PRECISIONS = ("fp16", "fp32")
ENGINE_FORMAT = 1  # bump when the way engines are built changes


@dataclass(frozen=True)
class DimRange:
    """Allowed sizes of one dynamic axis: TensorRT tunes kernels for `opt` and accepts [min, max]."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ModelsError(f"a dimension range needs 1 <= min <= opt <= max, got {self}")


# Defaults: batches up to 64 crops per call (larger ones are chunked); image sides from P-Net's
# 12-pixel cell up to 1024, enough for the first pyramid level of a 1280x960 frame at minimum
# face size 20 (scale 0.6 -> 768x576).
DEFAULT_BATCH = DimRange(1, 8, 64)
DEFAULT_SIDE = DimRange(12, 320, 1024)


@dataclass(frozen=True)
class InputProfile:
    """min/opt/max shapes of one network input (all static axes repeated in each)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise ModelsError unless `shape` lies inside this profile."""
        if len(shape) != len(self.min):
            raise ModelsError(f"input {self.name!r} needs {len(self.min)} dimensions, got shape {list(shape)}")
        for axis, (size, low, high) in enumerate(zip(shape, self.min, self.max, strict=True)):
            if not low <= size <= high:
                allowed = f"exactly {low}" if low == high else f"between {low} and {high}"
                raise ModelsError(
                    f"input {self.name!r} axis {axis} is {size}; this engine accepts {allowed} "
                    f"(shape {list(shape)})"
                )


def declared_inputs(onnx_path: Path) -> dict[str, tuple[int | None, ...]]:
    """Input names and shapes declared by an ONNX file; None marks a dynamic axis."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others for bad files
        raise ModelsError(f"cannot read ONNX model {onnx_path}: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        inputs[value.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    return inputs


def build_profile(
    name: str, declared: tuple[int | None, ...], batch: DimRange = DEFAULT_BATCH, side: DimRange = DEFAULT_SIDE
) -> InputProfile:
    """The optimisation profile of one input: axis 0 dynamic -> `batch`, other dynamic axes -> `side`."""
    if not declared:
        raise ModelsError(f"input {name!r} is a scalar; only batched tensors are supported")
    ranges = []
    for axis, size in enumerate(declared):
        if size is not None:
            ranges.append(DimRange(size, size, size))
        else:
            ranges.append(batch if axis == 0 else side)
    return InputProfile(
        name,
        tuple(r.min for r in ranges),
        tuple(r.opt for r in ranges),
        tuple(r.max for r in ranges),
    )


def build_profiles(
    declared: dict[str, tuple[int | None, ...]], batch: DimRange = DEFAULT_BATCH, side: DimRange = DEFAULT_SIDE
) -> list[InputProfile]:
    """One profile per declared input (see `build_profile`)."""
    return [build_profile(name, dims, batch, side) for name, dims in declared.items()]


def choose_precision(requested: str | None, has_fast_fp16: bool) -> str:
    """FP16 where the GPU has fast FP16 (Jetson, recent desktop GPUs), else FP32; an explicit request wins."""
    if requested is None:
        return "fp16" if has_fast_fp16 else "fp32"
    if requested not in PRECISIONS:
        raise ModelsError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    return requested


def engine_key(
    model_sha256: str, tensorrt_version: str, gpu_name: str, precision: str, profiles: list[InputProfile]
) -> str:
    """sha256 over everything an engine depends on; a change to any of them selects another engine file."""
    if precision not in PRECISIONS:
        raise ModelsError(f"unknown precision {precision!r}")
    description = {
        "format": ENGINE_FORMAT,
        "model_sha256": model_sha256,
        "tensorrt": tensorrt_version,
        "gpu": gpu_name,
        "precision": precision,
        "profiles": [[p.name, list(p.min), list(p.opt), list(p.max)] for p in profiles],
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def engine_filename(model_path: Path, key: str, precision: str) -> str:
    """Readable and unique: `<model stem>.<precision>.<first 16 hex of the key>.engine`."""
    return f"{Path(model_path).stem}.{precision}.{key[:16]}.engine"


def batch_chunks(batch: int, max_batch: int) -> list[slice]:
    """Slices of at most `max_batch` rows covering `batch` rows (none for an empty batch)."""
    if max_batch < 1:
        raise ModelsError(f"max_batch must be >= 1, got {max_batch}")
    return [slice(start, min(start + max_batch, batch)) for start in range(0, batch, max_batch)]


def check_feeds(
    feeds: dict[str, np.ndarray], profiles: list[InputProfile], dtypes: dict[str, np.dtype]
) -> dict[str, np.ndarray]:
    """Validate names and shapes (batch axis excluded: it is chunked), return C-contiguous arrays of the engine's dtypes."""
    expected = {p.name for p in profiles}
    if set(feeds) != expected:
        raise ModelsError(f"feeds {sorted(feeds)} do not match the model's inputs {sorted(expected)}")
    batches = {np.shape(feeds[name])[0] if np.ndim(feeds[name]) else None for name in expected}
    if len(batches) != 1:
        raise ModelsError(f"all inputs must share one batch size, got {sorted(map(str, batches))}")
    checked = {}
    for profile in profiles:
        array = np.asarray(feeds[profile.name])
        if array.ndim != len(profile.min):
            raise ModelsError(
                f"input {profile.name!r} needs {len(profile.min)} dimensions, got shape {list(array.shape)}"
            )
        # The batch axis is checked per chunk; an empty batch is valid and simply produces nothing.
        per_sample = (profile.min[0],) + array.shape[1:]
        profile.check(per_sample)
        checked[profile.name] = np.ascontiguousarray(array, dtype=dtypes[profile.name])
    return checked


@dataclass(frozen=True)
class BufferPlan:
    """One device buffer: the tensor it holds, its element type and how many bytes it needs at most."""

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]
    nbytes: int


def plan_buffers(
    tensors: list[tuple[str, bool, np.dtype, tuple[int, ...]]],
) -> list[BufferPlan]:
    """Sizes of the device buffers, from each I/O tensor's (name, is_input, dtype, shape at the profile maximum)."""
    plans = []
    for name, is_input, dtype, shape in tensors:
        if any(d < 0 for d in shape):
            raise ModelsError(f"tensor {name!r} has unresolved shape {list(shape)} at the profile maximum")
        dtype = np.dtype(dtype)
        # A zero-size buffer cannot be allocated; one element keeps the address valid.
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, dtype.itemsize)
        plans.append(BufferPlan(name, is_input, dtype, tuple(int(d) for d in shape), nbytes))
    return plans
