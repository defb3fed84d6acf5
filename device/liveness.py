"""Active liveness: a challenge-response head turn that a flat picture held to the camera should fail.

Intended use, one attempt, frame by frame (the unlock loop drives it after the face matched):

    check = TurnChallenge(prompt=print)            # or LivenessConfig(steps=2) for left-then-right
    for frame in source:
        faces = pipeline.faces(frame.image)
        chosen = pipeline.choose(faces, frame.image.shape)
        verdict = check.observe(Observation.from_faces(
            frame.timestamp, (width, height), faces, chosen, track=tracker_id, matched=user_matched))
        if verdict.decision is not Decision.PENDING:
            break
    else:
        verdict = check.finish()                   # the source ended mid-challenge: a rejection

The caller supplies the face-track id (for instance a new id whenever the chosen face's box does
not overlap the previous frame's): every frame after the first must carry the same one, so faces or
photos cannot be swapped mid-attempt. `matched` says whether the frame's face matched the user; it
is required of the first frame only, because a turned face may fall outside the matcher's range.

The protocol. The check waits (up to `window_s`) for a baseline: one face, matching the user,
roughly frontal, fully inside the frame. It then draws a direction with `secrets` (left or right;
with `steps=2` the other side follows) and announces it through `prompt`, which receives a
`Prompt` whose `str()` is the sentence to show. The first frame whose yaw, relative to the
baseline, passes `turn_deg` either way decides the step: it passes only if it went the challenged
way and its nose parallax from the baseline passes `min_parallax` the same way, else the attempt
fails with the reason. One decisive frame per step means an attacker gets one try per attempt, not
one per frame. No face, a second face, another track, landmarks at the border, a face partly
outside the frame, running out of time or of frames: each fails the attempt with its rule and
reason, never an exception.

Why these two tests (the geometry is in `latticelock.models.pose`). A flat photo moved, tilted or
rotated in front of the camera moves all its points by one plane projective map. The eyes and mouth
corners are close to coplanar on a head too, so the homography that these four points determine
between the baseline and the decisive frame predicts where the nose would be were it in the plane;
a head that turned leaves the nose off that prediction (parallax, about 0.5 * (sin(yaw1) -
sin(yaw0)) face heights), a print leaves it where the plane puts it. With exact landmarks the
parallax of a print is zero for every plane pose (`tests/test_pose.py`), and a print's own geometry
fakes at most 1.8 degrees of yaw within +-45 degrees of tilt (20,000 random poses).

MTCNN's landmarks, though, are learned, not measured. On a print tilted steeply about a slanted axis
it can place the nose where a turned face would have it, and then the yaw and the parallax agree
exactly as on a real turn: in a pilot (33,000 same-person LFW pairs of 40 people, 360 tilted prints;
not part of `eval liveness`) the parallax was the same function of the yaw change on both, about
0.0066 face heights per degree. So against prints the
parallax test adds nothing to the pose threshold on this detector; what keeps prints out is
`turn_deg` lying beyond most of the detector's hallucinated turns (`latticelock eval liveness`
measures how far). The parallax test stays for what it does catch: a picture whose landmarks move
with it, which is all that a better landmark model would leave. Gates on the eye line's rotation
and on a slanted shear of the face were tried and dropped: in the same pilot they stopped a third to
a half of the hallucinated turns of 700 tilted prints, but a real 30-40 degree turn seen by a camera 10-20 degrees
above or below eye level rotates the eye line by 7 to 19 degrees and shears the face as well (the
synthetic head of tests/liveness_cases.py; the neck's axis is then not parallel to the image), and
LFW's photos, taken near eye level, cannot measure what such gates would cost real users.

What this does not stop: a video of the user turning the right way, a 3-D mask, a deepfake, a
screen replaying a live call; an attacker who searches offline, with the public detector, for the
tilt of a print that fools it. Presentation-attack detection proper needs IR or depth sensors.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from latticelock.device.errors import ConfigError, DeviceError
from latticelock.device.policy import Decision
from latticelock.device.quality import QualityConfig
from latticelock.models.errors import ModelsError
from latticelock.models.pose import Motion, motion, yaw_degrees

if TYPE_CHECKING:
    from latticelock.models.mtcnn import Face

LEFT = "left"
RIGHT = "right"
DIRECTIONS = (LEFT, RIGHT)
# Yaw is positive towards the person's own left (models/pose.py).
SIGN = {LEFT: 1.0, RIGHT: -1.0}

# The thresholds were chosen with `latticelock eval liveness --people 5749 --photos 150 --sweep`
# (240 prints, 939 attempts under plane poses; 448 real LFW turns of 251 + 25 people).
#
# The smallest turn of the sweep whose print APCER, pooled over the four plane rows, has a 95% upper
# bound at or under 1%. By turn: 20 deg 57/939 (6.1%), 25 deg 13/939 (1.4%), 30 deg 2/939 (0.21%,
# 95% CI 0.06-0.77%; worst row, clean frames, 2/233 = 0.86%), 35 deg 1/939, 40 deg 0/939. A second,
# smaller run (`--people 300 --photos 20`, 40 other prints) accepted 2 of 160 plane attempts at 30
# degrees (1.25%): some prints fool the detector more readily; both runs together, 4 of 1,099
# (0.36%). The real turns were all accepted at every turn, but they are selected by the same yaw
# estimate, so what a larger threshold costs users (how far they turn when asked) is not measured.
TURN_DEG = 30.0
# Above the detector's noise on prints (|parallax| at most 0.05 over 243 pilot frames of tilted prints
# whose apparent turn stayed under 5 degrees) and below the real turns' (at 30 degrees, 0.18 rejected
# none of the 448 LFW turns, 0.24 rejected 59). No value from 0 to 0.18 changed the print APCER at
# 30 degrees (2/939 throughout).
MIN_PARALLAX = 0.12
# 276 of faces94's 292 near-frontal photos (94.5%) read within 10 degrees (pilot); 4 to 15 of the 240
# prints per row found no such frame in five poses and were left out of the APCER.
BASELINE_MAX_YAW_DEG = 10.0
# Not measured on people (no camera here): a guess of twice the second or two that reading the
# prompt and turning take; about 86 frames at the unlock loop's 21.5 frames/s (`latticelock bench device`).
WINDOW_S = 4.0
# A second face at least this large (side, relative to the chosen face's) fails the attempt; smaller
# ones are far behind the user and cannot stand in for them.
SECOND_FACE_RATIO = 0.5
# Only detections the quality gate would take for a face count as a second face (MTCNN's last stage
# passes candidates from 0.7; a bystander or a held-up photo scores far higher).
SECOND_FACE_MIN_SCORE = QualityConfig.min_score
# Landmarks closer to the frame's edge than this share of its smaller side are unreliable.
BORDER_MARGIN = 0.02


@dataclass(frozen=True)
class LivenessConfig:
    turn_deg: float = TURN_DEG
    """Yaw change from the baseline that decides a step, in degrees."""
    min_parallax: float = MIN_PARALLAX
    """Nose parallax the decisive frame needs in the challenged direction, in face heights."""
    baseline_max_yaw_deg: float = BASELINE_MAX_YAW_DEG
    """The baseline face must be this close to frontal, in degrees."""
    window_s: float = WINDOW_S
    """Seconds to find a baseline, then for each step after its prompt."""
    steps: int = 1
    """1: one turn; 2: one turn, then one to the other side."""

    def __post_init__(self) -> None:
        positive = ("turn_deg", "min_parallax", "baseline_max_yaw_deg", "window_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"liveness {name} must be positive, got {getattr(self, name)}")
        if self.baseline_max_yaw_deg >= self.turn_deg:
            raise ConfigError(f"liveness baseline_max_yaw_deg ({self.baseline_max_yaw_deg}) must be below turn_deg ({self.turn_deg})")
        if self.steps not in (1, 2):
            raise ConfigError(f"liveness steps must be 1 or 2, got {self.steps}")


@dataclass(frozen=True)
class Observation:
    """What the detector saw in one frame."""

    timestamp: float
    """Seconds, from the same clock for every frame."""
    frame_size: tuple[int, int]
    """(width, height) in pixels."""
    box: np.ndarray | None = None
    """The chosen face's (x1, y1, x2, y2), or None when there is no face."""
    landmarks: np.ndarray | None = None
    """The chosen face's [5, 2] MTCNN landmarks, or None."""
    track: int | None = None
    """The caller's id of the chosen face's track."""
    matched: bool = False
    """Whether the chosen face matched the user."""
    other_boxes: tuple[np.ndarray, ...] = field(default=())
    """Boxes of the other faces in the frame (`from_faces` keeps those scoring SECOND_FACE_MIN_SCORE or more)."""

    def __post_init__(self) -> None:
        if len(self.frame_size) != 2 or not all(side > 0 for side in self.frame_size):
            raise DeviceError(f"observation frame_size must be (width, height) > 0, got {self.frame_size}")
        if (self.box is None) != (self.landmarks is None):
            raise DeviceError("an observation needs both a box and landmarks, or neither")
        if self.box is not None and np.shape(self.box) != (4,):
            raise DeviceError(f"observation box must be (x1, y1, x2, y2), got shape {np.shape(self.box)}")
        if self.landmarks is not None and np.shape(self.landmarks) != (5, 2):
            raise DeviceError(f"observation landmarks must be [5, 2], got shape {np.shape(self.landmarks)}")
        if any(np.shape(b) != (4,) for b in self.other_boxes):
            raise DeviceError("observation other_boxes must each be (x1, y1, x2, y2)")

    @classmethod
    def from_faces(
        cls, timestamp: float, frame_size: tuple[int, int], faces: Sequence["Face"], chosen: "Face | None",
        track: int | None, matched: bool,
    ) -> Observation:
        """From `FacePipeline.faces` and `FacePipeline.choose` of one frame."""
        others = tuple(f.box for f in faces if f is not chosen and f.score >= SECOND_FACE_MIN_SCORE)
        if chosen is None:
            return cls(timestamp, frame_size, other_boxes=others)
        return cls(timestamp, frame_size, chosen.box, chosen.landmarks, track, matched, others)


