"""`latticelock eval calibrate`: stranger z read off public impostor attempts, cross-fitted, with honest counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval_fakes import write_faces
from latticelock.kernels.params import DEFAULT_SET, DEVICE_BASE, get_parameter_set
from latticelock.tools.attempts import identities, slices
from latticelock.tools.cli import main
from latticelock.tools.embeddings import load_embeddings
from latticelock.tools.errors import ToolsError
from latticelock.tools.eval_calibrate import calibrate, fold_scores, z_for
from latticelock.tools.rates import wilson_upper

PUBLIC = [1] * 180 + [2, 3, 6, 4]  # mostly one photo each, as LFW's public identities



@pytest.fixture(autouse=True)
def no_probe_floor(monkeypatch):
    """The synthetic faces sit closer to the projection's centre than real faces do, below the device
    points' probe floor: these tests count and calibrate, the floor has its own (tests/test_radii.py)."""
    from latticelock.kernels import radii

    monkeypatch.setattr(radii, "min_probe_sq", lambda params: 0)

def test_z_is_the_largest_whose_wilson_bound_meets_the_target():
    scores = np.arange(1, 100_001, dtype=np.float64) / 1000 - 60  # impostor z-scores -59.999, ..., 40
    r = z_for({"1 photo": scores}, 1e-4)
    (g,) = r.groups
    assert wilson_upper(g.false_accepts, 100_000) <= 1e-4 < wilson_upper(g.false_accepts + 1, 100_000)
    assert g.false_accepts == np.count_nonzero(scores <= r.stranger_z) and r.stranger_z < scores[g.false_accepts]
    assert r.attempts_needed == 30_000 and g.far == g.false_accepts / 100_000 and g.certifies
    tighter = z_for({"1 photo": scores}, 5e-5)
    assert tighter.stranger_z < r.stranger_z


def test_a_group_too_small_to_certify_must_accept_no_one():
    many = np.arange(1, 100_001, dtype=np.float64) + 10
    few = np.array([-4.55005, 80.0, 90.0])  # 3 attempts: cannot certify 1e-4, but bounds z (to 1e-4)
    r = z_for({"1 photo": many, "2+ photos": few}, 1e-4)
    assert r.stranger_z == -4.5501
    one, averaged = r.groups
    assert one.certifies and (averaged.false_accepts, averaged.certifies) == (0, False)
    assert z_for({"1 photo": many, "2+ photos": few + 100}, 1e-4).stranger_z > 4.5


def test_too_few_attempts_or_nothing_to_calibrate_is_refused():
    with pytest.raises(ToolsError, match="rule of three needs 300000"):
        z_for({"1 photo": np.arange(100_000.0), "2+ photos": np.arange(1000.0)}, 1e-5)
    beyond = np.full(100_000, np.inf)  # every attempt beyond the most a radius may be
    with pytest.raises(ToolsError, match="nothing to calibrate"):
        z_for({"1 photo": beyond}, 1e-3)


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    return load_embeddings(write_faces(tmp_path_factory.mktemp("public") / "e.npz", PUBLIC, spread=0.6, noise=0.3))


def test_every_comparison_is_scored_once_with_a_pca_that_never_saw_it(public):
    people = identities(public)
    templates = np.stack([public.embeddings[p.rows[0]] for p in people])
    scores, averaged = fold_scores(public, people, templates, 4, get_parameter_set(DEFAULT_SET), 2, 3, "frame",
                                   np.random.default_rng(0), progress=False)
    attempts = [len(slices(p.rows, 3)) for p in people]
    ordered = sum(attempts[b] for a in range(len(people)) for b in range(len(people)) if a != b)
    singles = sum(1 for p in people if len(p.rows) == 1)
    assert len(scores) == ordered - singles * (singles - 1) // 2  # two one-photo people: one comparison
    several = [a for a, p in enumerate(people) if len(p.rows) > 1]
    assert averaged.sum() == sum(sum(attempts) - attempts[a] for a in several)  # their template averages photos
    assert not np.any(np.isnan(scores))


def test_calibration_gives_the_device_lattices_stranger_z(public):
    result = calibrate(public, frozenset(p.name for p in identities(public)), [1e-3, 3e-4], progress=False)
    loose, strict = result.points
    assert result.base == DEVICE_BASE.name and result.identities == len(PUBLIC) and result.images == sum(PUBLIC)
    assert result.templates_by_images == {1: 180, 2: 1, 3: 1, 4: 1, 5: 1}
    assert strict.stranger_z < loose.stranger_z
    assert strict.radius_quartiles[1] <= loose.radius_quartiles[1] <= DEVICE_BASE.radius
    for r in result.points:
        assert [g.templates for g in r.groups] == ["1 photo", "2+ photos"]
        assert sum(g.impostor_attempts for g in r.groups) == result.impostor_attempts
        assert all(g.far_upper95 <= r.far_target or (g.false_accepts == 0 and not g.certifies) for g in r.groups)
    with pytest.raises(ToolsError, match="at least 3 folds"):
        calibrate(public, frozenset({"P00"}), [0.1], folds=2, progress=False)
    with pytest.raises(ToolsError, match="cannot fill 4 folds"):
        calibrate(public, frozenset({"P00", "P01"}), [0.1], progress=False)
    with pytest.raises(ToolsError, match="cannot fit a 64-dimension PCA"):
        calibrate(public, frozenset(p.name for p in identities(public)[:90]), [0.1], folds=3, progress=False)


def pairs_file(path, evaluated=("P180", "P181")):
    a, b = evaluated
    path.write_text(f"1 1\n{a} 1 2\n{a} 1 {b} 1\n")
    return path


def test_command_calibrates_on_identities_no_pair_names(tmp_path, capsys, public):
    out = tmp_path / "cal.json"
    argv = ["eval", "calibrate", "--embeddings", str(public.path), "--pairs", str(pairs_file(tmp_path / "p.txt")),
            "--far", "1e-3", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"public identities {len(PUBLIC) - 2}" in printed and "cross-fitted" in printed
    report = json.loads(out.read_text())
    assert report["identities"] == len(PUBLIC) - 2 and report["points"][0]["far_target"] == 1e-3


def test_a_rate_outside_0_1_is_refused_by_the_parser(tmp_path, capsys, public):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "calibrate", "--embeddings", str(public.path), "--far", "2"])
    assert exc.value.code == 2 and "a false-accept rate must be in (0, 1), got 2" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--far", "1e-5"], "rule of three needs 300000"),
    (["--folds", "2"], "at least 3 folds"),
])
def test_command_errors_exit_2(tmp_path, capsys, public, extra, message):
    argv = ["eval", "calibrate", "--embeddings", str(public.path), "--pairs", str(pairs_file(tmp_path / "p.txt")), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_pairs_file_of_other_people_is_an_error(tmp_path, capsys, public):
    argv = ["eval", "calibrate", "--embeddings", str(public.path), "--pairs", str(pairs_file(tmp_path / "p.txt", ("Ann", "Bo")))]
    assert main(argv) == 2
    assert "no identity of the pairs file has an embedding" in capsys.readouterr().err
