"""`latticelock eval liveness`: the simulated camera, the choice of real turns, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from latticelock.device.liveness import LEFT, RIGHT, LivenessConfig, Observation
from latticelock.tools.cli import main
from latticelock.tools.eval_liveness import (
    ATTACKS, FRAME_SIZE, PRINT_SIDE_PX, PlanePose, Shot, degrade, genuine_attempts, print_homography,
)
from liveness_cases import FRAME, box_around, head_landmarks


def mapped(h: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    out = np.column_stack([np.asarray(points, dtype=float), np.ones(len(points))]) @ h.T
    return out[:, :2] / out[:, 2:]


def test_an_untilted_print_is_centred_and_spans_the_print_side():
    h = print_homography((200, 100), PlanePose(0, 0, 0, 1.0, (0, 0)))
    left, centre, right = mapped(h, [(0, 50), (100, 50), (200, 50)])
    assert centre == pytest.approx([FRAME_SIZE[0] / 2, FRAME_SIZE[1] / 2])
    assert right[0] - left[0] == pytest.approx(PRINT_SIDE_PX)


def test_tilting_the_print_about_its_vertical_axis_foreshortens_it_across():
    flat = mapped(print_homography((200, 200), PlanePose(0, 0, 0, 1.0, (0, 0))), [(0, 100), (200, 100)])
    tilted = mapped(print_homography((200, 200), PlanePose(0, 40, 0, 1.0, (0, 0))), [(0, 100), (200, 100)])
    assert np.ptp(tilted[:, 0]) < 0.85 * np.ptp(flat[:, 0])


@pytest.mark.parametrize("kind", ATTACKS)
def test_degradations_keep_the_frame_an_rgb_uint8_image(kind):
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = degrade(frame, kind, np.random.default_rng(1))
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert kind == "plane" or not np.array_equal(out, frame)


def shot(person: str, yaw: float) -> Shot:
    landmarks = head_landmarks(yaw=yaw)
    return Shot(person, f"{person}_{yaw:+.0f}.jpg", Observation(0.0, FRAME, box_around(landmarks), landmarks, 1, True), yaw)


def test_real_turns_are_paired_with_a_frontal_photo_and_the_way_they_turned():
    shots = {"a": [shot("a", 0), shot("a", 35), shot("a", -12), shot("a", 20)], "b": [shot("b", 15), shot("b", 40)]}
    pairs, triples = genuine_attempts(shots, LivenessConfig(), seed=0)
    # Person b has no frontal photo; a's 20-degree photo is no turn, -12 is not frontal and not a turn.
    assert [(person, challenge) for person, _, challenge in pairs] == [("a", (LEFT,))]
    assert pairs[0][1][1].timestamp > pairs[0][1][0].timestamp
    assert triples == []


def test_a_person_turned_both_ways_gives_a_triple():
    shots = {"a": [shot("a", 2), shot("a", 36), shot("a", -33)]}
    pairs, triples = genuine_attempts(shots, LivenessConfig(), seed=0)
    assert sorted(challenge for _, _, challenge in pairs) == [(LEFT,), (RIGHT,)]
    assert len(triples) == 1 and set(triples[0][2]) == {LEFT, RIGHT}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--photos", "0"], "--photos must be at least 1"),
        (["--people", "-1"], "--people must be at least 1"),
        (["--datasets", "/nonexistent/datasets"], "datasets folder not found"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    assert main(["eval", "liveness", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
