"""The head-turn liveness check (device/liveness.py) on synthetic landmarks, and on real faces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import latticelock.device.liveness as liveness
from latticelock.device.clock import ManualClock
from latticelock.device.errors import ConfigError, DeviceError
from latticelock.device.liveness import (
    LEFT, RIGHT, LivenessConfig, Observation, Prompt, TurnChallenge, draw_challenge,
)
from latticelock.device.policy import Decision
from latticelock.models.mtcnn import Face
from latticelock.models.pose import motion
from latticelock.tools.eval_liveness import Camera, PlanePose, attack_accepted, cut_print, render
from liveness_cases import FRAME, box_around, head_landmarks, photo_landmarks, plane_poses, print_landmarks

# A binary fraction, so that the window arithmetic is exact.
FRAME_S = 0.25


def seen(landmarks: np.ndarray, clock: ManualClock, *, track: int = 1, matched: bool = True, others=()) -> Observation:
    """One frame showing a face with these landmarks, `FRAME_S` after the previous one."""
    clock.advance(FRAME_S)
    return Observation(clock.now(), FRAME, box_around(landmarks), landmarks, track, matched, tuple(others))


def empty(clock: ManualClock) -> Observation:
    clock.advance(FRAME_S)
    return Observation(clock.now(), FRAME)


def run(frames, check: TurnChallenge):
    """Feed frames until a decision; `finish` if they run out."""
    for obs in frames:
        verdict = check.observe(obs)
        if verdict.decision is not Decision.PENDING:
            return verdict
    return check.finish()


def turn_frames(clock: ManualClock, yaws, **kwargs):
    return [seen(head_landmarks(yaw=y, **kwargs), clock) for y in yaws]


# Real turns.

@settings(max_examples=40, deadline=None)
@given(direction=st.sampled_from([LEFT, RIGHT]), turn=st.floats(30, 45), pitch=st.floats(-20, 20), roll=st.floats(-10, 10))
def test_a_real_head_turning_the_challenged_way_is_accepted(direction, turn, pitch, roll):
    # Pitch stands for a camera up to 20 degrees above or below eye level; roll for a tilted head.
    clock = ManualClock()
    sign = 1 if direction == LEFT else -1
    yaws = [0, sign * 8, sign * 16, sign * 24, sign * turn]
    frames = [seen(head_landmarks(yaw=y, pitch=pitch, roll=roll), clock) for y in yaws]
    verdict = run(frames, TurnChallenge(challenge=(direction,)))
    assert verdict.decision is Decision.ACCEPT, verdict.reason
    assert verdict.steps_done == 1 and verdict.motion.parallax * sign > 0


@pytest.mark.parametrize("challenge", [(LEFT, RIGHT), (RIGHT, LEFT)])
def test_two_steps_turn_one_way_then_the_other(challenge):
    clock = ManualClock()
    first = 1 if challenge[0] == LEFT else -1
    yaws = [0, first * 20, first * 35, first * 10, -first * 10, -first * 35]
    verdict = run(turn_frames(clock, yaws), TurnChallenge(config=LivenessConfig(steps=2), challenge=challenge))
    assert verdict.decision is Decision.ACCEPT, verdict.reason
    assert verdict.steps_done == 2


def test_the_second_step_is_not_passed_by_the_first_turn_alone():
    clock = ManualClock()
    verdict = run(turn_frames(clock, [0, 20, 35, 35]), TurnChallenge(config=LivenessConfig(steps=2), challenge=(LEFT, RIGHT)))
    assert verdict.decision is Decision.REJECT and verdict.rule == liveness.SOURCE_ENDED and verdict.steps_done == 1


def test_turning_the_wrong_way_fails():
    clock = ManualClock()
    verdict = run(turn_frames(clock, [0, -15, -35]), TurnChallenge(challenge=(LEFT,)))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.WRONG_WAY)


def test_a_turn_without_enough_parallax_is_called_flat():
    clock = ManualClock()
    demanding = LivenessConfig(min_parallax=0.5)
    verdict = run(turn_frames(clock, [0, 40]), TurnChallenge(config=demanding, challenge=(LEFT,)))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.FLAT)


def test_a_small_turn_never_decides():
    clock = ManualClock()
    verdict = run(turn_frames(clock, [0, 10, 20, 15, 5]), TurnChallenge(challenge=(LEFT,)))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.SOURCE_ENDED)


# Flat pictures.

def show_print(photo_yaw: float, poses: list[PlanePose], check: TurnChallenge):
    """The check's verdict on a print of a photo (its face turned by `photo_yaw`) held in each pose in turn."""
    clock = ManualClock()
    photo = photo_landmarks(photo_yaw)
    return run([seen(print_landmarks(photo, pose), clock) for pose in poses], check)


