"""Baseline "mrp": multispace random projection (Teoh and Yuang, 2007).

Each user gets a Gaussian R in R^(k x 512) (k = 128); the record stores R and v = R x / sqrt(k), and a
probe is accepted when |R x' / sqrt(k) - v| is below a threshold. Since R is stored beside v, a thief
gets x back from the pseudo-inverse (the forensics tools show it). The key is derived from v, public
to a thief.
"""

from __future__ import annotations

import os

import numpy as np

from latticelock.kernels.errors import SchemeError
from latticelock.kernels.kdf import hkdf
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import EMBEDDING_DIM, SchemeBase, as_embedding, as_embeddings

SCHEME_ID = "mrp"
PARAMETER_SET = "mrp-facenet-k128"
K = 128
# E|R d|^2 / k = |d|^2, so the unprotected threshold carries over; calibrated on public LFW impostor
# pairs at FPR 1% by `latticelock eval projection`.
THRESHOLD = 1.0650
COIN_BYTES = 32
FIELDS = ("R", "v")


class MRPScheme(SchemeBase):
    scheme_id = SCHEME_ID
    parameter_set = PARAMETER_SET

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = float(threshold)

    def enroll(self, embedding: np.ndarray) -> Record:
        return self.enroll_derand(embedding, os.urandom(COIN_BYTES))

    def enroll_derand(self, embedding: np.ndarray, coins: bytes) -> Record:
        """Deterministic core: R is drawn from a generator seeded with `coins`."""
        if len(coins) != COIN_BYTES:
            raise SchemeError(f"MRP needs {COIN_BYTES} bytes of coins, got {len(coins)}")
        rng = np.random.Generator(np.random.PCG64(np.frombuffer(coins, dtype=np.uint32)))
        R = rng.standard_normal((K, EMBEDDING_DIM)).astype(np.float32)
        v = (R.astype(np.float64) @ as_embedding(embedding) / np.sqrt(K)).astype(np.float32)
        return Record(SCHEME_ID, PARAMETER_SET, {"R": R, "v": v})

    def verify_many(self, record: Record, embeddings: np.ndarray) -> list[bytes | None]:
        record.expect(SCHEME_ID, PARAMETER_SET, FIELDS)
        R, v = record["R"].astype(np.float64), record["v"].astype(np.float64)
        if R.shape != (K, EMBEDDING_DIM) or v.shape != (K,):
            from latticelock.kernels.errors import RecordError

            raise RecordError(f"mrp record has R {R.shape} and v {v.shape}, expected ({K}, {EMBEDDING_DIM}) and ({K},)")
        projected = as_embeddings(embeddings) @ R.T / np.sqrt(K)
        distances = np.linalg.norm(projected - v, axis=1)
        key = hkdf(record["v"].tobytes(), b"latticelock/mrp/key")
        return [key if d <= self.threshold else None for d in distances]
