"""Baseline "facial-fe": the E8 lattice fuzzy extractor of Zhang, Cui and Yu (2021).

Gen: y = scale * x; w = nearest E8 point of each 8-coordinate block of y (64 blocks for 512-d);
store helper = y - w, a random salt and HMAC-SHA256(salt, w). Rep: w' = E8-decode(scale * x' - helper)
= E8-decode(w + scale * (x' - x)) is w exactly when every block of scale * (x' - x) stays in E8's Voronoi cell; accept when the keyed
hashes match (constant-time comparison). The key is derived from w and the salt, both recoverable by a
thief who inverts the helper (the forensics tools show it).

The scale trades false rejects for false accepts; as in the paper it is set by a false-negative-rate
target on genuine pairs, here measured on public LFW identities by `latticelock eval projection`.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np

from latticelock.kernels.hazmat.e8 import decode_blocks
from latticelock.kernels.errors import RecordError, SchemeError
from latticelock.kernels.kdf import hkdf
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import EMBEDDING_DIM, SchemeBase, as_embedding, as_embeddings

SCHEME_ID = "facial-fe"
PARAMETER_SET = "facial-fe-facenet-e8"
# The largest scale (grid step 0.1) whose false-negative rate on the 140 genuine pairs of the public
# LFW identities is at most FNR_TARGET (measured 0.093 at 4.4), by `latticelock eval projection`.
FNR_TARGET = 0.10
SCALE = 4.4
SALT_BYTES = 16
FIELDS = ("helper", "salt", "tag")


def _codeword_bytes(w: np.ndarray) -> bytes:
    # E8 coordinates are integers or half-integers: 2w is an exact small integer vector.
    return np.rint(2 * w).astype("<i4").tobytes()


class FacialFEScheme(SchemeBase):
    scheme_id = SCHEME_ID
    parameter_set = PARAMETER_SET

    def __init__(self, scale: float = SCALE) -> None:
        if scale <= 0:
            raise SchemeError(f"scale must be positive, got {scale}")
        self.scale = float(scale)

    def enroll(self, embedding: np.ndarray) -> Record:
        return self.enroll_derand(embedding, os.urandom(SALT_BYTES))

    def enroll_derand(self, embedding: np.ndarray, coins: bytes) -> Record:
        """Deterministic core: `coins` is the salt of the keyed hash."""
        if len(coins) != SALT_BYTES:
            raise SchemeError(f"facial-fe needs {SALT_BYTES} bytes of coins, got {len(coins)}")
        y = self.scale * as_embedding(embedding)
        w = decode_blocks(y)
        tag = hmac.new(coins, _codeword_bytes(w), hashlib.sha256).digest()
        return Record(SCHEME_ID, PARAMETER_SET, {"helper": y - w, "salt": coins, "tag": tag})

    def verify_many(self, record: Record, embeddings: np.ndarray) -> list[bytes | None]:
        record.expect(SCHEME_ID, PARAMETER_SET, FIELDS)
        helper, salt, tag = record["helper"], record["salt"], record["tag"]
        if helper.shape != (EMBEDDING_DIM,) or len(salt) != SALT_BYTES or len(tag) != 32:
            raise RecordError("facial-fe record has fields of the wrong size")
        codewords = decode_blocks(self.scale * as_embeddings(embeddings) - helper)
        keys: list[bytes | None] = []
        for w in codewords:
            data = _codeword_bytes(w)
            ok = hmac.compare_digest(hmac.new(salt, data, hashlib.sha256).digest(), tag)
            keys.append(hkdf(data, b"latticelock/facial-fe/key", salt=salt) if ok else None)
        return keys