held_poses = st.builds(PlanePose, st.floats(-10, 10), st.floats(-10, 10), st.floats(-5, 5), st.just(1.0), st.just((0.0, 0.0)))


@settings(max_examples=150, deadline=None)
@given(held=held_poses, moves=st.lists(plane_poses, min_size=1, max_size=5), photo_yaw=st.floats(-8, 8),
       direction=st.sampled_from([LEFT, RIGHT]))
def test_a_print_moved_by_any_plane_map_is_never_accepted(held, moves, photo_yaw, direction):
    assert show_print(photo_yaw, [held, *moves], TurnChallenge(challenge=(direction,))).decision is Decision.REJECT


# With the pose threshold at one degree, any yaw a print's own geometry fakes passes it: the parallax
# test alone must then keep every print out.
NO_POSE_TEST = LivenessConfig(turn_deg=1.0, baseline_max_yaw_deg=0.9)


@settings(max_examples=150, deadline=None)
@given(held=held_poses, moves=st.lists(plane_poses, min_size=1, max_size=5), photo_yaw=st.floats(-0.5, 0.5),
       direction=st.sampled_from([LEFT, RIGHT]))
def test_the_parallax_test_alone_keeps_prints_out(held, moves, photo_yaw, direction):
    check = TurnChallenge(config=NO_POSE_TEST, challenge=(direction,))
    assert show_print(photo_yaw, [held, *moves], check).decision is Decision.REJECT


def test_a_print_whose_geometry_fakes_a_turn_is_called_flat():
    # A steep slanted tilt close to the camera shifts the midline against the nose by about 1.8 degrees of yaw.
    clock = ManualClock()
    photo = photo_landmarks()
    steep = PlanePose(tilt_x=-25.6, tilt_y=-44.5, roll=-29.0, scale=1.3, shift=(65.3, 56.7))
    frames = [seen(print_landmarks(photo, PlanePose(0, 0, 0, 1.0, (0, 0))), clock), seen(print_landmarks(photo, steep), clock)]
    faked = motion(frames[0].landmarks, frames[1].landmarks).yaw_change
    assert abs(faked) > NO_POSE_TEST.turn_deg
    verdict = run(frames, TurnChallenge(config=NO_POSE_TEST, challenge=(LEFT if faked > 0 else RIGHT,)))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.FLAT)


# Bad input: each fails the attempt with its rule, never an exception.

def started(clock: ManualClock, check: TurnChallenge) -> TurnChallenge:
    assert check.observe(seen(head_landmarks(), clock)).decision is Decision.PENDING
    assert check.challenge
    return check


@pytest.mark.parametrize(
    "frame, rule",
    [
        (lambda clock: empty(clock), liveness.NO_FACE),
        (lambda clock: seen(head_landmarks(yaw=5), clock, others=[box_around(head_landmarks(shift=(3, 0)))]), liveness.TWO_FACES),
        (lambda clock: seen(head_landmarks(yaw=5), clock, track=2), liveness.TRACK),
        (lambda clock: seen(head_landmarks(yaw=5, shift=(-5.2, 0)), clock), liveness.BORDER),
        (lambda clock: seen(head_landmarks(yaw=5, shift=(-4.6, 0)), clock), liveness.OUTSIDE),
        (lambda clock: seen(np.full((5, 2), 300.0), clock), liveness.LANDMARKS),
    ],
)
def test_a_bad_frame_during_the_challenge_fails_the_attempt(frame, rule):
    clock = ManualClock()
    check = started(clock, TurnChallenge(challenge=(LEFT,)))
    verdict = check.observe(frame(clock))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, rule), verdict.reason
    assert "during the challenge" in verdict.reason


