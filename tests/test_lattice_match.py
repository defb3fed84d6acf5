"""The microcontroller's integer decoder against the host's exact CVP, its table checks, its int64 bounds.

The firmware's claim (PROTOCOL.md section 5): acceptance is exactly |t - v| <= R in integers, the same
decision as the host's exact-CVP decoder, and the tables only guide the search. Checked case by case
on a small device lattice (m = 32) and the shipped one (m = 64), at several radii, with genuine,
impostor and boundary targets (distance exactly R, and R +- 1 in the integer squared distance).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from mcu_bench import SEED, Bench, Clock, code, face, make, provision, tables, upload

from latticelock.firmware_bridge import lattice_match as lm
from latticelock.firmware_bridge import messages as m
from latticelock.kernels.hazmat.cvp import cvp_decode
from latticelock.kernels.hazmat.expand import expand_matrix as host_expand_matrix
from latticelock.kernels.hazmat.lattice import reduced_basis_for
from latticelock.kernels.hazmat.recover import SecretSolver
from latticelock.kernels.params import get_parameter_set

SETS = ["l2fe-facenet-m32", "l2fe-facenet-m64"]


@dataclasses.dataclass(frozen=True)
class Case:
    tables: lm.LatticeTables
    A: np.ndarray
    rows: lm.SecretRows
    radius: float


def case(parameter_set: str) -> Case:
    p = get_parameter_set(parameter_set)
    t = tables(parameter_set)
    A = lm.expand_matrix(SEED, t.m, t.n, t.q)
    return Case(t, A, lm.validate(t, A), p.radius)


def host_decode(parameter_set: str, t: np.ndarray, radius_sq: int) -> np.ndarray | None:
    p = get_parameter_set(parameter_set)
    rb = reduced_basis_for(SEED, p.m, p.n, p.q, p.bkz_block)
    vectors, found = cvp_decode(rb, t[None, :], math.sqrt(radius_sq))
    return vectors[0] if found[0] else None


def targets(c: Case, rng: np.random.Generator, radius_sq: int) -> list[tuple[str, np.ndarray]]:
    """(kind, centred target) pairs around random lattice points A s."""
    m, q = c.tables.m, c.tables.q
    radius = math.sqrt(radius_sq)
    out = []
    for _ in range(6):
        point = c.A @ rng.integers(0, q, c.tables.n)
        noise = rng.normal(size=m)
        for kind, length in (("genuine", 0.3 * radius), ("near", 0.97 * radius), ("outside", 1.05 * radius),
                             ("impostor", 3.0 * radius)):
            out.append((kind, lm.centred(point + np.rint(noise / np.linalg.norm(noise) * length).astype(np.int64), q)))
        out.append(("uniform", lm.centred(rng.integers(0, q, m), q)))
    return out


@pytest.mark.parametrize("parameter_set", SETS)
@pytest.mark.parametrize("fraction", [0.5, 0.85, 1.0])
def test_decoder_agrees_with_exact_cvp_case_by_case(parameter_set: str, fraction: float) -> None:
    c = case(parameter_set)
    radius_sq = int((fraction * c.radius) ** 2)
    rng = np.random.default_rng(int(fraction * 100))
    kinds = {"found": 0, "missed": 0}
    for kind, t in targets(c, rng, radius_sq):
        mine = lm.decode(c.tables, t, radius_sq, lm.OpCounts())
        exact = host_decode(parameter_set, t, radius_sq)
        if exact is None:
            # The fixed-point search may propose a point; the exact check in `match` refuses it.
            assert mine is None or int((t - mine) @ (t - mine)) > radius_sq, kind
            kinds["missed"] += 1
        else:
            assert mine is not None and np.array_equal(mine, exact), kind
            kinds["found"] += 1
    assert kinds["found"] >= 12 and kinds["missed"] >= 12


@pytest.mark.parametrize("parameter_set", SETS)
def test_targets_at_distance_exactly_r_and_r_plus_minus_one(parameter_set: str) -> None:
    c = case(parameter_set)
    rng = np.random.default_rng(7)
    for _ in range(4):
        s = rng.integers(0, c.tables.q, c.tables.n)
        direction = rng.normal(size=c.tables.m)
        d = np.rint(direction / np.linalg.norm(direction) * 0.9 * c.radius).astype(np.int64)
        distance_sq = int(d @ d)
        c_vec = (c.A @ s + d) % c.tables.q  # a record whose template is d away from the probe 0
        probe = np.zeros(c.tables.m, dtype=np.int64)
        t = lm.centred(c_vec - probe, c.tables.q)
        for radius_sq, inside in ((distance_sq - 1, False), (distance_sq, True), (distance_sq + 1, True)):
            exact = host_decode(parameter_set, t, radius_sq)
            secret = lm.match(c.tables, c.A, c.rows, c_vec, probe, radius_sq, lm.OpCounts())
            assert (exact is not None) == inside
            assert (secret is not None) == inside
            if inside:
                assert np.array_equal(secret, s % c.tables.q)


@pytest.mark.parametrize("parameter_set", SETS)
def test_secret_recovery_matches_the_host_solver(parameter_set: str) -> None:
    c = case(parameter_set)
    solver = SecretSolver(c.A, c.tables.q)
    rng = np.random.default_rng(3)
    for _ in range(5):
        s = rng.integers(0, c.tables.q, c.tables.n)
        e = rng.integers(-20, 21, c.tables.m)
        found = lm.match(c.tables, c.A, c.rows, (c.A @ s + e) % c.tables.q, np.zeros(c.tables.m, np.int64),
                         int(c.radius**2), lm.OpCounts())
        assert np.array_equal(found, s) and np.array_equal(solver.solve(c.A @ s), s)


@pytest.mark.integration
def test_decoder_agrees_with_exact_cvp_on_real_faces() -> None:
    """faces94 (the precomputed FaceNet embeddings): every genuine and impostor pair of 40 faces,
    decided by the firmware's match and by the host's exact CVP, at the paper's radius."""
    path = Path("/work/data/faces94_subset.npz")
    if not path.exists():
        pytest.skip(f"{path} not found")
    from latticelock.kernels.recipe import probe_vector

    data = np.load(path)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(data["labels"]), size=40, replace=False)
    labels = data["labels"][chosen]
    parameter_set = "l2fe-facenet-m64"
    vectors = [probe_vector(data["embeddings"][i], parameter_set) for i in chosen]
    c = case(parameter_set)
    radius_sq = int(c.radius**2)
    agree = {True: 0, False: 0}
    for i, template in enumerate(vectors):
        s = rng.integers(0, c.tables.q, c.tables.n)
        record = (c.A @ s + template) % c.tables.q
        for j, probe in enumerate(vectors):
            mine = lm.match(c.tables, c.A, c.rows, record, probe, radius_sq, lm.OpCounts()) is not None
            exact = host_decode(parameter_set, lm.centred(record - probe, c.tables.q), radius_sq) is not None
            assert mine == exact, (i, j)
            agree[labels[i] == labels[j]] += 1
    assert agree[True] > 40 and agree[False] > 1000


