"""From a photo or frame to one 512-d FaceNet embedding: load, detect, choose, align, embed.

Bad input never crashes this module: unreadable or corrupt files and arrays of the wrong kind raise
`ImageError` with the reason; an image with no usable face gives an explicit None ("no face").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from latticelock.models.align import ALIGNMENTS, align
from latticelock.models.errors import ImageError, ModelsError
from latticelock.models.mtcnn import Face

if TYPE_CHECKING:
    from latticelock.models.facenet import Embedder
    from latticelock.models.mtcnn import Detector

# Larger images are shrunk for detection only (coordinates are mapped back, crops come from the
# full image): MTCNN's pyramid cost grows with the pixel count, and a face this small relative to
# such a frame (under min_face_size after shrinking) is too small to authenticate anyway.
MAX_DETECT_SIDE = 1280


class EmbeddedFace(NamedTuple):
    """The chosen face and its unit-norm float32 [512] embedding."""

    face: Face
    embedding: np.ndarray


# Larger images are refused from their header, before anything is decoded: a 50000 x 50000 PNG of a
# few hundred bytes would otherwise ask for 7.5 GB.
MAX_IMAGE_PIXELS = 64_000_000


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3] RGB; grey images become RGB and alpha is dropped.

    Raises ImageError for a missing, unreadable, empty, corrupt or non-image file, for anything that is
    not a regular file (a FIFO would block the reader), and for an image whose header announces more
    than MAX_IMAGE_PIXELS pixels (checked before decoding).
    """
    import stat

    import imagesize

    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ImageError(f"{path} is not a regular file")
        width, height = imagesize.get(path)
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from None
    except ValueError:
        width = height = -1  # a header imagesize does not know: OpenCV's own limit still applies
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{path} announces {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} are decoded")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    if data.size == 0:
        raise ImageError(f"image file {path} is empty")
    try:
        # IMREAD_COLOR applies EXIF orientation and turns grey, 16-bit and alpha images into 8-bit BGR.
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header announcing more pixels than OpenCV's safety limit
        raise ImageError(f"cannot decode image {path}: {exc.err or exc}") from exc
    if bgr is None or bgr.size == 0:
        raise ImageError(f"{path} is not a readable image (corrupt, truncated or not an image format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def as_rgb(image: object) -> np.ndarray:
    """A uint8 [H, W, 3] view of `image`: grey [H, W] or [H, W, 1] is replicated, RGBA loses alpha."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected uint8 pixels, got dtype {image.dtype} (convert to uint8 0..255 first)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ImageError(f"expected an image of shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"empty image of shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


class FacePipeline:
    """Detector + alignment + embedder; `embed_image` is the one call most users need."""

    def __init__(
        self,
        detector: Detector | None = None,
        embedder: Embedder | None = None,
        alignment: str = "margin",
        flip_average: bool = True,
        backend: str = "onnxruntime",
        threads: int | None = None,
    ) -> None:
        if alignment not in ALIGNMENTS:
            raise ModelsError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        if detector is None:
            from latticelock.models.mtcnn import Detector

            detector = Detector(backend=backend, threads=threads)
        if embedder is None:
            from latticelock.models.facenet import Embedder

            embedder = Embedder(backend=backend, threads=threads)
        self.detector = detector
        self.embedder = embedder
        self.alignment = alignment
        self.flip_average = flip_average

    def faces(
        self,
        image: np.ndarray,
        region: tuple[float, float, float, float] | None = None,
        face_sizes: tuple[float, float] | None = None,
    ) -> list[Face]:
        """Every face MTCNN finds, in full-image coordinates (large images are shrunk for detection).

        `region` and `face_sizes`, in full-image pixels, narrow the search as in `Detector.detect`.
        """
        image = as_rgb(image)
        height, width = image.shape[:2]
        scale = min(1.0, MAX_DETECT_SIDE / max(height, width))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        narrowed = {}  # only a narrowed search needs more of the detector than `detect(image)`
        if region is not None:
            narrowed["region"] = tuple(v * scale for v in region)
        if face_sizes is not None:
            narrowed["face_sizes"] = (face_sizes[0] * scale, face_sizes[1] * scale)
        found = self.detector.detect(image, **narrowed)
        if scale == 1.0:
            return found
        return [
            Face(box=(f.box / scale).astype(np.float32), score=f.score, landmarks=(f.landmarks / scale).astype(np.float32))
            for f in found
        ]

    def warm_up(self, height: int = 480, width: int = 640, flip_average: bool | None = None) -> None:
        """Run the detector at a height x width frame's shapes and the embedder at the batch one face needs."""
        flip = self.flip_average if flip_average is None else flip_average
        self.detector.warm_up(height, width)
        self.embedder.warm_up(2 if flip else 1)

    @staticmethod
    def choose(faces: list[Face], image_shape: tuple[int, ...]) -> Face | None:
        """The largest and most central face (facenet's rule: box area minus twice the squared centre offset)."""
        if not faces:
            return None
        centre = np.array([image_shape[1] / 2, image_shape[0] / 2])

        def merit(face: Face) -> float:
            offset = (face.box[:2] + face.box[2:]) / 2 - centre
            return face.width * face.height - 2.0 * float(offset @ offset)

        return max(faces, key=merit)

    def crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The aligned uint8 [160, 160, 3] crop of `face`."""
        return align(as_rgb(image), face, self.alignment)

    def embed_crops(self, crops: np.ndarray, flip_average: bool | None = None) -> np.ndarray:
        """Embeddings of aligned crops; with flip averaging, each is averaged with its mirror's and re-normalised.

        `flip_average` overrides the pipeline's own setting for this call (the device loop decides its own).
        """
        flip = self.flip_average if flip_average is None else flip_average
        if not flip or len(crops) == 0:
            return self.embedder.embed(crops)
        both = self.embedder.embed(np.concatenate([crops, crops[:, :, ::-1]]))
        summed = both[: len(crops)] + both[len(crops) :]
        return (summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32)

    def embed_faces(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """float32 [k, 512] embeddings, one per face, in the order given."""
        image = as_rgb(image)
        if not faces:
            return np.empty((0, 512), dtype=np.float32)
        return self.embed_crops(np.stack([self.crop(image, face) for face in faces]))

    def embed_image(self, image: np.ndarray) -> EmbeddedFace | None:
        """The embedding of the chosen face, or None when the image holds no face."""
        image = as_rgb(image)
        face = self.choose(self.faces(image), image.shape)
        if face is None:
            return None
        return EmbeddedFace(face, self.embed_faces(image, [face])[0])
