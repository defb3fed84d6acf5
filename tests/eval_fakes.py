"""Synthetic faces for the evaluation tools, written as `latticelock eval embed` files.

People live in the span of the first 32 components of the shipped projection (every parameter set
sees all of it), one axis (and direction) each while axes last; a part orthogonal to every component brings each embedding to unit
norm (as most of a real face's norm lies outside the projection), so projected distances are exactly
the generator's (the projection's mean shifts every point alike): `spread` is a person's distance from
the origin of the span, `noise` the typical distance of an image from its person.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latticelock.kernels.projection import load_projection
from latticelock.tools.embeddings import EmbeddingsWriter

SPAN = 32


def synthetic_faces(counts: list[int], spread: float, noise: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """(float32[N, 512] unit embeddings, files "P<i>/P<i>_<j>.jpg") for people with these image counts."""
    projection = load_projection("lfw-public-pca64")
    span = projection.components[:SPAN].astype(np.float64)
    rng = np.random.default_rng(seed)
    components = projection.components.astype(np.float64)
    outside = rng.normal(size=components.shape[1])
    outside -= components.T @ (components @ outside)
    outside /= np.linalg.norm(outside)
    vectors, files = [], []
    for person, count in enumerate(counts):
        if person < 2 * SPAN:  # on the axes, both ways: every two people at least spread * sqrt(2) apart
            centre = np.zeros(SPAN)
            centre[person % SPAN] = spread if person < SPAN else -spread
        else:  # more people than axes: random directions, some closer together
            centre = rng.normal(size=SPAN)
            centre *= spread / np.linalg.norm(centre)
        for image in range(count):
            x = (centre + rng.normal(scale=noise / np.sqrt(SPAN), size=SPAN)) @ span
            if x @ x >= 1.0:
                raise ValueError(f"spread {spread} and noise {noise} leave the unit sphere")
            vectors.append(x + np.sqrt(1.0 - x @ x) * outside)
            files.append(f"P{person:02d}/P{person:02d}_{image:04d}.jpg")
    return np.array(vectors, np.float32), files


def write_faces(path: Path, counts: list[int], spread: float = 0.9, noise: float = 0.05, seed: int = 0) -> Path:
    embeddings, files = synthetic_faces(counts, spread, noise, seed)
    EmbeddingsWriter(config={"synthetic": True}, files=files, embeddings=list(embeddings)).save(path)
    return path
