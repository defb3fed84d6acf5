"""Face tracking: the whole-frame / near-search schedule, track ids, and the narrowed MTCNN search.

The schedule and id tests drive `Tracker` and `FaceTracker` with a scripted detector (no models);
the integration tests check on real photos that a narrowed search finds the face a whole-frame
search finds, at the same place.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from latticelock.models.align import TEMPLATE_160
from latticelock.models.errors import ModelsError
from latticelock.models.mtcnn import PNET_CELL, PYRAMID_FACTOR, Face, clip_region, pyramid_scales
from latticelock.models.pipeline import FacePipeline
from latticelock.models.tracker import FaceTracker, Tracker, TrackerConfig, iou

SHAPE = (480, 640, 3)


def _face(x1, y1, side, score=0.99) -> Face:
    landmarks = TEMPLATE_160 / 160 * side + np.array([x1, y1])
    return Face(np.array([x1, y1, x1 + side, y1 + side], np.float32), score, landmarks.astype(np.float32))


class ScriptedDetector:
    """Returns, for each call, the faces of the current frame that lie inside the searched region."""

    def __init__(self) -> None:
        self.frame_faces: list[Face] = []
        self.calls: list[tuple] = []

    def detect(self, image, region=None, face_sizes=None):
        self.calls.append((region, face_sizes))
        if region is None:
            return list(self.frame_faces)
        x1, y1, x2, y2 = region
        return [f for f in self.frame_faces if x1 <= f.box[0] and y1 <= f.box[1] and f.box[2] <= x2 and f.box[3] <= y2]


def _tracker(config: TrackerConfig | None = None) -> tuple[FaceTracker, ScriptedDetector]:
    detector = ScriptedDetector()
    return FaceTracker(FacePipeline(detector=detector, embedder=object(), flip_average=False), config), detector


IMAGE = np.zeros(SHAPE, np.uint8)


# --- the schedule -----------------------------------------------------------------------------------

def test_whole_frame_until_a_face_then_near_it():
    tracker = Tracker(TrackerConfig(region_scale=3.0, size_range=(0.5, 2.0)))
    assert tracker.plan(0.0).full_frame
    assert tracker.update(None, 0.0, True) is None
    assert tracker.plan(0.03).full_frame
    tracker.update(_face(300, 200, 100), 0.03, True)
    search = tracker.plan(0.06)
    assert not search.full_frame
    assert search.region == pytest.approx((200, 100, 500, 400))  # 3 face sides, centred on the face
    assert search.face_sizes == pytest.approx((50, 200))


def test_whole_frame_check_every_n_frames():
    tracker = Tracker(TrackerConfig(full_every_frames=4, full_every_s=1e9))
    face = _face(300, 200, 100)
    plans = []
    for i in range(9):
        search = tracker.plan(float(i))
        plans.append(search.full_frame)
        tracker.update(face, float(i), search.full_frame)
    assert plans == [True, False, False, False, True, False, False, False, True]


def test_whole_frame_check_every_t_seconds():
    tracker = Tracker(TrackerConfig(full_every_frames=1000, full_every_s=0.5))
    face = _face(300, 200, 100)
    plans = []
    for t in (0.0, 0.2, 0.4, 0.5, 0.7, 0.99, 1.0):
        search = tracker.plan(t)
        plans.append(search.full_frame)
        tracker.update(face, t, search.full_frame)
    assert plans == [True, False, False, True, False, False, True]


def test_min_face_px_bounds_both_searches():
    tracker = Tracker(TrackerConfig(min_face_px=36.0, size_range=(0.5, 2.0)))
    assert tracker.plan(0.0).face_sizes == (36.0, math.inf)
    tracker.update(_face(300, 200, 50), 0.0, True)
    assert tracker.plan(0.03).face_sizes == pytest.approx((36.0, 100.0))


# --- track ids --------------------------------------------------------------------------------------

def test_small_moves_keep_the_id_jumps_and_gaps_get_new_ones():
    tracker = Tracker()
    first = tracker.update(_face(300, 200, 100), 0.0, True)
    assert tracker.update(_face(310, 205, 102), 0.1, False) == first  # moved a little
    jumped = tracker.update(_face(100, 50, 100), 0.2, True)  # elsewhere: another face
    assert jumped != first
    assert tracker.update(None, 0.3, True) is None
    after_gap = tracker.update(_face(100, 50, 100), 0.4, True)  # same place, but the track was lost
    assert after_gap not in (first, jumped)
    assert [first, jumped, after_gap] == sorted([first, jumped, after_gap])


def test_iou():
    a = np.array([0, 0, 10, 10.0])
    assert iou(a, a) == 1.0
    assert iou(a, np.array([20, 20, 30, 30.0])) == 0.0
    assert iou(a, np.array([5, 0, 15, 10.0])) == pytest.approx(50 / 150)


@pytest.mark.parametrize(
    "settings",
    [dict(full_every_frames=0), dict(full_every_s=0.0), dict(region_scale=0.5), dict(size_range=(1.5, 2.0)),
     dict(size_range=(0.5, 0.9)), dict(min_iou=0.0), dict(min_face_px=-1.0)],
)
def test_bad_settings_are_refused(settings):
    with pytest.raises(ModelsError):
        TrackerConfig(**settings)


# --- the tracker driving a detector -----------------------------------------------------------------

def test_face_tracker_searches_near_the_face_and_keeps_its_id():
    tracker, detector = _tracker()
    detector.frame_faces = [_face(300, 200, 100)]
    first = tracker.track(IMAGE, 0.0)
    assert first.full_frame and first.track_id == 1 and first.faces == 1
    detector.frame_faces = [_face(306, 204, 100)]
    second = tracker.track(IMAGE, 0.03)
    assert not second.full_frame and second.track_id == 1
    assert detector.calls[-1][0] is not None  # one near search, no whole-frame search
    assert len(detector.calls) == 2


def test_a_face_that_leaves_the_region_is_found_by_a_whole_frame_search_on_the_same_frame():
    tracker, detector = _tracker()
    detector.frame_faces = [_face(300, 200, 100)]
    tracker.track(IMAGE, 0.0)
    detector.frame_faces = [_face(20, 20, 100)]  # out of the near region
    moved = tracker.track(IMAGE, 0.03)
    assert moved.full_frame and moved.face.box[0] == 20 and moved.track_id == 2
    assert [region is None for region, _ in detector.calls] == [True, False, True]


def test_no_face_ends_the_track():
    tracker, detector = _tracker()
    detector.frame_faces = [_face(300, 200, 100)]
    tracker.track(IMAGE, 0.0)
    detector.frame_faces = []
    gone = tracker.track(IMAGE, 0.03)
    assert gone.face is None and gone.track_id is None and gone.full_frame
    detector.frame_faces = [_face(300, 200, 100)]
    assert tracker.track(IMAGE, 0.06).track_id == 2


def test_a_second_face_is_seen_at_the_next_whole_frame_check():
    tracker, detector = _tracker(TrackerConfig(full_every_frames=3, full_every_s=1e9))
    user = _face(60, 60, 90)  # off-centre
    detector.frame_faces = [user]
    assert tracker.track(IMAGE, 0.0).track_id == 1
    intruder = _face(270, 190, 110)  # larger and central: the choice rule prefers it
    detector.frame_faces = [user, intruder]
    results = [tracker.track(IMAGE, 0.03 * i) for i in (1, 2, 3)]
    assert [r.full_frame for r in results] == [False, False, True]
    assert [r.track_id for r in results] == [1, 1, 2]
    assert results[-1].face is intruder and results[-1].faces == 2


def test_whole_frame_searches_use_min_face_px():
    tracker, detector = _tracker(TrackerConfig(min_face_px=36.0))
    tracker.track(IMAGE, 0.0)
    assert detector.calls == [(None, (36.0, math.inf))]


# --- the narrowed MTCNN search (pure parts) ---------------------------------------------------------

def test_pyramid_levels_for_face_sizes_are_levels_of_the_full_ladder():
    full = pyramid_scales(480, 640, 20)
    narrowed = pyramid_scales(480, 640, 20, (40.0, 120.0))
    assert narrowed and set(narrowed) <= set(full)
    assert all(40.0 <= PNET_CELL / s <= 120.0 for s in narrowed)
    assert len(narrowed) == sum(40.0 <= PNET_CELL / s <= 120.0 for s in full)
    assert pyramid_scales(480, 640, 20, (36.0, math.inf))[0] == pytest.approx(full[0] * PYRAMID_FACTOR**2)


def test_clip_region():
    assert clip_region((-10.5, 5.2, 700, 100.1), 480, 640) == (0, 5, 640, 101)
    with pytest.raises(ModelsError, match="outside"):
        clip_region((700, 0, 800, 100), 480, 640)
    with pytest.raises(ModelsError, match="four finite"):
        clip_region((0, 0, math.nan, 10), 480, 640)
    with pytest.raises(ModelsError, match="four finite"):
        clip_region((0, 0, 10), 480, 640)


# --- real faces -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_pipeline():
    from latticelock.models.mtcnn import Detector

    return FacePipeline(detector=Detector(threads=1), embedder=object(), flip_average=False)


REAL = ["lfw/Colin_Powell/Colin_Powell_0001.jpg", "lfw/Serena_Williams/Serena_Williams_0001.jpg",
        "faces94_subset/anpage/anpage.1.jpg", "deepface_photos/id01/img44.jpg"]


def _close(a: Face, b: Face, tol: float) -> bool:
    side = max(a.width, a.height)
    return bool(np.abs(a.box - b.box).max() <= tol * side and np.abs(a.landmarks - b.landmarks).max() <= tol * side)


@pytest.mark.integration
@pytest.mark.parametrize("name", REAL)
def test_tracked_searches_find_the_whole_frame_face(real_pipeline, datasets, name):
    from latticelock.models.pipeline import load_image

    image = load_image(datasets / name)
    whole = real_pipeline.choose(real_pipeline.faces(image), image.shape)
    tracker = FaceTracker(real_pipeline, TrackerConfig(min_face_px=36.0))
    first = tracker.track(image, 0.0)
    near = tracker.track(image, 0.03)
    assert first.full_frame and not near.full_frame
    assert first.track_id == near.track_id == 1
    # Within 2% of the face's side (a few pixels): the searches differ only in skipped pyramid levels.
    assert _close(first.face, whole, 0.02) and _close(near.face, whole, 0.02)


@pytest.mark.integration
@pytest.mark.parametrize("name", REAL)
def test_a_face_that_moved_a_little_is_found_near_where_it_was(real_pipeline, datasets, name):
    from latticelock.models.pipeline import load_image

    image = load_image(datasets / name)
    tracker = FaceTracker(real_pipeline, TrackerConfig(min_face_px=36.0))
    before = tracker.track(image, 0.0)
    shift = int(0.1 * before.face.width)
    moved = np.zeros_like(image)
    moved[shift:, shift:] = image[:-shift, :-shift]
    whole = real_pipeline.choose(real_pipeline.faces(moved), moved.shape)
    after = tracker.track(moved, 0.03)
    assert not after.full_frame and after.track_id == before.track_id
    assert _close(after.face, whole, 0.02)
