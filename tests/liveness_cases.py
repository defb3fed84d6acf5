"""Synthetic five-point landmarks for the pose and liveness tests.

A generic head (eyes, nose tip, mouth corners) in units of its eye distance, seen by a pinhole
camera; and flat pictures of it, whose landmarks move by the plane map of the print's pose.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from latticelock.tools.eval_liveness import MAX_ROLL_DEG, MAX_SHIFT_PX, MAX_TILT_DEG, SCALE_RANGE, PlanePose, print_homography

# Head coordinates: x to the image's right, y down, z away from the camera; origin between the eyes.
# The nose tip stands 0.42 in front of the eyes and the mouth corners 0.15 behind them, so that the
# nose is 0.5 in front of the eye-mouth plane at its height, as models/pose.py assumes.
HEAD = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.55, -0.42], [-0.4, 1.06, 0.15], [0.4, 1.06, 0.15]])
# Heads turn about the neck, behind the eyes.
PIVOT = np.array([0.0, 0.5, 1.5])
FRAME = (640, 480)
FOCAL = 600.0


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Yaw towards the person's left (the nose to +x), then pitch, then roll clockwise on screen."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def head_landmarks(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, distance: float = 10.0,
                   head: np.ndarray = HEAD, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """[5, 2] landmarks of `head` turned by (yaw, pitch, roll), `distance` eye distances from the camera.

    At the default distance the eyes are 60 px apart in a 640x480 frame, about 63 cm for an adult.
    """
    points = (head - PIVOT) @ rotation(yaw, pitch, roll).T + PIVOT + np.array([shift[0], shift[1], distance])
    return np.column_stack([FOCAL * points[:, 0] / points[:, 2] + FRAME[0] / 2, FOCAL * points[:, 1] / points[:, 2] + FRAME[1] / 2 - 30])


def box_around(landmarks: np.ndarray) -> np.ndarray:
    """An MTCNN-like box: the landmarks' extent grown to cover forehead, cheeks and chin."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    size = max(hi - lo)
    return np.array([lo[0] - 0.5 * size, lo[1] - 0.6 * size, hi[0] + 0.5 * size, hi[1] + 0.5 * size])


PHOTO = (250, 250)


def photo_landmarks(yaw: float = 0.0) -> np.ndarray:
    """Landmarks of a 250x250 photo of the head (eyes about 42 px apart), in the photo's pixels."""
    return head_landmarks(yaw=yaw) - [FRAME[0] / 2 - PHOTO[0] / 2, FRAME[1] / 2 - 30 - PHOTO[1] / 2]


def print_landmarks(photo: np.ndarray, pose: PlanePose) -> np.ndarray:
    """Where the camera sees a photo's landmarks when its print is held in `pose`."""
    h = print_homography(PHOTO, pose)
    mapped = np.column_stack([photo, np.ones(len(photo))]) @ h.T
    return mapped[:, :2] / mapped[:, 2:]


# Every pose of a print within the ranges `latticelock eval liveness` draws from.
plane_poses = st.builds(
    PlanePose,
    st.floats(-MAX_TILT_DEG, MAX_TILT_DEG), st.floats(-MAX_TILT_DEG, MAX_TILT_DEG), st.floats(-MAX_ROLL_DEG, MAX_ROLL_DEG),
    st.floats(*SCALE_RANGE), st.tuples(st.floats(-MAX_SHIFT_PX, MAX_SHIFT_PX), st.floats(-MAX_SHIFT_PX, MAX_SHIFT_PX)),
)
