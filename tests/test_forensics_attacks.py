"""Forensics attacks on synthetic faces of known geometry: each test plants what the attack should
find (and something it must not), so a broken attack fails."""

from __future__ import annotations

import numpy as np
import pytest

from latticelock.kernels.kdf import EVALUATION_COST
from latticelock.kernels.hazmat.rep import preprocess
from latticelock.kernels.l2fe import L2FEScheme
from latticelock.kernels.projection import fit_projection
from latticelock.kernels.record import Record
from latticelock.kernels.scheme import get_scheme
from latticelock.tools.forensics import surrogates as S
from latticelock.tools.forensics.dictionary import dictionary_attack, kmeans_centroids
from latticelock.tools.forensics.lattice_attack import lattice_attack
from latticelock.tools.forensics.pipe import train_pipe
from latticelock.tools.embeddings import normalise

DIM = 512


def synthetic_faces(identities: int, per: int = 2, rank: int = 48, spread: float = 0.12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around a mean face, varying in a rank-`rank` subspace (as face embeddings do)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(DIM, rank)))[0].T
    mean = rng.normal(size=DIM)
    mean /= np.linalg.norm(mean)
    decay = np.linspace(1.0, 0.3, rank)
    people = rng.normal(size=(identities, rank)) * decay
    rows, labels = [], []
    for i in range(identities):
        for _ in range(per):
            x = 0.6 * mean + spread * (people[i] + 0.3 * rng.normal(size=rank) * decay) @ basis
            rows.append(x / np.linalg.norm(x))
            labels.append(f"id{i:04d}")
    return np.asarray(rows, dtype=np.float32), np.asarray(labels)


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(400)


@pytest.fixture(scope="module")
def wide_faces():
    """Identities further apart than the schemes' thresholds, as real faces mostly are."""
    return synthetic_faces(400, spread=0.3)


def test_mrp_pseudo_inverse_is_exact_when_k_reaches_the_rank():
    rng = np.random.default_rng(1)
    x = normalise(rng.normal(size=DIM))
    R = rng.normal(size=(DIM, DIM))
    record = Record("mrp", "mrp-test", {"R": R, "v": R @ x / np.sqrt(DIM)})
    assert np.allclose(S.mrp_pinv(record), x, atol=1e-8)


def test_mrp_pseudo_inverse_and_prior_recover_x_from_a_real_record(faces):
    x, _ = faces
    prior = S.FacePrior.fit(x[100:])
    record = get_scheme("mrp").enroll(x[0])
    surrogate = S.mrp_pinv(record)
    R = record["R"].astype(np.float64)
    # the surrogate is x seen through R: R applied to it gives back sqrt(k) v exactly ...
    assert np.allclose(R @ surrogate, np.sqrt(R.shape[0]) * record["v"], atol=1e-3)
    # ... but with k = 128 < 512 it is only x's projection; the public prior fills the rest in
    assert np.linalg.norm(normalise(surrogate) - x[0]) > 0.5
    assert np.linalg.norm(normalise(S.mrp_conditional_mean(record, prior)) - x[0]) < 0.05


def test_facial_fe_helper_is_a_surrogate_and_codewords_come_back(faces):
    x, _ = faces
    # at a fine scale every block of scale * x lies in E8's cell around 0: the helper is the face
    scheme = get_scheme("facial-fe", scale=3.0)
    record = scheme.enroll(x[0])
    helper = S.facial_fe_helper(record, scheme.scale)
    assert float(normalise(helper) @ x[0]) > 0.999
    recovered = S.facial_fe_codeword_recovery(record, scheme.scale, S.FacePrior.fit(x[100:]))
    assert np.allclose(recovered, x[0], atol=1e-6)
    assert scheme.verify(record, recovered.astype(np.float32)) is not None
    # at a scale where most codewords are non-zero the helper alone is no longer the face, but the
    # codeword search under the public prior still recovers it exactly
    coarse = get_scheme("facial-fe", scale=8.0)
    record = coarse.enroll(x[0])
    assert float(normalise(S.facial_fe_helper(record, 8.0)) @ x[0]) < 0.5
    recovered = S.facial_fe_codeword_recovery(record, 8.0, S.FacePrior.fit(x[100:]))
    assert np.allclose(recovered, x[0], atol=1e-6)
    assert coarse.verify(record, recovered.astype(np.float32)) is not None