def test_a_small_face_far_behind_the_user_is_not_a_second_face():
    clock = ManualClock()
    check = started(clock, TurnChallenge(challenge=(LEFT,)))
    far = box_around(head_landmarks(distance=40.0, shift=(30, 0)))
    assert check.observe(seen(head_landmarks(yaw=5), clock, others=[far])).decision is Decision.PENDING


def test_the_source_ending_mid_challenge_fails():
    clock = ManualClock()
    verdict = started(clock, TurnChallenge(challenge=(LEFT,))).finish()
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.SOURCE_ENDED)


def test_no_turn_within_the_window_fails_on_the_injected_clock():
    clock = ManualClock()
    check = started(clock, TurnChallenge(challenge=(LEFT,)))
    clock.advance(liveness.WINDOW_S - FRAME_S)
    assert check.observe(seen(head_landmarks(yaw=5), clock)).decision is Decision.PENDING
    verdict = check.observe(seen(head_landmarks(yaw=5), clock))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.TIMEOUT)


def test_timestamps_going_backwards_fail():
    clock = ManualClock(start=100.0)
    check = started(clock, TurnChallenge(challenge=(LEFT,)))
    late = seen(head_landmarks(yaw=5), clock)
    verdict = check.observe(Observation(late.timestamp - 1.0, FRAME, late.box, late.landmarks, 1, True))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.CLOCK)


@pytest.mark.parametrize(
    "frame, waiting_for",
    [
        (lambda clock: empty(clock), "no face"),
        (lambda clock: seen(head_landmarks(), clock, matched=False), "does not match"),
        (lambda clock: seen(head_landmarks(yaw=25), clock), "not facing the camera"),
        (lambda clock: seen(head_landmarks(shift=(-5.2, 0)), clock), "border"),
    ],
)
def test_no_baseline_waits_then_fails_with_the_last_reason(frame, waiting_for):
    clock = ManualClock()
    prompts = []
    check = TurnChallenge(prompt=prompts.append)
    for _ in range(int(liveness.WINDOW_S / FRAME_S) + 1):
        assert check.observe(frame(clock)).decision is Decision.PENDING
    verdict = check.observe(frame(clock))
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.NO_BASELINE)
    assert waiting_for in verdict.reason
    assert prompts == [] and verdict.challenge == ()


def test_finish_before_a_baseline_says_so():
    verdict = TurnChallenge().finish()
    assert (verdict.decision, verdict.rule) == (Decision.REJECT, liveness.NO_BASELINE)


def test_the_verdict_is_final():
    clock = ManualClock()
    check = TurnChallenge(challenge=(LEFT,))
    decided = run(turn_frames(clock, [0, 35]), check)
    assert decided.decision is Decision.ACCEPT
    assert check.observe(empty(clock)) == decided
    assert check.finish() == decided


# The challenge and its prompt.

def test_the_prompt_comes_once_per_step_after_the_baseline():
    clock = ManualClock()
    prompts: list[Prompt] = []
    check = TurnChallenge(prompt=prompts.append, config=LivenessConfig(steps=2), challenge=(RIGHT, LEFT))
    check.observe(seen(head_landmarks(yaw=25), clock))
    assert prompts == []
    check.observe(seen(head_landmarks(), clock))
    assert [str(p) for p in prompts] == ["Turn your head to your right (1 of 2)"]
    run(turn_frames(clock, [-35]), check)
    assert [(p.direction, p.step, p.steps) for p in prompts] == [(RIGHT, 1, 2), (LEFT, 2, 2)]


def test_a_one_step_prompt_is_a_plain_sentence():
    assert str(Prompt(LEFT, 1, 1)) == "Turn your head to your left"


def test_the_challenge_is_drawn_with_secrets(monkeypatch):
    calls = []

    def choice(options):
        calls.append(options)
        return options[-1]

    monkeypatch.setattr(liveness.secrets, "choice", choice)
    assert draw_challenge(1) == (RIGHT,)
    assert draw_challenge(2) == (RIGHT, LEFT)
    assert calls == [liveness.DIRECTIONS, liveness.DIRECTIONS]
    clock = ManualClock()
    check = started(clock, TurnChallenge())
    assert check.challenge == (RIGHT,) and len(calls) == 3


def test_both_directions_come_up():
    # 64 draws all alike would happen once in 2**63 runs.
    assert set(draw_challenge(1)[0] for _ in range(64)) == {LEFT, RIGHT}


