"""`latticelock eval calibrate`: the device's stranger z for per-attempt false-accept targets, from public faces only.

The operating points of `kernels.params` share the device lattice of `l2fe-facenet-m64` (one lattice
for every user on the microcontroller) and differ in their `stranger_z` (and the ceiling it gives): each record's radius is
where a stranger's squared distance to its template lies z standard deviations below its mean
(`kernels.radii`). Acceptance is exactly |e - e'| <= that radius (`tools.attempts`, the distance model),
so the z for a target is read off the stranger z-scores of impostor attempts:

- Faces: LFW identities that no pair of lfw_pairs.txt names (the evaluation never sees them). Each
  gets a device template from its first images (up to the enrolment's 5; most public identities have
  one photo, and their template is that photo) and its attempts (`tools.attempts.slices`).
- Attempts: every template against every other identity's attempts, scored as the device's default
  policy decides (k-th smallest distance of the attempt's n probes): one enrolled user, one attempt.
  Two one-photo identities against each other are one comparison, not two (the score is symmetric).
- Cross-fitting: the shipped PCA was fitted on these same faces, and a PCA spreads its own training
  faces apart (an in-sample radius comes out too large). So the identities are split into folds and
  each comparison is scored with a PCA fitted without the folds of both its faces.
- Averaged templates: the device averages its enrolment frames, and a template averaged from several
  photos sits nearer strangers than one photo does (on the public faces, templates of 2-5 photos
  accepted about twice as many strangers at the same fixed radius). Most public identities have one
  photo, so their attempts are split by template: one photo, and several photos.
- Each comparison's z-score uses the spread of the PCA it is scored with (its explained variances), as
  the device uses the shipped PCA's.
- The probe floor: PROBE_FLOOR_FRACTION of the shortest public face; shorter probes match nothing.
- The z: the largest (to 1e-4) that meets the target in both groups. The point's radius, the most any
  record may have (and the ceiling the microcontroller enforces), is the largest radius a public
  template gets at that z (rounded up to 0.1). A group with at least
  3 / target attempts (rule of three) must keep its 95% Wilson upper bound at or below the target; a
  group with fewer (the averaged templates, below 1e-4: LFW has 52 public identities with two or
  more photos) cannot certify the target and must at least show no false accept. One group at least
  must be large enough to certify it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from latticelock.tools.errors import ToolsError

if TYPE_CHECKING:
    from latticelock.device.policy import PolicyConfig
    from latticelock.kernels.params import L2FEParams
    from latticelock.tools.attempts import Identity
    from latticelock.tools.embeddings import EmbeddingsFile

DEFAULT_TARGETS = (1e-4, 1e-5)


@dataclass(frozen=True)
class GroupFigures:
    """What one group of impostor attempts says at the calibrated radius."""

    templates: str  # "1 photo" or "2+ photos"
    false_accepts: int
    impostor_attempts: int
    far: float
    far_upper95: float
    certifies: bool  # enough attempts for the target (rule of three), and the Wilson bound within it


@dataclass(frozen=True)
class CalibratedPoint:
    far_target: float
    stranger_z: float
    attempts_needed: int  # rule of three
    groups: list[GroupFigures]
    radius_quartiles: tuple[float, float, float]  # of the public templates' own radii at this z (shipped PCA)
    radius_cap: float  # the largest of them, rounded up to 0.1: the most any record of this point may have


@dataclass(frozen=True)
class Calibration:
    base: str
    scale: float
    identities: int
    images: int
    templates_by_images: dict[int, int]
    folds: int
    policy: str
    probe: str
    impostor_attempts: int
    points: list[CalibratedPoint]
    shortest_public_face: float  # |e| of the shortest public image (shipped PCA)
    probe_floor: float  # PROBE_FLOOR_FRACTION of it: shorter probes match nothing


def fold_scores(data: "EmbeddingsFile", people: "list[Identity]", templates: np.ndarray, folds: int, params: "L2FEParams",
                k: int, n: int, probe: str, rng: np.random.Generator, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Impostor attempts' stranger z-scores (`tools.attempts.point_scores`), each from a PCA fitted
    without the folds of both faces it compares, and whether each attempt's template averages several photos."""
    from itertools import combinations_with_replacement

    from tqdm import tqdm

    from latticelock.kernels.projection import fit_projection
    from latticelock.tools.attempts import point_scores, probe_keys, probe_vectors, scaled, slices

    fold = rng.permutation(len(people)) % folds
    single = np.array([len(p.rows) == 1 for p in people])
    out, averaged = [], []
    for i, j in tqdm(list(combinations_with_replacement(range(folds), 2)), desc="calibrate (fold pairs)", disable=not progress):
        members = np.flatnonzero((fold == i) | (fold == j))
        fit_rows = np.concatenate([people[p].rows for p in np.flatnonzero((fold != i) & (fold != j))])
        if len(fit_rows) <= params.m:
            raise ToolsError(f"{len(fit_rows)} public images outside folds {i} and {j} cannot fit a {params.m}-dimension PCA: "
                             "use fewer folds or more public identities")
        pca = fit_projection(data.embeddings[fit_rows], params.m, {})
        owners, keys, index = [], {}, []
        for p in members:
            for attempt in slices(people[p].rows, n):
                owners.append(p)
                index.append([keys.setdefault(key, len(keys)) for key in probe_keys(attempt, probe)])
        probes = scaled(params, pca, probe_vectors(data.embeddings, list(keys)))
        fold_templates = scaled(params, pca, templates[members])
        scores = point_scores(params, pca, fold_templates, probes, np.array(index), k)
        owner = np.array(owners)
        a, b = members[:, None], owner[None, :]
        keep = (a != b) & ((fold[a] != fold[b]) | (i == j))
        keep &= ~(single[a] & single[b] & (a > b))
        out.append(scores[keep])
        averaged.append(np.broadcast_to(~single[a], keep.shape)[keep])
    return np.concatenate(out), np.concatenate(averaged)


