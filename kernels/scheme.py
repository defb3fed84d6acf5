"""The one interface every protection scheme offers, and the factory that builds them by name.

    scheme = get_scheme("l2fe-facenet-m32")        # or "unprotected", "mrp", "facial-fe"
    record = scheme.enroll(embedding)               # Record; record.to_bytes() goes to flash
    key = scheme.verify(record, probe)              # 32-byte key, or None for a rejected face

`verify_many` tests many candidate embeddings against one record (a multi-frame unlock, a dictionary
attack); `identify` tests one embedding against many records (1:N search). Both return one key or
None per candidate / record, in order. A rejected face is None, never an exception; exceptions mean
a broken record (RecordError) or a wrong call (SchemeError). Which schemes are baselines and which
leak the face to a flash thief: `latticelock.kernels.families`.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from latticelock.kernels.errors import ParameterSetError, SchemeError
from latticelock.kernels.record import Record

EMBEDDING_DIM = 512


@runtime_checkable
class Scheme(Protocol):
    scheme_id: str
    parameter_set: str

    def enroll(self, embedding: np.ndarray) -> Record: ...

    def verify(self, record: Record, embedding: np.ndarray) -> bytes | None: ...

    def verify_many(self, record: Record, embeddings: np.ndarray) -> list[bytes | None]: ...

    def identify(self, records: Sequence[Record], embedding: np.ndarray) -> list[bytes | None]: ...


class SchemeBase:
    """Shared plumbing: `verify` and `identify` in terms of the subclass's `verify_many`; subclasses
    define `enroll` and `verify_many`, and override `identify` where they can batch it."""

    scheme_id: str
    parameter_set: str

    def verify(self, record: Record, embedding: np.ndarray) -> bytes | None:
        return self.verify_many(record, as_embedding(embedding)[None, :])[0]

    def identify(self, records: Sequence[Record], embedding: np.ndarray) -> list[bytes | None]:
        probe = as_embedding(embedding)[None, :]
        return [self.verify_many(record, probe)[0] for record in records]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.parameter_set!r})"


def as_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """float64[k,512] L2-normalised rows; SchemeError for a wrong shape or non-finite / zero rows."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != EMBEDDING_DIM:
        raise SchemeError(f"expected embeddings of shape [k, {EMBEDDING_DIM}], got {np.shape(embeddings)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise SchemeError("embeddings must be finite and non-zero")
    return x / norms


def as_embedding(embedding: np.ndarray) -> np.ndarray:
    x = np.asarray(embedding)
    if x.shape != (EMBEDDING_DIM,):
        raise SchemeError(f"expected one embedding of shape ({EMBEDDING_DIM},), got {x.shape}")
    return as_embeddings(x)[0]


def get_scheme(name_or_parameter_set: str, **options) -> Scheme:
    """A scheme by name: a baseline ("unprotected", "mrp", "facial-fe", or its parameter-set id) or an L2FE set.

    Options go to the scheme's constructor, e.g. `threshold=` for the baselines; `decoder=`,
    `kdf=`, `backend=`, `label=` for L2FE-Hash. The device does not use this factory: it goes through
    `latticelock.kernels.recipe`.
    """
    from latticelock.kernels import facial_fe, mrp, unprotected
    from latticelock.kernels.params import PARAMETER_SETS

    baselines = {
        "unprotected": unprotected.UnprotectedScheme,
        unprotected.PARAMETER_SET: unprotected.UnprotectedScheme,
        "mrp": mrp.MRPScheme,
        mrp.PARAMETER_SET: mrp.MRPScheme,
        "facial-fe": facial_fe.FacialFEScheme,
        facial_fe.PARAMETER_SET: facial_fe.FacialFEScheme,
    }
    if name_or_parameter_set in baselines:
        return baselines[name_or_parameter_set](**options)
    if name_or_parameter_set in PARAMETER_SETS:
        from latticelock.kernels.l2fe import L2FEScheme

        return L2FEScheme(name_or_parameter_set, **options)
    known = [*baselines, *PARAMETER_SETS]
    raise ParameterSetError(f"unknown scheme or parameter set {name_or_parameter_set!r}; known: {', '.join(known)}")