# --- table validation ---------------------------------------------------------------------------


def with_tables(**changes) -> lm.LatticeTables:
    return dataclasses.replace(tables(), **changes)


def edited(name: str, index: tuple, value: int) -> lm.LatticeTables:
    array = getattr(tables(), name).copy()
    array[index] = value
    return with_tables(**{name: array})


@pytest.mark.parametrize(
    "bad, reason",
    [
        (lambda: edited("basis", (3, 0), int(tables().basis[3, 0]) + 1), "not in the device lattice"),
        (lambda: edited("bstar_sq", (5,), 0), "out of range"),
        (lambda: edited("bstar_sq", (5,), lm.MAX_B << lm.B_FRAC), "out of range"),
        (lambda: edited("proj", (1, 2), lm.MAX_P), "out of range"),
        (lambda: edited("proj", (1, 2), -lm.MAX_P), "out of range"),
        (lambda: edited("mu", (4, 4), 1 << 29), "unit lower triangular"),
        (lambda: edited("mu", (2, 9), 1), "unit lower triangular"),
    ],
)
def test_validation_refuses_bad_tables(bad, reason: str) -> None:
    t = tables()
    with pytest.raises(lm.TableError, match=reason):
        lm.validate(bad(), lm.expand_matrix(SEED, t.m, t.n, t.q))


