"""Baseline "unprotected": the record is the enrolled embedding itself; accept below an L2 threshold.

The 32-byte key is derived from the stored embedding, so it is public to anyone who reads the flash:
that is the point of the comparison, not a protection.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from latticelock.kernels.kdf import hkdf
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import SchemeBase, as_embedding, as_embeddings

SCHEME_ID = "unprotected"
PARAMETER_SET = "unprotected-facenet-l2"
# L2 distance between normalised FaceNet embeddings at 1% false accepts among impostor pairs of the
# public LFW identities (none in lfw_pairs.txt); printed by `latticelock eval projection`.
THRESHOLD = 1.1109
FIELDS = ("embedding",)


class UnprotectedScheme(SchemeBase):
    scheme_id = SCHEME_ID
    parameter_set = PARAMETER_SET

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = float(threshold)

    def enroll(self, embedding: np.ndarray) -> Record:
        return Record(SCHEME_ID, PARAMETER_SET, {"embedding": as_embedding(embedding).astype(np.float32)})

    def _template(self, record: Record) -> np.ndarray:
        record.expect(SCHEME_ID, PARAMETER_SET, FIELDS)
        return as_embedding(record["embedding"])

    def _key(self, record: Record) -> bytes:
        return hkdf(record["embedding"].tobytes(), b"latticelock/unprotected/key")

    def verify_many(self, record: Record, embeddings: np.ndarray) -> list[bytes | None]:
        distances = np.linalg.norm(as_embeddings(embeddings) - self._template(record), axis=1)
        key = self._key(record)
        return [key if d <= self.threshold else None for d in distances]

    def identify(self, records: Sequence[Record], embedding: np.ndarray) -> list[bytes | None]:
        if not records:
            return []
        templates = np.stack([self._template(r) for r in records])
        distances = np.linalg.norm(templates - as_embedding(embedding), axis=1)
        return [self._key(r) if d <= self.threshold else None for r, d in zip(records, distances)]
