"""Face pipeline: image loading, bad input, face choice, flip averaging, and real-face behaviour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from latticelock.models.align import TEMPLATE_160
from latticelock.models.errors import ImageError, ModelsError
from latticelock.models.mtcnn import Face
from latticelock.models.pipeline import MAX_DETECT_SIDE, FacePipeline, as_rgb, load_image


def _face(x1, y1, x2, y2, score=0.99) -> Face:
    w = x2 - x1
    landmarks = TEMPLATE_160 / 160 * w + np.array([x1, y1])
    return Face(box=np.array([x1, y1, x2, y2], dtype=np.float32), score=score, landmarks=landmarks.astype(np.float32))


class FakeDetector:
    """Returns fixed faces (in the coordinates of the image it is given) and records the shapes it saw."""

    def __init__(self, faces):
        self.faces, self.seen = faces, []

    def detect(self, image):
        self.seen.append(image.shape)
        return list(self.faces)


class FakeEmbedder:
    """Embeds a crop as its unit-normalised column means of the left half (so mirroring changes it)."""

    def embed(self, crops):
        assert crops.dtype == np.uint8 and crops.shape[1:] == (160, 160, 3)
        feats = np.tile(crops[:, :, :80].astype(np.float32).mean(axis=1).reshape(len(crops), -1), 3)[:, :512] + 1.0
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def _pipeline(faces=(), flip_average=False, alignment="landmarks") -> FacePipeline:
    return FacePipeline(detector=FakeDetector(faces), embedder=FakeEmbedder(), alignment=alignment, flip_average=flip_average)


# --- load_image and bad files -------------------------------------------------------------------

def test_load_image_reads_rgb(tmp_path):
    bgr = np.zeros((20, 30, 3), dtype=np.uint8)
    bgr[:, :, 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = load_image(tmp_path / "red.png")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 0, 0]


def test_load_image_turns_grey_and_alpha_and_16_bit_into_8_bit_rgb(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((10, 12), 77, dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([np.full((10, 12, 3), 50, np.uint8), np.zeros((10, 12), np.uint8)]))
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((10, 12, 3), 40000, dtype=np.uint16))
    assert load_image(tmp_path / "grey.png")[3, 3].tolist() == [77, 77, 77]
    assert load_image(tmp_path / "alpha.png").shape == (10, 12, 3)
    deep = load_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and deep[0, 0].tolist() == [156, 156, 156]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n", "not a readable image"),
        (bytes(range(256)) * 20, "not a readable image"),
    ],
)
def test_load_image_rejects_non_images(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_load_image_rejects_missing_files_and_folders(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageError):
        load_image(tmp_path)


def test_load_image_rejects_a_truncated_jpeg(tmp_path):
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[:200])
    # A cut JPEG either fails to decode or decodes partially; it must never crash.
    try:
        image = load_image(path)
    except ImageError:
        return
    assert image.shape == (64, 64, 3)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10, 3), dtype=np.float64), np.zeros((10, 10, 3), dtype=np.int32), np.zeros((10, 10, 2), np.uint8),
     np.zeros((2, 10, 10, 3), np.uint8), np.zeros((0, 5, 3), np.uint8), "image.jpg", None],
)
def test_wrong_arrays_are_clear_errors(bad):
    with pytest.raises(ImageError):
        as_rgb(bad)
    with pytest.raises(ImageError):
        _pipeline().embed_image(bad)


def test_grey_and_rgba_arrays_are_accepted():
    assert as_rgb(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert as_rgb(np.zeros((5, 6, 1), np.uint8)).shape == (5, 6, 3)
    assert as_rgb(np.zeros((5, 6, 4), np.uint8)).shape == (5, 6, 3)


def test_unknown_alignment_is_refused():
    with pytest.raises(ModelsError):
        FacePipeline(detector=FakeDetector([]), embedder=FakeEmbedder(), alignment="eyes")


# --- choosing, mapping, embedding ---------------------------------------------------------------

def test_no_face_is_an_explicit_none():
    assert _pipeline([]).embed_image(np.zeros((100, 100, 3), np.uint8)) is None
    assert FacePipeline.choose([], (100, 100, 3)) is None


def test_choose_prefers_large_central_faces():
    shape = (400, 600, 3)
    central_small = _face(280, 180, 320, 220)
    corner_large = _face(0, 0, 90, 90)
    central_large = _face(250, 150, 350, 250)
    assert FacePipeline.choose([central_small, corner_large, central_large], shape) is central_large
    # A face far off-centre loses to a smaller one at the centre.
    assert FacePipeline.choose([_face(0, 0, 60, 60), _face(280, 180, 330, 230)], shape).box[0] == 280


def test_huge_images_are_shrunk_for_detection_and_boxes_mapped_back():
    huge = np.zeros((3000, 4000, 3), np.uint8)
    detector = FakeDetector([_face(100, 100, 200, 200)])
    pipeline = FacePipeline(detector=detector, embedder=FakeEmbedder())
    faces = pipeline.faces(huge)
    assert max(detector.seen[0][:2]) == MAX_DETECT_SIDE
    scale = 4000 / MAX_DETECT_SIDE
    np.testing.assert_allclose(faces[0].box, np.array([100, 100, 200, 200]) * scale, rtol=1e-3)
    np.testing.assert_allclose(faces[0].landmarks, _face(100, 100, 200, 200).landmarks * scale, rtol=1e-3)


def test_flip_average_is_the_normalised_mean_of_crop_and_mirror():
    crops = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    plain = _pipeline(flip_average=False).embed_crops(crops)
    averaged = _pipeline(flip_average=True).embed_crops(crops)
    mirrored = FakeEmbedder().embed(crops[:, :, ::-1])
    expected = plain + mirrored
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    assert not np.allclose(averaged, plain)
    np.testing.assert_allclose(np.linalg.norm(averaged, axis=1), 1.0, atol=1e-6)


def test_embed_faces_gives_one_row_per_face_in_order():
    image = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    faces = [_face(10, 10, 110, 110), _face(150, 150, 250, 250)]
    pipeline = _pipeline(faces)
    out = pipeline.embed_faces(image, faces)
    assert out.shape == (2, 512) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], pipeline.embed_faces(image, faces[1:])[0], atol=1e-6)
    assert pipeline.embed_faces(image, []).shape == (0, 512)


# --- real faces ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_pipeline():
    return FacePipeline(threads=1)


PAIRS_SAME = [("Colin_Powell", 1, 2), ("Serena_Williams", 1, 2), ("George_W_Bush", 10, 11)]


def _lfw(datasets, name, i):
    return load_image(datasets / "lfw" / name / f"{name}_{i:04d}.jpg")


@pytest.mark.integration
def test_same_person_is_closer_than_different_people(real_pipeline, datasets):
    embedded = {}
    for name, i, j in PAIRS_SAME:
        embedded[name] = [real_pipeline.embed_image(_lfw(datasets, name, k)).embedding for k in (i, j)]
    same = [np.linalg.norm(a - b) for a, b in embedded.values()]
    names = list(embedded)
    different = [np.linalg.norm(embedded[a][0] - embedded[b][0]) for a in names for b in names if a < b]
    assert max(same) < min(different)
    assert max(same) < 1.0 < min(different)  # around the measured LFW threshold (~1.1)


@pytest.mark.integration
def test_single_and_batched_embeddings_agree(real_pipeline, datasets):
    images = [_lfw(datasets, name, i) for name, i, _ in PAIRS_SAME]
    crops = np.stack([real_pipeline.crop(im, real_pipeline.choose(real_pipeline.faces(im), im.shape)) for im in images])
    batched = real_pipeline.embed_crops(crops)
    singles = np.concatenate([real_pipeline.embed_crops(crops[k : k + 1]) for k in range(len(crops))])
    np.testing.assert_allclose(batched, singles, atol=1e-5)


@pytest.mark.integration
def test_real_bad_images_give_no_face_not_a_crash(real_pipeline, datasets):
    photo = _lfw(datasets, "Colin_Powell", 1)
    assert real_pipeline.embed_image(cv2.resize(photo, (16, 16))) is None  # tiny
    assert real_pipeline.embed_image(np.zeros((480, 640, 3), np.uint8)) is None  # blank
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    assert real_pipeline.embed_image(grey) is not None  # grey still works


@pytest.mark.integration
def test_huge_photo_finds_the_face_at_full_resolution(real_pipeline, datasets):
    photo = _lfw(datasets, "Colin_Powell", 1)
    big = cv2.resize(photo, (2500, 2500), interpolation=cv2.INTER_LINEAR)
    small_face = real_pipeline.embed_image(photo)
    big_face = real_pipeline.embed_image(big)
    np.testing.assert_allclose(big_face.face.box / 10, small_face.face.box, atol=6)
    assert np.linalg.norm(big_face.embedding - small_face.embedding) < 0.5


@pytest.mark.integration
def test_several_faces_are_all_found_and_the_central_one_is_chosen(real_pipeline, datasets):
    photos = [cv2.resize(_lfw(datasets, n, i), (200, 200)) for n, i, _ in PAIRS_SAME]
    frame = np.zeros((300, 700, 3), np.uint8)
    for k, photo in enumerate(photos):
        frame[50:250, 30 + k * 220 : 230 + k * 220] = photo
    faces = real_pipeline.faces(frame)
    assert len(faces) == 3
    chosen = real_pipeline.choose(faces, frame.shape)
    assert 250 < (chosen.box[0] + chosen.box[2]) / 2 < 450


# --- the latency benchmark's frames ----------------------------------------------------------------

def test_bench_frames_are_640x480_without_datasets():
    from latticelock.tools.bench_pipeline import compose_frames

    one, many, source = compose_frames(None)
    assert one.shape == many.shape == (480, 640, 3) and "synthetic" in source


@pytest.mark.integration
def test_bench_pipeline_command_finds_one_and_eight_faces(datasets, tmp_path, capsys):
    import json

    from latticelock.tools.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "pipeline", "--repeat", "1", "--threads", "1", "--passes", "1", "--dataset", str(datasets),
                 "--json", str(out)]) == 0
    assert "median ms" in capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = {row["stage"]: row for row in report["results"]}
    assert rows["detect 640x480, 1 face"]["faces_found"] == 1
    assert rows["detect 640x480, many faces"]["faces_found"] == 8
    assert all(row["median_ms"] > 0 and row["raw_ms"] > 0 and row["ratio_to_raw"] > 0 for row in rows.values())
    for stage in ("detect", "detect_loop", "detect_tracked"):
        assert report[f"{stage}_s"] > 0 and report[f"{stage}_raw_s"] > 0
        assert report[f"{stage}_ratio"] == pytest.approx(report[f"{stage}_s"] / report[f"{stage}_raw_s"])
    assert report["embed_ratio"] == pytest.approx(report["embed_s"] / report["facenet_raw_s"])
    stream = report["stream"]
    assert stream["frames"] == len(list((datasets / "faces94_subset" / "anpage").iterdir())) and stream["fps"] > 0
