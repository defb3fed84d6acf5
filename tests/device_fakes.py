"""Small stand-ins for the perception pipeline, so device tests run in seconds on real crypto.

A fake "camera frame" is a textured 160x160 image whose first pixel names the person (R), a noise
seed (G) and whether a face is visible (B != 0). The fake pipeline turns it into that person's
embedding plus a little noise; the people live in the span of a synthetic PCA projection, so the
real L2FE-Hash scheme (with that projection and a cheap KDF) tells them apart.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from latticelock.kernels.kdf import EVALUATION_COST
from latticelock.kernels.projection import Projection
from latticelock.models.mtcnn import Face

DIM = 512
PARAMETER_SET = "l2fe-device-far1e-4"


def synthetic_projection(seed: int = 0) -> Projection:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, 64)))
    # The fake people are unit vectors spread evenly over the first 32 directions (`person_centre`).
    spread = [1 / 32] * 32 + [1e-6] * 32
    return Projection(np.zeros(DIM, np.float32), q.T.astype(np.float32),
                      {"source": "synthetic test projection", "explained_variance": spread})


PROJECTION = synthetic_projection()
RECIPE_OPTIONS = {"projection": PROJECTION, "kdf": EVALUATION_COST, "backend": "cpu"}


def person_centre(person: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + person)
    x = rng.normal(size=32) @ PROJECTION.components[:32].astype(np.float64)
    return x / np.linalg.norm(x)


def frame_image(person: int, noise_seed: int, face: bool = True) -> np.ndarray:
    rng = np.random.default_rng(noise_seed)
    image = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    image[0, 0] = (person, noise_seed % 256, 255 if face else 0)
    return image


def write_frames(folder: Path, person: int, seeds, face: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        rgb = frame_image(person, seed, face)
        cv2.imwrite(str(folder / f"p{person:02d}_{seed:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


FRONTAL = np.array([[50, 60], [110, 60], [80, 90], [58, 120], [102, 120]], np.float32)


class FakePipeline:
    """`box_shift`: odd-numbered people stand that many pixels to the right (another face track)."""

    def __init__(self, noise: float = 0.02, box_shift: float = 0.0) -> None:
        self.noise = noise
        self.box_shift = box_shift
        self.calls = 0

    def faces(self, image, region=None, face_sizes=None):
        if image[0, 0, 2] == 0:
            return []
        dx = self.box_shift * (int(image[0, 0, 0]) % 2)
        return [Face(np.array([20 + dx, 20, 140 + dx, 150], np.float32), 0.99, FRONTAL + np.float32([dx, 0]))]

    @staticmethod
    def choose(faces, image_shape):
        return faces[0] if faces else None

    def warm_up(self, height=480, width=640, flip_average=None):
        pass

    @staticmethod
    def crop(image, face):
        # The "crop" keeps the marker pixel that names the person and the noise seed.
        return image

    def embed_crops(self, crops, flip_average=None):
        return np.stack([self._embedding(crop) for crop in crops])

    def embed_faces(self, image, faces):
        return self._embedding(image)[None, :]

    def _embedding(self, image):
        self.calls += 1
        person, seed = int(image[0, 0, 0]), int(image[0, 0, 1])
        rng = np.random.default_rng(10_000 + seed)
        x = person_centre(person) + rng.normal(scale=self.noise, size=DIM)
        return (x / np.linalg.norm(x)).astype(np.float32)
