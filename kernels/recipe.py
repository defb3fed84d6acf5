"""The safe way to use L2FE-Hash: enrol a template, then match probes against every enrolled user.

    record = enrol(template, "l2fe-facenet-m64", label=b"alice")        # Record; to_bytes() goes to flash
    gallery = Gallery({"alice": record, "bob": other})                   # checks records, rebuilds lattices once
    with gallery.attempt() as attempt:                                   # one unlock attempt
        for probe in frames:
            for candidate in attempt.offer(probe):                       # decoded within the radius: no KDF yet
                key = attempt.confirm(candidate)                         # one Argon2id per distinct secret
                if key is not None: ...                                  # candidate.user, 32-byte key

No algorithm choices here beyond the named parameter set (and the decoder backend, which changes
no result). `offer` tells which users' lattices decode the probe within the radius (acceptance is
exactly |e - e'| <= radius in the projected space, see `params`), and which secret each decoded to:
frames of one face decode to the same secret, so a multi-frame policy can agree on one candidate
and pay Argon2id once, in `confirm`. A record is bound to its label (the device uses the user
name): the same record under another label confirms nothing. Keys and decoded secrets live in the
attempt's memory only and are dropped when it closes.

For the microcontroller's match (hardened mode, `firmware_bridge`): `probe_vector` gives the
projected, rounded probe e' it is sent, `device_lattice` the reduced basis it decodes with, and
`sealed_record` / `sealed_fields` the host record that holds its sealed helper vector.

Everything below this module (decomposed Rep, lattices, decoders) is `latticelock.kernels.hazmat`,
for attack and research code only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from latticelock.kernels import radii
from latticelock.kernels.errors import RecordError, SchemeError
from latticelock.kernels.families import family
from latticelock.kernels.hazmat.decode import BACKENDS as DECODER_BACKENDS
from latticelock.kernels.hazmat.lattice import reduced_basis_for
from latticelock.kernels.hazmat.rep import SCHEME_ID, L2FERep, PublicLattice, centred, preprocess
from latticelock.kernels.kdf import KdfCost
from latticelock.kernels.params import get_parameter_set
from latticelock.kernels.projection import Projection
from latticelock.kernels.radii import same_lattice, wallet_point
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import as_embedding, as_embeddings

__all__ = ["DECODER_BACKENDS", "Attempt", "Candidate", "DeviceLattice", "Gallery", "device_lattice", "enrol",
           "min_probe_sq", "probe_vector", "record_radii_sq", "sealed_fields", "sealed_record", "shares_lattice", "wallet_parameter_set"]

SEALED_SCHEME_ID = "l2fe-hash-mcu"
SEALED_FIELDS = ("lattice", "sealed")
LATTICE_ID_BYTES = 32


def enrol(
    template: np.ndarray,
    parameter_set: str,
    *,
    label: bytes,
    kdf: KdfCost | None = None,
    backend: str = "auto",
    projection: Projection | None = None,
) -> Record:
    """Gen on one template (a unit-norm 512-d embedding): a plain L2FE-Hash record bound to `label`.

    `kdf` replaces the set's Argon2id cost (evaluations and tests only: decisions never depend on it),
    `projection` the set's shipped PCA (synthetic tests only); `backend` picks the decoders' hardware."""
    from latticelock.kernels.l2fe import L2FEScheme

    return L2FEScheme(parameter_set, label=label, kdf=kdf, backend=backend, projection=projection).enroll(template)


@dataclass(frozen=True)
class Candidate:
    """A user whose lattice decoded a probe within the radius, and which secret it decoded to.

    `secret_id` is the same for every probe of the attempt that decoded to the same secret of the same
    user (the secret itself stays inside the attempt)."""

    user: str
    secret_id: int


@dataclass(frozen=True)
class _Entry:
    user: str
    label: bytes
    record: Record
    lattice: PublicLattice
    radius_sq: int  # what the record accepts within to unlock
    wallet_radius_sq: int  # and to open the wallet (0: never, a comparison set's record)


class Gallery:
    """The enrolled users' plain L2FE-Hash records, checked once and with their public lattices rebuilt.

    Options as for `enrol`. Raises RecordError naming the user for a record the recipe cannot match: a baseline (evaluation-only
    scheme), a hardened record (only its microcontroller can match it) or a corrupt one."""

    def __init__(
        self,
        records: Mapping[str, Record],
        *,
        kdf: KdfCost | None = None,
        backend: str = "auto",
        projection: Projection | None = None,
    ) -> None:
        self._reps: dict[str, L2FERep] = {}
        self._groups: dict[str, list[_Entry]] = {}
        for user, record in records.items():
            what = family(record.scheme_id)
            if record.scheme_id != SCHEME_ID:
                reason = "is an evaluation baseline" if what.baseline else "can only be matched by its microcontroller"
                raise RecordError(f"user {user!r}: a {what.title} record {reason}")
            rep = self._reps.get(record.parameter_set)
            if rep is None:
                rep = self._reps[record.parameter_set] = L2FERep(
                    record.parameter_set, kdf=kdf, backend=backend, projection=projection
                )
            try:
                lattice = rep.public_lattice(record)
            except RecordError as exc:
                raise RecordError(f"user {user!r}: {exc}") from None
            # A record of a comparison set has one radius for every face, far too loose for a wallet.
            wallet = rep.record_radius_sq(record, wallet=True) if rep.params.stranger_z is not None else 0
            self._groups.setdefault(record.parameter_set, []).append(
                _Entry(user, user.encode("utf-8"), record, lattice, rep.record_radius_sq(record), wallet))

    @property
    def users(self) -> list[str]:
        return [entry.user for entries in self._groups.values() for entry in entries]

    def attempt(self, wallet: bool = False) -> "Attempt":
        """One attempt; `wallet` holds every record to its wallet radius (what a wallet signature needs,
        whatever the record was enrolled for)."""
        return Attempt(self, wallet)

    def warm_up(self) -> None:
        """Compile the decoders now: uniform random targets decode to nothing, so no KDF runs."""
        rng = np.random.default_rng()
        for parameter_set, entries in self._groups.items():
            p = self._reps[parameter_set].params
            self._reps[parameter_set].decode(
                [e.lattice.basis for e in entries], centred(rng.integers(0, p.q, size=(len(entries), p.m)), p.q)
            )

    def collisions(self, template: np.ndarray) -> list[str]:
        """The users whose record `template` unlocks (an enrolment that would let one person in as another)."""
        with self.attempt() as attempt:
            return sorted({c.user for c in attempt.offer(template) if attempt.confirm(c) is not None})


class Attempt:
    """One unlock attempt: probes in, candidates out, one KDF per distinct (user, secret) confirmed."""

    def __init__(self, gallery: Gallery, wallet: bool = False) -> None:
        self._gallery = gallery
        self._reps = gallery._reps
        self._wallet = wallet
        self._secrets: list[tuple[_Entry, np.ndarray]] = []
        self._ids: dict[tuple[str, bytes], int] = {}
        self._keys: dict[int, bytes | None] = {}

    def offer(self, embedding: np.ndarray) -> tuple[Candidate, ...]:
        """The users whose lattice decodes this probe within the radius (no KDF)."""
        return self.offer_many(as_embedding(embedding)[None, :])[0]

    def offer_many(self, embeddings: np.ndarray) -> list[tuple[Candidate, ...]]:
        """`offer` for k probes at once, in one batched decode per parameter set."""
        probes = as_embeddings(embeddings)
        found: list[list[Candidate]] = [[] for _ in range(len(probes))]
        for parameter_set, entries in self._gallery._groups.items():
            rep = self._reps[parameter_set]
            limits = [e.wallet_radius_sq if self._wallet else e.radius_sq for e in entries]
            e_probes = preprocess(rep.params, rep.projection, probes)
            long_enough = radii.reaches_floor(rep.params, e_probes)
            if not any(limits) or not long_enough.any():
                continue
            targets = np.concatenate([rep.targets_of(e.record, e_probes) for e in entries])
            bases = [e.lattice.basis for e in entries for _ in range(len(probes))]
            vectors, ok = rep.decode_within(bases, targets, np.repeat(limits, len(probes)))
            ok &= np.tile(long_enough, len(entries))
            for row in np.flatnonzero(ok):
                entry, probe = entries[row // len(probes)], row % len(probes)
                s = entry.lattice.solver.solve(vectors[row])
                if s is not None:
                    found[probe].append(Candidate(entry.user, self._secret_id(entry, s)))
        return [tuple(c) for c in found]

    def confirm(self, candidate: Candidate) -> bytes | None:
        """The user's key if the candidate's secret is the record's (one KDF, memoised), else None."""
        if candidate.secret_id not in self._keys:
            if not 0 <= candidate.secret_id < len(self._secrets):
                raise SchemeError("candidate does not belong to this attempt")
            entry, s = self._secrets[candidate.secret_id]
            rep = self._reps[entry.record.parameter_set]
            self._keys[candidate.secret_id] = rep.check_secret(entry.record, s, entry.label)
        return self._keys[candidate.secret_id]

    def close(self) -> None:
        """Forget the decoded secrets and keys (memory only)."""
        self._secrets.clear()
        self._ids.clear()
        self._keys.clear()

    def __enter__(self) -> "Attempt":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _secret_id(self, entry: _Entry, s: np.ndarray) -> int:
        key = (entry.user, np.ascontiguousarray(s, dtype=np.int64).tobytes())
        if key not in self._ids:
            self._ids[key] = len(self._secrets)
            self._secrets.append((entry, s))
        return self._ids[key]


