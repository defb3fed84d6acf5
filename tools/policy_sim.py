"""Unlock attempts run through the device's own objects, many at a time.

The device matches a frame with `kernels.recipe` (a `Gallery` of the enrolled records; an `Attempt`
offers each probe and confirms a candidate with one KDF) and decides with `device.loop.PlainMatcher`,
whose k-of-n rule is `device.policy.AttemptPolicy`. Here every attempt goes through a fresh
`PlainMatcher` and the same frame loop as `Authenticator.unlock` (read, observe, stop when decided;
"source ended" when the frames run out). One thing is batched: all the probes a gallery will see are
offered in one `Attempt.offer_many` first. A probe's candidates depend only on the probe and the
records (which lattices decode it within the radius), never on earlier offers, so the matcher is
handed exactly what `offer` would have returned, restricted to the users of the simulated store.

Stores: the enrolled people are cut into galleries of `users` records (the last one wrapping round to
the first people). A gallery of 10 gives the 10-user figures: its members' genuine attempts, and the
attempts of every identity outside it. The same decodes give the 1-user figures exactly (a record's
decision does not depend on the other records): each member alone against its own genuine attempts
and every other identity's. Records are made by Gen's deterministic core with coins derived from the
seed, the person and the lattice's shape: a run is reproducible, and the operating points that share
the device lattice share each person's lattice (one BKZ reduction, cached, instead of one per point).
The KDF is the evaluation cost: no decision depends on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
import numpy as np

from latticelock.tools.attempts import Enrolled, Slice, probe_keys, probe_vectors

if TYPE_CHECKING:
    from latticelock.device.policy import PolicyConfig
    from latticelock.kernels.params import L2FEParams
    from latticelock.kernels.recipe import Attempt, Candidate
    from latticelock.kernels.record import Record

# The device reads about 5 frames a second (`latticelock bench device`: 4.83 frames/s).
FRAME_INTERVAL_S = 0.2
# Probes per offer_many call. The recipe stacks a copy of the lattice basis per (probe, record), so a
# large call allocates hundreds of MB: 2,048 probes against 10 records took 6x longer than the same
# probes in calls of 64 (measured here), which still fill the decoders' parallel batches.
CHUNK = 64


@dataclass(frozen=True)
class Pool:
    """What one evaluation shows the device: enrolled people, and every identity's attempts."""

    name: str
    embeddings: np.ndarray  # float32[N, 512]; attempts and probes index its rows
    enrolled: list[Enrolled]
    attempts: dict[str, tuple[Slice, ...]]  # identity -> its impostor attempts (all, up to the cap)


@dataclass
class Counts:
    genuine: int = 0
    false_rejects: int = 0
    misidentified: int = 0  # genuine attempts accepted as someone else (also false rejects)
    impostor: int = 0
    false_accepts: int = 0


@dataclass
class Simulation:
    users: int  # the size of the larger store (fewer if fewer people are enrolled)
    counts: dict[int, Counts] = field(default_factory=dict)


def galleries(people: int, size: int) -> list[tuple[list[int], list[int]]]:
    """(members, primary members) of each store: people in order, the last store wrapping round;
    a person is primary in the first store that holds them, and counted only there."""
    stores = []
    for start in range(0, people, size):
        members = [(start + j) % people for j in range(size)]
        stores.append((members, list(range(start, min(start + size, people)))))
    return stores


def record_coins(seed: int, pool: str, user: str, params: "L2FEParams") -> bytes:
    """Gen's coins for one person: fixed by the seed, the person and the lattice's shape (not the radius)."""
    from latticelock.kernels.hazmat.rep import COIN_BYTES

    label = f"latticelock/eval-policy/{seed}/{pool}/{user}/{params.q}/{params.m}/{params.n}/{params.bkz_block}"
    return hashlib.shake_256(label.encode("utf-8")).digest(COIN_BYTES)


def enrol_records(pool: Pool, parameter_set: str, seed: int, backend: str) -> "dict[str, Record]":
    from latticelock.kernels.kdf import EVALUATION_COST
    from latticelock.kernels.l2fe import L2FEScheme

    records = {}
    for person in pool.enrolled:
        scheme = L2FEScheme(parameter_set, label=person.name.encode("utf-8"), kdf=EVALUATION_COST, backend=backend)
        records[person.name] = scheme.enroll_derand(person.template, record_coins(seed, pool.name, person.name, scheme.params))
    return records


class _Offered:
    """A recipe `Attempt` as `PlainMatcher` uses it, its offers already decoded in one batch."""

    def __init__(self, attempt: "Attempt", table: "dict[bytes, tuple[Candidate, ...]]", audience: frozenset[str]) -> None:
        self._attempt = attempt
        self._table = table
        self._audience = audience

    def attempt(self, wallet: bool = False) -> "_Offered":
        # PlainMatcher opens its attempt from a gallery; the batch was decoded at the evaluated point's radius.
        return self

    def offer(self, embedding: np.ndarray) -> "tuple[Candidate, ...]":
        return tuple(c for c in self._table[embedding.tobytes()] if c.user in self._audience)

    def confirm(self, candidate: "Candidate") -> bytes | None:
        return self._attempt.confirm(candidate)

    def close(self) -> None:
        """The batch attempt outlives the simulated ones; the evaluator closes it."""


