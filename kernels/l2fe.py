"""L2FE-Hash (Xu, Prabhakar, Saxena 2025, Algorithm 3): a face embedding to a key, storing only LWE helper data.

Preprocess: e = round(scale * P(x)) in Z^m, with P the set's shipped PCA projection (centred on the
public mean face) and x the L2-normalised embedding.

Gen (`enroll_derand(x, coins)`; `enroll` draws the coins from the OS CSPRNG):
    seed = coins[0:32]          A = expand_matrix(seed, m, n, q)       (stored: the seed, never A)
    salt = coins[32:48]
    s    = uniform in Z_q^n, rejection-sampled from SHAKE-256(label || coins[48:80])
    c    = A s + e mod q
    (verifier, key) = derive(s, salt, kdf, label)   [label || the record's radii, where it has them]
    record = (parameter-set id, seed, c, salt, verifier)   -- nothing else: no embedding, no s, no e;
    a set with a `stranger_z` adds the record's own squared radii (unlock, wallet; `kernels.radii`).

Rep (`verify_many`): t = c - e' mod q (centred); decode t in the q-ary lattice L(A) on the BKZ-reduced
basis (public, cached per seed) with the set's decoder: exact CVP within the record's radius by default;
Babai's nearest plane (the paper's decoder) followed by the same radius check; "babai-raw" (no radius
check) only for comparison. Recover s from the lattice vector; recompute the verifier and compare it
in constant time. Candidates that decode to the same s cost one KDF evaluation. The steps themselves
live in `hazmat.rep` for attack and research code.

What a flash thief gets: e is a projected, scaled face and lies within the unique-decoding radius of
c minus the public mean face, so exact CVP there returns A s and e = c - A s gives the thief the
victim's projected embedding for one Argon2id (`tools/forensics/lattice_attack.py` measures it). The
device therefore keeps plain records only on explicit request; its hardened mode seals c to the
microcontroller, which does the matching itself (`firmware_bridge/PROTOCOL.md`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from latticelock.kernels.errors import SchemeError
from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.hazmat.lattice import ReducedBasis
from latticelock.kernels.hazmat.rep import (
    COIN_BYTES,
    SCHEME_ID,
    SECRET_COIN_BYTES,
    SEED_BYTES,
    RADII_FIELD,
    L2FERep,
    bound_label,
    derive,
    preprocess,
    sample_secret,
    secret_bytes,
)
from latticelock.kernels.radii import reaches_floor, record_radii_sq
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import SchemeBase, as_embedding


class L2FEScheme(L2FERep, SchemeBase):
    """L2FE-Hash for one parameter set, as a `Scheme`; options as for `hazmat.rep.L2FERep`. `label`
    binds every record this object makes or checks to a context (the device uses the user name)."""

    def __init__(self, parameter_set: str, *, label: bytes = b"", **options) -> None:
        super().__init__(parameter_set, **options)
        self.scheme_id = SCHEME_ID
        self.label = bytes(label)

    # Gen
    def enroll(self, embedding: np.ndarray) -> Record:
        return self.enroll_derand(embedding, os.urandom(COIN_BYTES))

    def enroll_derand(self, embedding: np.ndarray, coins: bytes) -> Record:
        """Deterministic Gen: `coins` = seed (32) || salt (16) || secret coins (32)."""
        if len(coins) != COIN_BYTES:
            raise SchemeError(f"L2FE-Hash needs {COIN_BYTES} bytes of coins, got {len(coins)}")
        p = self.params
        seed, salt, secret_coins = coins[:SEED_BYTES], coins[SEED_BYTES:-SECRET_COIN_BYTES], coins[-SECRET_COIN_BYTES:]
        e = preprocess(p, self.projection, as_embedding(embedding)[None, :])[0]
        s = sample_secret(secret_coins, p.n, p.q)
        A = expand_matrix(seed, p.m, p.n, p.q)
        c = np.mod(A @ s + e, p.q)
        radii = np.array(record_radii_sq(p, self.projection, e), dtype=np.int64) if p.stranger_z is not None else None
        verifier, _ = derive(s, salt, self.kdf, bound_label(self.label, radii))
        fields = {"seed": seed, "c": c.astype(np.uint32), "salt": salt, "verifier": verifier}
        if radii is not None:
            fields[RADII_FIELD] = radii
        return Record(self.scheme_id, p.name, fields)

    def prepare(self, record: Record) -> ReducedBasis:
        """Reduce (and cache) the record's public basis ahead of the first unlock."""
        return self.public_lattice(record).basis

    # Rep
    def verify_many(self, record: Record, embeddings: np.ndarray) -> list[bytes | None]:
        lattice = self.public_lattice(record)
        e = preprocess(self.params, self.projection, embeddings)
        targets = self.targets_of(record, e)
        vectors, found = self.decode_within(lattice.basis, targets, np.full(len(targets), self.record_radius_sq(record)))
        found &= reaches_floor(self.params, e)
        secrets_, solved = lattice.solver.solve_many(vectors)
        keys: list[bytes | None] = [None] * len(vectors)
        tested: dict[bytes, bytes | None] = {}
        for i in np.flatnonzero(found & solved):
            label = secret_bytes(secrets_[i])
            if label not in tested:
                tested[label] = self.check_secret(record, secrets_[i], self.label)
            keys[i] = tested[label]
        return keys

    def identify(self, records: Sequence[Record], embedding: np.ndarray) -> list[bytes | None]:
        if not records:
            return []
        lattices = [self.public_lattice(r) for r in records]
        e = preprocess(self.params, self.projection, as_embedding(embedding)[None, :])
        targets = np.concatenate([self.targets_of(r, e) for r in records])
        vectors, found = self.decode_within([lat.basis for lat in lattices], targets, [self.record_radius_sq(r) for r in records])
        found &= reaches_floor(self.params, e)[0]
        keys: list[bytes | None] = []
        for record, lattice, v, ok in zip(records, lattices, vectors, found):
            s = lattice.solver.solve(v) if ok else None
            keys.append(None if s is None else self.check_secret(record, s, self.label))
        return keys