# --- hardened mode: what the host prepares for the microcontroller --------------------------------


def probe_vector(embedding: np.ndarray, parameter_set: str, *, projection: Projection | None = None) -> np.ndarray:
    """e' = round(scale * P(x)) as int64[m]: what the microcontroller matches (never stored).
    `projection` replaces the set's shipped PCA (synthetic tests only)."""
    rep = L2FERep(parameter_set, projection=projection)
    return preprocess(rep.params, rep.projection, as_embedding(embedding)[None, :])[0]


@dataclass(frozen=True)
class DeviceLattice:
    """The device's public lattice for the microcontroller: L(A) for A expanded from `seed`, its reduced
    integer basis and the float64 Gram-Schmidt data that guide (never decide) the microcontroller's search.
    `max_radius` is the largest radius of the parameter sets that share this lattice (the operating points
    share it and give each record its own radius up to theirs), the most the chip will accept for any
    record."""

    parameter_set: str
    seed: bytes
    q: int
    m: int
    n: int
    max_radius: float
    basis: np.ndarray  # int64[m, m]
    mu: np.ndarray  # float64[m, m]
    bstar_sqnorm: np.ndarray  # float64[m]
    proj: np.ndarray  # float64[m, m]


def device_lattice(seed: bytes, parameter_set: str) -> DeviceLattice:
    """Reduce (and cache) the basis of the device lattice for `parameter_set` from a 32-byte seed.

    Its `max_radius`, the largest radius the chip will accept for any record, is that of the device's
    operating points on this lattice, never a comparison set's: at the paper's 1% radius the centre of
    the projection (a vector anyone can send) lies within reach of nearly every face."""
    from latticelock.kernels.params import OPERATING_POINTS, PARAMETER_SETS

    p = get_parameter_set(parameter_set)
    rb = reduced_basis_for(seed, p.m, p.n, p.q, p.bkz_block)
    calibrated = {name for name, point in OPERATING_POINTS.items() if point.far_per_attempt is not None}
    if p.name in calibrated:
        shared = max(PARAMETER_SETS[n].radius for n in calibrated if same_lattice(PARAMETER_SETS[n], p))
    else:
        shared = p.radius  # a comparison set (research, tests): the lattice takes its own radius and no more
    return DeviceLattice(p.name, bytes(seed), p.q, p.m, p.n, shared, rb.basis, rb.mu, rb.bstar_sqnorm, rb.proj)


