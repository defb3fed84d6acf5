"""`latticelock eval liveness`: how often the head-turn challenge accepts a print, and rejects a real turn.

Attacks (APCER). Each source photo (the first five of every faces94 person: the README's enrolment
photos; and one photo of each LFW person scanned) is printed, cut out around the face, and held in
front of a simulated camera: a pinhole of focal length 600 px (about 56 degrees across) giving
640x480 frames. The print is a plane, so each frame is the photo under the homography of a random
plane pose: tilt up to +-45 degrees about both the horizontal and the vertical axis, +-30 degrees
in the image plane, scale 0.7-1.3, shift up to 80 px, with the face kept inside the frame. The real
MTCNN detector then reads each frame, so the landmarks are those the camera would give. One attempt:
frames are shown until one qualifies as the baseline (at most five), then five more in which the
detector finds the face (the attacker is credited with not showing poses that lose it); the check runs
on them once for each direction and the attempt counts as accepted if either run accepts (an
attacker credited with knowing which way each tilt fools the detector). Rows: `still` (the photo
held still: one near-frontal pose, sensor noise and JPEG per frame), `plane` (clean frames),
`plane+blur` (Gaussian blur sigma 1-2.5 px), `plane+noise` (Gaussian noise sigma 4-12 levels),
`plane+jpeg` (re-compressed at quality 30-70). Attempts whose frames never gave a baseline are left
out of the rate (an attacker would simply try again) and counted apart.

Genuine turns (BPCER). No real video is at hand, so photos of one person with different head poses
stand in for frames: a frontal photo as the baseline, then one turned by at least the check's
`turn_deg` (pairs, one per turned photo, the challenge being the way it turned), or a left- and a
right-turned one (triples, for the two-step challenge). The turn is read by the same landmark
estimate the check uses, so the pose threshold passes by construction: these rows measure whether
everything else (the parallax test, the frame rules) accepts real turns, not how far users turn when
asked. faces94's photos are near frontal, so it offers few or no turns.

Identity is not measured here (`matched` is true on every frame: the attacker's print shows the
user); `latticelock eval policy` measures matching.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from latticelock.device.liveness import (
    LEFT, MIN_PARALLAX, RIGHT, WRONG_WAY, LivenessConfig, Observation, TurnChallenge, frame_problem,
)
from latticelock.device.policy import Decision
from latticelock.tools import flags
from latticelock.tools.datasets import datasets_dir
from latticelock.tools.errors import ToolsError
from latticelock.tools.rates import wilson_interval

FRAME_SIZE = (640, 480)
FOCAL_PX = 600.0
# The print's longer side spans this many pixels when held frontally at scale 1 (an LFW face's eye
# distance is then about 50 px, a faces94 face's about 75 px).
PRINT_SIDE_PX = 300.0
MAX_TILT_DEG = 45.0
MAX_ROLL_DEG = 30.0
SCALE_RANGE = (0.7, 1.3)
MAX_SHIFT_PX = 80.0
# The attacker cuts the print to a square this many face-box sides wide (no bystanders' faces on it).
PRINT_CROP = 2.2
BASELINE_TRIES = 5
CHALLENGE_FRAMES = 5
FRAME_INTERVAL_S = 0.25
ATTACKS = ("still", "plane", "plane+blur", "plane+noise", "plane+jpeg")
FACES94_ENROLMENT = 5


@dataclass(frozen=True)
class PlanePose:
    tilt_x: float
    """Degrees about the horizontal axis."""
    tilt_y: float
    """Degrees about the vertical axis."""
    roll: float
    """Degrees in the image plane."""
    scale: float
    shift: tuple[float, float]
    """Pixels, of the print's centre from the frame's centre at scale 1."""


def _rotation(pose: PlanePose) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in (pose.tilt_x, pose.tilt_y, pose.roll))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def print_homography(photo_size: tuple[int, int], pose: PlanePose, frame_size: tuple[int, int] = FRAME_SIZE, focal: float = FOCAL_PX) -> np.ndarray:
    """The homography from a print's pixels to a pinhole camera's frame, the print posed by `pose`.

    The print lies in its own plane z = 0 with its centre at the origin, one unit per photo pixel; the
    camera sees it at the distance where `PRINT_SIDE_PX * pose.scale` pixels span its longer side
    when untilted, so H = K [r1 r2 t] A, with A centring the photo, r1 and r2 the first two columns
    of the rotation, t the translation and K the camera.
    """
    width, height = photo_size
    magnification = PRINT_SIDE_PX * pose.scale / max(width, height)
    distance = focal / magnification
    t = np.array([pose.shift[0] / magnification, pose.shift[1] / magnification, distance])
    camera = np.array([[focal, 0, frame_size[0] / 2], [0, focal, frame_size[1] / 2], [0, 0, 1]])
    centring = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    r = _rotation(pose)
    return camera @ np.column_stack([r[:, 0], r[:, 1], t]) @ centring


def random_pose(rng: np.random.Generator) -> PlanePose:
    """A plane pose drawn uniformly within the attack's ranges."""
    return PlanePose(
        float(rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG)), float(rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG)),
        float(rng.uniform(-MAX_ROLL_DEG, MAX_ROLL_DEG)), float(rng.uniform(*SCALE_RANGE)),
        (float(rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX)), float(rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX))),
    )


