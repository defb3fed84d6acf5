"""L2FE-Hash: keys reproduce for close faces and only for them; records hold exactly what they should."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from latticelock.kernels.errors import RecordError, SchemeError
from latticelock.kernels.hazmat.expand import expand_matrix
from latticelock.kernels.kdf import EVALUATION_COST
from latticelock.kernels.hazmat import rep
from latticelock.kernels.hazmat.rep import COIN_BYTES, preprocess
from latticelock.kernels.l2fe import L2FEScheme
from latticelock.kernels.params import PARAMETER_SETS
from latticelock.kernels.projection import fit_projection
from latticelock.kernels.record import Record, parse_record

M32 = "l2fe-facenet-m32"


@pytest.fixture(scope="module")
def projection():
    """A PCA of clustered synthetic faces: 64 strong directions, weak isotropic noise elsewhere."""
    rng = np.random.default_rng(25)
    basis = np.linalg.qr(rng.standard_normal((512, 64)))[0].T
    x = rng.standard_normal((400, 64)) * np.linspace(0.2, 0.05, 64) @ basis + 0.002 * rng.standard_normal((400, 512))
    return fit_projection(x + 0.05, 64, {"source": "synthetic test faces"})


@pytest.fixture(autouse=True)
def basis_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATTICELOCK_CACHE", str(tmp_path))


def scheme(projection, name=M32, **options) -> L2FEScheme:
    return L2FEScheme(name, kdf=EVALUATION_COST, backend="cpu", projection=projection, **options)


def face(projection, rng) -> np.ndarray:
    """A unit embedding: the mean direction plus a unit step along the 16 leading components, so two
    faces are about 1.3 apart in every set's projected space (far beyond each set's threshold)."""
    z = rng.standard_normal(16)
    mean = projection.mean.astype(np.float64)
    x = 0.5 * mean / np.linalg.norm(mean) + (z / np.linalg.norm(z)) @ projection.components[:16].astype(np.float64)
    return x / np.linalg.norm(x)


def nearby(projection, x, m, distance, rng) -> np.ndarray:
    """x moved by `distance` inside the first m projected directions (then renormalised)."""
    d = rng.standard_normal(m)
    return x + distance * (d / np.linalg.norm(d)) @ projection.components[:m].astype(np.float64)


def scaled_distance(s: L2FEScheme, x, probes) -> np.ndarray:
    e = preprocess(s.params, s.projection, x[None, :])
    return np.linalg.norm(preprocess(s.params, s.projection, probes) - e, axis=1)


@pytest.mark.parametrize("decoder", ["cvp", "babai"])
def test_enrolled_face_and_close_faces_reproduce_the_key(projection, decoder):
    rng = np.random.default_rng(1)
    s = scheme(projection, decoder=decoder)
    x = face(projection, rng)
    record = parse_record(s.enroll(x).to_bytes())
    key = s.verify(record, x)
    assert key is not None and len(key) == 32
    close = np.stack([nearby(projection, x, 32, 0.2 * s.params.threshold, rng) for _ in range(5)])
    assert s.verify_many(record, close) == [key] * 5


def test_cvp_accepts_exactly_within_the_radius(projection):
    """Exact CVP below half the minimum distance: accepted iff |e - e'| <= radius."""
    rng = np.random.default_rng(2)
    s = scheme(projection)
    x = face(projection, rng)
    record = s.enroll(x)
    probes = np.stack([nearby(projection, x, 32, f * s.params.threshold, rng) for f in np.linspace(0.3, 1.8, 40)])
    distances = scaled_distance(s, x, probes)
    accepted = np.array([k is not None for k in s.verify_many(record, probes)])
    assert accepted.any() and (~accepted).any()
    np.testing.assert_array_equal(accepted, distances <= s.params.radius)
    # Babai with the radius check accepts a subset of that ball; without it, also points outside.
    babai = np.array([k is not None for k in scheme(projection, decoder="babai").verify_many(record, probes)])
    assert not np.any(babai & ~accepted)
    raw = np.array([k is not None for k in scheme(projection, decoder="babai-raw").verify_many(record, probes)])
    assert np.all(raw >= babai)