def shares_lattice(parameter_set: str, other: str) -> bool:
    """Whether two parameter sets can be matched on one device lattice (`kernels.radii.same_lattice`)."""
    return same_lattice(get_parameter_set(parameter_set), get_parameter_set(other))


def wallet_parameter_set(parameter_set: str) -> str:
    """The wallet's operating point on the same device lattice as `parameter_set` (the set itself if the
    lattice has no wallet point)."""
    return wallet_point(get_parameter_set(parameter_set)).name


def min_probe_sq(parameter_set: str) -> int:
    """Probes with integer |e'|^2 below this match no record of `parameter_set` (its probe floor)."""
    return radii.min_probe_sq(get_parameter_set(parameter_set))


def record_radii_sq(template: np.ndarray, parameter_set: str, *, projection: Projection | None = None) -> tuple[int, int]:
    """(unlock, wallet) squared radii, in the integer units the microcontroller compares, of a record of
    `parameter_set` enrolled from `template`: its own under a set with `stranger_z` (`kernels.radii`), else
    the set's radius and the wallet point's."""
    rep = L2FERep(parameter_set, projection=projection)
    p = rep.params
    if p.stranger_z is not None:
        return radii.record_radii_sq(p, rep.projection, preprocess(p, rep.projection, as_embedding(template)[None, :])[0])
    own = math.floor(p.radius**2)
    return own, min(own, math.floor(wallet_point(p).radius**2))


def sealed_record(parameter_set: str, lattice: bytes, sealed: bytes) -> Record:
    """The host's record of a hardened user: the id of the microcontroller's device lattice and its sealed blob."""
    get_parameter_set(parameter_set)
    return Record(SEALED_SCHEME_ID, parameter_set, {"lattice": bytes(lattice), "sealed": bytes(sealed)})


def sealed_fields(record: Record) -> tuple[bytes, bytes]:
    """(lattice id, sealed blob) of a hardened record; RecordError if it is not one."""
    record.expect(SEALED_SCHEME_ID, None, SEALED_FIELDS)
    get_parameter_set(record.parameter_set)
    lattice, sealed = record["lattice"], record["sealed"]
    if not isinstance(lattice, bytes) or len(lattice) != LATTICE_ID_BYTES or not isinstance(sealed, bytes) or not sealed:
        raise RecordError(f"{SEALED_SCHEME_ID} record needs a {LATTICE_ID_BYTES}-byte lattice id and a sealed blob")
    return lattice, sealed