def still_pose(rng: np.random.Generator) -> PlanePose:
    """A print held roughly frontally (the `still` replay)."""
    return PlanePose(float(rng.uniform(-10, 10)), float(rng.uniform(-10, 10)), float(rng.uniform(-5, 5)), 1.0, (0.0, 0.0))


def degrade(frame: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The camera's degradation of one frame for attack row `kind`."""
    if kind.endswith("blur"):
        return cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(1.0, 2.5)))
    if kind.endswith("noise") or kind == "still":
        sigma = float(rng.uniform(4, 12)) if kind.endswith("noise") else 2.0
        frame = np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)
    if kind.endswith("jpeg") or kind == "still":
        quality = int(rng.integers(30, 71)) if kind.endswith("jpeg") else 90
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        frame = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return frame


def _mapped(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    out = np.column_stack([points, np.ones(len(points))]) @ h.T
    return out[:, :2] / out[:, 2:]


@dataclass
class Source:
    """One attack photo, cut out around its face, with that face's box in the cut-out."""

    name: str
    image: np.ndarray
    face_box: np.ndarray


def cut_print(name: str, image: np.ndarray, box: np.ndarray) -> Source:
    """The print an attacker holds up: a square `PRINT_CROP` face-box sides wide around the face."""
    height, width = image.shape[:2]
    side = PRINT_CROP * max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x2, y2 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    return Source(name, np.ascontiguousarray(image[y1:y2, x1:x2]), np.asarray(box, dtype=np.float64) - [x1, y1, x1, y1])


def render(source: Source, pose: PlanePose, background: tuple[int, int, int]) -> np.ndarray:
    """The camera's view of the print (before degradation)."""
    h = print_homography((source.image.shape[1], source.image.shape[0]), pose)
    return cv2.warpPerspective(source.image, h, FRAME_SIZE, flags=cv2.INTER_LINEAR, borderValue=background)


def face_inside(source: Source, pose: PlanePose) -> bool:
    """Whether the print's face lands well inside the frame under `pose` (the attacker aims the print)."""
    x1, y1, x2, y2 = source.face_box
    corners = _mapped(print_homography((source.image.shape[1], source.image.shape[0]), pose), np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]))
    width, height = FRAME_SIZE
    return bool(np.all(corners[:, 0] > 0.05 * width) and np.all(corners[:, 0] < 0.95 * width)
                and np.all(corners[:, 1] > 0.05 * height) and np.all(corners[:, 1] < 0.95 * height))


def aimed_pose(source: Source, rng: np.random.Generator, draw) -> PlanePose:
    """A pose from `draw` that keeps the face inside the frame (redrawn up to 20 times, then centred)."""
    for _ in range(20):
        pose = draw(rng)
        if face_inside(source, pose):
            return pose
    return replace(pose, shift=(0.0, 0.0))