def test_another_persons_face_fails(projection):
    rng = np.random.default_rng(3)
    s = scheme(projection)
    x = face(projection, rng)
    record = s.enroll(x)
    others = np.stack([face(projection, rng) for _ in range(10)])
    assert np.all(scaled_distance(s, x, others) > s.params.radius)
    assert s.verify_many(record, others) == [None] * 10


def test_fresh_enrolments_give_fresh_keys_and_records(projection):
    rng = np.random.default_rng(4)
    s = scheme(projection)
    x = face(projection, rng)
    a, b = s.enroll(x), s.enroll(x)
    assert a["seed"] != b["seed"] and a["salt"] != b["salt"]
    assert s.verify(a, x) != s.verify(b, x)


def test_record_holds_exactly_the_public_fields(projection):
    rng = np.random.default_rng(5)
    s = scheme(projection)
    record = s.enroll(face(projection, rng))
    assert record.scheme_id == "l2fe-hash" and record.parameter_set == M32
    assert set(record.fields) == {"seed", "c", "salt", "verifier"}
    assert len(record["seed"]) == 32 and len(record["salt"]) == 16 and len(record["verifier"]) == 32
    assert record["c"].shape == (32,) and record["c"].dtype == np.dtype("<u4")


def test_enroll_derand_is_the_documented_construction(projection):
    rng = np.random.default_rng(6)
    s = scheme(projection)
    x = face(projection, rng)
    coins = bytes(range(COIN_BYTES))
    record = s.enroll_derand(x, coins)
    assert record.to_bytes() == s.enroll_derand(x, coins).to_bytes()
    p = s.params
    secret = rep.sample_secret(coins[48:], p.n, p.q)
    A = expand_matrix(coins[:32], p.m, p.n, p.q)
    e = preprocess(p, projection, x[None, :])[0]
    np.testing.assert_array_equal(record["c"], np.mod(A @ secret + e, p.q))
    verifier, key = rep.derive(secret, coins[32:48], EVALUATION_COST)
    assert record["verifier"] == verifier and record["salt"] == coins[32:48]
    assert s.verify(record, x) == key and verifier != key


def test_tampered_fields_fail(projection):
    rng = np.random.default_rng(7)
    s = scheme(projection)
    x = face(projection, rng)
    record = s.enroll(x)

    def edited(**fields) -> Record:
        return Record(record.scheme_id, record.parameter_set, {**record.fields, **fields})

    flip = lambda b, i: b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]  # noqa: E731
    assert s.verify(edited(seed=flip(record["seed"], 0)), x) is None
    assert s.verify(edited(salt=flip(record["salt"], 5)), x) is None
    assert s.verify(edited(verifier=flip(record["verifier"], 31)), x) is None
    c = record["c"].copy()
    c[0] ^= 1 << 15  # far beyond the radius in one coordinate
    assert s.verify(edited(c=c), x) is None
    with pytest.raises(RecordError, match="residues"):
        s.verify(edited(c=np.full(32, 70000, dtype=np.uint32)), x)
    with pytest.raises(RecordError, match="32 bytes"):
        s.verify(edited(seed=b"short"), x)


def test_wrong_set_and_wrong_scheme_records(projection):
    rng = np.random.default_rng(8)
    x = face(projection, rng)
    record = scheme(projection).enroll(x)
    with pytest.raises(RecordError, match="parameter set 'l2fe-facenet-m32'"):
        scheme(projection, "l2fe-facenet-m48").verify(record, x)
    foreign = Record("mrp", M32, dict(record.fields))
    with pytest.raises(RecordError, match="scheme 'mrp'"):
        scheme(projection).verify(foreign, x)


def test_verify_many_tests_each_distinct_secret_once(projection, monkeypatch):
    rng = np.random.default_rng(9)
    s = scheme(projection)
    x = face(projection, rng)
    record = s.enroll(x)
    calls = []
    original = rep.derive
    monkeypatch.setattr(rep, "derive", lambda *a, **k: calls.append(1) or original(*a, **k))
    probes = np.stack([x] * 3 + [nearby(projection, x, 32, 0.1 * s.params.threshold, rng)] + [face(projection, rng)])
    keys = s.verify_many(record, probes)
    assert keys[0] is not None and keys[:4] == [keys[0]] * 4 and keys[4] is None
    assert len(calls) == 1


