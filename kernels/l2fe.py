"""L2FE-Hash (Xu, Prabhakar, Saxena 2025, Algorithm 3): a face embedding to a key, storing only LWE helper data.

Preprocess: e = round(scale * P(x)) in Z^m, with P the set's shipped PCA projection (centred on the
public mean face) and x the L2-normalised embedding.

Gen (`enroll_derand(x, coins)`; `enroll` draws the coins from the OS CSPRNG):
    seed = coins[0:32]          A = expand_matrix(seed, m, n, q)       (stored: the seed, never A)
    salt = coins[32:48]
    s    = uniform in Z_q^n, rejection-sampled from SHAKE-256(label || coins[48:80])
    c    = A s + e mod q
    (verifier, key) = derive(s, salt, kdf, mac)
    hardened only: c = c + pad mod q, pad = expand_matrix(mac(PAD_LABEL || seed || salt), m, 1, q)
    record = (parameter-set id, seed, c, salt, verifier)   -- nothing else: no embedding, no s, no e.

Rep (`verify_many`): hardened, unmask c = c - pad mod q first (one MAC per record per call);
t = c - e' mod q (centred); decode t in the q-ary lattice L(A) on the
BKZ-reduced basis (public, cached per seed) with the set's decoder: exact CVP within the set's radius
by default; Babai's nearest plane (the paper's decoder) followed by the same radius check as the fast
path; "babai-raw" (no radius check) only for comparison. Recover s from the lattice vector
(SecretSolver); recompute the verifier and compare it in constant time (hmac.compare_digest).
Candidates that decode to the same s cost one KDF evaluation.

Key derivation (`derive`): master = Argon2id(le32(s_1) || ... || le32(s_n), salt, the set's cost);
verifier = HKDF-SHA256(ikm, info "latticelock/l2fe/verifier"), key = HKDF-SHA256(ikm, info
"latticelock/l2fe/key"), two independent outputs, so the stored verifier never is the key.
ikm = master in the plain mode. Hardened mode (`mac` given, the microcontroller's keyed MAC under a
pepper that never leaves it): ikm = master || mac(b"latticelock/l2fe/mac" || master). The MCU sees only
the Argon2id output (and, for the pad below, the public seed and salt), and a thief holding the
flash but not the MCU cannot compute any verifier, so cannot test a single guess offline; each guess costs an MCU round trip, which the MCU can rate-limit.
Hardened records carry the scheme id "l2fe-hash-mac", so they are never checked without the MAC.

Why hardened c is masked: e is a projected, scaled face and lies within the unique-decoding radius of
c (or of c minus the public mean face), so exact CVP at the stored c of a plain record returns A s, and
e = c - A s gives the thief the victim's projected embedding. In hardened mode the stored c is
c + pad with a uniform pad derived from the MCU's pepper: with the flash only it is uniform mod q,
so neither that lattice attack nor any offline test applies. A thief who also holds an intact MCU
spends one counted MAC query to unmask c, after which the projected face is exposed as in plain mode
(the key still costs one counted MCU query per guess); with the MCU's pepper extracted it is plain
L2FE-Hash.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from latticelock.kernels import decode
from latticelock.kernels.cvp import EnumerationBudgetError
from latticelock.kernels.errors import RecordError, SchemeError
from latticelock.kernels.expand import expand_matrix
from latticelock.kernels.kdf import KdfCost, argon2id, hkdf
from latticelock.kernels.lattice import ReducedBasis, reduced_basis_for
from latticelock.kernels.params import DECODERS, L2FEParams, get_parameter_set
from latticelock.kernels.projection import Projection, load_projection
from latticelock.kernels.record import Record
from latticelock.kernels.recover import SecretSolver
from latticelock.kernels.scheme import SchemeBase, as_embedding, as_embeddings

SCHEME_ID = "l2fe-hash"
SCHEME_ID_HARDENED = "l2fe-hash-mac"
FIELDS = ("seed", "c", "salt", "verifier")
SEED_BYTES, SALT_BYTES, SECRET_COIN_BYTES, VERIFIER_BYTES = 32, 16, 32, 32
COIN_BYTES = SEED_BYTES + SALT_BYTES + SECRET_COIN_BYTES

INFO_VERIFIER = b"latticelock/l2fe/verifier"
INFO_KEY = b"latticelock/l2fe/key"
MAC_LABEL = b"latticelock/l2fe/mac"
SECRET_LABEL = b"latticelock/l2fe/secret"
PAD_LABEL = b"latticelock/l2fe/pad"

Mac = Callable[[bytes], bytes]


def secret_bytes(s: np.ndarray) -> bytes:
    """The KDF's password: each coordinate of s as 4 little-endian bytes."""
    return np.asarray(s, dtype="<u4").tobytes()


