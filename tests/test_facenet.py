"""Embedder: arrays in, unit 512-d rows out; batching does not change results; bad input is a clear error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from latticelock.models.errors import ModelsError
from latticelock.models.facenet import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(threads=2, batch_size=4)


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)


def test_embeddings_are_unit_float32_rows(embedder: Embedder) -> None:
    out = embedder.embed(_crops(3))
    assert out.dtype == np.float32 and out.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_batch_size_does_not_change_results(embedder: Embedder) -> None:
    crops = _crops(6, seed=1)
    batched = embedder.embed(crops)  # batches of 4 + 2
    single = np.concatenate([embedder.embed(crops[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_empty_input_gives_empty_output(embedder: Embedder) -> None:
    assert embedder.embed(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        (np.zeros((1, 160, 160, 3), np.float32), "uint8"),
        (np.zeros((160, 160, 3), np.uint8), r"shape \[N, 160, 160, 3\]"),
        (np.zeros((1, 160, 160, 1), np.uint8), r"shape \[N, 160, 160, 3\]"),
        (np.zeros((2, 112, 112, 3), np.uint8), r"shape \[N, 160, 160, 3\]"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_crops_are_clear_errors(embedder: Embedder, crops, message: str) -> None:
    with pytest.raises(ModelsError, match=message):
        embedder.embed(crops)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(batch_size) -> None:
    with pytest.raises(ModelsError, match="batch_size"):
        Embedder(batch_size=batch_size)


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ModelsError, match="unknown inference backend"):
        Embedder(backend="coreml")


def _lfw_crop(datasets: Path, name: str, index: int) -> np.ndarray:
    image = cv2.imread(str(datasets / "lfw" / name / f"{name}_{index:04d}.jpg"))
    # Deep-funneled LFW is 250x250 with the face centred: the central 160x160 is a usable crop.
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[45:205, 45:205]


@pytest.mark.integration
def test_same_person_is_closer_than_different_people(embedder: Embedder, datasets: Path) -> None:
    lines = (datasets / "lfw_pairs.txt").read_text().splitlines()
    same = [line.split() for line in lines[1:9]]
    different = [line.split() for line in lines[301:309]]
    crops = [_lfw_crop(datasets, n, int(i)) for n, i, _ in same] + [_lfw_crop(datasets, n, int(j)) for n, _, j in same]
    crops += [_lfw_crop(datasets, a, int(i)) for a, i, _, _ in different]
    crops += [_lfw_crop(datasets, b, int(j)) for _, _, b, j in different]
    e = embedder.embed(np.stack(crops)).reshape(4, 8, 512)
    same_d = np.linalg.norm(e[0] - e[1], axis=1)
    diff_d = np.linalg.norm(e[2] - e[3], axis=1)
    # FaceNet's verification threshold on L2 distance of unit embeddings is about 1.1-1.2.
    assert np.median(same_d) < 1.0 < np.median(diff_d)
    assert same_d.mean() < diff_d.mean()