def test_validation_refuses_another_lattice_and_other_dimensions() -> None:
    t = tables()
    with pytest.raises(lm.TableError, match="not in the device lattice"):
        lm.validate(t, lm.expand_matrix(bytes(32), t.m, t.n, t.q))
    with pytest.raises(lm.TableError, match="dimensions"):
        lm.validate(t, lm.expand_matrix(SEED, 64, t.n, t.q))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b[:5], "truncated"),
        (lambda b: b[:-1], "wrong length"),
        (lambda b: b + b"\x00", "wrong length"),
        (lambda b: b"XXXX" + b[4:], "not lattice tables"),
        (lambda b: b[:4] + bytes([65]) + b[5:], "not lattice tables"),  # m = 65
        (lambda b: b[:4] + bytes([32, 32]) + b[6:], "not lattice tables"),  # n = m
        (lambda b: b[:10] + bytes([31]) + b[11:], "not lattice tables"),  # p_frac below 32
        (lambda b: b[:6] + (1 << 17).to_bytes(4, "little") + b[10:], "not lattice tables"),  # q too large
    ],
)
def test_a_truncated_or_foreign_blob_is_refused(damage, reason: str) -> None:
    data = tables().to_bytes()
    assert lm.LatticeTables.from_bytes(data).digest() == hashlib.sha256(data).digest()
    with pytest.raises(lm.TableError, match=reason):
        lm.LatticeTables.from_bytes(damage(data))


# The same refusals through LATTICE_COMMIT on a chip in provisioning mode.


@pytest.fixture
def kiosk(tmp_path: Path):
    mcu = make(tmp_path, Clock(), provisioning=True)
    assert mcu.handle(m.SetPasscode("", "correct horse")) == m.PasscodeSet()
    return mcu


def test_the_chip_refuses_tables_outside_its_lattice_and_keeps_none(kiosk) -> None:
    bad = edited("basis", (0, 0), int(tables().basis[0, 0]) + 1).to_bytes()
    answer = upload(kiosk, bad, 1000)
    assert code(answer) == m.ErrorCode.REJECTED and "not in the device lattice" in answer.detail
    assert kiosk.lattice is None and not kiosk.state.lattice_ready
    assert code(kiosk.handle(m.OpenSession(m.Purpose.UNLOCK, 2, 3))) == m.ErrorCode.NO_LATTICE


def test_the_chip_refuses_tables_corrupted_in_transit(kiosk) -> None:
    data = tables().to_bytes()
    upload(kiosk, data[:-1], 1000)
    answer = kiosk.handle(m.LatticeCommit("l2fe-facenet-m32", SEED, 1000, 1000, 0, len(data), hashlib.sha256(data).digest()))
    assert code(answer) == m.ErrorCode.MALFORMED and "corrupted" in answer.detail


@pytest.mark.parametrize("radius_sq", [0, lm.MAX_RADIUS_SQ])
def test_the_chip_refuses_a_radius_out_of_range(kiosk, radius_sq: int) -> None:
    assert code(upload(kiosk, tables().to_bytes(), radius_sq)) == m.ErrorCode.MALFORMED


def test_tables_over_64_kib_are_a_limit(kiosk) -> None:
    # PROTOCOL.md, error LIMIT: "tables over 64 KiB".
    for offset in range(0, 64 * 1024, m.MAX_CHUNK):
        assert kiosk.handle(m.LatticeChunk(offset, bytes(m.MAX_CHUNK))) == m.ChunkOk(offset + m.MAX_CHUNK)
    assert code(kiosk.handle(m.LatticeChunk(64 * 1024, b"\x01"))) == m.ErrorCode.LIMIT


def test_chunks_out_of_order_are_refused(kiosk) -> None:
    assert kiosk.handle(m.LatticeChunk(0, b"abc")) == m.ChunkOk(3)
    assert code(kiosk.handle(m.LatticeChunk(10, b"abc"))) == m.ErrorCode.MALFORMED


def test_the_lattice_cannot_be_replaced_while_users_exist(tmp_path: Path) -> None:
    bench = Bench(tmp_path, Clock())
    provision(bench.start(provisioning=True))
    bench.enrol("alice", face(1))
    assert code(upload(bench.mcu, tables().to_bytes(), 1000)) == m.ErrorCode.LIMIT


# --- the firmware's own expansion of A ------------------------------------------------------------


@pytest.mark.parametrize(
    "seed, m_, n, q, digest, first",
    [
        (SEED, 64, 16, 65537, "8384389a5ae144b2", [17749, 11234, 18488, 6128]),
        (bytes(32), 32, 16, 65537, "b7c80ceeda353440", [45870, 56278, 5554, 17479]),
        (b"\xff" * 32, 8, 4, 257, "bf0ca1a2cc78f379", [80, 215, 246, 106]),
        (SEED, 5, 3, 2147483647, "6bbec68dc8869acc", [549386115, 33288866, 517214703]),
    ],
)
def test_expand_matrix_equals_the_hosts_with_known_answers(seed: bytes, m_: int, n: int, q: int, digest: str,
                                                           first: list[int]) -> None:
    mine = lm.expand_matrix(seed, m_, n, q)
    assert np.array_equal(mine, host_expand_matrix(seed, m_, n, q))
    assert hashlib.sha256(mine.astype("<i8").tobytes()).hexdigest()[:16] == digest
    assert mine[0, : len(first)].tolist() == first