def sample_secret(coins: bytes, n: int, q: int) -> np.ndarray:
    """s uniform in Z_q^n from 32 secret coins: SHAKE-256 output, candidates of bits(q) bits, rejecting >= q."""
    bits = q.bit_length()
    width = (bits + 7) // 8
    xof = hashlib.shake_256(SECRET_LABEL + bytes(coins))
    count = 4 * n + 16
    while True:
        raw = np.frombuffer(xof.digest(count * width), dtype=np.uint8).reshape(count, width).astype(np.int64)
        candidates = (raw << (8 * np.arange(width))).sum(axis=1) & ((1 << bits) - 1)
        kept = candidates[candidates < q]
        if kept.size >= n:
            return kept[:n].astype(np.int64)
        count *= 2


def derive(s: np.ndarray, salt: bytes, kdf: KdfCost, mac: Mac | None = None) -> tuple[bytes, bytes]:
    """(verifier, key) for the secret s; see the module docstring for the construction."""
    ikm = argon2id(secret_bytes(s), salt, kdf)
    if mac is not None:
        ikm = ikm + mac(MAC_LABEL + ikm)
    return hkdf(ikm, INFO_VERIFIER), hkdf(ikm, INFO_KEY)


def mask_pad(mac: Mac, seed: bytes, salt: bytes, m: int, q: int) -> np.ndarray:
    """The hardened record's mask of c: int64[m] uniform mod q, expanded from mac(PAD_LABEL || seed || salt)."""
    pad_seed = mac(PAD_LABEL + seed + salt)
    return expand_matrix(pad_seed, m, 1, q)[:, 0]


def preprocess(params: L2FEParams, projection: Projection, embeddings: np.ndarray) -> np.ndarray:
    """e = round(scale * P(x)) as int64[k, m]."""
    return np.rint(params.scale * projection.project(as_embeddings(embeddings), params.m)).astype(np.int64)


