"""The head-turn challenge inside the unlock loop: a turn the right way unlocks, a still or a wrong turn
does not, and a failed challenge is a counted attempt (on the chip in hardened mode)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device_fakes import PARAMETER_SET, RECIPE_OPTIONS, FakePipeline, frame_image, write_frames
from latticelock.device.clock import ManualClock
from latticelock.device.enrol import EnrolConfig, enrol
from latticelock.device.liveness import Liveness
from latticelock.device.loop import Authenticator
from latticelock.device.sources import SourceOptions, open_source
from latticelock.device.store import FlashStore
from latticelock.firmware_bridge.simulator import embedded
from latticelock.models.mtcnn import Face
from liveness_cases import box_around, head_landmarks

WIDTH, HEIGHT = 640, 480


class TurningPipeline(FakePipeline):
    """The fake pipeline, with the landmarks of a synthetic 3-D head turned by the yaw written in pixel (1, 0)."""

    def faces(self, image, region=None, face_sizes=None):
        if image[0, 0, 2] == 0:
            return []
        landmarks = head_landmarks(yaw=float(image[1, 0, 0]) - 128.0).astype(np.float32)
        return [Face(box_around(landmarks).astype(np.float32), 0.99, landmarks)]


def write_turn(folder, person, yaws, first_seed=100):
    folder.mkdir(parents=True, exist_ok=True)
    for i, yaw in enumerate(yaws):
        # Texture everywhere (the quality gate measures sharpness in the face box), markers in the corner.
        image = np.tile(frame_image(person, first_seed + i), (3, 4, 1))
        image[1, 0] = (128 + yaw, 0, 0)
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def unlock(auth, folder, challenge=("left",), prompts=None):
    liveness = Liveness(prompt=(prompts.append if prompts is not None else None), challenge=challenge)
    with open_source(f"dir://{folder}", SourceOptions(fps=10), ManualClock()) as source:
        return auth.unlock(source, liveness=liveness)


@pytest.fixture()
def plain(tmp_path):
    store = FlashStore(tmp_path / "store", mode="plain")
    with open_source(f"dir://{write_frames(tmp_path / 'enrol', 1, range(5))}") as source:
        enrol("alice", source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=5), recipe_options=RECIPE_OPTIONS)
    return Authenticator(store, TurningPipeline(), recipe_options=RECIPE_OPTIONS)


def test_a_turn_the_asked_way_unlocks(tmp_path, plain):
    prompts = []
    result = unlock(plain, write_turn(tmp_path / "turn", 1, [0, 0, 15, 35, 0, 0]), ("left",), prompts)
    assert result.accepted and result.user == "alice"
    assert [str(p) for p in prompts] == ["Turn your head to your left"]
    assert any(f.outcome.startswith("liveness passed (left)") for f in result.frames)


@pytest.mark.parametrize("yaws, challenge, why", [
    ([0, 0, 0, 0, 0, 0, 0, 0], ("left",), "source ended"),       # a still picture never turns
    ([0, 0, 15, 35, 0], ("right",), "wrong"),                   # the recording turns the other way
])
def test_no_turn_or_a_wrong_turn_is_a_counted_failure(tmp_path, plain, yaws, challenge, why):
    result = unlock(plain, write_turn(tmp_path / "still", 1, yaws), challenge)
    assert not result.accepted and result.verdict.reason.startswith("liveness:") and why in result.verdict.reason
    assert plain.lockout.state().failures == 1


def test_a_failed_challenge_counts_on_the_chip(tmp_path):
    store = FlashStore(tmp_path / "store")
    with embedded(tmp_path / "mcu", provisioning=True, passcode_iterations=1000) as (mcu, _):
        mcu.set_passcode("246810")
        with open_source(f"dir://{write_frames(tmp_path / 'enrol', 1, range(5))}") as source:
            enrol("alice", source, FakePipeline(), store, PARAMETER_SET, EnrolConfig(frames=5), mcu=mcu,
                  recipe_options=RECIPE_OPTIONS)
        auth = Authenticator(store, TurningPipeline(), mcu=mcu, recipe_options=RECIPE_OPTIONS)
        assert not unlock(auth, write_turn(tmp_path / "wrong", 1, [0, 0, 15, 35, 0]), ("right",)).accepted
        assert mcu.status()["failures"] == 1
        result = unlock(auth, write_turn(tmp_path / "right", 1, [0, 0, 15, 35, 0, 0], first_seed=200), ("left",))
        assert result.accepted and result.proof is not None and mcu.status()["failures"] == 0
