"""Head yaw from the five MTCNN landmarks (eyes, nose tip, mouth corners), and how the nose moved
against the rest of the face between two frames, in plain numpy.

The geometry. Take a generic head under a weak-perspective camera (the face is small against its
distance from the camera). Its eyes and mouth corners lie close to one plane, symmetric about the
face's vertical midline; the nose tip stands in front of that plane by a depth `d` (in units of the
distance between the eyes). In the image, the midline is the line through the eyes' midpoint and
the mouth's midpoint: both are the images of points of the midline, whatever the pose. Turning the
head by a yaw angle `theta` about its vertical axis moves the nose tip sideways off that line by
`d * sin(theta)` while the distance between the eyes shrinks to `cos(theta)`, so

    offset / eye_distance = d * tan(theta)    and    theta = atan(offset / (eye_distance * d)),

where `offset` is the nose's signed distance from the midline, measured across the face. Measuring
across the face's own axes makes the figure independent of roll (a tilted head) and of the face's
size in the frame; pitch moves the nose along the midline, not across it, and so barely changes it.
At arm's length perspective adds to it: a 30-degree turn 10 eye distances (about 63 cm) from the
camera reads about 36 degrees (tests/test_pose.py).

`d` was fitted on real faces rather than taken from anthropometry: a turned head also foreshortens
the eye distance against the eye-to-mouth height, `height / eye_distance = h0 / cos(theta)`, so on
800 LFW images (40 people, the first with 10 or more photos) the least-squares fit of
`(height / eye_distance)^2 = h0^2 * (1 + (offset / (eye_distance * d))^2)` gave h0 = 1.06 and
d = 0.50. The estimate is generic (one head shape for everyone, landmark noise of a few per cent of
the eye distance), good for "which way, and roughly how far": near frontal to about 45 degrees.

Between two frames of one face (`motion`), four of the five points, the eyes and the mouth corners,
lie close to one plane, so the map that takes them from one frame to the other is, to landmark
noise, a plane projective map: the homography that four point pairs determine exactly. Were the
nose in that plane too (a printed photo), the same map would carry it to its new place; on a head
that turned, the nose stands out of the plane and lands off the prediction by about
`d * (sin(theta1) - sin(theta0))` across the face: the parallax.

Sign: yaw (and parallax) is positive when the person turns to their own left, which moves the nose
towards the image's right (+x) in an unmirrored camera frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latticelock.models.errors import ModelsError

# Rows of MTCNN's [5, 2] landmark array; left and right are as seen in the image.
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)

NOSE_DEPTH = 0.50
"""Nose tip in front of the eye-mouth plane, in eye distances (fitted on 800 LFW images, see above)."""

PLANE_POINTS = (LEFT_EYE, RIGHT_EYE, MOUTH_LEFT, MOUTH_RIGHT)

# Below this many pixels between eyes, or between eyes and mouth, the landmarks carry no pose.
MIN_EXTENT_PX = 1e-3


@dataclass(frozen=True)
class FaceAxes:
    """A face's own axes in the image, from its landmarks."""

    origin: np.ndarray
    """The eyes' midpoint, float64 (x, y)."""
    down: np.ndarray
    """Unit vector along the midline, from the eyes' midpoint towards the mouth's midpoint."""
    across: np.ndarray
    """Unit vector perpendicular to the midline, towards the person's left (image +x when upright)."""
    eye_distance: float
    """Pixels between the two eyes."""
    height: float
    """Pixels from the eyes' midpoint to the mouth's midpoint (unchanged by yaw)."""


