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
from latticelock.tools.forensics.protocol import normalise

MODELS = ("ridge", "mlp")


def family(scheme_id: str) -> str:
    if scheme_id.startswith("l2fe"):
        return "l2fe"
    if scheme_id in ("unprotected", "mrp", "facial-fe"):
        return scheme_id
    raise ToolsError(f"no attack is defined for scheme {scheme_id!r}")


def surrogate(scheme, record) -> np.ndarray:
    """PIPE step 1 for one record."""
    kind = family(record.scheme_id)
    if kind == "unprotected":
        return S.unprotected_embedding(record)
    if kind == "mrp":
        return S.mrp_pinv(record)
    if kind == "facial-fe":
        return S.facial_fe_helper(record, scheme.scale)
    return S.l2fe_surrogate(record, scheme.params)


def surrogates(scheme, records) -> np.ndarray:
    return np.stack([surrogate(scheme, r) for r in records])


@dataclass
class PipeModel:
    model: object
    name: str
    train_pairs: int
    train_seconds: float

    def predict(self, surr: np.ndarray) -> np.ndarray:
        return normalise(self.model.predict(surr))


def train_pipe(scheme, public: np.ndarray, model: str = "ridge", seed: int = 0) -> PipeModel:
    """Enrol each public face under `scheme` (the attacker runs the public Gen), take its surrogate,
    and fit surrogate -> embedding."""
    if model not in MODELS:
        raise ToolsError(f"unknown inverse model {model!r}; choose one of {', '.join(MODELS)}")
    start = time.perf_counter()
    x = np.stack([surrogate(scheme, scheme.enroll(face)) for face in public])
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