class Camera:
    """The real MTCNN detector turning frames into liveness observations."""

    def __init__(self, detector) -> None:
        self.detector = detector

    def observe(self, image: np.ndarray, timestamp: float = 0.0):
        from latticelock.models.pipeline import FacePipeline

        faces = self.detector.detect(image)
        chosen = FacePipeline.choose(faces, image.shape)
        return Observation.from_faces(timestamp, (image.shape[1], image.shape[0]), faces, chosen, track=1, matched=True)


def attack_frames(camera: Camera, source: Source, kind: str, config, rng: np.random.Generator) -> list | None:
    """Observations of one attack attempt: frames until the check takes a baseline, then CHALLENGE_FRAMES more.

    The attacker is credited with showing only challenge frames in which the detector finds the one
    face, well inside the frame (up to three times as many poses are tried); the others would end
    the attempt. None when no frame of BASELINE_TRIES gave a baseline.
    """
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw = still_pose if kind == "still" else random_pose
    held = aimed_pose(source, rng, draw)

    def shoot(timestamp: float):
        pose = held if kind == "still" else aimed_pose(source, rng, draw)
        return camera.observe(degrade(render(source, pose, background), kind, rng), timestamp)

    # Any fixed challenge will do: the probe only tells when the check takes its baseline.
    probe = TurnChallenge(config=config, challenge=(LEFT, RIGHT)[: config.steps])
    frames = []
    for _ in range(BASELINE_TRIES):
        frames.append(shoot(len(frames) * FRAME_INTERVAL_S))
        probe.observe(frames[-1])
        if probe.challenge:
            break
    else:
        return None
    shown = 0
    for _ in range(3 * CHALLENGE_FRAMES):
        obs = shoot(len(frames) * FRAME_INTERVAL_S)
        if frame_problem(obs) is None:
            frames.append(obs)
            shown += 1
            if shown == CHALLENGE_FRAMES:
                break
    return frames


def run_attempt(observations: list, config, challenge: tuple[str, ...]):
    """The check's verdict on a recorded attempt, the frames fed in order."""
    check = TurnChallenge(config=config, challenge=challenge)
    for obs in observations:
        verdict = check.observe(obs)
        if verdict.decision is not Decision.PENDING:
            return verdict
    return check.finish()


def attack_accepted(observations: list, config) -> tuple[bool, str]:
    """(accepted for either challenge order, the rule that rejected it).

    Of the two rejections the rule kept is the one that is not "wrong-way", which only says that
    the frames fooled the detector, if at all, the other way.
    """
    reasons = []
    for challenge in ((LEFT, RIGHT)[: config.steps], (RIGHT, LEFT)[: config.steps]):
        verdict = run_attempt(observations, config, challenge)
        if verdict.decision is Decision.ACCEPT:
            return True, ""
        reasons.append(verdict.rule)
    return False, next((r for r in reasons if r != WRONG_WAY), reasons[0])


@dataclass
class Shot:
    """One real photo as the detector saw it."""

    person: str
    name: str
    observation: object
    yaw: float | None
    """None when it shows no usable face."""


def scan(camera: Camera, people: dict[str, list[Path]], desc: str, progress: bool) -> dict[str, list[Shot]]:
    """Detect every photo of every person (unreadable files are skipped and reported)."""
    from tqdm import tqdm

    from latticelock.models.errors import ImageError, ModelsError
    from latticelock.models.pipeline import load_image
    from latticelock.models.pose import yaw_degrees

    shots: dict[str, list[Shot]] = {}
    for person, paths in tqdm(sorted(people.items()), desc=desc, unit="person", disable=not progress):
        for path in paths:
            try:
                obs = camera.observe(load_image(path))
            except ImageError as exc:
                print(f"skipping {path}: {exc}")
                continue
            yaw = None
            if frame_problem(obs) is None:
                try:
                    yaw = yaw_degrees(obs.landmarks)
                except ModelsError:
                    pass
            shots.setdefault(person, []).append(Shot(person, path.name, obs, yaw))
    return shots