def test_identify_finds_only_the_own_record(projection):
    rng = np.random.default_rng(10)
    s = scheme(projection)
    faces = [face(projection, rng) for _ in range(4)]
    records = [s.enroll(f) for f in faces]
    keys = s.identify(records, faces[2])
    assert keys[2] == s.verify(records[2], faces[2]) and keys[2] is not None
    assert [k is None for i, k in enumerate(keys) if i != 2] == [True] * 3
    babai = scheme(projection, decoder="babai").identify(records, faces[2])
    assert babai[2] == keys[2]


def test_verifier_is_compared_in_constant_time(projection, monkeypatch):
    rng = np.random.default_rng(11)
    s = scheme(projection)
    x = face(projection, rng)
    record = s.enroll(x)
    seen = []
    real = rep.hmac.compare_digest
    monkeypatch.setattr(rep.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or real(a, b))
    assert s.verify(record, x) is not None
    assert seen and seen[0][1] == record["verifier"]


def test_a_record_is_bound_to_its_label(projection):
    rng = np.random.default_rng(21)
    x = face(projection, rng)
    alice = scheme(projection, label=b"alice")
    record = parse_record(alice.enroll(x).to_bytes())
    key = alice.verify(record, x)
    assert key is not None
    # The same record copied under another user's name (or read without a name) unlocks nothing.
    assert scheme(projection, label=b"bob").verify(record, x) is None
    assert scheme(projection).verify(record, x) is None
    assert alice.verify(record, nearby(projection, x, 32, 0.3 * alice.params.threshold, rng)) == key


def test_bad_options_and_coins(projection):
    with pytest.raises(SchemeError):
        scheme(projection, decoder="sphere")
    with pytest.raises(SchemeError):
        scheme(projection, radius=1e9)
    with pytest.raises(SchemeError):
        scheme(projection).enroll_derand(np.ones(512), b"\0" * 10)


def test_every_set_works_end_to_end(projection):
    rng = np.random.default_rng(13)
    for name in PARAMETER_SETS:
        s = scheme(projection, name)
        x = face(projection, rng)
        record = s.enroll(x)
        assert s.verify(record, nearby(projection, x, s.params.m, 0.3 * s.params.threshold, rng)) is not None
        assert s.verify(record, face(projection, rng)) is None


def fixed_embedding() -> np.ndarray:
    """A platform-independent test vector: SHAKE-256 bytes as int16, normalised."""
    raw = np.frombuffer(hashlib.shake_256(b"latticelock/test/embedding").digest(1024), dtype="<i2")
    return raw.astype(np.float64) / np.linalg.norm(raw.astype(np.float64))


@pytest.mark.parametrize("name", sorted(PARAMETER_SETS))
def test_pinned_deterministic_enrolment_per_set(name):
    """A deterministic Gen with the shipped projection and the set's own Argon2id cost, pinned per set:
    any change to expansion, sampling, preprocessing, the KDF or the format changes these hashes."""
    s = L2FEScheme(name, backend="cpu")
    record = s.enroll_derand(fixed_embedding(), bytes(range(COIN_BYTES)))
    assert hashlib.sha256(record.to_bytes()).hexdigest() == PINNED_RECORDS[name]
    # The fixed embedding is random, not a face: shorter than the device points' probe floor, so there it
    # opens nothing (the floor keeps out probes near the mean face); elsewhere it opens its own record.
    e = preprocess(s.params, s.projection, fixed_embedding()[None, :])[0]
    assert (s.verify(record, fixed_embedding()) is not None) == (s.params.probe_floor ** 2 <= int(e @ e))


# Regenerate (and review why) whenever the shipped projection or a set's constants change.
PINNED_RECORDS = {
    "l2fe-facenet-m32": "d45b859895dfb344c4897d098dd82fa57291212b6c7cd874833e7fae5ea7585c",
    "l2fe-facenet-m48": "ea71e4b50611b9a7432c45353e625e44f17531a759505df13aa03720f1fe00a5",
    "l2fe-facenet-m64": "2d839e777f4a1aa707bf30d413b034c2c89cdc8e2c718050b44736b35addeca6",
    "l2fe-device-far1e-4": "f4dad3069257e103aa94b2ba373ac58be0b71982c37343291e2317b2854df9ac",
    "l2fe-wallet-far1e-5": "d9a524fbf9022b1521c1c849828f6cb2e3cfc0d8237e64b9189a7e0f021dda5f",
}