Z_STEP = 1e-4
# The probe floor sits this far below the shortest public face: no real face is that short, while the
# mean face and faces pulled toward it (probes anyone can make, near many templates) are.
PROBE_FLOOR_FRACTION = 0.95


def group_limit(scores: np.ndarray, target: float) -> float:
    """The largest z (to Z_STEP) this group allows: its Wilson bound within the target when it has the
    attempts the rule of three asks for, else no false accept at all."""
    from latticelock.tools.rates import rule_of_three, wilson_upper

    allowed = 0
    if len(scores) >= rule_of_three(target):
        while wilson_upper(allowed + 1, len(scores)) <= target:
            allowed += 1
    s = np.sort(scores)
    if allowed >= len(s):
        return math.inf
    if not math.isfinite(s[allowed]):
        return math.inf
    steps = math.floor(s[allowed] / Z_STEP)
    while np.count_nonzero(s <= steps * Z_STEP) > allowed:
        steps -= 1
    return round(steps * Z_STEP, 4)


def z_for(groups: dict[str, np.ndarray], target: float) -> CalibratedPoint:
    """The largest z (to Z_STEP) that every group of impostor z-scores allows for `target`."""
    from latticelock.tools.rates import rule_of_three, wilson_upper

    needed = rule_of_three(target)
    sizes = {name: len(scores) for name, scores in groups.items()}
    if not any(n >= needed and wilson_upper(0, n) <= target for n in sizes.values()):
        raise ToolsError(
            f"FAR {target:g} per attempt cannot be supported by these impostor attempts ({sizes}): "
            f"the rule of three needs {needed} without a false accept, the Wilson bound {math.ceil(3.8415 / target)}"
        )
    z = min(group_limit(scores, target) for scores in groups.values())
    if not math.isfinite(z):
        raise ToolsError(f"FAR {target:g} is met by every radius up to the device lattice's: nothing to calibrate")
    figures = []
    for name, scores in groups.items():
        errors = int(np.count_nonzero(scores <= z))
        upper = wilson_upper(errors, len(scores)) if len(scores) else 1.0
        figures.append(GroupFigures(name, errors, len(scores), errors / max(1, len(scores)), upper,
                                    len(scores) >= needed and upper <= target))
    return CalibratedPoint(target, z, needed, figures, (0.0, 0.0, 0.0), 0.0)


