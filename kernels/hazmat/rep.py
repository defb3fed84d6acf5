"""L2FE-Hash's Rep taken apart into its steps, for attack and research code (see `hazmat`).

The safe ways to use L2FE-Hash are `latticelock.kernels.recipe` (the device) and
`latticelock.kernels.l2fe.L2FEScheme` (evaluations); both are built on the steps here:

    lattice = rep.public_lattice(record)                  # what a thief computes from the flash
    targets = rep.targets(record, embeddings)             # c - e' (centred mod q)
    vectors, found = rep.decode(lattice.basis, targets)   # exact CVP within the radius (or Babai)
    s = lattice.solver.solve(vectors[i])                  # the lattice secret, if v is in L(A)
    key = rep.check_secret(record, s, label)              # one Argon2id, constant-time comparison

Key derivation (`derive`): master = Argon2id(le32(s_1) || ... || le32(s_n), salt, the set's cost);
verifier = HKDF-SHA256(master, "latticelock/l2fe/verifier" [|| 0x00 || label]) and key = HKDF-SHA256(
master, "latticelock/l2fe/key" [|| 0x00 || label]): two independent outputs, so the stored verifier is
never the key. `label` binds a record to its context (the device passes the user name), so a record
copied under another user's name unlocks nothing; the empty label (evaluations) adds nothing.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from dataclasses import dataclass

import numpy as np

from latticelock.kernels.errors import RecordError, SchemeError
from latticelock.kernels.hazmat import decode as dispatch
from latticelock.kernels.hazmat.cvp import EnumerationBudgetError
from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.hazmat.lattice import ReducedBasis, reduced_basis_for
from latticelock.kernels.hazmat.recover import SecretSolver
from latticelock.kernels.kdf import KdfCost, argon2id, hkdf
from latticelock.kernels.params import DECODERS, L2FEParams, get_parameter_set
from latticelock.kernels.projection import Projection, load_projection
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import as_embeddings

SCHEME_ID = "l2fe-hash"
FIELDS = ("seed", "c", "salt", "verifier")
# Sets with a `stranger_z` also store each record's own radii (`kernels.radii`): int64[2], squared,
# (unlock or the record's own point, wallet).
RADII_FIELD = "radius_sq"
SEED_BYTES, SALT_BYTES, SECRET_COIN_BYTES, VERIFIER_BYTES = 32, 16, 32, 32
COIN_BYTES = SEED_BYTES + SALT_BYTES + SECRET_COIN_BYTES

INFO_VERIFIER = b"latticelock/l2fe/verifier"
INFO_KEY = b"latticelock/l2fe/key"
SECRET_LABEL = b"latticelock/l2fe/secret"


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


def _info(base: bytes, label: bytes) -> bytes:
    return base if not label else base + b"\x00" + bytes(label)


def derive(s: np.ndarray, salt: bytes, kdf: KdfCost, label: bytes = b"") -> tuple[bytes, bytes]:
    """(verifier, key) for the secret s under `label`; see the module docstring."""
    master = argon2id(secret_bytes(s), salt, kdf)
    return hkdf(master, _info(INFO_VERIFIER, label)), hkdf(master, _info(INFO_KEY, label))


def bound_label(label: bytes, radii: np.ndarray | None) -> bytes:
    """The KDF label of a record: its context, and the record's own radii where it has them, so that radii
    changed on flash (say, widened to let the mean face in) make its verifier fail: the record opens for
    no one."""
    if radii is None:
        return bytes(label)
    return bytes(label) + b"\x00radius_sq\x00" + np.asarray(radii, dtype="<i8").tobytes()


def preprocess(params: L2FEParams, projection: Projection, embeddings: np.ndarray) -> np.ndarray:
    """e = round(scale * P(x)) as int64[k, m], x the L2-normalised embeddings."""
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
    c: np.ndarray  # int64[m]
    basis: ReducedBasis
    solver: SecretSolver


class L2FERep:
    """The steps of Rep for one parameter set. Options: decoder ("cvp"/"babai"/"babai-raw"), kdf, backend for
    the decoders ("auto"/"cpu"/"gpu"), projection, radius (exact-CVP radius, at most the set's)."""

    def __init__(
        self,
        parameter_set: str,
        *,
        decoder: str | None = None,
        kdf: KdfCost | None = None,
        backend: str = "auto",
        projection: Projection | None = None,
        radius: float | None = None,
    ) -> None:
        self.params = get_parameter_set(parameter_set)
        # A smaller radius moves the operating point; never beyond the set's own.
        self.radius = self.params.radius if radius is None else float(radius)
        if not 0 < self.radius <= self.params.radius:
            raise SchemeError(f"radius must be in (0, {self.params.radius}] for {self.params.name}, got {radius}")
        self.parameter_set = self.params.name
        self.decoder = decoder or self.params.decoder
        if self.decoder not in DECODERS:
            raise SchemeError(f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        self.kdf = kdf or self.params.kdf
        self.backend = backend
        self._projection = projection

    @property
    def projection(self) -> Projection:
        if self._projection is None:
            self._projection = load_projection(self.params.projection)
        return self._projection

    def fields(self) -> tuple[str, ...]:
        """The fields a record of this set holds."""
        return FIELDS + ((RADII_FIELD,) if self.params.stranger_z is not None else ())

    def record_radius_sq(self, record: Record, wallet: bool = False) -> int:
        """The squared radius `record` accepts within: its own (for the wallet, its wallet one) under a set
        with `stranger_z`, else this object's radius. Never beyond this object's radius."""
        own = math.floor(self.radius**2)
        if self.params.stranger_z is None:
            return own
        radii = record[RADII_FIELD]
        if not isinstance(radii, np.ndarray) or radii.dtype != np.dtype("<i8") or radii.shape != (2,) \
                or not 0 < radii[1] <= radii[0]:
            raise RecordError(f"l2fe-hash record field {RADII_FIELD!r} must hold two squared radii, 0 < wallet <= own")
        # A record enrolled under a looser ceiling keeps working, held to today's.
        return min(int(radii[1] if wallet else radii[0]), own)

    def public_lattice(self, record: Record) -> PublicLattice:
        """Check a record against this parameter set and rebuild its public lattice."""
        p = self.params
        record.expect(SCHEME_ID, p.name, self.fields())
        self.record_radius_sq(record)
        seed, c, salt, verifier = (record[f] for f in FIELDS)
        for name, value, size in (("seed", seed, SEED_BYTES), ("salt", salt, SALT_BYTES), ("verifier", verifier, VERIFIER_BYTES)):
            if not isinstance(value, bytes) or len(value) != size:
                raise RecordError(f"l2fe-hash record field {name!r} must be {size} bytes")
        if not isinstance(c, np.ndarray) or c.dtype != np.dtype("<u4") or c.shape != (p.m,) or np.any(c >= p.q):
            raise RecordError(f"l2fe-hash record field 'c' must hold {p.m} residues mod {p.q}")
        A = expand_matrix(seed, p.m, p.n, p.q)
        return PublicLattice(A, c.astype(np.int64), reduced_basis_for(seed, p.m, p.n, p.q, p.bkz_block), _solver(seed, p.m, p.n, p.q))

    def targets(self, record: Record, embeddings: np.ndarray) -> np.ndarray:
        """The decoding targets c - e' (centred mod q) for candidate embeddings, float64[k, m]."""
        return self.targets_of(record, preprocess(self.params, self.projection, embeddings))

    def targets_of(self, record: Record, e: np.ndarray) -> np.ndarray:
        """`targets` from probes already preprocessed (int64[k, m]): one projection serves every record."""
        return centred(record["c"].astype(np.int64) - e, self.params.q)

    def decode(self, bases: ReducedBasis | list[ReducedBasis], targets: np.ndarray,
               radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Lattice vectors for the targets and whether each was decoded (one basis, or basis i for target i),
        within `radius` (default and at most this object's)."""
        many = isinstance(bases, list)
        radius = self.radius if radius is None else min(float(radius), self.radius)
        if self.decoder == "cvp":
            fn = dispatch.cvp_decode_many if many else dispatch.cvp_decode
            try:
                return fn(bases, targets, radius, backend=self.backend)
            except EnumerationBudgetError as exc:
                # Only a hostile or absurd probe exhausts the budget; what was found is still checked.
                return exc.vectors, exc.found
        fn = dispatch.babai_decode_many if many else dispatch.babai_decode
        vectors = fn(bases, targets, backend=self.backend)
        if self.decoder == "babai-raw":
            return vectors, np.ones(len(targets), dtype=bool)
        return vectors, np.sum((vectors - targets) ** 2, axis=1) <= radius**2

    def decode_within(self, bases: ReducedBasis | list[ReducedBasis], targets: np.ndarray,
                      radii_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`decode`, each target accepted only within its own squared radius (int): one search at the
        largest, then the exact integer check |e - e'|^2 <= radius^2 per target (the point found is the
        unique one within the largest radius, so this is the same as searching at each)."""
        radii_sq = np.asarray(radii_sq, dtype=np.int64)
        # The search's float bound gets half a unit of slack; the integer check below decides.
        vectors, found = self.decode(bases, targets, math.sqrt(int(radii_sq.max()) + 0.5) if len(radii_sq) else None)
        if self.decoder == "babai-raw":
            return vectors, found
        distance_sq = np.rint(np.sum((vectors - targets) ** 2, axis=1)).astype(np.int64)
        return vectors, found & (distance_sq <= radii_sq)

    def check_secret(self, record: Record, s: np.ndarray, label: bytes = b"") -> bytes | None:
        """The key if s is the record's secret under `label` (one KDF evaluation, constant-time comparison)."""
        radii = record[RADII_FIELD] if self.params.stranger_z is not None else None
        verifier, key = derive(s, record["salt"], self.kdf, bound_label(label, radii))
        return key if hmac.compare_digest(verifier, record["verifier"]) else None
