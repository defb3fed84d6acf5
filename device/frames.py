"""The device's frame pipeline: frames in, per-frame faces, quality verdicts and embeddings out, stages overlapped.

    frames = FramePipeline(pipeline, quality=QualityConfig())   # once, at start-up
    frames.warm_up()                                            # models run once: the first attempt is not slower
    with frames.run(source) as results:                         # per attempt; `source` is any iterable of Frame
        for r in results:                                       # FrameResult, in frame order
            if r.usable: ...r.embedding, r.track_id...          # else r.reason says why not
            if decided: break                                   # leaving the `with` stops the threads

Three threads per run, joined by bounded queues of one item: capture (iterates the source),
detection (tracked MTCNN, choice, quality gate, alignment) and embedding (FaceNet). ONNX Runtime
and OpenCV release the GIL, so detection of frame n+1 overlaps the embedding of frame n. Nothing
piles up: a live source (one with a true `live` attribute, e.g. a camera) has a stale frame replaced
by the newest one when detection is busy (counted in `dropped`); a replay blocks instead, so every
frame of a recording is processed. An exception in any stage (a camera gone, a model error) ends
the run: the consumer gets every frame that was complete before it, then the exception itself.
`close()` (or leaving the `with`) stops and joins the threads; it does not close the source, which
belongs to the caller.

Mirror averaging in the loop is `LOOP_FLIP_AVERAGE`; enrolment keeps its own setting (see there).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from latticelock.device.quality import Quality, QualityConfig, assess
from latticelock.device.sources import Frame

if TYPE_CHECKING:
    from latticelock.models.mtcnn import Face
    from latticelock.models.pipeline import FacePipeline
    from latticelock.models.tracker import TrackerConfig

LOOP_FLIP_AVERAGE = False
"""Whether the loop also embeds each crop's mirror image: no. It doubles FaceNet's work per frame
(`latticelock bench pipeline`: "embed 1 crop + mirror" took 2.2-2.5x "embed 1 crop" in three runs,
raw FaceNet on two crops 1.9-2.1x one) and buys nothing once enrolment has averaged it in.
LFW View 2 (6,000 pairs; margin crops, MTCNN from 40 px; `latticelock eval lfw` on `eval embed` files
with and without `--mirror-average`, the pair's first image playing the enrolled face):

    enrolled / frame                            10-fold accuracy   TAR at FAR 1e-3
    mirror / mirror                             0.9870 +- 0.0052   0.9547
    one pass / one pass                         0.9865 +- 0.0060   0.9470
    mirror (enrolment) / one pass (the loop)    0.9878 +- 0.0052   0.9593

Enrolment keeps FacePipeline's flip averaging. `latticelock eval embed` embeds as the loop does by default
(`--mirror-average`: as enrolment does); the last row is `eval lfw --embeddings MIRRORED --probe-embeddings DEFAULT`."""

# Whole-frame searches look for faces down to this fraction of the quality gate's smallest face:
# MTCNN's boxes vary by a few pixels around a face's size, and a face under the gate's minimum is
# refused anyway, so the large pyramid levels that only find smaller faces are skipped.
SEARCH_MARGIN = 0.75

# How long a blocked stage waits before it checks again whether the run was stopped.
POLL_S = 0.05
# How long close() waits for each thread; a source stuck in a read longer than this is left to its daemon thread.
JOIN_S = 10.0

_END = object()


@dataclass(frozen=True)
class _Failure:
    error: Exception


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline made of one frame."""

    frame: Frame
    face: Face | None
    """The chosen face, or None when no face was found."""
    reason: str
    """"" for a usable frame, else "no face" or "low quality: <first rule broken>"."""
    quality: Quality | None
    """The quality verdict of the chosen face (None with no face)."""
    embedding: np.ndarray | None
    """Unit-norm float32 [512] of the chosen face when it passed the quality gate, else None."""
    track_id: int | None
    """Same id while the same face is tracked across frames; None with no face."""
    faces: int
    """Faces the detection found (a near search around a tracked face sees only its region)."""
    full_frame: bool
    """Whether the whole frame was searched (else only near the tracked face)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each stage that ran ("detect", "gate", "embed") and "latency", from the frame
    entering the pipeline to its result being ready."""
    found: tuple = ()
    """Every face the detection found (for rules about other faces in view, e.g. liveness)."""

    @property
    def usable(self) -> bool:
        return self.embedding is not None


class FramePipeline:
    """Models and settings for frame streams: build once, `warm_up()`, then `run(source)` per attempt."""

    def __init__(
        self,
        pipeline: FacePipeline,
        *,
        quality: QualityConfig | None = None,
        tracking: TrackerConfig | None = None,
        flip_average: bool = LOOP_FLIP_AVERAGE,
    ) -> None:
        from latticelock.models.tracker import TrackerConfig

        self.pipeline = pipeline
        self.quality = quality or QualityConfig()
        tracking = tracking or TrackerConfig()
        if tracking.min_face_px is None:
            tracking = replace(tracking, min_face_px=SEARCH_MARGIN * self.quality.min_face_px)
        self.tracking = tracking
        self.flip_average = flip_average

    def warm_up(self, height: int = 480, width: int = 640) -> None:
        """Run every model once at a height x width frame's shapes (first-call allocations happen now)."""
        self.pipeline.warm_up(height, width, flip_average=self.flip_average)

    def run(self, source: Iterable[Frame], live: bool | None = None) -> FrameStream:
        """Start the threads on `source`; `live` (default: the source's `live` attribute, else False) drops stale frames."""
        live = bool(getattr(source, "live", False)) if live is None else live
        return FrameStream(self, source, live)


class FrameStream:
    """One run of the pipeline over a source: an iterator of FrameResult and a context manager."""

    def __init__(self, frames: FramePipeline, source: Iterable[Frame], live: bool) -> None:
        from latticelock.models.tracker import FaceTracker

        self._frames = frames
        self._source = source
        self._live = live
        self._tracker = FaceTracker(frames.pipeline, frames.tracking)
        self._captured: queue.Queue = queue.Queue(maxsize=1)
        self._detected: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self.dropped = 0
        """Stale frames of a live source replaced by newer ones before detection took them."""
        stages = ((self._capture, self._captured), (self._detect, self._detected), (self._embed, self._results))
        self._threads = [
            threading.Thread(target=self._guard, args=stage, name=f"frames {stage[0].__name__.strip('_')}", daemon=True)
            for stage in stages
        ]
        for thread in self._threads:
            thread.start()

    # -- the consumer's side ---------------------------------------------------------------------

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> FrameResult:
        item = self._get(self._results)
        if item is None or item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop every stage and join the threads (idempotent; the source stays open)."""
        self._stop.set()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(timeout=JOIN_S)

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the stages ------------------------------------------------------------------------------
    # A stage that fails sends the error downstream after what it already sent, and every stage
    # passes it on, so the consumer gets each frame that was complete before the error, then the error.

    def _guard(self, stage: Callable[[], None], downstream: queue.Queue) -> None:
        try:
            stage()
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            self._put(downstream, _Failure(exc))

    def _put(self, q: queue.Queue, item: object) -> bool:
        """Put `item`, waiting for room; False when the run was stopped first."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> object | None:
        """The next item; None when the run was stopped first."""
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _offer_newest(self, item: object) -> None:
        """Live sources: replace a frame detection has not taken yet, so it always gets the newest."""
        while not self._stop.is_set():
            try:
                self._captured.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._captured.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _capture(self) -> None:
        for frame in self._source:
            if self._stop.is_set():
                return
            item = (frame, time.perf_counter())
            if self._live:
                self._offer_newest(item)
            elif not self._put(self._captured, item):
                return
        self._put(self._captured, _END)

    def _detect(self) -> None:
        pipeline, quality = self._frames.pipeline, self._frames.quality
        while (item := self._get(self._captured)) is not None:
            if item is _END or isinstance(item, _Failure):
                self._put(self._detected, item)
                return
            frame, entered = item
            t0 = time.perf_counter()
            tracked = self._tracker.track(frame.image, frame.timestamp)
            t1 = time.perf_counter()
            seconds = {"detect": t1 - t0}
            verdict, crop, reason = None, None, "no face"
            if tracked.face is not None:
                verdict = assess(frame.image, tracked.face, quality)
                if verdict.ok:
                    crop, reason = pipeline.crop(frame.image, tracked.face), ""
                else:
                    reason = f"low quality: {verdict.reasons[0]}"
                seconds["gate"] = time.perf_counter() - t1
            result = FrameResult(frame, tracked.face, reason, verdict, None, tracked.track_id, tracked.faces,
                                 tracked.full_frame, seconds, tracked.found)
            if not self._put(self._detected, (result, crop, entered)):
                return

    def _embed(self) -> None:
        pipeline, flip = self._frames.pipeline, self._frames.flip_average
        while (item := self._get(self._detected)) is not None:
            if item is _END or isinstance(item, _Failure):
                self._put(self._results, item)
                return
            result, crop, entered = item
            seconds, embedding = dict(result.seconds), None
            if crop is not None:
                t0 = time.perf_counter()
                embedding = pipeline.embed_crops(crop[None], flip_average=flip)[0]
                seconds["embed"] = time.perf_counter() - t0
            seconds["latency"] = time.perf_counter() - entered
            if not self._put(self._results, replace(result, embedding=embedding, seconds=seconds)):
                return