def check_landmarks(landmarks: object) -> np.ndarray:
    """`landmarks` as float64 [5, 2], or ModelsError if it is not five finite (x, y) points."""
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelsError(f"landmarks must be five (x, y) points, got {type(landmarks).__name__}") from None
    if points.shape != (5, 2):
        raise ModelsError(f"landmarks must have shape [5, 2], got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ModelsError("landmarks contain NaN or infinite coordinates")
    return points


def face_axes(landmarks: np.ndarray) -> FaceAxes:
    """The face's midline frame; ModelsError for malformed or degenerate landmarks (eyes or eyes and mouth coincide)."""
    points = check_landmarks(landmarks)
    origin = (points[LEFT_EYE] + points[RIGHT_EYE]) / 2
    midline = (points[MOUTH_LEFT] + points[MOUTH_RIGHT]) / 2 - origin
    eye_distance = float(np.hypot(*(points[RIGHT_EYE] - points[LEFT_EYE])))
    height = float(np.hypot(*midline))
    if eye_distance < MIN_EXTENT_PX or height < MIN_EXTENT_PX:
        raise ModelsError("degenerate landmarks: the eyes, or the eyes and the mouth, coincide")
    down = midline / height
    # Image y points down, so turning `down` a quarter turn this way points to the image's right
    # on an upright face: the person's own left.
    across = np.array([down[1], -down[0]])
    return FaceAxes(origin, down, across, eye_distance, height)


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Head yaw in degrees, positive towards the person's left (see the module docstring); ModelsError for bad landmarks."""
    points = check_landmarks(landmarks)
    axes = face_axes(points)
    offset = float((points[NOSE] - axes.origin) @ axes.across)
    return math.degrees(math.atan(offset / (axes.eye_distance * NOSE_DEPTH)))


@dataclass(frozen=True)
class Motion:
    """How a face moved from one frame to another (see the module docstring)."""

    yaw_change: float
    """Degrees, positive towards the person's left."""
    parallax: float
    """Nose off the plane map's prediction, across the face (signed like yaw), in face heights of the later frame."""


def _conditioning(points: np.ndarray) -> np.ndarray:
    """Hartley's normalisation: centroid to the origin, mean distance sqrt(2); keeps the DLT well conditioned."""
    centre = points.mean(axis=0)
    spread = float(np.mean(np.hypot(*(points - centre).T)))
    scale = math.sqrt(2) / max(spread, MIN_EXTENT_PX)
    return np.array([[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]])


def plane_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking four points `src` [4, 2] exactly onto `dst` [4, 2] (normalised DLT).

    ModelsError when three of the points are (nearly) collinear in either frame: no unique map exists.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    t_src, t_dst = _conditioning(src), _conditioning(dst)
    a = (t_src @ np.column_stack([src, np.ones(4)]).T).T
    b = (t_dst @ np.column_stack([dst, np.ones(4)]).T).T
    rows = []
    for (x, y, w), (u, v, z) in zip(a, b, strict=True):
        rows.append([0, 0, 0, -z * x, -z * y, -z * w, v * x, v * y, v * w])
        rows.append([z * x, z * y, z * w, 0, 0, 0, -u * x, -u * y, -u * w])
    _, singular, vt = np.linalg.svd(np.array(rows))
    # Eight independent equations leave a one-dimensional null space; a second tiny singular value
    # means collinear points and a family of maps.
    if singular[-1] < 1e-9 * singular[0]:
        raise ModelsError("degenerate landmarks: three of the eyes and mouth corners are collinear")
    h = np.linalg.solve(t_dst, vt[-1].reshape(3, 3)) @ t_src
    return h / np.linalg.norm(h)


def motion(before: np.ndarray, after: np.ndarray) -> Motion:
    """Yaw change and nose parallax from landmarks `before` to `after` (each [5, 2]); ModelsError for bad landmarks."""
    before, after = check_landmarks(before), check_landmarks(after)
    axes = face_axes(after)
    plane = list(PLANE_POINTS)
    mapped = plane_homography(before[plane], after[plane]) @ np.array([*before[NOSE], 1.0])
    if abs(mapped[2]) < 1e-12:
        raise ModelsError("degenerate landmarks: the plane map sends the nose to infinity")
    parallax = float((after[NOSE] - mapped[:2] / mapped[2]) @ axes.across) / axes.height
    return Motion(yaw_change=yaw_degrees(after) - yaw_degrees(before), parallax=parallax)
