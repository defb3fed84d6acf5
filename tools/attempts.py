"""How the evaluations turn folders of photos into the device's enrolments and unlock attempts.

Each identity's images are taken in the order the device replays a folder (`dir://`: sorted names).
- Enrolment: the first `frames` images (the device's `EnrolConfig` default, 5) averaged by the
  device's own `make_template`; an identity is enrolled only if at least one image is left after them.
- Attempts: disjoint slices of `n` consecutive images (n = the policy's usable frames), as someone
  replaying the folder from image 0, n, 2n, ... (the issue's look-alike replay: starts 0, 3, 6, ...).
  An identity with fewer than n images gives one slice that repeats them: a face held still in front
  of the camera, the hardest case for a k-of-n policy. Images after the last full slice are unused.
  Every attempt shows one identity only (the device's attempt belongs to one face track).
- Genuine attempts: the slices of a person's images after the enrolment ones; impostor attempts: the
  slices of every other identity's images.
- Probes (`--probe`): "frame" feeds each frame's embedding to the matcher, as the device does today;
  "mean" feeds the running mean of the attempt's frames so far (frame 1, mean of 1-2, mean of 1-3),
  a device-side change measured here before anyone builds it.

The distance model: acceptance is exactly |e - e'| <= radius with e = round(scale * P(x)) (radius below
half the lattice's minimum distance, `kernels.params`; the record's own radius under a set with a
`stranger_z`, `kernels.radii`), so an attempt of a 1-user store is accepted iff the k-th smallest
distance of its probes to the template is within the radius (`acceptance_scores`, `point_limit`). Calibration uses it
with cross-fitted projections; the evaluation checks it against the device's own decisions.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from latticelock.tools.embeddings import EmbeddingsFile
from latticelock.tools.errors import ToolsError

if TYPE_CHECKING:
    from latticelock.kernels.params import L2FEParams
    from latticelock.kernels.projection import Projection

PROBE_MODES = ("frame", "mean")

Slice = tuple[int, ...]


@dataclass(frozen=True)
class Identity:
    name: str
    rows: np.ndarray  # rows of the embeddings, in replay order


@dataclass(frozen=True)
class Enrolled:
    name: str
    template: np.ndarray  # float32[512], the device's template
    genuine: tuple[Slice, ...]  # attempts made of the images after the enrolment ones


def identities(data: EmbeddingsFile, names: set[str] | frozenset[str] | None = None) -> list[Identity]:
    """The identities of `data` (only `names` if given), each with its rows in replay order."""
    order = np.lexsort((data.files, data.labels))
    labels = data.labels[order]
    found = []
    for name in np.unique(labels):
        if names is None or name in names:
            found.append(Identity(str(name), order[labels == name]))
    return found


def slices(rows: Sequence[int], n: int) -> list[Slice]:
    """Disjoint n-image slices of `rows`; a single slice repeating them when there are fewer than n."""
    rows = [int(r) for r in rows]
    if not rows:
        return []
    if len(rows) < n:
        return [tuple(rows[i % len(rows)] for i in range(n))]
    return [tuple(rows[i : i + n]) for i in range(0, len(rows) - n + 1, n)]


def enrol_identities(data: EmbeddingsFile, people: list[Identity], frames: int, n: int) -> list[Enrolled]:
    """The device's template from each identity's first `frames` images, and its genuine attempts."""
    from latticelock.device.enrol import make_template

    return [
        Enrolled(p.name, make_template(data.embeddings[p.rows[:frames]]), tuple(slices(p.rows[frames:], n)))
        for p in people
        if len(p.rows) > frames
    ]


def probe_keys(attempt: Slice, mode: str) -> tuple[Slice, ...]:
    """What the matcher sees at each frame of an attempt, as the rows each probe averages."""
    if mode == "frame":
        return tuple((row,) for row in attempt)
    if mode == "mean":
        # The mean of one frame repeated is that frame: the same probe, decoded once.
        return tuple(attempt[: i + 1] if len(set(attempt[: i + 1])) > 1 else attempt[:1] for i in range(len(attempt)))
    raise ToolsError(f"unknown probe mode {mode!r}; choose one of {', '.join(PROBE_MODES)}")


def probe_vectors(embeddings: np.ndarray, keys: Sequence[Slice]) -> np.ndarray:
    """float32[len(keys), 512]: one frame's embedding, or the device's mean of several."""
    from latticelock.device.enrol import make_template

    out = np.empty((len(keys), embeddings.shape[1]), np.float32)
    for i, key in enumerate(keys):
        out[i] = embeddings[key[0]] if len(key) == 1 else make_template(embeddings[list(key)])
    return out


def scaled(params: "L2FEParams", projection: "Projection", x: np.ndarray) -> np.ndarray:
    """e = round(scale * P(x)) as int64[k, m], exactly as Gen and Rep compute it."""
    from latticelock.kernels.hazmat.rep import preprocess

    return preprocess(params, projection, x)


def attempt_scores(templates: np.ndarray, probes: np.ndarray, attempts: np.ndarray, k: int,
                   usable: np.ndarray | None = None) -> np.ndarray:
    """float64[T, A]: the k-th smallest distance |e - e'| over each attempt's probes, per template.

    `templates` int64[T, m] and `probes` int64[P, m] are scaled vectors; `attempts` int[A, n] indexes
    `probes`. A 1-user store accepts attempt a for template t iff the score is within the radius. A probe
    not `usable` (bool[P]; below a set's floor) matches nothing: its distance is infinite."""
    t = templates.astype(np.float64)
    p = probes.astype(np.float64)
    sq = np.maximum((t * t).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2.0 * t @ p.T, 0.0)
    if usable is not None:
        sq[:, ~usable] = np.inf
    per_frame = np.sqrt(sq)[:, attempts]  # [T, A, n]
    return np.partition(per_frame, k - 1, axis=2)[:, :, k - 1]


def acceptance_scores(params: "L2FEParams", projection: "Projection", templates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """What a point compares with its limit (`point_limit`), per template row of `scores` (`attempt_scores`):
    the distance itself for a set with one radius; for a set with a `stranger_z`, the squared distance's
    stranger z-score for that template (`kernels.radii`), infinite beyond the most its radius may be. A
    1-user store accepts exactly the attempts whose score is at most the limit."""
    from latticelock.kernels.radii import radius_sq_cap, stranger_moments

    if params.stranger_z is None:
        return scores
    mean, sd = stranger_moments(params, projection, templates)
    squared = np.rint(np.asarray(scores, dtype=np.float64) ** 2)
    within = squared <= radius_sq_cap(params, templates)[:, None]
    return np.where(within, (squared - mean[:, None]) / sd[:, None], np.inf)


def point_scores(params: "L2FEParams", projection: "Projection", templates: np.ndarray, probes: np.ndarray,
                 attempts: np.ndarray, k: int) -> np.ndarray:
    """`attempt_scores` as `params` decides them: probes below its floor match nothing, and the scores are
    in the units of its limit (`acceptance_scores`, `point_limit`)."""
    from latticelock.kernels.radii import reaches_floor

    scores = attempt_scores(templates, probes, attempts, k, reaches_floor(params, probes))
    return acceptance_scores(params, projection, templates, scores)


def point_limit(params: "L2FEParams") -> float:
    """The limit `acceptance_scores` are held to: the radius, or the stranger z."""
    return params.radius if params.stranger_z is None else params.stranger_z


def probe_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--probe", choices=PROBE_MODES, default="frame",
                        help="what each frame offers the matcher: its embedding (the device today) or the running mean of the attempt's frames")


def far_rate(text: str) -> float:
    """argparse type of a false-accept rate: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a false-accept rate must be in (0, 1), got {text}")
    return value


def far_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--far", type=far_rate, action="append", metavar="RATE", help=f"per-attempt false-accept rate, repeatable: {what}")


def pairs_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, metavar="FILE",
                        help="LFW pairs file: its identities are evaluated, the others are public (default: lfw_pairs.txt in the datasets folder)")


def lfw_split(data: EmbeddingsFile, pairs: Path | None, datasets: Path | None) -> tuple[frozenset[str], frozenset[str]]:
    """(evaluated, public) LFW identities: those some pair names, and all the others."""
    from latticelock.tools.datasets import dataset_path
    from latticelock.tools.pairs import pair_identities, read_pairs

    evaluated = pair_identities(read_pairs(pairs if pairs is not None else dataset_path("lfw_pairs.txt", datasets)))
    present = frozenset(str(label) for label in np.unique(data.labels))
    if not present & evaluated:
        raise ToolsError(f"{data.path}: no identity of the pairs file has an embedding (is it LFW?)")
    return present & evaluated, present - evaluated
