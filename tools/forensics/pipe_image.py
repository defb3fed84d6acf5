"""PIPE step 2 in image space: turn each recovered embedding into a face with the generator, embed
that face again with our FaceNet, and count a success when it lies within tau of the victim's
enrolled embedding and, separately, of another image of the victim (the paper's ASR).

The generator's 64x64 output is enlarged to FaceNet's 160x160 crop and embedded like every other
face here (flip averaging, `FacePipeline.embed_crops`): a thief scores it with the same model the
device uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latticelock.tools.errors import ToolsError

ATTACK = "pipe-image"


@dataclass(frozen=True)
class Reconstruction:
    images: np.ndarray  # uint8 [V, size, size, 3], the generator's faces
    embeddings: np.ndarray  # float32 [V, 512], those faces embedded again
    to_enrolled: np.ndarray  # float [V], L2 distance to the enrolled embedding
    to_other: np.ndarray  # float [V], to another image of the victim


class ImageAttack:
    """A generator and the FaceNet that scores its faces."""

    def __init__(self, generator, threads: int | None = None) -> None:
        from latticelock.models.facenet import Embedder
        from latticelock.models.pipeline import FacePipeline

        self.generator = generator
        self.pipeline = FacePipeline(embedder=Embedder(threads=threads))

    def reembed(self, images: np.ndarray) -> np.ndarray:
        import cv2

        from latticelock.models.facenet_convert import IMAGE_SIZE

        big = np.stack([cv2.resize(i, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC) for i in images])
        return self.pipeline.embed_crops(big)

    def reconstruct(self, recovered: np.ndarray, enrolled: np.ndarray, other: np.ndarray) -> Reconstruction:
        """Faces for the recovered embeddings [V, 512] and their distances to the victims' two images."""
        if not len(recovered) == len(enrolled) == len(other):
            raise ToolsError("recovered, enrolled and other embeddings must come one per victim")
        images = self.generator.generate(recovered)
        again = self.reembed(images)
        return Reconstruction(images, again, np.linalg.norm(again - enrolled, axis=1), np.linalg.norm(again - other, axis=1))


def row(scheme: str, parameter_set: str, mode: str, result: Reconstruction, tau: float, generator: str, **extra) -> dict:
    """One JSON row of the image-space table (the keys the issue names, and the distances)."""
    return {
        "attack": ATTACK, "scheme": scheme, "parameter_set": parameter_set, "mode": mode,
        "asr": float(np.mean(result.to_enrolled <= tau)), "asr_other_image": float(np.mean(result.to_other <= tau)),
        "victims": int(len(result.to_enrolled)), "median_distance": float(np.median(result.to_enrolled)),
        "generator": generator, **extra,
    }