# Configuration and observations.

@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"turn_deg": 0}, "turn_deg"),
        ({"window_s": -1}, "window_s"),
        ({"steps": 3}, "steps"),
        ({"baseline_max_yaw_deg": 40}, "below turn_deg"),
    ],
)
def test_bad_settings_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LivenessConfig(**kwargs)


@pytest.mark.parametrize("steps, challenge", [(1, ("up",)), (2, (LEFT, LEFT)), (1, (LEFT, RIGHT))])
def test_a_fixed_challenge_must_fit_the_steps(steps, challenge):
    with pytest.raises(ConfigError, match="challenge"):
        TurnChallenge(config=LivenessConfig(steps=steps), challenge=challenge)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frame_size": (0, 480)}, "frame_size"),
        ({"frame_size": (640,)}, "frame_size"),
        ({"box": np.zeros(4)}, "both a box and landmarks"),
        ({"box": np.zeros(3), "landmarks": np.zeros((5, 2))}, "box"),
        ({"box": np.zeros(4), "landmarks": np.zeros((4, 2))}, "landmarks"),
        ({"other_boxes": (np.zeros(2),)}, "other_boxes"),
    ],
)
def test_malformed_observations_raise_device_error(kwargs, message):
    with pytest.raises(DeviceError, match=message):
        Observation(**{"timestamp": 0.0, "frame_size": FRAME, **kwargs})


def test_observation_from_the_pipelines_faces():
    mine = Face(box=box_around(head_landmarks()).astype(np.float32), score=0.99, landmarks=head_landmarks().astype(np.float32))
    other = Face(box=np.array([0, 0, 10, 10], dtype=np.float32), score=0.95, landmarks=np.zeros((5, 2), dtype=np.float32))
    doubtful = Face(box=np.array([0, 0, 90, 90], dtype=np.float32), score=0.8, landmarks=np.zeros((5, 2), dtype=np.float32))
    obs = Observation.from_faces(1.5, FRAME, [other, mine, doubtful], mine, track=7, matched=True)
    assert obs.box is mine.box and obs.landmarks is mine.landmarks and obs.track == 7 and obs.matched
    assert len(obs.other_boxes) == 1 and obs.other_boxes[0] is other.box
    none = Observation.from_faces(1.5, FRAME, [], None, track=None, matched=False)
    assert none.box is None and none.other_boxes == ()


# Real faces through the real detector.

@pytest.fixture(scope="module")
def camera() -> Camera:
    from latticelock.models.mtcnn import Detector

    return Camera(Detector(threads=1, min_face_size=40))


@pytest.mark.integration
def test_a_real_turn_passes_both_ways_and_a_print_of_it_does_not(datasets, camera):
    from latticelock.models.pipeline import load_image

    folder = datasets / "lfw" / "David_Beckham"
    frontal, turned = (load_image(folder / f"David_Beckham_{i:04d}.jpg") for i in (1, 24))
    # Photo 24 shows him turned to his left by about 45 degrees; mirrored, the same turn goes right.
    pair = [camera.observe(frontal, 0.0), camera.observe(turned, 0.5)]
    verdict = run(pair, TurnChallenge(challenge=(LEFT,)))
    assert verdict.decision is Decision.ACCEPT, verdict.reason
    mirrored = [camera.observe(np.ascontiguousarray(image[:, ::-1]), t) for image, t in ((frontal, 0.0), (turned, 0.5))]
    verdict = run(mirrored, TurnChallenge(challenge=(RIGHT,)))
    assert verdict.decision is Decision.ACCEPT, verdict.reason

    source = cut_print("David_Beckham_0001", frontal, pair[0].box)
    poses = [PlanePose(0, 0, 0, 1.0, (0, 0)), PlanePose(0, 40, 0, 1.0, (0, 0)), PlanePose(0, -40, 0, 1.0, (0, 0)),
             PlanePose(30, 30, 15, 1.2, (20, 0)), PlanePose(-30, 30, -15, 0.8, (0, 20))]
    frames = [camera.observe(render(source, pose, (120, 120, 120)), 0.25 * i) for i, pose in enumerate(poses)]
    assert all(f.box is not None for f in frames)
    accepted, rule = attack_accepted(frames, LivenessConfig())
    assert not accepted and rule
