"""FaceNet embeddings: 160x160 RGB face crops in, L2-normalised 512-d vectors out.

The converted model (see `facenet_convert`) takes raw RGB pixels and applies FaceNet's fixed
standardisation (x - 127.5) / 128 itself, so every backend receives the same float32 pixels and
no preprocessing lives here beyond the uint8 -> float32 cast.
"""

from __future__ import annotations

import numpy as np

from latticelock.models.assets import facenet_onnx_path
from latticelock.models.backends import Backend, open_backend
from latticelock.models.errors import ModelsError
from latticelock.models.facenet_convert import EMBEDDING_SIZE, IMAGE_SIZE, INPUT_NAME, OUTPUT_NAME


class Embedder:
    """FaceNet (20180408-102900) on the named backend; `batch_size` bounds how many crops go through at once."""

    def __init__(self, backend: str = "onnxruntime", threads: int | None = None, batch_size: int = 32) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ModelsError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.backend_name = backend
        self._backend: Backend = open_backend(facenet_onnx_path(), backend=backend, threads=threads)
        if INPUT_NAME not in self._backend.input_names or OUTPUT_NAME not in self._backend.output_names:
            raise ModelsError(
                f"the FaceNet model has inputs {self._backend.input_names} and outputs {self._backend.output_names}; "
                f"expected {INPUT_NAME!r} -> {OUTPUT_NAME!r}"
            )

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [N, 160, 160, 3] RGB crops -> float32 [N, 512], each row of unit L2 norm (N may be 0)."""
        crops = _check_crops(crops)
        out = np.empty((crops.shape[0], EMBEDDING_SIZE), dtype=np.float32)
        for start in range(0, crops.shape[0], self.batch_size):
            batch = crops[start : start + self.batch_size].astype(np.float32)
            out[start : start + batch.shape[0]] = self._backend.run({INPUT_NAME: batch})[OUTPUT_NAME]
        return out


    def warm_up(self, batch: int = 1) -> None:
        """Embed `batch` blank crops once, so that the first real call pays no set-up."""
        self.embed(np.zeros((batch, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8))


def _check_crops(crops: object) -> np.ndarray:
    if not isinstance(crops, np.ndarray):
        raise ModelsError(f"crops must be a numpy array, got {type(crops).__name__}")
    if crops.dtype != np.uint8:
        raise ModelsError(f"crops must be uint8 RGB pixels, got dtype {crops.dtype}")
    expected = (IMAGE_SIZE, IMAGE_SIZE, 3)
    if crops.ndim != 4 or crops.shape[1:] != expected:
        raise ModelsError(f"crops must have shape [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], got {list(crops.shape)}")
    return crops


def difference_from_opencv(crops: np.ndarray, backend: str = "onnxruntime", threads: int | None = None) -> float:
    """Max |converted - original| over every embedding component, the original graph run by OpenCV >= 5."""
    from latticelock.models.assets import shipped_path
    from latticelock.models.facenet_convert import opencv_reference

    crops = _check_crops(crops)
    ours = Embedder(backend=backend, threads=threads).embed(crops)
    reference = opencv_reference(shipped_path("facenet_pb"), crops)
    return float(np.abs(ours - reference).max()) if len(crops) else 0.0