@dataclass(frozen=True)
class Prompt:
    """One instruction to the user; `str()` gives the sentence to show or print."""

    direction: str
    step: int
    """1-based."""
    steps: int

    def __str__(self) -> str:
        text = f"Turn your head to your {self.direction}"
        return text if self.steps == 1 else f"{text} ({self.step} of {self.steps})"


# Why an attempt failed, one stable word per rule (the verdict's `rule`; its `reason` adds figures).
NO_BASELINE = "no-baseline"
NO_FACE = "no-face"
TWO_FACES = "two-faces"
BORDER = "border"
OUTSIDE = "outside-frame"
TRACK = "track-changed"
LANDMARKS = "landmarks"
TIMEOUT = "timeout"
SOURCE_ENDED = "source-ended"
CLOCK = "clock"
WRONG_WAY = "wrong-way"
FLAT = "flat"


@dataclass(frozen=True)
class LivenessVerdict:
    decision: Decision
    rule: str = ""
    """Which rule failed the attempt (one of the module's rule words; empty unless rejected)."""
    reason: str = ""
    """The same for a person, with the figures (empty unless rejected)."""
    challenge: tuple[str, ...] = ()
    """The directions asked for; empty until the first prompt."""
    steps_done: int = 0
    frames: int = 0
    """Observations seen."""
    motion: Motion | None = None
    """Baseline-to-frame motion of the last frame measured, if any."""


