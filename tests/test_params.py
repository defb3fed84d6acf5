"""Parameter sets: checked at import, consistent with their lattice and their shipped projection."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from latticelock.kernels.errors import ParameterSetError
from latticelock.kernels.kdf import DEVICE_COST
from latticelock.kernels.params import (
    DEFAULT_FOR_PURPOSE,
    DEVICE_BASE,
    OPERATING_POINTS,
    PARAMETER_SETS,
    RADIUS_FRACTION,
    L2FEParams,
    gaussian_heuristic,
    get_parameter_set,
    operating_point,
    operating_point_for_far,
)
from latticelock.kernels.projection import load_projection, read_projection


def test_gaussian_heuristic_is_the_radius_of_a_ball_of_volume_det():
    for m, n, q in ((32, 16, 65537), (48, 16, 65537), (64, 16, 65537)):
        r = gaussian_heuristic(m, n, q)
        log_ball = m / 2 * math.log(math.pi) - math.lgamma(m / 2 + 1) + m * math.log(r)
        assert log_ball == pytest.approx((m - n) * math.log(q))
    # sqrt(m / (2 pi e)) q^((m-n)/m) asymptotically; within 10% already at m = 32.
    assert gaussian_heuristic(32, 16, 65537) == pytest.approx(math.sqrt(32 / (2 * math.pi * math.e)) * 256, rel=0.1)


@pytest.mark.parametrize("name", sorted(PARAMETER_SETS))
def test_each_set_is_consistent(name):
    p = get_parameter_set(name)
    assert p.name == name
    assert p.radius <= RADIUS_FRACTION * p.lambda1 + 0.1 < 0.5 * p.lambda1
    assert p.threshold == pytest.approx(p.radius / p.scale)
    assert p.kdf == DEVICE_COST and p.decoder == "cvp"
    projection = load_projection(p.projection)
    assert projection.max_dim >= p.m


def test_shipped_projection_is_public_and_documented():
    name = next(iter(PARAMETER_SETS.values())).projection
    projection = load_projection(name)
    prov = projection.provenance
    for key in ("source", "source_sha256", "images", "identities", "command", "excluded"):
        assert key in prov
    gram = projection.components.astype(np.float64) @ projection.components.T.astype(np.float64)
    np.testing.assert_allclose(gram, np.eye(projection.max_dim), atol=1e-4)
    variance = prov["explained_variance"]
    assert variance == sorted(variance, reverse=True)


def test_inconsistent_sets_are_refused():
    good = get_parameter_set("l2fe-facenet-m32")
    for change in (
        {"q": 65536},
        {"n": 32},
        {"radius": good.lambda1},
        {"scale": 0.0},
        {"decoder": "sphere"},
        {"bkz_block": 1},
    ):
        with pytest.raises(ParameterSetError, match="l2fe-facenet-m32"):
            dataclasses.replace(good, **change)
    with pytest.raises(ParameterSetError, match="unknown parameter set"):
        get_parameter_set("l2fe-facenet-m1024")
    assert isinstance(good, L2FEParams)


def test_projection_file_errors_are_clear(tmp_path):
    with pytest.raises(ParameterSetError, match="missing"):
        read_projection(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ParameterSetError, match="unreadable"):
        read_projection(bad)
    skewed = tmp_path / "skewed.npz"
    np.savez(skewed, mean=np.zeros(512, np.float32), components=np.ones((4, 512), np.float32), provenance=np.array("{}"))
    with pytest.raises(ParameterSetError, match="orthonormal"):
        read_projection(skewed)


PAPER_SETS = {  # the paper's 1% comparison sets: (m, radius, scale), unchanged by the device's points
    "l2fe-facenet-m32": (32, 150.7, 190.37),
    "l2fe-facenet-m48": (48, 1148.6, 1200.08),
    "l2fe-facenet-m64": (64, 3305.9, 3114.07),
}


def test_the_paper_sets_are_unchanged():
    for name, (m, radius, scale) in PAPER_SETS.items():
        p = get_parameter_set(name)
        assert (p.m, p.radius, p.scale) == (m, radius, scale) and name.endswith(f"m{m}")
        assert OPERATING_POINTS[name].purpose == "paper" and OPERATING_POINTS[name].far_per_attempt is None


def test_device_points_share_the_device_lattice_and_differ_only_in_stranger_z():
    """The microcontroller decodes every user on one lattice: same q, m, n, projection, scale, decoder, BKZ;
    each record's own radius comes from the point's z, at most the point's radius."""
    device_points = [op for op in OPERATING_POINTS.values() if op.purpose != "paper"]
    assert {op.purpose for op in device_points} == {"unlock", "wallet"}
    for op in device_points:
        p = get_parameter_set(op.parameter_set)
        assert p.stranger_z is not None and p.radius < DEVICE_BASE.radius
        assert p.probe_floor > 0 and DEVICE_BASE.probe_floor == 0  # probes shorter than any face match nothing
        assert dataclasses.replace(p, name=DEVICE_BASE.name, stranger_z=None, radius=DEVICE_BASE.radius, probe_floor=0.0) == DEVICE_BASE
    unlock, wallet = (get_parameter_set(DEFAULT_FOR_PURPOSE[k]) for k in ("unlock", "wallet"))
    assert wallet.stranger_z < unlock.stranger_z < 0  # the wallet is calibrated for a 10x lower FAR
    assert wallet.radius < unlock.radius
    assert all(get_parameter_set(op.parameter_set).stranger_z is None for op in OPERATING_POINTS.values() if op.purpose == "paper")
    assert operating_point("unlock").far_per_attempt == 1e-4 and operating_point("wallet").far_per_attempt == 1e-5


def test_operating_points_by_name_purpose_and_far():
    assert set(OPERATING_POINTS) <= set(PARAMETER_SETS)
    assert operating_point("paper").parameter_set == "l2fe-facenet-m64"
    assert operating_point("l2fe-facenet-m32").parameter_set == "l2fe-facenet-m32"
    assert operating_point_for_far(1e-5).purpose == "wallet"
    assert operating_point_for_far(5e-5).purpose == "wallet"
    assert operating_point_for_far(1e-4).purpose == "unlock"
    assert operating_point_for_far(0.01).purpose == "unlock"


def test_unknown_points_and_uncalibrated_fars_are_clear_errors():
    with pytest.raises(ParameterSetError, match="unknown operating point 'l2fe-door'.*unlock, wallet"):
        operating_point("l2fe-door")
    with pytest.raises(ParameterSetError, match="no operating point is calibrated for FAR 1e-06.*1e-05"):
        operating_point_for_far(1e-6)
    for bad in (0.0, 1.0, 2.0):
        with pytest.raises(ParameterSetError, match=r"must be in \(0, 1\)"):
            operating_point_for_far(bad)
