"""`latticelock eval policy`: intervals, parsing, and the attempt simulation on the real scheme."""

from __future__ import annotations

import json

import numpy as np
import pytest

from device_fakes import PARAMETER_SET, PROJECTION, RECIPE_OPTIONS, person_centre
from latticelock.kernels.scheme import get_scheme
from latticelock.tools.errors import ToolsError
from latticelock.tools.eval_policy import Embeddings, evaluate, pairs_identities, parse_policy, run_attempt, wilson_interval


def test_wilson_interval():
    lo, hi = wilson_interval(0, 100)
    assert lo == 0.0 and 0.03 < hi < 0.04
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_parse_policy_and_attempts():
    config = parse_policy("2/5")
    assert (config.k, config.n) == (2, 5)
    assert run_attempt(config, [False, True, False, True, False])
    assert not run_attempt(config, [False, True, False, False, False])
    with pytest.raises(ToolsError):
        parse_policy("two of five")


def test_pairs_identities(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 2\nAlice 1 2\nBob 1 Carol 3\n")
    assert pairs_identities(pairs) == {"Alice", "Bob", "Carol"}


def synthetic(noise: float, people: int = 12, images: int = 8, seed: int = 0) -> Embeddings:
    """People in the projection's span, with noise inside it too (what the scheme sees)."""
    rng = np.random.default_rng(seed)
    span = PROJECTION.components[:32].astype(np.float64)
    vectors, labels = [], []
    for person in range(people):
        for _ in range(images):
            x = person_centre(person + 20) + rng.normal(scale=noise, size=32) @ span
            vectors.append(x / np.linalg.norm(x))
            labels.append(f"P{person}")
    return Embeddings(np.array(vectors, np.float32), np.array(labels), "synthetic")


@pytest.fixture(scope="module")
def scheme():
    return get_scheme(PARAMETER_SET, **RECIPE_OPTIONS)


def test_separated_people_give_no_errors(scheme):
    result = evaluate(synthetic(0.01), scheme, [parse_policy("1/1"), parse_policy("2/3")], genuine_attempts=3, impostor_people=4, progress=False)
    assert result.people_enrolled == 12 and result.genuine_frames == 12 * 5
    for p in result.policies:
        assert (p.false_rejects, p.false_accepts, p.genuine_attempts, p.impostor_attempts) == (0, 0, 36, 48)


def test_more_frames_lower_frr_and_higher_k_raises_it(scheme):
    result = evaluate(synthetic(0.16), scheme, [parse_policy(p) for p in ("1/1", "1/3", "3/3")], genuine_attempts=20, impostor_people=3, progress=False)
    frame_frr = 1 - result.genuine_frame_matches / result.genuine_frames
    assert 0.1 < frame_frr < 0.9
    frr = {p.policy: p.frr for p in result.policies}
    assert frr["1/3"] < frr["1/1"] < frr["3/3"]
    assert all(p.false_accepts == 0 for p in result.policies)


def test_command_writes_json(tmp_path, monkeypatch, scheme):
    from latticelock.tools import eval_policy
    from latticelock.tools.cli import main

    data = synthetic(0.01, people=5, images=5)
    np.savez(tmp_path / "e.npz", embeddings=data.vectors, labels=data.labels, files=data.labels, failures=np.array([], str))
    monkeypatch.setattr("latticelock.kernels.scheme.get_scheme", lambda name, **kw: scheme)
    code = main(["eval", "policy", "--embeddings", str(tmp_path / "e.npz"), "--all-identities", "--policy", "2/3",
                 "--genuine-attempts", "2", "--impostor-people", "2", "--json", str(tmp_path / "out.json")])
    assert code == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["datasets"][0]["policies"][0]["policy"] == "2/3"
    assert report["datasets"][0]["policies"][0]["genuine_attempts"] == 10
    from latticelock.device.policy import PolicyConfig

    default = PolicyConfig()
    assert f"{default.k}/{default.n}" in eval_policy.DEFAULT_POLICIES  # the device's default is among those measured


def test_bad_embeddings_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"nope")
    from latticelock.tools.eval_policy import load_embeddings

    with pytest.raises(ToolsError, match="not an embeddings file"):
        load_embeddings(tmp_path / "x.npz")


@pytest.mark.parametrize("bad", [dict(genuine_attempts=0), dict(impostor_people=0), dict(enrol_images=0), dict(max_people=0)])
def test_degenerate_settings_are_clear_errors(scheme, bad):
    with pytest.raises(ToolsError, match="at least 1"):
        evaluate(synthetic(0.01, people=3, images=5), scheme, [parse_policy("1/1")], progress=False, **bad)


def test_one_identity_cannot_measure_false_accepts(scheme):
    with pytest.raises(ToolsError, match="two identities"):
        evaluate(synthetic(0.01, people=1, images=6), scheme, [parse_policy("1/1")], progress=False)