def draw_challenge(steps: int) -> tuple[str, ...]:
    """A random first direction (from `secrets`); a second step, if any, turns to the other side."""
    first = secrets.choice(DIRECTIONS)
    return (first,) if steps == 1 else (first, RIGHT if first == LEFT else LEFT)


def _side(box: np.ndarray) -> float:
    return float(np.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)))


def frame_problem(obs: Observation) -> tuple[str, str] | None:
    """(rule, reason) why this frame cannot be used (no face, two faces, at the border, outside the frame), or None."""
    if obs.box is None:
        return NO_FACE, "no face in the frame"
    side = _side(obs.box)
    if any(_side(other) >= SECOND_FACE_RATIO * side for other in obs.other_boxes):
        return TWO_FACES, "two faces in view"
    width, height = obs.frame_size
    margin = BORDER_MARGIN * min(width, height)
    points = np.asarray(obs.landmarks, dtype=np.float64)
    if np.any(points < margin) or np.any(points[:, 0] > width - margin) or np.any(points[:, 1] > height - margin):
        return BORDER, "landmarks at the image border"
    x1, y1, x2, y2 = (float(v) for v in obs.box)
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return OUTSIDE, "face partly outside the frame"
    return None


class TurnChallenge:
    """One liveness attempt; feed it every frame with `observe`, and call `finish` if the frames run out."""

    def __init__(
        self,
        prompt: Callable[[Prompt], object] | None = None,
        config: LivenessConfig | None = None,
        *,
        challenge: Sequence[str] | None = None,
    ) -> None:
        """`challenge` replays a recorded or simulated attempt (tests, `latticelock eval liveness`);
        on a device leave it None so that the directions are drawn with `secrets` when the baseline is seen."""
        self.config = config or LivenessConfig()
        if challenge is not None:
            challenge = tuple(challenge)
            if len(challenge) != self.config.steps or any(d not in DIRECTIONS for d in challenge) or len(set(challenge)) != len(challenge):
                raise ConfigError(f"a {self.config.steps}-step challenge is {self.config.steps} distinct directions of {DIRECTIONS}, got {challenge}")
        self._fixed = challenge
        self._prompt = prompt
        self._challenge: tuple[str, ...] = ()
        self._frames = 0
        self._last_time: float | None = None
        self._started: float | None = None
        self._waiting_for = "no frame"
        self._baseline: Observation | None = None
        self._step = 0
        self._step_started = 0.0
        self._step_yaw = 0.0
        self._motion: Motion | None = None
        self._verdict: LivenessVerdict | None = None

    @property
    def challenge(self) -> tuple[str, ...]:
        """The directions announced so far (empty before the baseline)."""
        return self._challenge

    def observe(self, obs: Observation) -> LivenessVerdict:
        """One frame; PENDING until the attempt is decided, then the same verdict for every later call."""
        if self._verdict is not None:
            return self._verdict
        self._frames += 1
        if self._last_time is not None and obs.timestamp < self._last_time:
            return self._reject(CLOCK, "frame timestamps went backwards")
        self._last_time = obs.timestamp
        if self._baseline is None:
            return self._seek_baseline(obs)
        if obs.timestamp - self._step_started > self.config.window_s:
            return self._reject(TIMEOUT, f"no turn to the {self._challenge[self._step]} within {self.config.window_s:g} s")
        problem = frame_problem(obs)
        if problem is None and obs.track != self._baseline.track:
            problem = TRACK, "a different face appeared (face track changed)"
        if problem is not None:
            return self._reject(problem[0], f"{problem[1]} during the challenge")
        try:
            self._motion = motion(self._baseline.landmarks, obs.landmarks)
            yaw = yaw_degrees(obs.landmarks)
        except ModelsError as exc:
            return self._reject(LANDMARKS, f"unusable landmarks during the challenge ({exc})")
        return self._judge(obs, yaw)

    def finish(self, reason: str = "the source ended") -> LivenessVerdict:
        """The frames ran out before a decision: the attempt fails with `reason`."""
        if self._verdict is not None:
            return self._verdict
        if self._baseline is None:
            return self._reject(NO_BASELINE, f"{reason} before a baseline (last frame: {self._waiting_for})")
        return self._reject(SOURCE_ENDED, f"{reason} during the challenge")

    def _seek_baseline(self, obs: Observation) -> LivenessVerdict:
        if self._started is None:
            self._started = obs.timestamp
        elif obs.timestamp - self._started > self.config.window_s:
            return self._reject(NO_BASELINE, f"no usable baseline within {self.config.window_s:g} s (last frame: {self._waiting_for})")
        problem = frame_problem(obs)
        reason = None if problem is None else problem[1]
        if reason is None and not obs.matched:
            reason = "the face does not match the user"
        if reason is None:
            try:
                yaw = yaw_degrees(obs.landmarks)
            except ModelsError as exc:
                reason = f"unusable landmarks ({exc})"
            else:
                if abs(yaw) > self.config.baseline_max_yaw_deg:
                    reason = f"not facing the camera (yaw {yaw:+.0f} deg)"
        if reason is not None:
            self._waiting_for = reason
            return self._pending()
        self._baseline = obs
        self._challenge = self._fixed or draw_challenge(self.config.steps)
        self._start_step(obs.timestamp, yaw)
        return self._pending()

    def _start_step(self, timestamp: float, yaw: float) -> None:
        self._step_started = timestamp
        self._step_yaw = yaw
        if self._prompt is not None:
            self._prompt(Prompt(self._challenge[self._step], self._step + 1, len(self._challenge)))

    def _judge(self, obs: Observation, yaw: float) -> LivenessVerdict:
        cfg, moved = self.config, self._motion
        direction = self._challenge[self._step]
        sign = SIGN[direction]
        if -sign * (yaw - self._step_yaw) >= cfg.turn_deg:
            return self._reject(WRONG_WAY, f"turned the wrong way (asked: {direction})")
        if sign * moved.yaw_change < cfg.turn_deg:
            return self._pending()
        # The decisive frame: the turn is far enough, so the nose must have come off the face's plane.
        if sign * moved.parallax < cfg.min_parallax:
            return self._reject(FLAT, f"no depth in the turn (nose parallax {sign * moved.parallax:.2f}): a flat picture?")
        self._step += 1
        if self._step == len(self._challenge):
            return self._decide(Decision.ACCEPT)
        self._start_step(obs.timestamp, yaw)
        return self._pending()

    def _pending(self) -> LivenessVerdict:
        return LivenessVerdict(Decision.PENDING, challenge=self._challenge, steps_done=self._step, frames=self._frames, motion=self._motion)

    def _reject(self, rule: str, reason: str) -> LivenessVerdict:
        return self._decide(Decision.REJECT, rule, reason)

    def _decide(self, decision: Decision, rule: str = "", reason: str = "") -> LivenessVerdict:
        self._verdict = LivenessVerdict(decision, rule, reason, self._challenge, self._step, self._frames, self._motion)
        return self._verdict


@dataclass(frozen=True)
class Liveness:
    """The unlock loop's liveness setting: the check's configuration, where prompts go (the command line
    prints them, the kiosk shows them), and, for replays only, the direction they were recorded turning
    (a recording cannot answer a random prompt; a live camera never gets a fixed challenge)."""

    config: LivenessConfig = field(default_factory=LivenessConfig)
    prompt: Callable[[Prompt], object] | None = None
    challenge: tuple[str, ...] | None = None

    def start(self) -> "LiveAttempt":
        return LiveAttempt(TurnChallenge(self.prompt, self.config, challenge=self.challenge))


@dataclass
class LiveAttempt:
    """One attempt's check, and whether it has passed (the loop then matches the frames it held)."""

    check: TurnChallenge
    passed: bool = False

    def finish(self) -> LivenessVerdict:
        return self.check.finish()
