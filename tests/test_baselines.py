"""Baselines: unprotected, MRP and Facial-FE accept close faces, reject far ones, and store what they say."""

from __future__ import annotations

import numpy as np
import pytest

from latticelock.kernels import facial_fe, mrp, unprotected
from latticelock.kernels.errors import ParameterSetError, RecordError, SchemeError
from latticelock.kernels.record import parse_record
from latticelock.kernels.scheme import Scheme, get_scheme


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def at_distance(x: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector exactly `distance` (L2) from the unit vector x."""
    u = rng.standard_normal(x.shape)
    u = unit(u - (u @ x) * x)
    theta = 2 * np.arcsin(distance / 2)
    return np.cos(theta) * x + np.sin(theta) * u


@pytest.fixture
def rng():
    return np.random.default_rng(2007)


@pytest.mark.parametrize("name", ["unprotected", "mrp", "facial-fe"])
def test_factory_and_protocol(name):
    scheme = get_scheme(name)
    assert isinstance(scheme, Scheme)
    assert get_scheme(scheme.parameter_set).scheme_id == scheme.scheme_id
    with pytest.raises(ParameterSetError, match="unknown scheme"):
        get_scheme("rot13")


def test_unprotected_threshold_and_public_key(rng):
    scheme = get_scheme("unprotected", threshold=1.0)
    x = unit(rng.standard_normal(512))
    record = parse_record(scheme.enroll(x).to_bytes())
    np.testing.assert_allclose(record["embedding"], x, atol=1e-6)  # the face itself is on flash
    key = scheme.verify(record, at_distance(x, 0.9, rng))
    assert key is not None and len(key) == 32
    assert scheme.verify(record, at_distance(x, 1.1, rng)) is None
    assert scheme.verify_many(record, np.stack([x, at_distance(x, 1.2, rng)])) == [key, None]
    other = unit(rng.standard_normal(512))
    records = [record, scheme.enroll(other)]
    assert scheme.identify(records, x) == [key, None]


def test_mrp_accepts_close_and_rejects_far(rng):
    scheme = get_scheme("mrp", threshold=1.0)
    x = unit(rng.standard_normal(512))
    record = parse_record(scheme.enroll_derand(x, b"\x05" * 32).to_bytes())
    assert record["R"].shape == (mrp.K, 512) and record["v"].shape == (mrp.K,)
    close = [at_distance(x, 0.5, rng) for _ in range(10)]
    far = [at_distance(x, 1.6, rng) for _ in range(10)]
    keys = scheme.verify_many(record, np.stack(close + far))
    assert all(k is not None for k in keys[:10]) and all(k is None for k in keys[10:])
    # Same coins, same record: the deterministic core.
    assert scheme.enroll_derand(x, b"\x05" * 32).to_bytes() == record.to_bytes()
    # The pseudo-inverse of the stored R gives back the face's component in R's row space exactly:
    # the leak the comparison shows (forensics completes it with a learned prior).
    R = record["R"].astype(np.float64)
    recovered = np.linalg.pinv(R) @ record["v"].astype(np.float64) * np.sqrt(mrp.K)
    np.testing.assert_allclose(recovered, np.linalg.pinv(R) @ (R @ x), atol=1e-4)


def test_facial_fe_close_far_and_tampered_helper(rng):
    scheme = get_scheme("facial-fe", scale=3.0)
    x = unit(rng.standard_normal(512))
    record = parse_record(scheme.enroll_derand(x, b"\x09" * 16).to_bytes())
    assert set(record.fields) == set(facial_fe.FIELDS)
    key = scheme.verify(record, x)
    assert key is not None
    assert scheme.verify(record, at_distance(x, 0.01, rng)) == key
    assert scheme.verify(record, unit(rng.standard_normal(512))) is None
    helper = record["helper"].copy()
    helper[:8] += 0.9  # moves a block's codeword: a flipped helper must fail
    tampered = type(record)(record.scheme_id, record.parameter_set, {**record.fields, "helper": helper})
    assert scheme.verify(tampered, x) is None


def test_records_are_not_interchangeable(rng):
    x = unit(rng.standard_normal(512))
    mrp_record = get_scheme("mrp").enroll(x)
    for name in ("unprotected", "facial-fe"):
        with pytest.raises(RecordError, match="scheme 'mrp'"):
            get_scheme(name).verify(mrp_record, x)


def test_bad_embeddings_are_refused():
    scheme = get_scheme("unprotected")
    with pytest.raises(SchemeError):
        scheme.enroll(np.zeros(512))
    with pytest.raises(SchemeError):
        scheme.enroll(np.ones(128))
    with pytest.raises(SchemeError):
        scheme.enroll(np.full(512, np.nan))
    with pytest.raises(SchemeError):
        get_scheme("facial-fe", scale=0)
    with pytest.raises(SchemeError):
        get_scheme("mrp").enroll_derand(np.ones(512), b"short")


def test_thresholds_are_the_calibrated_constants():
    assert get_scheme("unprotected").threshold == unprotected.THRESHOLD
    assert get_scheme("mrp").threshold == mrp.THRESHOLD
    assert get_scheme("facial-fe").scale == facial_fe.SCALE
