"""Inference backends behind one small interface: named feeds in, named outputs out.

The backend is chosen once, by name. ONNX Runtime on the CPU is the default; TensorRT lives in
`tensorrt_backend` and is imported only when asked for, so the CPU path never needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from latticelock.models.errors import ModelsError

if TYPE_CHECKING:
    import onnxruntime

BACKENDS = ("onnxruntime", "tensorrt")


class Backend(Protocol):
    """A loaded model: `run` maps input names to arrays and returns every output by name."""

    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU; `threads` bounds intra-op parallelism (None: all cores)."""

    def __init__(self, onnx_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = session_options(threads)
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad files
            raise ModelsError(f"cannot load ONNX model {onnx_path}: {exc}") from exc
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name for the given input feeds."""
        outputs = self._session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs, strict=True))


def session_options(threads: int | None = None) -> onnxruntime.SessionOptions:
    """The ONNX Runtime session options of every session we open (benchmarks open raw sessions with them too).

    The intra-op threads sleep between calls instead of spinning (ONNX Runtime's default): the device
    runs detection and embedding side by side on two cores, and on a machine that is shared or
    busy with other threads a spinning pool steals the time the other stage needs. Measured on the
    2-core machine here, busy with other work, replaying faces94 through the frame pipeline: 2+2
    spinning threads gave 4.0 frames/s (detect 85 ms, embed 231 ms), sleeping ones 13.1 frames/s.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ModelsError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def open_backend(onnx_path: Path, backend: str = "onnxruntime", threads: int | None = None) -> Backend:
    """Load `onnx_path` on the named backend; an unknown or unavailable backend is an error, never a fallback."""
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, threads=threads)
    if backend == "tensorrt":
        from latticelock.models.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(onnx_path)
    raise ModelsError(f"unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS)}")
