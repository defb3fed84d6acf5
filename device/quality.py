"""The quality gate: is this face big, sharp and frontal enough to embed?

Blur is the variance of the Laplacian of the face region, resampled to a fixed size so the figure
does not depend on the face's size in the frame. Pose comes from the five MTCNN landmarks: roll is
the angle of the eye line; yaw is how far the nose sits from the eyes' midpoint, along the eye line,
in units of the eye distance; pitch is where the nose falls between the eye line and the mouth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from latticelock.device.errors import ConfigError

if TYPE_CHECKING:
    from latticelock.models.mtcnn import Face

SHARPNESS_SIZE = 112


@dataclass(frozen=True)
class QualityConfig:
    min_face_px: float = 48.0
    """Smallest face side in pixels (`--min-face`, default 48)."""
    min_sharpness: float = 15.0
    """Smallest variance of the Laplacian on the face resampled to 112 px (`--min-sharpness`, default 15)."""
    max_roll_deg: float = 25.0
    """Largest eye-line tilt in degrees (default 25)."""
    max_yaw: float = 0.35
    """Largest nose offset from the eyes' midpoint, in eye distances (default 0.35, roughly 30 degrees)."""
    pitch_range: tuple[float, float] = (0.2, 0.85)
    """Allowed nose position between the eye line (0) and the mouth (1) (default 0.2..0.85)."""
    min_score: float = 0.9
    """Smallest detector confidence (default 0.9)."""

    def __post_init__(self) -> None:
        lo, hi = self.pitch_range
        if self.min_face_px <= 0 or self.min_sharpness < 0 or not 0 <= lo < hi or self.max_yaw <= 0 or self.max_roll_deg <= 0:
            raise ConfigError(f"invalid quality settings {self}")


@dataclass(frozen=True)
class Quality:
    face_px: float
    sharpness: float
    roll_deg: float
    yaw: float
    pitch: float
    score: float
    reasons: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.reasons


def sharpness(image: np.ndarray, box: np.ndarray) -> float:
    """Variance of the Laplacian of the face region (grey, resampled to 112x112)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(roll in degrees, yaw offset, pitch position) from five landmarks: eyes, nose, mouth corners."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, mouth_l, mouth_r = pts
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return 90.0, math.inf, math.nan
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    unit = eye_vec / eye_dist
    normal = np.array([-unit[1], unit[0]])
    eye_mid = (left_eye + right_eye) / 2
    mouth_mid = (mouth_l + mouth_r) / 2
    yaw = float((nose - eye_mid) @ unit) / eye_dist
    mouth_depth = float((mouth_mid - eye_mid) @ normal)
    pitch = float((nose - eye_mid) @ normal) / mouth_depth if mouth_depth > 1e-6 else math.nan
    return roll, yaw, pitch


def assess(image: np.ndarray, face: "Face", config: QualityConfig | None = None) -> Quality:
    """Measure one detected face (`box`, `score`, `landmarks`) and list every rule it breaks."""
    config = config or QualityConfig()
    x1, y1, x2, y2 = (float(v) for v in face.box)
    face_px = min(x2 - x1, y2 - y1)
    sharp = sharpness(image, face.box)
    roll, yaw, pitch = pose(face.landmarks)
    reasons = []
    if face.score < config.min_score:
        reasons.append(f"low detector score {face.score:.2f}")
    if face_px < config.min_face_px:
        reasons.append(f"face too small ({face_px:.0f} px < {config.min_face_px:.0f})")
    if sharp < config.min_sharpness:
        reasons.append(f"blurred (sharpness {sharp:.1f} < {config.min_sharpness:g})")
    if abs(roll) > config.max_roll_deg:
        reasons.append(f"head tilted ({roll:.0f} deg)")
    if not abs(yaw) <= config.max_yaw:
        reasons.append(f"not facing the camera (yaw {yaw:.2f})")
    lo, hi = config.pitch_range
    if not lo <= pitch <= hi:
        reasons.append(f"head pitched (nose at {pitch:.2f} of eye-to-mouth)")
    return Quality(face_px, sharp, roll, yaw, pitch, float(face.score), tuple(reasons))