# --- int64 bounds, from the real tables ----------------------------------------------------------


@pytest.mark.parametrize("parameter_set", SETS)
def test_int64_bounds_hold_for_the_real_tables(parameter_set: str) -> None:
    """The worst-case magnitudes of the module docstring, computed from the tables themselves."""
    t = tables(parameter_set)
    proj, mu, bstar, basis = (a.astype(object) for a in (t.proj, t.mu, t.bstar_sq, t.basis))
    t_max = t.q // 2 + 1  # |t_j| for a centred residue
    assert max(abs(v) for v in proj.flat) < lm.MAX_P == 2**28
    acc = max(sum(abs(proj[j, i]) for j in range(t.m)) for i in range(t.m)) * t_max
    assert acc < 2**50
    x_max = acc >> (t.p_frac - lm.X_FRAC)
    assert max(abs(v) for v in mu.flat) <= 2**30.5
    centre_terms = max(sum(abs(mu[k, i]) for k in range(t.m)) for i in range(t.m)) * lm.MAX_COEFF * 4
    assert centre_terms < 2**51 and x_max + centre_terms < 2**52
    b_units = max(bstar) >> lm.B_FRAC
    assert b_units < 2**28
    radius_sq = lm.MAX_RADIUS_SQ
    # The zigzag stops one step past the bound: (R + sqrt(B) + 1)^2 real units, times Q24.
    worst_term = (math.isqrt(radius_sq) + math.isqrt(b_units) + 2) ** 2 * 2**24
    assert worst_term < 2**55
    v_max = lm.MAX_COEFF * max(sum(abs(basis[k, r]) for k in range(t.m)) for r in range(t.m))
    assert v_max < 2**31


# --- operation counts ----------------------------------------------------------------------------


def test_op_counts_are_reported_and_padded_to_the_budget() -> None:
    c = case("l2fe-facenet-m32")
    rng = np.random.default_rng(11)
    counts = lm.OpCounts()
    for kind, t in targets(c, rng, int(c.radius**2))[:10]:
        one = lm.OpCounts()
        lm.decode(c.tables, t, int(c.radius**2), one)
        assert one.decodes == 1 and 0 < one.nodes <= lm.NODE_BUDGET and one.macs >= c.tables.m**2
        assert one.padded_nodes == lm.NODE_BUDGET - one.nodes, kind
        counts.nodes += one.nodes
        counts.padded_nodes += one.padded_nodes
    assert counts.nodes + counts.padded_nodes == 10 * lm.NODE_BUDGET


# --- bugs found --------------------------------------------------------------------------------


def test_the_exact_distance_check_does_not_wrap_around_int64() -> None:
    """Tables that pass validation (every basis row in L(A), every value in range) but whose Gram-Schmidt
    data do not belong to the basis make the search propose a lattice point about 3e9 from the target;
    |t - v|^2 then exceeds 2^63, and an int64 sum wraps to a negative number "within R"."""
    t = tables()
    A = lm.expand_matrix(SEED, t.m, t.n, t.q)
    rng = np.random.default_rng(5)
    w = lm.centred(A @ rng.integers(0, t.q, t.n), t.q)
    assert np.abs(w).max() < 2**15
    proj = np.zeros((t.m, t.m), np.int32)
    proj[0, :] = lm.MAX_P - 1
    crafted = lm.LatticeTables(t.m, t.n, t.q, np.tile(w, (t.m, 1)).astype(np.int16),
                               (np.eye(t.m) * (1 << lm.MU_FRAC)).astype(np.int32), proj, np.ones(t.m, np.int64), 32)
    rows = lm.validate(crafted, A)
    target = np.zeros(t.m, np.int64)
    target[0] = 14986
    v = lm.decode(crafted, target, 22710, lm.OpCounts())
    assert v is not None and sum(int(x) ** 2 for x in target - v) > 2**63
    assert lm.match(crafted, A, rows, target, np.zeros(t.m, np.int64), 22710, lm.OpCounts()) is None


@pytest.mark.parametrize("q", [65536, 9, 362])
def test_tables_for_a_composite_modulus_are_refused_not_a_crash(kiosk, q: int) -> None:
    # secret_rows inverts mod q: for a composite q, pow(x, -1, q) raised ValueError out of the handler.
    answer = upload(kiosk, dataclasses.replace(tables(), q=q).to_bytes(), 1000)
    assert code(answer) == m.ErrorCode.REJECTED and "not lattice tables" in answer.detail
