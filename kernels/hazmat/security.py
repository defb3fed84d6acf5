"""Security figures for an L2FE-Hash parameter set, computed and measured rather than assumed.

1. Primal uSVP estimate for the LWE instance c = A s + e mod q (n, m, q, the measured spread sigma of
   e's coordinates), with the 2016 estimate (Alkim, Ducas, Poeppelmann, Schwabe): the attack with BKZ
   block size beta succeeds in Kannan's embedding of k <= m samples (dimension d = k + 1, volume
   q^(k-n)) when sqrt(beta / d) * |(e, 1)| <= delta(beta)^(2 beta - d) * vol^(1/d); cost 2^(0.292 beta)
   (sieving). Not applicable when no beta <= d works.
2. Mean-face enumeration: e is a face, centred on the public mean face, so a thief who knows nothing of
   the victim decodes around c - scale * P(mean) = c. The lattice points closer to c than the true
   A s number about vol(ball_m(|e|)) / q^(m-n) (Gaussian heuristic); each costs one verifier test
   (one Argon2id evaluation). `mean_face_counts` gives that count per victim; `nearest_is_secret`
   checks directly, with exact CVP, how often the very first candidate is the victim's secret.
   `mean_face_acceptance` counts the faces whose record the normalised mean face itself unlocks.
3. Impostor acceptance is measured by `latticelock eval schemes` on the LFW pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latticelock.kernels.params import L2FEParams

SIEVE_EXPONENT = 0.292


# Experimental root-Hermite factors for small block sizes (as tabulated by the lattice estimator),
# where Chen's asymptotic formula is meaningless (it drops below 1).
_SMALL_BETA_DELTA = ((2, 1.02190), (5, 1.01862), (10, 1.01616), (15, 1.01485), (20, 1.01420),
                     (25, 1.01342), (28, 1.01331), (40, 1.01295))


def bkz_delta(beta: int) -> float:
    """Root-Hermite factor of BKZ-beta: the small-beta table (interpolated) below 40, Chen's formula above."""
    if beta < 40:
        xs, ys = zip(*_SMALL_BETA_DELTA)
        return float(np.interp(beta, xs, ys))
    return ((math.pi * beta) ** (1 / beta) * beta / (2 * math.pi * math.e)) ** (1 / (2 * (beta - 1)))


@dataclass(frozen=True)
class UsvpEstimate:
    beta: int | None  # None: not applicable (e too long for the attack at any block size)
    samples: int | None
    dimension: int | None
    log2_cost: float | None


def primal_usvp(n: int, m: int, q: int, sigma: float) -> UsvpEstimate:
    """Smallest BKZ block size solving the instance with at most m samples, and its 2^(0.292 beta) cost."""
    for beta in range(2, m + 2):
        delta = bkz_delta(beta)
        for k in range(n + 1, m + 1):
            d = k + 1
            if beta > d:
                continue
            norm = math.sqrt(k * sigma**2 + 1)
            lhs = math.log(math.sqrt(beta / d) * norm)
            rhs = (2 * beta - d) * math.log(delta) + (k - n) * math.log(q) / d
            if lhs <= rhs:
                return UsvpEstimate(beta, k, d, SIEVE_EXPONENT * beta)
    return UsvpEstimate(None, None, None, None)


def log2_ball_volume(m: int, radius: np.ndarray) -> np.ndarray:
    r = np.asarray(radius, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return (m / 2 * math.log(math.pi) - math.lgamma(m / 2 + 1)) / math.log(2) + m * np.log2(r)


def mean_face_counts(params: L2FEParams, e: np.ndarray) -> np.ndarray:
    """log2 of the expected number of lattice points a thief tests before the victim's, per victim.

    Candidates are tested nearest first around c (the public mean face projects to 0), and the lattice
    points closer than the true one number about vol(ball_m(|e|)) / det L(A); +1 counts the true one.
    """
    e = np.asarray(e, dtype=np.float64)
    log2_points = log2_ball_volume(params.m, np.linalg.norm(e, axis=1)) - (params.m - params.n) * math.log2(params.q)
    return np.log2(1.0 + np.exp2(log2_points))


def nearest_is_secret(scheme, records: list, budget_nodes: int = 2_000_000) -> np.ndarray:
    """For each record, True when exact CVP at c (the mean-face guess) returns the record's own lattice point
    and so its secret, tested against the stored verifier: a thief's first and only guess succeeds."""
    from latticelock.kernels.hazmat import cvp
    from latticelock.kernels.hazmat.rep import centred

    hits = np.zeros(len(records), dtype=bool)
    for i, record in enumerate(records):
        lattice = scheme.public_lattice(record)
        target = centred(lattice.c, scheme.params.q)[None, :]
        try:
            vectors, found = cvp.cvp_decode(lattice.basis, target, scheme.params.lambda1, max_nodes=budget_nodes)
        except cvp.EnumerationBudgetError as exc:
            vectors, found = exc.vectors, exc.found
        if found[0]:
            s = lattice.solver.solve(vectors[0])
            hits[i] = s is not None and scheme.check_secret(record, s) is not None
    return hits


def mean_face_acceptance(params: L2FEParams, projection, embeddings: np.ndarray) -> float:
    """Fraction of these faces whose record the public mean face (normalised, as a camera would give it)
    unlocks through the plain decoder: |e - e(mean)| <= radius (each record's own under a set with a
    `stranger_z`). The projection drops most of the mean's own direction, so this is far higher than in
    the 512-d space."""
    from latticelock.kernels.hazmat.rep import preprocess
    from latticelock.kernels.radii import radius_sq_at

    mean = projection.mean.astype(np.float64)
    e_mean = preprocess(params, projection, (mean / np.linalg.norm(mean))[None, :])
    e = preprocess(params, projection, embeddings)
    distances_sq = np.sum((e - e_mean) ** 2, axis=1)
    if params.stranger_z is None:
        return float(np.mean(distances_sq <= params.radius**2))
    return float(np.mean(distances_sq <= radius_sq_at(params, projection, e, params.stranger_z)))


def summarise(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}
