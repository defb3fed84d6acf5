"""PIPE step 1 (a surrogate of the face from one stolen record) and the algebraic recoveries that
some records allow outright. Each function reads only what the record stores plus public facts
(the scheme's published constants, the parameter set, a prior fitted on public faces)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latticelock.tools.errors import ToolsError


@dataclass(frozen=True)
class FacePrior:
    """Mean and covariance of public (attacker-side) normalised embeddings."""

    mean: np.ndarray  # float64[512]
    cov: np.ndarray  # float64[512, 512]

    @classmethod
    def fit(cls, public: np.ndarray) -> "FacePrior":
        x = np.asarray(public, dtype=np.float64)
        return cls(x.mean(0), np.cov(x, rowvar=False))


# --- unprotected -----------------------------------------------------------------------------------


def unprotected_embedding(record) -> np.ndarray:
    """Trivial: the record is the embedding."""
    return np.asarray(record["embedding"], dtype=np.float64)


# --- MRP -------------------------------------------------------------------------------------------


def mrp_pinv(record) -> np.ndarray:
    """The paper's surrogate: R^+ (sqrt(k) v), i.e. x projected on the row space of R. Exact (x
    itself) whenever k >= 512, the rank of the embedding space."""
    R = np.asarray(record["R"], dtype=np.float64)
    v = np.asarray(record["v"], dtype=np.float64) * np.sqrt(R.shape[0])
    # R has full row rank k (Gaussian), so R^+ = R^T (R R^T)^-1
    return R.T @ np.linalg.solve(R @ R.T, v)


def mrp_conditional_mean(record, prior: FacePrior, ridge: float = 1e-6) -> np.ndarray:
    """Algebraic recovery with a public prior: E[x | R x = sqrt(k) v] for x ~ N(mean, cov).
    With k = 128 constraints and face embeddings concentrated on few directions, this is close to x."""
    R = np.asarray(record["R"], dtype=np.float64)
    v = np.asarray(record["v"], dtype=np.float64) * np.sqrt(R.shape[0])
    rc = R @ prior.cov
    gram = rc @ R.T
    gram[np.diag_indices_from(gram)] += ridge * np.trace(gram) / len(gram)
    return prior.mean + rc.T @ np.linalg.solve(gram, v - R @ prior.mean)


# --- Facial-FE -------------------------------------------------------------------------------------


def facial_fe_helper(record, scale: float) -> np.ndarray:
    """The helper itself is a surrogate: helper = scale x - w, and w is 0 on every block where scale x
    lies in E8's Voronoi cell around the origin."""
    return np.asarray(record["helper"], dtype=np.float64) / scale


def facial_fe_codeword_recovery(record, scale: float, guess: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Algebraic recovery: x = (helper + w) / scale with w in E8 per block. Start from a guess of x
    (the public mean, or PIPE's output) and take, per block, the E8 point that makes x closest to the
    guess; exact on every block where scale * |x - guess| stays inside E8's packing radius (1/sqrt 2)."""
    from latticelock.kernels.e8 import decode_blocks

    helper = np.asarray(record["helper"], dtype=np.float64)
    x = np.asarray(guess, dtype=np.float64)
    for _ in range(rounds):
        w = decode_blocks(scale * x - helper)
        x = (helper + w) / scale
        x = x / max(np.linalg.norm(x), 1e-12)  # embeddings are unit vectors: pull blocks toward it
    return (helper + decode_blocks(scale * x - helper)) / scale


# --- L2FE-Hash -------------------------------------------------------------------------------------


def l2fe_surrogate(record, params) -> np.ndarray:
    """The paper's surrogate: A (expanded from the stored seed) and c, flattened and scaled to [0, 1)."""
    from latticelock.kernels.expand import expand_matrix

    seed = record["seed"]
    c = np.asarray(record["c"], dtype=np.float64)
    if c.shape != (params.m,):
        raise ToolsError(f"l2fe record has c of shape {c.shape}, parameter set says m = {params.m}")
    A = expand_matrix(seed, params.m, params.n, params.q).astype(np.float64)
    return np.concatenate([A.ravel(), c]) / params.q
