"""MTCNN cascade: box helpers (pure numpy) and detection on real LFW faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.models.errors import ImageError, ModelsError
from latticelock.models.mtcnn import (
    PNET_CELL,
    Detector,
    calibrate,
    check_image,
    crop_padded,
    nms,
    pyramid_scales,
    square,
)

coords = st.floats(min_value=-50, max_value=300, allow_nan=False)


@st.composite
def box_sets(draw):
    n = draw(st.integers(min_value=0, max_value=12))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(coords), draw(coords)
        w, h = draw(st.floats(1, 120)), draw(st.floats(1, 120))
        boxes.append([x1, y1, x1 + w, y1 + h])
    scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n, unique=True))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores, dtype=np.float64)


def _iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@settings(max_examples=60, deadline=None)
@given(box_sets(), st.floats(0.1, 0.9))
def test_nms_keeps_best_first_and_no_kept_pair_overlaps_too_much(data, threshold):
    boxes, scores = data
    keep = nms(boxes, scores, threshold)
    assert list(scores[keep]) == sorted(scores[keep], reverse=True)
    if len(boxes):
        assert keep[0] == int(np.argmax(scores))
    for i, a in enumerate(keep):
        for b in keep[i + 1 :]:
            assert _iou(boxes[a], boxes[b]) <= threshold + 1e-9
    # Every dropped box overlaps some kept, better-scored box.
    for d in set(range(len(boxes))) - set(keep.tolist()):
        assert any(_iou(boxes[k], boxes[d]) > threshold and scores[k] > scores[d] for k in keep)


def test_nms_min_mode_drops_a_box_nested_in_a_better_one():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], dtype=float)
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.7, mode="union").tolist() == [0, 1]
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [0]


def test_calibrate_moves_edges_by_offset_times_size():
    boxes = np.array([[10.0, 20.0, 30.0, 60.0]])
    out = calibrate(boxes, np.array([[0.1, -0.25, 0.5, 0.0]]))
    assert out.tolist() == [[12.0, 10.0, 40.0, 60.0]]


@given(box_sets())
def test_square_keeps_centre_and_longest_side(data):
    boxes, _ = data
    out = square(boxes)
    np.testing.assert_allclose((out[:, :2] + out[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-9)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.testing.assert_allclose(out[:, 2] - out[:, 0], side, atol=1e-9)
    np.testing.assert_allclose(out[:, 3] - out[:, 1], side, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(-40, 60), st.integers(-40, 60), st.integers(1, 80), st.integers(1, 80))
def test_crop_padded_has_box_size_and_zero_outside_image(x1, y1, w, h):
    image = np.arange(30 * 40 * 3, dtype=np.uint32).reshape(30, 40, 3).astype(np.uint8) | 1  # no zero pixels
    crop = crop_padded(image, np.array([x1, y1, x1 + w, y1 + h], dtype=float))
    assert crop.shape == (h, w, 3)
    ys, xs = np.mgrid[y1 : y1 + h, x1 : x1 + w]
    inside = (ys >= 0) & (ys < 30) & (xs >= 0) & (xs < 40)
    assert np.all(crop[~inside] == 0)
    assert np.array_equal(crop[inside], image[ys[inside], xs[inside]])


def test_pyramid_scales_cover_min_face_to_image_size():
    scales = pyramid_scales(250, 250, 20)
    assert scales[0] == pytest.approx(PNET_CELL / 20)
    assert 250 * scales[-1] >= PNET_CELL > 250 * scales[-1] * 0.709
    assert pyramid_scales(10, 500, 20) == []  # smaller than the smallest face


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), dtype=np.float32),
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((0, 10, 3), dtype=np.uint8),
        [[0, 0, 0]],
    ],
)
def test_check_image_rejects_wrong_arrays(bad):
    with pytest.raises(ImageError):
        check_image(bad)


@pytest.fixture(scope="module")
def detector():
    return Detector(threads=2)


def test_detector_rejects_bad_settings():
    with pytest.raises(ModelsError):
        Detector(min_face_size=5)
    with pytest.raises(ModelsError):
        Detector(thresholds=(0.6, 0.7))


def test_detector_finds_nothing_in_blank_or_tiny_images(detector):
    assert detector.detect(np.zeros((120, 160, 3), dtype=np.uint8)) == []
    assert detector.detect(np.full((8, 8, 3), 128, dtype=np.uint8)) == []
    assert detector.detect(np.full((19, 400, 3), 200, dtype=np.uint8)) == []


LFW_SAMPLE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
              "Serena_Williams/Serena_Williams_0001.jpg", "George_W_Bush/George_W_Bush_0010.jpg"]


@pytest.mark.integration
@pytest.mark.parametrize("name", LFW_SAMPLE)
def test_detection_lands_on_the_centred_lfw_face(detector, datasets, name):
    from latticelock.models.pipeline import FacePipeline, load_image

    image = load_image(datasets / "lfw" / name)
    face = FacePipeline.choose(detector.detect(image), image.shape)
    assert face is not None and face.score > 0.9
    x1, y1, x2, y2 = face.box
    # Deep-funneled LFW images hold the face at their centre, about 100 pixels tall.
    assert x1 < 125 < x2 and y1 < 125 < y2
    assert 60 < y2 - y1 < 180
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lex < nx < rex and mlx < mrx  # left/right as seen in the image
    assert max(ley, rey) < ny < min(mly, mry)  # eyes above the nose above the mouth
    assert np.all((face.landmarks >= face.box[:2]) & (face.landmarks <= face.box[2:]))


@pytest.mark.integration
def test_detection_is_consistent_on_a_mirrored_face(detector, datasets):
    from latticelock.models.pipeline import load_image

    image = load_image(datasets / "lfw" / LFW_SAMPLE[0])
    a = detector.detect(image)[0]
    b = detector.detect(np.ascontiguousarray(image[:, ::-1]))[0]
    mirrored = np.array([250 - b.box[2], b.box[1], 250 - b.box[0], b.box[3]])
    np.testing.assert_allclose(a.box, mirrored, atol=6)


REFERENCE = Path(__file__).parent / "data" / "mtcnn_reference.json"


@pytest.fixture(scope="module")
def reference_images(datasets):
    from latticelock.models.pipeline import load_image
    from latticelock.tools.bench_pipeline import compose_frames

    one, many, _ = compose_frames(datasets)
    names = json.loads(REFERENCE.read_text())["images"]
    return {name: one if name == "bench one" else many if name == "bench many" else load_image(datasets / name) for name in names}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(json.loads(REFERENCE.read_text())["images"]))
def test_detections_match_the_reference_cascade(reference_images, name):
    """The detector (as sped up) finds the faces the cascade found before, at the same places (see the file's header)."""
    from latticelock.models.pipeline import FacePipeline

    expected = json.loads(REFERENCE.read_text())["images"][name]
    found = FacePipeline(detector=Detector(threads=1), embedder=object()).faces(reference_images[name])
    assert len(found) == len(expected)
    for face in found:
        ref = min(expected, key=lambda r: np.abs(np.array(r["box"]) - face.box).max())
        side = max(face.width, face.height)
        # Within 1% of the face's side: a speed change must not move the boxes that alignment crops.
        assert np.abs(np.array(ref["box"]) - face.box).max() <= 0.01 * side
        assert np.abs(np.array(ref["landmarks"]) - face.landmarks).max() <= 0.01 * side
        assert abs(ref["score"] - face.score) <= 1e-3