def centred(v: np.ndarray, q: int) -> np.ndarray:
    """v mod q as float64 in (-q/2, q/2]."""
    r = np.mod(v, q)
    return np.where(r > q // 2, r - q, r).astype(np.float64)


@functools.lru_cache(maxsize=1024)
def _solver(seed: bytes, m: int, n: int, q: int) -> SecretSolver:
    return SecretSolver(expand_matrix(seed, m, n, q), q)


@dataclass(frozen=True)
class PublicLattice:
    """Everything a record makes public about its lattice (what a thief computes from the flash)."""

    A: np.ndarray  # int64[m, n]
    c: np.ndarray  # int64[m], as stored: masked by the pepper-derived pad in hardened mode
    basis: ReducedBasis
    solver: SecretSolver


class L2FEScheme(SchemeBase):
    """L2FE-Hash for one parameter set. Options: decoder ("cvp"/"babai"/"babai-raw"), kdf (a KdfCost, e.g. for
    evaluations), mac (hardened mode), backend for the decoders ("auto"/"cpu"/"gpu"), projection,
    radius (exact-CVP radius, at most the set's)."""

    def __init__(
        self,
        parameter_set: str,
        *,
        decoder: str | None = None,
        kdf: KdfCost | None = None,
        mac: Mac | None = None,
        backend: str = "auto",
        projection: Projection | None = None,
        radius: float | None = None,
    ) -> None:
        self.params = get_parameter_set(parameter_set)
        # A smaller radius moves the operating point (e.g. to FPR 1e-3); never beyond the set's own.
        self.radius = self.params.radius if radius is None else float(radius)
        if not 0 < self.radius <= self.params.radius:
            raise SchemeError(f"radius must be in (0, {self.params.radius}] for {self.params.name}, got {radius}")
        self.parameter_set = self.params.name
        self.decoder = decoder or self.params.decoder
        if self.decoder not in DECODERS:
            raise SchemeError(f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        self.kdf = kdf or self.params.kdf
        self.mac = mac
        self.scheme_id = SCHEME_ID_HARDENED if mac is not None else SCHEME_ID
        self.backend = backend
        self._projection = projection

    @property
    def projection(self) -> Projection:
        if self._projection is None:
            self._projection = load_projection(self.params.projection)
        return self._projection

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
        if self.mac is not None:
            c = np.mod(c + mask_pad(self.mac, seed, salt, p.m, p.q), p.q)
        verifier, _ = derive(s, salt, self.kdf, self.mac)
        return Record(self.scheme_id, p.name, {"seed": seed, "c": c.astype(np.uint32), "salt": salt, "verifier": verifier})

    def prepare(self, record: Record) -> ReducedBasis:
        """Reduce (and cache) the record's public basis ahead of the first unlock."""
        return self.public_lattice(record).basis

    # Rep
    def public_lattice(self, record: Record) -> PublicLattice:
        """Check a record against this scheme and rebuild its public lattice."""
        p = self.params
        # Either mode's lattice is public; only testing a secret needs the matching mode (_check_mode).
        record.expect(SCHEME_ID_HARDENED if record.scheme_id == SCHEME_ID_HARDENED else SCHEME_ID, p.name, FIELDS)
        seed, c, salt, verifier = (record[f] for f in FIELDS)
        for name, value, size in (("seed", seed, SEED_BYTES), ("salt", salt, SALT_BYTES), ("verifier", verifier, VERIFIER_BYTES)):
            if not isinstance(value, bytes) or len(value) != size:
                raise RecordError(f"l2fe-hash record field {name!r} must be {size} bytes")
        if not isinstance(c, np.ndarray) or c.dtype != np.dtype("<u4") or c.shape != (p.m,) or np.any(c >= p.q):
            raise RecordError(f"l2fe-hash record field 'c' must hold {p.m} residues mod {p.q}")
        A = expand_matrix(seed, p.m, p.n, p.q)
        return PublicLattice(A, c.astype(np.int64), reduced_basis_for(seed, p.m, p.n, p.q, p.bkz_block), _solver(seed, p.m, p.n, p.q))

    def _check_mode(self, record: Record) -> None:
        if record.scheme_id == SCHEME_ID_HARDENED and self.mac is None:
            raise SchemeError("record was enrolled in hardened mode: testing it needs the microcontroller's MAC")
        if record.scheme_id == SCHEME_ID and self.mac is not None:
            raise SchemeError("record was enrolled without the microcontroller's MAC; use a scheme without mac")

    def pad(self, record: Record) -> np.ndarray | None:
        """The mask of a hardened record's c (one MAC on the microcontroller); None for a plain record."""
        if record.scheme_id != SCHEME_ID_HARDENED:
            return None
        self._check_mode(record)
        return mask_pad(self.mac, record["seed"], record["salt"], self.params.m, self.params.q)

    def targets(self, record: Record, embeddings: np.ndarray, pad: np.ndarray | None = None) -> np.ndarray:
        """The decoding targets c - e' (centred mod q) for candidate embeddings, float64[k, m].

        A hardened record's c is unmasked first with `pad` (from `pad(record)`; computed here, one MAC,
        when not given)."""
        c = record["c"].astype(np.int64)
        if record.scheme_id == SCHEME_ID_HARDENED:
            c = c - (self.pad(record) if pad is None else pad)
        return centred(c - preprocess(self.params, self.projection, embeddings), self.params.q)

    def decode(self, bases: ReducedBasis | list[ReducedBasis], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lattice vectors for the targets and whether each was decoded (Babai always decodes)."""
        many = isinstance(bases, list)
        if self.decoder == "cvp":
            fn = decode.cvp_decode_many if many else decode.cvp_decode
            try:
                return fn(bases, targets, self.radius, backend=self.backend)
            except EnumerationBudgetError as exc:
                # Only a hostile or absurd probe exhausts the budget; what was found is still checked.
                return exc.vectors, exc.found
        fn = decode.babai_decode_many if many else decode.babai_decode
        vectors = fn(bases, targets, backend=self.backend)
        if self.decoder == "babai-raw":
            return vectors, np.ones(len(targets), dtype=bool)
        return vectors, np.sum((vectors - targets) ** 2, axis=1) <= self.radius**2

    def check_secret(self, record: Record, s: np.ndarray) -> bytes | None:
        """The key if s is the record's secret (one KDF evaluation, constant-time comparison), else None."""
        self._check_mode(record)
        verifier, key = derive(s, record["salt"], self.kdf, self.mac)
        return key if hmac.compare_digest(verifier, record["verifier"]) else None

    def verify_many(self, record: Record, embeddings: np.ndarray) -> list[bytes | None]:
        lattice = self.public_lattice(record)
        self._check_mode(record)
        vectors, found = self.decode(lattice.basis, self.targets(record, embeddings))
        secrets_, solved = lattice.solver.solve_many(vectors)
        keys: list[bytes | None] = [None] * len(vectors)
        tested: dict[bytes, bytes | None] = {}
        for i in np.flatnonzero(found & solved):
            s = secrets_[i]
            label = secret_bytes(s)
            if label not in tested:
                tested[label] = self.check_secret(record, s)
            keys[i] = tested[label]
        return keys

    def identify(self, records: Sequence[Record], embedding: np.ndarray) -> list[bytes | None]:
        if not records:
            return []
        lattices = [self.public_lattice(r) for r in records]
        for record in records:
            self._check_mode(record)
        probe = as_embedding(embedding)[None, :]
        targets = np.concatenate([self.targets(r, probe) for r in records])
        vectors, found = self.decode([lat.basis for lat in lattices], targets)
        keys: list[bytes | None] = []
        for record, lattice, v, ok in zip(records, lattices, vectors, found):
            s = lattice.solver.solve(v) if ok else None
            keys.append(None if s is None else self.check_secret(record, s))
        return keys