def genuine_attempts(shots: dict[str, list[Shot]], config, seed: int) -> tuple[list, list]:
    """(pairs, triples) of real pose changes, each (person, observations, challenge), for the check's `turn_deg`.

    Each turned photo (turned by at least `turn_deg` from a frontal photo of the same person, drawn
    at random) gives one pair; a person with a left- and a right-turned photo against one frontal
    photo gives one triple, its order drawn at random. The draws do not depend on `turn_deg`.
    """
    pairs, triples = [], []
    for index, person in enumerate(sorted(shots)):
        rng = np.random.default_rng([seed, index])
        usable = [s for s in shots[person] if s.yaw is not None]
        frontal = [s for s in usable if abs(s.yaw) <= config.baseline_max_yaw_deg]
        if not frontal:
            continue
        lefts, rights = [], []
        anchor = frontal[int(rng.integers(len(frontal)))]
        for shot in usable:
            others = [f for f in frontal if f is not shot]
            base = others[int(rng.integers(len(others)))] if others else None
            if base is not None and abs(shot.yaw - base.yaw) >= config.turn_deg:
                frames = [base.observation, replace(shot.observation, timestamp=0.5)]
                pairs.append((person, frames, (LEFT,) if shot.yaw > base.yaw else (RIGHT,)))
            if shot is not anchor and shot.yaw - anchor.yaw >= config.turn_deg:
                lefts.append(shot)
            if shot is not anchor and anchor.yaw - shot.yaw >= config.turn_deg:
                rights.append(shot)
        if lefts and rights:
            first, second = (lefts[0], rights[0]) if rng.random() < 0.5 else (rights[0], lefts[0])
            challenge = (LEFT, RIGHT) if first is lefts[0] else (RIGHT, LEFT)
            frames = [anchor.observation, replace(first.observation, timestamp=0.5), replace(second.observation, timestamp=1.0)]
            triples.append((person, frames, challenge))
    return pairs, triples


@dataclass
class AttackRow:
    attack: str
    attempts: int
    accepted: int
    apcer: float | None
    """None when there were no attempts."""
    apcer_ci: tuple[float, float]
    no_baseline: int
    """Attempts left out: no frame gave a baseline."""
    reasons: dict[str, int]


@dataclass
class GenuineRow:
    genuine_set: str
    people: int
    """Distinct people the attempts come from."""
    attempts: int
    accepted: int
    bpcer: float | None
    """None when there were no attempts."""
    bpcer_ci: tuple[float, float]
    reasons: dict[str, int]



def attack_rows(recorded: dict[str, list], config) -> list[AttackRow]:
    """One row per attack kind from its recorded attempts (None: no baseline)."""
    rows = []
    for kind, attempts in recorded.items():
        usable = [frames for frames in attempts if frames is not None]
        results = [attack_accepted(frames, config) for frames in usable]
        accepted = sum(ok for ok, _ in results)
        n = len(usable)
        rows.append(AttackRow(kind, n, accepted, accepted / n if n else None, wilson_interval(accepted, n), len(attempts) - n,
                              dict(Counter(rule for ok, rule in results if not ok).most_common())))
    return rows


def genuine_rows(scanned: dict[str, dict[str, list[Shot]]], config, seed: int) -> list[GenuineRow]:
    """Pairs and triples of every scanned dataset, each through the check."""
    rows = []
    for dataset, shots in scanned.items():
        pairs, triples = genuine_attempts(shots, config, seed)
        turn = f"turn >= {config.turn_deg:g} deg"
        for label, attempts, steps in ((f"{dataset} pairs ({turn})", pairs, 1), (f"{dataset} triples (left and right, {turn})", triples, 2)):
            verdicts = [run_attempt(frames, replace(config, steps=steps), challenge) for _, frames, challenge in attempts]
            accepted = sum(v.decision is Decision.ACCEPT for v in verdicts)
            n = len(verdicts)
            rows.append(GenuineRow(label, len({person for person, _, _ in attempts}), n, accepted, (n - accepted) / n if n else None, wilson_interval(n - accepted, n),
                                   dict(Counter(v.rule for v in verdicts if v.decision is not Decision.ACCEPT).most_common())))
    return rows


def _pooled(rows: list, field: str) -> tuple[int, int]:
    """(errors, attempts) over rows: accepted attacks, or rejected genuine attempts."""
    attempts = sum(r.attempts for r in rows)
    accepted = sum(r.accepted for r in rows)
    return (accepted if field == "apcer" else attempts - accepted), attempts


