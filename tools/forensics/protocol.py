"""The paper's attack protocol: identity-disjoint public data and victims, a calibrated threshold,
attack success rate (ASR) and the random-guess baseline.

Everything an attacker learns (inverse models, k-means centroids, the mean face, the threshold) is
fitted on the public split only; victims are identities the attacker has never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latticelock.tools.embeddings import EmbeddingsFile, normalise
from latticelock.tools.errors import ToolsError

PAPER_TAU = 1.103  # the paper's threshold on normalised FaceNet embeddings (FPR about 0.8%)
DEFAULT_TARGET_FPR = 0.008


@dataclass(frozen=True)
class Split:
    """Public faces (the attacker's) and victims (one enrolled and, where present, one other image)."""

    public: np.ndarray  # float32 [P, 512]
    public_labels: np.ndarray  # str [P]
    victim_labels: np.ndarray  # str [V]
    enrolled: np.ndarray  # float32 [V, 512]: the image each victim enrolled with
    other: np.ndarray  # float32 [V, 512]: another image of the same victim
    enrolled_files: np.ndarray  # str [V]: the enrolled image, relative to the dataset folder (face grids)


def split_identities(
    faces: EmbeddingsFile,
    victim_fraction: float = 0.5,
    max_victims: int | None = None,
    eligible: set[str] | None = None,
    seed: int = 0,
) -> Split:
    """Disjoint by identity: a random `victim_fraction` of the identities with two or more images
    (restricted to `eligible` when given, e.g. the identities of lfw_pairs.txt, whose faces the shipped
    PCA projections were not fitted on) are victims, the first image enrolled and the second the
    "other image"; every other identity, including all single-image ones, is public."""
    rng = np.random.default_rng(seed)
    order = np.argsort(faces.files, kind="stable")
    labels = faces.labels[order]
    names, counts = np.unique(labels, return_counts=True)
    multi = names[counts >= 2]
    if eligible is not None:
        multi = np.array([name for name in multi if name in eligible])
    if len(multi) < 2:
        raise ToolsError("need at least two identities with two or more images to form victims")
    chosen = rng.permutation(multi)[: max(1, int(round(victim_fraction * len(multi))))]
    if max_victims is not None:
        chosen = chosen[:max_victims]
    victim_set = set(chosen.tolist())
    is_victim = np.array([name in victim_set for name in labels])
    public_idx = order[~is_victim]
    enrolled, other, vlabels = [], [], []
    for name in sorted(victim_set):
        idx = order[labels == name]
        enrolled.append(idx[0])
        other.append(idx[1])
        vlabels.append(name)
    return Split(
        public=faces.embeddings[public_idx],
        public_labels=faces.labels[public_idx],
        victim_labels=np.array(vlabels),
        enrolled=faces.embeddings[np.array(enrolled)],
        other=faces.embeddings[np.array(other)],
        enrolled_files=faces.files[np.array(enrolled)],
    )


@dataclass(frozen=True)
class Threshold:
    tau: float
    target_fpr: float
    fpr: float  # on the public impostor pairs used
    tpr: float  # on the public genuine pairs
    impostor_pairs: int
    genuine_pairs: int
    how: str


def pair_identities(pairs_file: str | Path) -> set[str]:
    """Every identity named in an LFW View 2 pairs file, lines parsed by `latticelock.tools.pairs`.
    Unlike `pairs.read_pairs` it does not check the fold counts: it only keeps victims out of the
    attacker's data, and a line it cannot parse names nobody."""
    from latticelock.tools.pairs import parse_pair

    try:
        lines = Path(pairs_file).read_text().splitlines()[1:]
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolsError(f"cannot read pairs file {pairs_file}: {exc}") from None
    names: set[str] = set()
    for line in lines:
        try:
            first, second, _ = parse_pair(line.split())
        except ValueError:
            continue
        names.update((first.split("/")[0], second.split("/")[0]))
    return names


def _pair_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[a] - x[b], axis=1)


