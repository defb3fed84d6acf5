"""Face tracking for a frame stream: search the whole frame only until a face is found, then near it.

A whole-frame MTCNN search of a 640x480 frame runs P-Net over up to ten pyramid levels; once the
face is known, its next position is within a face width or so and its size changes little, so P-Net
runs only in a region around the last box and only at the levels whose window is near that size
(the small levels). Those levels are the whole-frame search's own, so on the same frame the near
search returns the box a whole-frame search returns. The whole frame is searched again:
- until a face is found, and on the frame where the near search misses (the face moved too far, or left);
- every `full_every_frames` frames or `full_every_s` seconds, whichever comes first, so a second face
  that enters the frame (a photo held up beside the user, say) is seen within that bound and, if the
  choice rule prefers it, replaces the tracked face under a new track id.

Track ids: a face that overlaps the last tracked box (IoU >= `min_iou`) keeps its id; a face elsewhere
(a jump, another face chosen) or after a frame with no face gets a new id. Ids count up from 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from latticelock.models.errors import ModelsError

if TYPE_CHECKING:
    from latticelock.models.mtcnn import Face
    from latticelock.models.pipeline import FacePipeline


@dataclass(frozen=True)
class TrackerConfig:
    full_every_frames: int = 10
    """Search the whole frame at least every this many frames while tracking (default 10)."""
    full_every_s: float = 0.5
    """...and at least every this many seconds of frame time (default 0.5)."""
    region_scale: float = 2.5
    """Side of the near-search region in units of the last face's side, centred on it (default 2.5)."""
    size_range: tuple[float, float] = (0.3, 3.0)
    """P-Net window sides searched near the last face, as multiples of its side (default 0.3 to 3).
    Narrower ranges move the box: on 70 real photos, 0.5 to 2 gave another box than a whole-frame
    search for 13 faces (by up to 7% of the side), 0.3 to 1.5 for one, 0.3 to 2.5 or wider for none."""
    min_iou: float = 0.3
    """Smallest overlap (IoU) with the last tracked box for a face to keep its track id (default 0.3)."""
    min_face_px: float | None = None
    """Smallest face side searched for anywhere (None: the detector's own minimum); skipping the small
    faces a quality gate would refuse anyway skips the largest, costliest pyramid levels."""

    def __post_init__(self) -> None:
        lo, hi = self.size_range
        if self.full_every_frames < 1 or not self.full_every_s > 0:
            raise ModelsError(f"full-frame checks need full_every_frames >= 1 and full_every_s > 0, got {self}")
        if not self.region_scale >= 1 or not 0 < lo <= 1 <= hi or not 0 < self.min_iou <= 1:
            raise ModelsError(f"invalid tracker settings {self}")
        if self.min_face_px is not None and not self.min_face_px > 0:
            raise ModelsError(f"min_face_px must be positive, got {self.min_face_px}")


@dataclass(frozen=True)
class Search:
    """Where to look in the next frame: everywhere (`region` None) or near the tracked face."""

    region: tuple[float, float, float, float] | None = None
    face_sizes: tuple[float, float] | None = None
    """(smallest, largest) face side searched for, in pixels; None: every size."""

    @property
    def full_frame(self) -> bool:
        return self.region is None


@dataclass(frozen=True)
class Tracked:
    """What tracking found in one frame."""

    face: Face | None
    """The chosen face, or None when there is none."""
    faces: int
    """How many faces the search that chose it found (a near search only sees its region)."""
    track_id: int | None
    """The face's track id; None with no face."""
    full_frame: bool
    """Whether the whole frame was searched for this result."""
    found: tuple = ()
    """Every face that search found (the chosen one among them)."""


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class Tracker:
    """The schedule and the ids, without models: `plan` says where to search, `update` takes what was found."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._box: np.ndarray | None = None
        self._track_id: int | None = None
        self._last_id = 0
        self._frames_since_full = 0
        self._last_full_time = 0.0

    def whole_frame(self) -> Search:
        """A search of the whole frame, for faces of at least `min_face_px` when that is set."""
        c = self.config
        return Search(face_sizes=None if c.min_face_px is None else (c.min_face_px, math.inf))

    def plan(self, timestamp: float) -> Search:
        """The search for the frame stamped `timestamp`."""
        c = self.config
        due = self._frames_since_full + 1 >= c.full_every_frames or timestamp - self._last_full_time >= c.full_every_s
        if self._box is None or due:
            return self.whole_frame()
        x1, y1, x2, y2 = (float(v) for v in self._box)
        side = max(x2 - x1, y2 - y1)
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, c.region_scale * side / 2
        smallest = c.min_face_px or 0.0
        sizes = (max(smallest, c.size_range[0] * side), max(smallest, c.size_range[1] * side))
        return Search((cx - half, cy - half, cx + half, cy + half), sizes)

    def follows(self, face: Face) -> bool:
        """Whether `face` continues the current track."""
        return self._box is not None and iou(self._box, face.box) >= self.config.min_iou

    def continuation(self, faces: list[Face]) -> Face | None:
        """The face of `faces` that overlaps the tracked box most, if it overlaps enough to continue the track."""
        if self._box is None or not faces:
            return None
        best = max(faces, key=lambda f: iou(self._box, f.box))
        return best if self.follows(best) else None

    def update(self, face: Face | None, timestamp: float, full_frame: bool) -> int | None:
        """Record the frame's chosen face (None: no face) and return its track id."""
        if full_frame:
            self._frames_since_full = 0
            self._last_full_time = timestamp
        else:
            self._frames_since_full += 1
        if face is None:
            self._box = self._track_id = None
            return None
        if not self.follows(face):
            self._last_id += 1
            self._track_id = self._last_id
        self._box = np.asarray(face.box, dtype=np.float64)
        return self._track_id


class FaceTracker:
    """A FacePipeline's detector driven by a Tracker: `track(image, timestamp)` per frame, in stream order."""

    def __init__(self, pipeline: FacePipeline, config: TrackerConfig | None = None) -> None:
        self.pipeline = pipeline
        self.tracker = Tracker(config)

    def track(self, image: np.ndarray, timestamp: float) -> Tracked:
        """The chosen face of this frame and its track id (near search first when tracking, whole frame otherwise)."""
        search = self.tracker.plan(timestamp)
        if not search.full_frame:
            faces = self.pipeline.faces(image, region=search.region, face_sizes=search.face_sizes)
            face = self.tracker.continuation(faces)
            if face is not None:
                return Tracked(face, len(faces), self.tracker.update(face, timestamp, False), False, tuple(faces))
        # No track yet, a scheduled check, or the near search lost the face: search everything.
        faces = self.pipeline.faces(image, face_sizes=self.tracker.whole_frame().face_sizes)
        face = self.pipeline.choose(faces, image.shape)
        return Tracked(face, len(faces), self.tracker.update(face, timestamp, True), True, tuple(faces))
