"""PIPE (the paper's two-step inversion) and the algebraic recoveries, per scheme family.

Step 1 turns one stolen record into a surrogate vector (`surrogates`); step 2 maps surrogates to
embeddings with a model trained on the attacker's public faces, which the attacker enrols under the
same public scheme to make (surrogate, embedding) training pairs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import surrogates as S
from latticelock.tools.forensics.inverse import MLPInverse, RidgeInverse
from latticelock.tools.embeddings import normalise

MODELS = ("ridge", "mlp")
# What the thief holds of the record: "full" (everything stored) or, for MRP, "partial" (v only: the
# projection R kept elsewhere, the paper's "Partial" column).
LEAKAGE = {"unprotected": ("full",), "mrp": ("full", "partial"), "facial-fe": ("full",), "l2fe-hash": ("plain",)}


def family(scheme_id: str) -> str:
    """The record's family id (`latticelock.kernels.families`); ToolsError where no attack is defined."""
    if scheme_id not in LEAKAGE:
        raise ToolsError(f"no attack is defined for scheme {scheme_id!r}")
    return scheme_id


def surrogate(scheme, record, leakage: str | None = None) -> np.ndarray:
    """PIPE step 1 for one record, from what `leakage` says the thief holds (default: all of it)."""
    kind = family(record.scheme_id)
    leakage = leakage or LEAKAGE[kind][0]
    if leakage not in LEAKAGE[kind]:
        raise ToolsError(f"{kind} records have no {leakage!r} leakage; choose {', '.join(LEAKAGE[kind])}")
    if kind == "unprotected":
        return S.unprotected_embedding(record)
    if kind == "mrp":
        return S.mrp_pinv(record) if leakage == "full" else S.mrp_projection(record)
    if kind == "facial-fe":
        return S.facial_fe_helper(record, scheme.scale)
    return S.l2fe_surrogate(record, scheme.params)


def surrogates(scheme, records, leakage: str | None = None) -> np.ndarray:
    return np.stack([surrogate(scheme, r, leakage) for r in records])


@dataclass
class PipeModel:
    model: object
    name: str
    train_pairs: int
    train_seconds: float

    def predict(self, surr: np.ndarray) -> np.ndarray:
        return normalise(self.model.predict(surr))


def train_pipe(scheme, public: np.ndarray, model: str = "ridge", seed: int = 0, leakage: str | None = None) -> PipeModel:
    """Enrol each public face under `scheme` (the attacker runs the public Gen), take its surrogate
    as `leakage` allows, and fit surrogate -> embedding."""
    if model not in MODELS:
        raise ToolsError(f"unknown inverse model {model!r}; choose one of {', '.join(MODELS)}")
    start = time.perf_counter()
    x = np.stack([surrogate(scheme, scheme.enroll(face), leakage) for face in public])
    fitted = RidgeInverse().fit(x, public, seed=seed) if model == "ridge" else MLPInverse(seed=seed).fit(x, public)
    return PipeModel(fitted, model, len(public), time.perf_counter() - start)


def algebraic(scheme, record, prior: S.FacePrior) -> np.ndarray | None:
    """The recovery a scheme's algebra allows from one record (None for L2FE-Hash: see the lattice attack)."""
    kind = family(record.scheme_id)
    if kind == "unprotected":
        return S.unprotected_embedding(record)
    if kind == "mrp":
        return S.mrp_conditional_mean(record, prior)
    if kind == "facial-fe":
        return S.facial_fe_codeword_recovery(record, scheme.scale, prior)
    return None
