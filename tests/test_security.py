"""Security estimates: the uSVP estimate's monotonicity and the mean-face count's known answers."""

from __future__ import annotations

import numpy as np
import pytest

from latticelock.kernels.kdf import EVALUATION_COST
from latticelock.kernels.l2fe import L2FEScheme
from latticelock.kernels.params import get_parameter_set
from latticelock.kernels.projection import fit_projection
from latticelock.kernels.hazmat.security import (
    SIEVE_EXPONENT,
    bkz_delta,
    mean_face_acceptance,
    mean_face_counts,
    nearest_is_secret,
    primal_usvp,
    summarise,
)


def test_bkz_delta_decreases_with_block_size():
    deltas = [bkz_delta(b) for b in range(2, 400)]
    assert all(a >= b for a, b in zip(deltas, deltas[1:]))
    assert 1.0 < deltas[-1] < bkz_delta(2) == pytest.approx(1.0219)


def test_usvp_is_monotone_in_the_error_and_costs_0292_beta():
    betas = []
    for sigma in (1.0, 10.0, 100.0, 1000.0):
        est = primal_usvp(64, 256, 3329, sigma)
        betas.append(est.beta if est.beta is not None else 10**6)
        if est.beta is not None:
            assert est.log2_cost == pytest.approx(SIEVE_EXPONENT * est.beta)
            assert est.samples <= 256 and est.dimension == est.samples + 1
    assert betas == sorted(betas)
    # An error as long as q itself is not a short vector: the attack does not apply.
    assert primal_usvp(16, 32, 65537, 65537.0).beta is None


def test_kyber_like_instance_needs_a_large_block_size():
    # Kyber-512's module-LWE as plain LWE (n = 512, q = 3329, sigma ~ 1.22): the estimate is in the
    # few-hundreds range that published estimates give (beta ~ 400).
    est = primal_usvp(512, 1024, 3329, 1.22)
    assert est.beta is not None and 300 < est.beta < 500


def test_mean_face_count_known_answers():
    p = get_parameter_set("l2fe-facenet-m32")
    e = np.zeros((3, p.m))
    e[0, 0] = 1.0  # tiny: no other lattice point expected closer, count ~ 1 (log2 ~ 0)
    e[1, 0] = p.lambda1  # the Gaussian-heuristic radius: a ball of volume det, one expected point, +1
    e[2, 0] = 2 * p.lambda1  # twice the radius: 2^m expected points
    logs = mean_face_counts(p, e)
    assert logs[0] == pytest.approx(0.0, abs=1e-6)
    assert logs[1] == pytest.approx(1.0, abs=1e-9)
    assert logs[2] == pytest.approx(p.m, abs=1e-6)


def test_summary():
    assert summarise(np.arange(101)) == {"median": 50.0, "p10": 10.0, "p90": 90.0}


def test_nearest_is_secret_finds_short_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LATTICELOCK_CACHE", str(tmp_path))
    rng = np.random.default_rng(5)
    projection = fit_projection(rng.standard_normal((200, 512)), 64, {"source": "test"})
    scheme = L2FEScheme("l2fe-facenet-m32", kdf=EVALUATION_COST, backend="cpu", projection=projection)
    # A face at the public mean has e = 0: c = A s exactly, so the thief's first guess is right.
    at_mean = scheme.enroll(projection.mean.astype(np.float64) + 1e-9)
    assert nearest_is_secret(scheme, [at_mean]).tolist() == [True]


def test_mean_face_acceptance_counts_faces_within_the_radius():
    rng = np.random.default_rng(6)
    projection = fit_projection(rng.standard_normal((200, 512)), 64, {"source": "test"})
    p = get_parameter_set("l2fe-facenet-m32")
    mean = projection.mean.astype(np.float64)
    e_mean = projection.project((mean / np.linalg.norm(mean))[None, :], p.m)[0]
    components = projection.components[: p.m].astype(np.float64)
    near = mean / np.linalg.norm(mean) + 0.5 * p.threshold * components[0]
    far = mean / np.linalg.norm(mean) + 3.0 * p.threshold * components[1]
    assert np.linalg.norm(projection.project(near[None, :], p.m)[0] - e_mean) < p.threshold
    assert mean_face_acceptance(p, projection, np.stack([near, far])) == 0.5
