"""Quality gate: size, blur and pose from landmarks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from latticelock.device.errors import ConfigError
from latticelock.device.quality import QualityConfig, assess, pose, sharpness
from latticelock.models.mtcnn import Face

FRONTAL = np.array([[50, 60], [110, 60], [80, 90], [58, 120], [102, 120]], np.float64)


def rotate(points, degrees, centre=(80, 90)):
    t = math.radians(degrees)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (points - centre) @ r.T + centre


def test_frontal_pose():
    roll, yaw, pitch = pose(FRONTAL)
    assert roll == pytest.approx(0) and yaw == pytest.approx(0) and pitch == pytest.approx(0.5)


def test_roll_does_not_look_like_yaw_or_pitch():
    roll, yaw, pitch = pose(rotate(FRONTAL, 30))
    assert roll == pytest.approx(30) and yaw == pytest.approx(0, abs=1e-9) and pitch == pytest.approx(0.5)


def test_turned_and_pitched_heads():
    turned = FRONTAL.copy()
    turned[2, 0] += 30
    assert pose(turned)[1] == pytest.approx(0.5)
    looking_down = FRONTAL.copy()
    looking_down[2, 1] += 25
    assert pose(looking_down)[2] == pytest.approx(55 / 60)


def textured(size=200, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size // 4, size // 4, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)


def test_blur_lowers_sharpness_below_the_gate():
    image = textured()
    box = np.array([20, 20, 180, 180], np.float32)
    blurred = cv2.GaussianBlur(image, (0, 0), 6)
    assert sharpness(image, box) > 100 > QualityConfig().min_sharpness > sharpness(blurred, box)
    assert sharpness(image, np.array([-50, -50, 1, 1], np.float32)) == 0.0


def face(box=(20, 20, 180, 180), score=0.99, landmarks=FRONTAL):
    return Face(np.array(box, np.float32), score, np.array(landmarks, np.float32))


def test_assess_lists_every_broken_rule():
    image = textured()
    assert assess(image, face()).ok
    bad = assess(cv2.GaussianBlur(image, (0, 0), 6), face(box=(20, 20, 50, 50), score=0.5, landmarks=rotate(FRONTAL, 40)))
    assert not bad.ok
    kinds = [r.split(" (")[0] for r in bad.reasons]
    assert kinds == ["low detector score 0.50", "face too small", "blurred", "head tilted"]


def test_degenerate_landmarks_fail_the_gate():
    same = np.tile([[80.0, 80.0]], (5, 1))
    assert not assess(textured(), face(landmarks=same)).ok


def test_bad_config():
    with pytest.raises(ConfigError):
        QualityConfig(pitch_range=(0.8, 0.2))