def calibrate_tau(
    public: np.ndarray, labels: np.ndarray, target_fpr: float = DEFAULT_TARGET_FPR, impostor_pairs: int = 200_000, seed: int = 1
) -> Threshold:
    """tau = the `target_fpr` quantile of L2 distances between random pairs of different public
    identities; TPR is measured on every same-identity pair of public images (capped)."""
    rng = np.random.default_rng(seed)
    n = len(public)
    a = rng.integers(0, n, size=impostor_pairs * 2)
    b = rng.integers(0, n, size=impostor_pairs * 2)
    keep = labels[a] != labels[b]
    a, b = a[keep][:impostor_pairs], b[keep][:impostor_pairs]
    impostor = _pair_distances(public, a, b)
    tau = float(np.quantile(impostor, target_fpr))
    ga, gb = [], []
    for name in np.unique(labels):
        idx = np.flatnonzero(labels == name)
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                ga.append(idx[i])
                gb.append(idx[j])
    ga_arr, gb_arr = np.array(ga, dtype=np.int64), np.array(gb, dtype=np.int64)
    if len(ga_arr) > impostor_pairs:
        pick = rng.choice(len(ga_arr), impostor_pairs, replace=False)
        ga_arr, gb_arr = ga_arr[pick], gb_arr[pick]
    genuine = _pair_distances(public, ga_arr, gb_arr) if len(ga_arr) else np.zeros(0)
    return Threshold(
        tau=tau,
        target_fpr=target_fpr,
        fpr=float(np.mean(impostor <= tau)),
        tpr=float(np.mean(genuine <= tau)) if len(genuine) else float("nan"),
        impostor_pairs=len(impostor),
        genuine_pairs=len(genuine),
        how=(
            f"{target_fpr:.2%} quantile of L2 distances between {len(impostor)} random different-identity "
            f"pairs of public (attacker-side) normalised embeddings"
        ),
    )


def success(predicted: np.ndarray, targets: np.ndarray, tau: float) -> np.ndarray:
    """bool [V]: the attack's (normalised) output for victim i lies within tau of target i."""
    return np.linalg.norm(normalise(predicted) - targets, axis=1) <= tau


def asr(predicted: np.ndarray, targets: np.ndarray, tau: float) -> float:
    return float(np.mean(success(predicted, targets, tau)))


@dataclass(frozen=True)
class Baseline:
    guesses: int
    repeats: int
    per_guess_mean: float
    per_guess_std: float
    any_mean: float
    any_std: float
    any_curve: np.ndarray  # mean ASR of "any of the first g guesses", g = 1..guesses


def random_guess_baseline(
    public: np.ndarray, public_labels: np.ndarray, targets: np.ndarray, tau: float, guesses: int = 1000,
    repeats: int = 10, seed: int = 2,
) -> Baseline:
    """The paper's protocol: each repeat guesses one random image of each of `guesses` distinct
    random public identities. Per guess: the fraction of (guess, victim) pairs within tau (the
    paper's figure); any: the fraction of victims matched by at least one of the guesses."""
    rng = np.random.default_rng(seed)
    names, inverse = np.unique(public_labels, return_inverse=True)
    by_name = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    per, anyrate, curves = [], [], []
    t = targets.astype(np.float32)
    count = min(guesses, len(names))
    for _ in range(repeats):
        pick = np.array([rng.choice(by_name[i]) for i in rng.choice(len(names), size=count, replace=False)])
        d = np.sqrt(np.maximum(np.sum(public[pick] ** 2, 1)[:, None] + np.sum(t**2, 1)[None, :] - 2 * public[pick] @ t.T, 0))
        hit = d <= tau  # [G, V]
        per.append(hit.mean())
        first = np.where(hit.any(0), hit.argmax(0), len(pick))
        curves.append(np.array([(first < g).mean() for g in range(1, len(pick) + 1)]))
        anyrate.append(hit.any(0).mean())
    return Baseline(
        guesses=count,
        repeats=repeats,
        per_guess_mean=float(np.mean(per)),
        per_guess_std=float(np.std(per)),
        any_mean=float(np.mean(anyrate)),
        any_std=float(np.std(anyrate)),
        any_curve=np.mean(curves, axis=0),
    )


def first_success_curve(first_index: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """ASR at each guess budget, from the 0-based index of each victim's first success (-1 = never)."""
    first = np.where(first_index < 0, np.iinfo(np.int64).max, first_index)
    return np.array([(first < b).mean() for b in budgets])