def unlock(offered: _Offered, policy: "PolicyConfig", probes: np.ndarray) -> str | None:
    """One attempt, frame by frame as `Authenticator.unlock` runs it; the accepted user or None."""
    from latticelock.device.loop import PlainMatcher
    from latticelock.device.policy import Decision

    matcher = PlainMatcher(offered, policy)
    verdict = None
    try:
        for i, probe in enumerate(probes):
            verdict = matcher.read(i * FRAME_INTERVAL_S)
            if verdict.decision is not Decision.PENDING:
                break
            verdict = matcher.observe(i * FRAME_INTERVAL_S, probe)
            if verdict.decision is not Decision.PENDING:
                break
        if verdict is None or verdict.decision is Decision.PENDING:
            verdict = matcher.finish("source ended before a decision")
    finally:
        matcher.close()
    return verdict.user if verdict.decision is Decision.ACCEPT else None


def _offer_all(attempt: "Attempt", vectors: np.ndarray, progress) -> "list[tuple[Candidate, ...]]":
    found: list[tuple] = []
    for start in range(0, len(vectors), CHUNK):
        found += attempt.offer_many(vectors[start : start + CHUNK])
        progress.update(min(CHUNK, len(vectors) - start))
    return found


def simulate(pool: Pool, parameter_set: str, policy: "PolicyConfig", probe: str, users: int, *, seed: int = 0,
             backend: str = "auto", progress: bool = True) -> Simulation:
    """Genuine and impostor attempts of `pool` against stores of 1 and `users` people enrolled with `parameter_set`."""
    from tqdm import tqdm

    from latticelock.kernels.kdf import EVALUATION_COST
    from latticelock.kernels.recipe import Gallery

    size = max(1, min(users, len(pool.enrolled)))
    sim = Simulation(size, {1: Counts(), size: Counts()})
    records = enrol_records(pool, parameter_set, seed, backend)
    names = [p.name for p in pool.enrolled]
    stores = galleries(len(names), size)
    impostor_attempts = [(owner, a) for owner, attempts in pool.attempts.items() for a in attempts]
    plans = [_plan(pool, names, members, primary, size, impostor_attempts, probe) for members, primary in stores]
    bar = tqdm(total=sum(len(keys) for _, keys, _ in plans), desc=f"{pool.name} {parameter_set}", unit="probe", disable=not progress)
    for (members, _), (runs, keys, per_attempt) in zip(stores, plans, strict=True):
        vectors = probe_vectors(pool.embeddings, keys)
        gallery = Gallery({names[i]: records[names[i]] for i in members}, kdf=EVALUATION_COST, backend=backend)
        with gallery.attempt() as attempt:
            table = {v.tobytes(): c for v, c in zip(vectors, _offer_all(attempt, vectors, bar), strict=True)}
            bar.set_postfix_str(f"matching {sum(len(a) for _, a in runs)} attempts", refresh=True)
            for (owner, audiences), index in zip(runs, per_attempt, strict=True):
                frames = vectors[index]
                for audience in audiences:
                    accepted = unlock(_Offered(attempt, table, audience), policy, frames)
                    _count(sim.counts[len(audience)], owner in audience, owner, accepted)
    bar.close()
    return sim


def _plan(pool: Pool, names: list[str], members: list[int], primary: list[int], size: int, impostor_attempts, probe: str):
    """One store's runs (owner, the stores each attempt is tried against), its distinct probes, and
    each attempt's probes as indices: genuine attempts of the primary members, then every identity's
    attempts against each primary member alone and against the whole store when it is not in it."""
    store = frozenset(names[i] for i in members)
    alone = {names[i]: frozenset({names[i]}) for i in primary}
    bigger = [store] if size > 1 else []
    runs = [((u, [alone[u]] + bigger), a) for i in primary for u in [names[i]] for a in pool.enrolled[i].genuine]
    runs += [((b, [s for u, s in alone.items() if u != b] + ([] if b in store else bigger)), a) for b, a in impostor_attempts]
    keys: dict[Slice, int] = {}
    per_attempt = [[keys.setdefault(k, len(keys)) for k in probe_keys(a, probe)] for _, a in runs]
    return [run for run, _ in runs], list(keys), per_attempt


def _count(c: Counts, genuine: bool, owner: str, accepted: str | None) -> None:
    if genuine:
        c.genuine += 1
        if accepted != owner:
            c.false_rejects += 1
            c.misidentified += accepted is not None
    else:
        c.impostor += 1
        c.false_accepts += accepted is not None