def sweep_grid() -> list[dict]:
    """Settings tried by `--sweep`: the turn threshold with and without the parallax test, then the parallax threshold."""
    grid = [{"turn_deg": turn, "min_parallax": parallax} for turn in (20.0, 25.0, 30.0, 35.0, 40.0) for parallax in (1e-9, MIN_PARALLAX)]
    return grid + [{"min_parallax": parallax} for parallax in (0.06, 0.18, 0.24)]


def sweep(recorded: dict[str, list], scanned: dict[str, dict[str, list[Shot]]], config, seed: int) -> list[dict]:
    """Pooled APCER (plane attacks) and BPCER (all genuine sets) for each setting of `sweep_grid`."""
    plane = {k: v for k, v in recorded.items() if k != "still"}
    out = []
    for overrides in sweep_grid():
        trial = replace(config, **overrides)
        a_err, a_n = _pooled(attack_rows(plane, trial), "apcer")
        g_err, g_n = _pooled(genuine_rows(scanned, trial, seed), "bpcer")
        out.append({"turn_deg": trial.turn_deg, "min_parallax": trial.min_parallax, "apcer": a_err / a_n if a_n else None, "attack_attempts": a_n,
                    "attacks_accepted": a_err, "bpcer": g_err / g_n if g_n else None, "genuine_attempts": g_n, "genuine_rejected": g_err})
    return out


def _rate(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:>7.4f}"


def format_table(attacks: list[AttackRow], genuine: list[GenuineRow], swept: list[dict]) -> str:
    lines = [f"{'attack':<14} {'attempts':>8} {'accepted':>8} {'APCER':>7}  {'95% CI':<17} {'no baseline':>11}  rejected by"]
    for r in attacks:
        lines.append(f"{r.attack:<14} {r.attempts:>8} {r.accepted:>8} {_rate(r.apcer)}  [{r.apcer_ci[0]:.4f}, {r.apcer_ci[1]:.4f}] {r.no_baseline:>11}  "
                     + ", ".join(f"{k} {v}" for k, v in r.reasons.items()))
    lines.append("")
    lines.append(f"{'genuine set':<48} {'people':>6} {'attempts':>8} {'accepted':>8} {'BPCER':>7}  {'95% CI':<17}  rejected by")
    for r in genuine:
        lines.append(f"{r.genuine_set:<48} {r.people:>6} {r.attempts:>8} {r.accepted:>8} {_rate(r.bpcer)}  [{r.bpcer_ci[0]:.4f}, {r.bpcer_ci[1]:.4f}]  "
                     + ", ".join(f"{k} {v}" for k, v in r.reasons.items()))
    if swept:
        lines.append("")
        lines.append("sweep (APCER pooled over the plane attacks, BPCER over all genuine sets)")
        lines.append(f"{'turn':>5} {'parallax':>8} {'APCER':>8} {'accepted':>12} {'BPCER':>7} {'rejected':>10}")
        for s in swept:
            lines.append(f"{s['turn_deg']:>5g} {s['min_parallax']:>8.2f} {_rate(s['apcer']):>8} {s['attacks_accepted']:>5}/{s['attack_attempts']:<6}"
                         f" {_rate(s['bpcer'])} {s['genuine_rejected']:>4}/{s['genuine_attempts']:<5}")
    return "\n".join(lines)


def _folders(root: Path) -> dict[str, list[Path]]:
    from latticelock.device.sources import IMAGE_SUFFIXES

    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for d in sorted(root.iterdir()) if d.is_dir()}


def attack_sources(scanned: dict[str, dict[str, list[Shot]]], images: dict[str, dict[str, list[Path]]], photos: int, config) -> list[Source]:
    """faces94: each person's first FACES94_ENROLMENT photos; LFW: each person's first frontal photo; at most `photos` per dataset."""
    from latticelock.models.pipeline import load_image

    sources = []
    for dataset, shots in scanned.items():
        chosen = []
        for person in sorted(shots):
            usable = [s for s in shots[person] if s.yaw is not None]
            if dataset == "faces94":
                names = {p.name for p in images[dataset][person][:FACES94_ENROLMENT]}
                chosen += [s for s in usable if s.name in names]
            else:
                chosen += [s for s in usable if abs(s.yaw) <= config.baseline_max_yaw_deg][:1]
        for shot in chosen[:photos]:
            path = next(p for p in images[dataset][shot.person] if p.name == shot.name)
            sources.append(cut_print(f"{dataset}/{shot.person}/{shot.name}", load_image(path), shot.observation.box))
    return sources


