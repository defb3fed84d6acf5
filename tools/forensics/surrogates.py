"""PIPE step 1 (a surrogate of the face from one stolen record) and the algebraic recoveries that
some records allow outright. Each function reads only what the record stores plus public facts
(the scheme's published constants, the parameter set, a prior fitted on public faces)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from latticelock.tools.errors import ToolsError


@dataclass(frozen=True)
class FacePrior:
    """Mean and covariance of public (attacker-side) normalised embeddings."""

    mean: np.ndarray  # float64[512]
    cov: np.ndarray  # float64[512, 512]
    precision: np.ndarray = field(repr=False)  # inverse of cov plus a small ridge

    @classmethod
    def fit(cls, public: np.ndarray, ridge: float = 1e-4) -> "FacePrior":
        x = np.asarray(public, dtype=np.float64)
        cov = np.cov(x, rowvar=False)
        regular = cov + ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
        return cls(x.mean(0), cov, np.linalg.inv(regular))


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


def mrp_projection(record) -> np.ndarray:
    """Partial leakage (R not stolen): only sqrt(k) v = R x, under a projection the thief never sees."""
    v = np.asarray(record["v"], dtype=np.float64)
    return v * np.sqrt(len(v))


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


def _e8_short_vectors() -> np.ndarray:
    """0 and the 240 minimal vectors of E8: (+-1, +-1, 0^6) permuted, and (+-1/2)^8 with an even number of minus signs."""
    rows = [np.zeros(8)]
    for i, j in itertools.combinations(range(8), 2):
        for a, b in itertools.product((1.0, -1.0), repeat=2):
            v = np.zeros(8)
            v[i], v[j] = a, b
            rows.append(v)
    for signs in itertools.product((0.5, -0.5), repeat=8):
        if sum(s < 0 for s in signs) % 2 == 0:
            rows.append(np.array(signs))
    return np.array(rows)


def facial_fe_codeword_recovery(record, scale: float, prior: FacePrior, sweeps: int = 3) -> np.ndarray:
    """Algebraic recovery: x = (helper + w) / scale with w in E8 on each 8-block, so only the codeword
    is unknown. Start from w0 = the E8 point that puts x nearest the public mean face, then, block by
    block (iterated conditional modes), pick w0 + (0 or one of E8's 240 minimal vectors) that makes
    x most likely under the public Gaussian prior given the other blocks."""
    from latticelock.kernels.hazmat.e8 import decode_blocks

    helper = np.asarray(record["helper"], dtype=np.float64)
    mean, precision = prior.mean, prior.precision
    w0 = decode_blocks(scale * mean - helper)
    shifts = _e8_short_vectors()
    x = (helper + w0) / scale
    for _ in range(sweeps):
        for start in range(0, len(x), 8):
            block = slice(start, start + 8)
            rest = x - mean
            rest[block] = 0
            lbb = precision[block, block]
            centre = mean[block] - np.linalg.solve(lbb, precision[block, :] @ rest)
            candidates = (helper[block] + w0[block] + shifts) / scale - centre
            score = np.einsum("ki,ij,kj->k", candidates, lbb, candidates)
            x[block] = candidates[np.argmin(score)] + centre
    return x


# --- L2FE-Hash -------------------------------------------------------------------------------------


def l2fe_surrogate(record, params) -> np.ndarray:
    """The paper's surrogate: A (expanded from the stored seed) and c, flattened and scaled to [0, 1)."""
    from latticelock.kernels.hazmat.expand import expand_matrix

    seed = record["seed"]
    c = np.asarray(record["c"], dtype=np.float64)
    if c.shape != (params.m,):
        raise ToolsError(f"l2fe record has c of shape {c.shape}, parameter set says m = {params.m}")
    A = expand_matrix(seed, params.m, params.n, params.q).astype(np.float64)
    return np.concatenate([A.ravel(), c]) / params.q