def test_pipe_learns_the_mrp_inverse_on_public_faces_only(faces):
    x, _ = faces
    public, victims = x[200:], x[:40]
    scheme = get_scheme("mrp")
    model = train_pipe(scheme, public, "ridge")
    predicted = model.predict(np.stack([S.mrp_pinv(scheme.enroll(v)) for v in victims]))
    cos_pipe = np.sum(predicted * victims, axis=1)
    cos_mean = victims @ normalise(public.mean(0))
    assert np.mean(cos_pipe) > np.mean(cos_mean) + 0.02


@pytest.mark.parametrize("name", ["unprotected", "facial-fe", "l2fe-facenet-m32"])
def test_dictionary_attack_finds_a_planted_near_duplicate(wide_faces, name):
    x, _ = wide_faces
    rng = np.random.default_rng(3)
    if name.startswith("l2fe"):
        scheme = L2FEScheme(name, kdf=EVALUATION_COST, projection=fit_projection(x[200:], 64, {}))
    else:
        scheme = get_scheme(name)
    victim = x[0]
    stranger = x[200:][np.argmin(x[200:] @ victim)]
    records = [scheme.enroll(victim), scheme.enroll(stranger)]
    pool = x[200:]
    # nobody else in the dictionary unlocks either record (checked with the scheme itself)
    unlocks = [np.array([k is not None for k in scheme.verify_many(r, pool)]) for r in records]
    others = pool[~(unlocks[0] | unlocks[1])][:40]
    assert len(others) == 40
    near = normalise(victim + 0.02 * normalise(rng.normal(size=DIM)))
    guesses = np.concatenate([others[:20], near[None, :], others[20:]])
    result = dictionary_attack(scheme, records, guesses, chunk=16)
    assert result.first_success[0] == 20
    assert result.first_success[1] == -1
    assert result.guesses_tried >= len(guesses) + 21


def test_kmeans_centroids_are_unit_vectors(faces):
    c = kmeans_centroids(faces[0], 8)
    assert c.shape == (8, DIM) and np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)


def _at_distance(scheme, mean_face, direction, target_ratio):
    """A unit embedding whose e lies target_ratio decoding radii from the mean face's."""
    p = scheme.params
    centre = preprocess(p, scheme.projection, mean_face[None, :])[0]

    def ratio(t):
        e = preprocess(p, scheme.projection, normalise(mean_face + t * direction)[None, :])[0]
        return np.linalg.norm(e - centre) / p.radius

    lo, hi = 0.0, 50.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(mid) < target_ratio else (lo, mid)
    assert abs(ratio(hi) - target_ratio) < 0.02
    return normalise(mean_face + hi * direction)


def test_lattice_attack_recovers_s_of_a_face_near_the_mean(faces):
    x, _ = faces
    public = x[200:]
    projection = fit_projection(public, 64, {})
    scheme = L2FEScheme("l2fe-facenet-m32", kdf=EVALUATION_COST, projection=projection)
    p = scheme.params
    mean_face = normalise(public.mean(0))
    direction = projection.components[0].astype(np.float64)
    # unit vectors reach only about 1.3 decoding radii from the mean face along this direction
    near = _at_distance(scheme, mean_face, direction, 1.1)  # beyond the decoding radius of the mean face
    far = _at_distance(scheme, mean_face, direction, 1.25)  # beyond the enumeration radius below
    centres = preprocess(p, projection, mean_face[None, :])

    record = scheme.enroll(near)
    assert scheme.verify(record, mean_face) is None  # the device's own decoder does not give it away
    hit = lattice_attack(scheme, record, centres, 1.18 * p.radius, budget=50)
    e_true = preprocess(p, projection, near[None, :])[0]
    assert hit.s is not None and hit.evaluations <= 50
    assert np.array_equal(np.mod(hit.e, p.q), np.mod(e_true, p.q))
    assert scheme.check_secret(record, hit.s) is not None

    miss = lattice_attack(scheme, scheme.enroll(far), centres, 1.18 * p.radius, budget=50)
    assert miss.s is None