def _handler(args) -> int:
    from tqdm import tqdm

    from latticelock.models.mtcnn import Detector

    for name in ("photos", "people"):
        if getattr(args, name) < 1:
            raise ToolsError(f"--{name} must be at least 1, got {getattr(args, name)}")
    root = datasets_dir(args.datasets)
    lfw, faces94 = root / "lfw", root / "faces94_subset"
    if not lfw.is_dir() and not faces94.is_dir():
        raise ToolsError(f"no lfw/ or faces94_subset/ under {root} (pass --datasets or set LATTICELOCK_DATASETS)")
    config = LivenessConfig()
    rng = np.random.default_rng(args.seed)
    images: dict[str, dict[str, list[Path]]] = {}
    if faces94.is_dir():
        images["faces94"] = _folders(faces94)
    if lfw.is_dir():
        people = {k: v for k, v in _folders(lfw).items() if len(v) >= 2}
        keep = sorted(rng.choice(sorted(people), size=min(args.people, len(people)), replace=False).tolist())
        images["lfw"] = {k: people[k] for k in keep}
    camera = Camera(Detector(threads=args.threads, min_face_size=args.min_face_size))
    progress = not args.quiet
    scanned = {dataset: scan(camera, people, f"scan {dataset}", progress) for dataset, people in images.items()}
    sources = attack_sources(scanned, images, args.photos, config)
    recorded: dict[str, list] = {}
    for k, kind in enumerate(ATTACKS):
        recorded[kind] = [attack_frames(camera, source, kind, config, np.random.default_rng([args.seed, k, i]))
                          for i, source in enumerate(tqdm(sources, desc=f"attack {kind}", unit="print", disable=not progress))]
    attacks = attack_rows(recorded, config)
    genuine = genuine_rows(scanned, config, args.seed)
    swept = sweep(recorded, scanned, config, args.seed) if args.sweep else []
    print(f"liveness check: {config}")
    print(format_table(attacks, genuine, swept))
    if args.json:
        report = {
            "config": asdict(config),
            "settings": {"datasets": str(root), "people": args.people, "photos": args.photos, "seed": args.seed,
                         "min_face_size": args.min_face_size, "frame_size": FRAME_SIZE, "focal_px": FOCAL_PX,
                         "challenge_frames": CHALLENGE_FRAMES, "baseline_tries": BASELINE_TRIES,
                         "sources": [s.name for s in sources]},
            "attacks": [asdict(r) for r in attacks],
            "genuine": [asdict(r) for r in genuine],
            "sweep": swept,
        }
        flags.write_json(args.json, report)
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "liveness",
        help="APCER of simulated print attacks and BPCER of real pose changes for the head-turn check",
        description="Simulate print attacks through the real detector and replay real pose changes through the head-turn liveness check.",
    )
    flags.datasets(parser)
    # `--people 300 --photos 20` took 6.6 CPU-minutes here, so the defaults sit below that; the
    # figures in device/liveness.py come from `--people 5749 --photos 150 --sweep` (41 minutes on
    # two cores shared with other work).
    parser.add_argument("--people", type=int, default=200, help="LFW people (with 2+ photos) scanned for real turns and prints (default 200; fewer for a quick run, 5749 for all)")
    parser.add_argument("--photos", type=int, default=12, help="attack prints per dataset (default 12; fewer for a quick run)")
    parser.add_argument("--min-face-size", type=int, default=40, help="detector's smallest face in pixels (default 40; the quality gate wants 48)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its own)")
    parser.add_argument("--sweep", action="store_true", help="also report pooled APCER/BPCER over a grid of thresholds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    flags.json_output(parser, "the report")
    parser.set_defaults(func=_handler)
