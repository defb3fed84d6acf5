"""The device's frame pipeline: results in frame order, reasons, stale-frame dropping, shutdown and errors.

A real FacePipeline runs on a scripted detector and embedder: each frame's first pixel says what the
detector finds (or whether it fails or waits), so no test depends on models or on timing; threads
are synchronised with events, never with sleeps.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from latticelock.device.errors import SourceError
from latticelock.device.frames import LOOP_FLIP_AVERAGE, SEARCH_MARGIN, FramePipeline
from latticelock.device.quality import QualityConfig
from latticelock.device.sources import Frame
from latticelock.models.align import TEMPLATE_160
from latticelock.models.errors import ModelsError
from latticelock.models.mtcnn import Face
from latticelock.models.pipeline import FacePipeline

NO_FACE, GOOD, SMALL, FAIL, WAIT = range(5)


def _face(x1, y1, side) -> Face:
    landmarks = TEMPLATE_160 / 160 * side + np.array([x1, y1])
    return Face(np.array([x1, y1, x1 + side, y1 + side], np.float32), 0.99, landmarks.astype(np.float32))


class ScriptedDetector:
    def __init__(self) -> None:
        self.busy = threading.Event()
        self.release = threading.Event()
        self.warmed: list[tuple[int, int]] = []

    def detect(self, image, region=None, face_sizes=None):
        kind = int(image[0, 0, 0])
        if kind == FAIL:
            raise ModelsError("the detector failed on this frame")
        if kind == WAIT:
            self.busy.set()
            assert self.release.wait(timeout=30), "test deadlock: the detector was never released"
        if kind == SMALL:
            return [_face(60, 40, 30)]
        return [] if kind == NO_FACE else [_face(40, 20, 80)]

    def warm_up(self, height, width):
        self.warmed.append((height, width))


class ScriptedEmbedder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[int] = []

    def embed(self, crops):
        self.batches.append(len(crops))
        if self.fail:
            raise ModelsError("the embedder failed")
        x = crops.reshape(len(crops), -1)[:, :512].astype(np.float32) + 1.0
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def warm_up(self, batch):
        self.batches.append(batch)


def _frame(index: int, kind: int) -> Frame:
    image = np.random.default_rng(index).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    image[0, 0, 0] = kind
    return Frame(image, timestamp=index / 30, index=index, name=f"f{index}")


def _frames(**options) -> tuple[FramePipeline, ScriptedDetector, ScriptedEmbedder]:
    detector, embedder = ScriptedDetector(), ScriptedEmbedder(fail=options.pop("embed_fails", False))
    pipeline = FacePipeline(detector=detector, embedder=embedder, flip_average=False)
    return FramePipeline(pipeline, quality=QualityConfig(min_sharpness=0.0), **options), detector, embedder


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("frames ")]


@pytest.fixture(autouse=True)
def no_stage_threads_left():
    yield
    assert not _stage_threads(), "a run left its threads behind"


class LiveSource:
    """A camera stand-in (`live` is true): once detection is busy with the first frame, the others come
    at once, and the detector is released when every frame has been read."""

    live = True

    def __init__(self, kinds: list[int], detector: ScriptedDetector) -> None:
        self.kinds, self.detector = kinds, detector

    def __iter__(self):
        for i, kind in enumerate(self.kinds):
            yield _frame(i, kind)
            if i == 0:
                assert self.detector.busy.wait(timeout=30), "test deadlock: detection never started"
        self.detector.release.set()


# --- results ------------------------------------------------------------------------------------

def test_a_replay_gives_every_frame_in_order_with_its_reason():
    frames, _, embedder = _frames()
    kinds = [GOOD, NO_FACE, SMALL, GOOD, GOOD]
    with frames.run([_frame(i, k) for i, k in enumerate(kinds)]) as results:
        out = list(results)
    assert [r.frame.index for r in out] == list(range(len(kinds)))
    assert [r.usable for r in out] == [True, False, False, True, True]
    assert out[1].reason == "no face" and out[1].face is None and out[1].track_id is None and out[1].quality is None
    assert out[2].reason.startswith("low quality: face too small") and not out[2].quality.ok
    assert all(r.reason == "" and r.embedding.shape == (512,) and r.quality.ok for r in out if r.usable)
    assert out[3].track_id == out[4].track_id != out[0].track_id  # frame 1 had no face: a new track
    assert set(out[0].seconds) == {"detect", "gate", "embed", "latency"}
    assert set(out[1].seconds) == {"detect", "latency"}
    assert embedder.batches == [1, 1, 1]  # one FaceNet call per usable frame, none for the others


def test_a_source_that_ends_at_once_gives_no_results():
    frames, _, _ = _frames()
    with frames.run([]) as results:
        assert list(results) == []


@pytest.mark.parametrize("flip", [False, True])
def test_mirror_averaging_is_the_frame_pipelines_own_setting(flip):
    frames, _, embedder = _frames(flip_average=flip)
    with frames.run([_frame(0, GOOD)]) as results:
        list(results)
    assert embedder.batches == [2 if flip else 1]


def test_defaults_come_from_the_loop_settings():
    frames, _, _ = _frames()
    assert frames.flip_average is LOOP_FLIP_AVERAGE
    assert frames.tracking.min_face_px == SEARCH_MARGIN * QualityConfig().min_face_px


def test_warm_up_runs_both_models_at_the_loop_batch():
    frames, detector, embedder = _frames(flip_average=True)
    frames.warm_up(240, 320)
    assert detector.warmed == [(240, 320)] and embedder.batches == [2]


# --- no frame piles up --------------------------------------------------------------------------

def test_a_live_source_has_stale_frames_replaced_by_the_newest():
    frames, detector, _ = _frames()
    kinds = [WAIT] + [GOOD] * 9  # detection is busy with frame 0 until all ten frames were read
    with frames.run(LiveSource(kinds, detector)) as results:
        out = list(results)
        assert results.dropped == 8
    assert [r.frame.index for r in out] == [0, 9]


def test_a_replay_is_never_dropped():
    frames, detector, _ = _frames()

    def replay():
        for i in range(8):
            if i == 2:
                detector.release.set()  # detection waits on frame 0 until the reader is two frames ahead
            yield _frame(i, WAIT if i == 0 else GOOD)

    with frames.run(replay(), live=False) as results:
        out = list(results)
        assert results.dropped == 0
    assert [r.frame.index for r in out] == list(range(8))


# --- shutdown and errors ------------------------------------------------------------------------

def test_leaving_early_stops_every_thread_and_leaves_the_source_alone():
    frames, _, _ = _frames()
    read = []

    def endless():
        i = 0
        while True:
            read.append(i)
            yield _frame(i, GOOD)
            i += 1

    source = endless()
    with frames.run(source) as results:
        for r in results:
            if r.frame.index == 2:
                break
    assert not _stage_threads()
    assert next(source).index == len(read) - 1  # still open: the caller owns it


def test_close_is_idempotent_and_ends_iteration():
    frames, _, _ = _frames()
    results = frames.run(_frame(i, GOOD) for i in range(100))
    next(results)
    results.close()
    results.close()
    with pytest.raises(StopIteration):
        next(results)


def test_a_detector_error_reaches_the_consumer_as_itself():
    frames, _, _ = _frames()
    with frames.run([_frame(0, GOOD), _frame(1, FAIL), _frame(2, GOOD)]) as results:
        first = next(results)
        with pytest.raises(ModelsError, match="detector failed"):
            next(results)
    assert first.frame.index == 0


def test_a_source_error_reaches_the_consumer():
    frames, _, _ = _frames()

    def broken():
        yield _frame(0, GOOD)
        raise SourceError("camera unplugged")

    with frames.run(broken()) as results, pytest.raises(SourceError, match="camera unplugged"):
        list(results)


def test_an_embedder_error_reaches_the_consumer():
    frames, _, _ = _frames(embed_fails=True)
    with frames.run([_frame(0, NO_FACE), _frame(1, GOOD)]) as results, pytest.raises(ModelsError, match="embedder failed"):
        list(results)
