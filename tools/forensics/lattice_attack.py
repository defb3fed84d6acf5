"""The lattice attack on a stolen L2FE-Hash record, needing no face of the victim at all.

c = A s + e (mod q) with e = round(scale * P(x)), and P is centred on the public mean face, so e is
a face-shaped vector that is not small next to the lattice's minimum distance: c - (a guess of e)
is close to the lattice point A s. The thief enumerates the lattice points nearest to
c - e_g for e_g the projected mean face and the projected k-means centroids of public faces, solves
each point for s (SecretSolver) and tests s against the stored verifier: one Argon2id per candidate.
A hit yields s and therefore e = c - A s, the victim's exact projected, scaled embedding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatticeTarget:
    """The public data of one stolen L2FE-Hash record that the attack needs."""

    c: np.ndarray  # int64[m]
    basis: object  # latticelock.kernels.hazmat.lattice.ReducedBasis
    solver: object  # latticelock.kernels.hazmat.recover.SecretSolver


def candidate_points(
    target: LatticeTarget, centres: np.ndarray, radius: float, max_points: int, enumerate_within, steps: int = 5
) -> Iterator[np.ndarray]:
    """Distinct lattice points near c - centre, centre by centre in the given order (mean face first),
    nearest first: the order a thief tests them in. Each centre's ball grows in `steps` radii up to
    `radius` (enumeration cost explodes with the radius, and most faces sit well inside it), and the
    generator is lazy, so a thief who succeeds early never pays for the larger balls."""
    from latticelock.kernels.hazmat.cvp import EnumerationBudgetError

    c = target.c.astype(np.float64)
    seen: set[bytes] = set()
    emitted = 0
    for centre in np.atleast_2d(centres):
        for r in radius * np.arange(1, steps + 1) / steps:
            try:
                found = enumerate_within(target.basis, c - centre, float(r), max_points)
            except EnumerationBudgetError as exc:  # keep what was found before the node budget ran out
                found = exc.vectors
            for v in np.asarray(found, dtype=np.int64):
                key = v.tobytes()
                if key in seen:
                    continue
                seen.add(key)
                yield v
                emitted += 1
                if emitted >= max_points:
                    return


@dataclass(frozen=True)
class Hit:
    rank: int  # 0-based position of the hit in the thief's order; -1 when no candidate passed
    evaluations: int  # verifier (KDF) evaluations run, up to and including the hit
    s: np.ndarray | None
    e: np.ndarray | None  # recovered c - A s: the victim's projected, scaled embedding


def attack_with_verifier(target: LatticeTarget, points, check, budget: int) -> Hit:
    """What the thief really runs: solve each candidate for s and test it with `check(s) -> bool`
    (one KDF evaluation per call), in order, up to `budget` evaluations."""
    evaluations = 0
    for rank, v in enumerate(points):
        if evaluations >= budget:
            break
        s = target.solver.solve(v)
        if s is None:
            continue
        evaluations += 1
        if check(s):
            return Hit(rank, evaluations, s, target.c.astype(np.int64) - v)
    return Hit(-1, evaluations, None, None)


def public_target(rep, record, bkz_block: int | None = None) -> LatticeTarget:
    """What the thief computes from the record alone; `bkz_block` above the device's reduces the
    basis harder (fpylll), which only speeds the enumeration up (the lattice points are the same)."""
    from latticelock.kernels.hazmat.lattice import reduced_basis_for

    lattice = rep.public_lattice(record)
    basis = lattice.basis
    p = rep.params
    if bkz_block is not None and bkz_block != p.bkz_block:
        basis = reduced_basis_for(record["seed"], p.m, p.n, p.q, min(bkz_block, p.m))
    return LatticeTarget(lattice.c, basis, lattice.solver)


def lattice_attack(rep, record, centres_e: np.ndarray, radius: float, budget: int, bkz_block: int | None = None,
                   label: bytes = b"") -> Hit:
    """The whole attack on one record: candidates near c - e_g for each centre e_g (int[m], scaled
    and projected like e), each tested against the stored verifier under the record's `label` (the
    user name the device bound it to, which the store keeps in the clear) by `rep.check_secret`."""
    from latticelock.kernels.hazmat.cvp import enumerate_within

    target = public_target(rep, record, bkz_block)
    points = candidate_points(target, centres_e, radius, budget, enumerate_within)
    return attack_with_verifier(target, points, lambda s: rep.check_secret(record, s, label) is not None, budget)


def embedding_of(e: np.ndarray, params, projection) -> np.ndarray:
    """A recovered e back in embedding space, on the sphere: x = mean + P^T (e / scale), e centred mod q."""
    from latticelock.kernels.hazmat.rep import centred
    from latticelock.tools.embeddings import normalise

    x = projection.mean + (centred(e, params.q) / params.scale) @ projection.components[: params.m]
    return normalise(x[None, :])[0]
