"""Alignment: margin crops and 5-point similarity warps onto the template."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.models.align import (
    CROP_SIZE,
    MARGIN,
    TEMPLATE_160,
    align,
    landmark_crop,
    margin_box,
    margin_crop,
)
from latticelock.models.errors import ModelsError
from latticelock.models.mtcnn import Face


def _face(box, landmarks) -> Face:
    return Face(box=np.asarray(box, dtype=np.float32), score=0.99, landmarks=np.asarray(landmarks, dtype=np.float32))


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    # Smooth texture, so that bilinear resampling of a shifted grid stays close to the original.
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


@given(st.floats(0, 200), st.floats(0, 200), st.floats(10, 150), st.floats(10, 150))
def test_margin_box_leaves_margin_over_size_of_context_after_resizing(x1, y1, w, h):
    grown = margin_box(np.array([x1, y1, x1 + w, y1 + h]))
    # Resized to 160, the original box spans the central 160 - 32 pixels on both axes.
    assert (w / (grown[2] - grown[0])) * CROP_SIZE == pytest.approx(CROP_SIZE - MARGIN)
    assert (h / (grown[3] - grown[1])) * CROP_SIZE == pytest.approx(CROP_SIZE - MARGIN)
    assert (grown[0] + grown[2]) / 2 == pytest.approx(x1 + w / 2)


def test_margin_crop_of_a_box_is_the_resized_region():
    image = _textured(300, 300)
    face = _face([100, 100, 228, 228], TEMPLATE_160)  # grown box is 160x160 at (84, 84): no resampling
    crop = margin_crop(image, face)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, image[84:244, 84:244])


def test_margin_crop_pads_with_black_at_the_border():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = margin_crop(image, _face([0, 0, 64, 64], TEMPLATE_160 * 0.4))
    assert crop.shape == (160, 160, 3)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[80, 80].tolist() == [200, 200, 200]


def test_landmark_crop_is_identity_when_landmarks_sit_on_the_template():
    image = _textured(160, 160)
    crop = landmark_crop(image, _face([40, 50, 120, 130], TEMPLATE_160))
    assert np.abs(crop[4:-4, 4:-4].astype(int) - image[4:-4, 4:-4]).max() <= 2


@settings(max_examples=15, deadline=None)
@given(st.floats(-30, 30), st.floats(0.6, 2.5), st.floats(-20, 20), st.floats(-20, 20))
def test_landmark_crop_undoes_rotation_scale_and_shift(angle, scale, tx, ty):
    size = 400
    image = _textured(CROP_SIZE, CROP_SIZE, seed=3)
    # Place the template-aligned face into a bigger scene by a random similarity transform.
    matrix = cv2.getRotationMatrix2D((80, 80), angle, scale)
    matrix[:, 2] += (size / 2 - 80 + tx, size / 2 - 80 + ty)
    scene = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC)
    landmarks = cv2.transform(TEMPLATE_160[None].astype(np.float64), matrix)[0]
    crop = landmark_crop(scene, _face([0, 0, size, size], landmarks))
    inner = (slice(30, 130), slice(30, 130))  # away from borders that the scene never had
    diff = np.abs(crop[inner].astype(int) - image[inner].astype(int))
    assert np.median(diff) <= 6


def test_degenerate_landmarks_fall_back_to_the_margin_crop():
    image = _textured(200, 200)
    face = _face([50, 50, 150, 150], np.full((5, 2), 100.0))
    np.testing.assert_array_equal(landmark_crop(image, face), margin_crop(image, face))


def test_align_names_its_methods():
    image = _textured(200, 200)
    face = _face([50, 50, 150, 150], TEMPLATE_160 * 0.6 + 52)
    assert align(image, face, "margin").shape == (160, 160, 3)
    assert align(image, face, "landmarks").shape == (160, 160, 3)
    with pytest.raises(ModelsError, match="unknown alignment"):
        align(image, face, "eyes")