def calibrate(data: "EmbeddingsFile", public: frozenset[str], targets: list[float] | tuple[float, ...], *, folds: int = 4,
              frames: int | None = None, policy: "PolicyConfig | None" = None,
              probe: str = "frame", seed: int = 0, progress: bool = True) -> Calibration:
    """The device lattice's stranger z for each per-attempt FAR target, from the `public` identities of `data`."""
    from dataclasses import replace

    from latticelock.kernels.projection import load_projection
    from latticelock.kernels.radii import radius_sq_at
    from latticelock.tools.attempts import scaled

    from latticelock.device.enrol import EnrolConfig, make_template
    from latticelock.device.policy import DEFAULT_POLICY
    from latticelock.kernels.params import DEFAULT_FOR_PURPOSE, DEVICE_BASE, get_parameter_set
    from latticelock.tools.attempts import identities

    policy = policy or DEFAULT_POLICY
    frames = frames or EnrolConfig().frames
    if folds < 3:
        raise ToolsError(f"cross-fitting needs at least 3 folds (a PCA fitted without two of them), got {folds}")
    people = identities(data, public)
    if len(people) < folds:
        raise ToolsError(f"{data.path}: {len(people)} public identities cannot fill {folds} folds")
    templates = np.stack([make_template(data.embeddings[p.rows[:frames]]) for p in people])
    # The unlock point: the device points share the lattice and the scores do not depend on z; its ceiling,
    # the larger, caps every target's scores (for the wallet's smaller z its ceiling never binds on the
    # public templates: it is the largest radius they get).
    scores, averaged = fold_scores(data, people, templates, folds, get_parameter_set(DEFAULT_FOR_PURPOSE["unlock"]), policy.k, policy.n, probe,
                                   np.random.default_rng(seed), progress)
    groups = {"1 photo": scores[~averaged], "2+ photos": scores[averaged]}
    shipped = load_projection(DEVICE_BASE.projection)
    e = scaled(DEVICE_BASE, shipped, templates)
    shortest = float(np.min(np.linalg.norm(scaled(DEVICE_BASE, shipped, data.embeddings[np.concatenate([p.rows for p in people])]), axis=1)))
    points = []
    for target in targets:
        point = z_for(groups, target)
        radii = np.sqrt(radius_sq_at(DEVICE_BASE, shipped, e, point.stranger_z))
        points.append(replace(point, radius_quartiles=tuple(float(r) for r in np.percentile(radii, [25, 50, 75])),
                              radius_cap=math.ceil(float(radii.max()) * 10) / 10))
    return Calibration(
        DEVICE_BASE.name, DEVICE_BASE.scale, len(people), int(sum(len(p.rows) for p in people)),
        dict(sorted(Counter(min(len(p.rows), frames) for p in people).items())), folds,
        f"{policy.k}/{policy.n}", probe, len(scores), points, shortest, math.floor(PROBE_FLOOR_FRACTION * shortest * 10) / 10,
    )


def format_calibration(c: Calibration) -> str:
    lines = [
        f"public identities {c.identities} ({c.images} images); templates by images averaged: "
        + ", ".join(f"{k}: {v}" for k, v in c.templates_by_images.items()),
        f"device lattice {c.base} (scale {c.scale}); policy {c.policy}, probe {c.probe}, 1 enrolled user; "
        f"{c.folds}-fold cross-fitted PCA; {c.impostor_attempts} impostor attempts",
        f"  {'target':>8} {'z':>8} {'radii (quartiles; cap)':>27} {'needed':>8}  {'templates':<10} {'accepts':>8} {'attempts':>9} "
        f"{'FAR':>9} {'upper95':>9}  certifies",
    ]
    footer = (f"shortest public face |e| {c.shortest_public_face:.1f}; probe floor ({PROBE_FLOOR_FRACTION} of it) {c.probe_floor:.1f}: "
              "shorter probes match nothing")
    for r in c.points:
        quartiles = "/".join(f"{q:.0f}" for q in r.radius_quartiles) + f"; {r.radius_cap:.1f}"
        for i, g in enumerate(r.groups):
            head = f"  {r.far_target:8.0e} {r.stranger_z:8.4f} {quartiles:>27} {r.attempts_needed:>8}" if i == 0 else " " * 56
            lines.append(f"{head}  {g.templates:<10} {g.false_accepts:>8} {g.impostor_attempts:>9} {g.far:9.2e} "
                         f"{g.far_upper95:9.2e}  {'yes' if g.certifies else 'no: too few attempts, none accepted'}")
    return "\n".join([*lines, footer])


def _handler(args) -> int:
    from latticelock.tools.attempts import lfw_split
    from latticelock.tools.embeddings import load_embeddings
    from latticelock.tools.flags import check_json_target, write_json

    check_json_target(args.json)
    data = load_embeddings(args.embeddings)
    _, public = lfw_split(data, args.pairs, args.datasets)
    result = calibrate(data, public, args.far or DEFAULT_TARGETS, folds=args.folds, probe=args.probe, seed=args.seed)
    print(format_calibration(result))
    write_json(args.json, asdict(result))
    return 0


def register(commands) -> None:
    from latticelock.tools import flags
    from latticelock.tools.attempts import far_flag, pairs_flag, probe_flag

    parser = commands.add_parser(
        "calibrate", help="the device's stranger z for per-attempt FAR targets, from public LFW identities",
        description="Calibrate operating points of the device lattice on LFW identities that no pair names "
                    "(cross-fitted PCA; 95% Wilson bound; rule of three for the attempts needed).",
    )
    flags.embeddings(parser)
    pairs_flag(parser)
    flags.datasets(parser)
    far_flag(parser, f"the targets to calibrate (default {' '.join(f'{t:g}' for t in DEFAULT_TARGETS)})")
    parser.add_argument("--folds", type=int, default=4, help="identity folds for cross-fitting the PCA (default 4)")
    probe_flag(parser)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment (default 0)")
    flags.json_output(parser, "the calibration")
    parser.set_defaults(func=_handler)
