"""`latticelock eval schemes`: public/evaluated split, thresholds, and a small real run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from latticelock.tools import eval_schemes as ev
from latticelock.tools.cli import main
from latticelock.tools.embeddings import load_embeddings
from latticelock.tools.pairs import pair_rows, read_pairs


def synthetic_lfw(path, identities=60, per_identity=3, seed=0):
    """Clustered unit vectors named like LFW files: identity centres plus small per-image noise."""
    rng = np.random.default_rng(seed)
    emb, labels, files = [], [], []
    for i in range(identities):
        centre = rng.standard_normal(512)
        name = f"Person_{i:03d}"
        for j in range(1, per_identity + 1):
            x = centre + 0.6 * rng.standard_normal(512)
            emb.append(x / np.linalg.norm(x))
            labels.append(name)
            files.append(f"{name}/{name}_{j:04d}.jpg")
    np.savez(path, embeddings=np.array(emb, np.float32), labels=np.array(labels), files=np.array(files),
             failures=np.array([], dtype=str))


def write_pairs(path, same, different):
    lines = ["1\t%d" % len(same)]
    lines += [f"{n}\t{i}\t{j}" for n, i, j in same]
    lines += [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in different]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def lfw(tmp_path):
    synthetic_lfw(tmp_path / "lfw.npz")
    same = [(f"Person_{i:03d}", 1, 2) for i in range(10)] + [("Person_000", 1, 9)]  # image 9 does not exist
    different = [(f"Person_{i:03d}", 1, f"Person_{i + 10:03d}", 2) for i in range(11)]
    write_pairs(tmp_path / "pairs.txt", same, different)
    return tmp_path


def rows(lfw):
    data = load_embeddings(lfw / "lfw.npz")
    return data, pair_rows(read_pairs(lfw / "pairs.txt"), data)


def test_public_split_excludes_every_identity_the_pairs_name(lfw):
    data, pairs = rows(lfw)
    assert len(pairs.first) == 21 and pairs.missing == 1 and pairs.same.sum() == 10
    public = ev.public_rows(data, pairs.names)
    assert len(public) == (60 - 21) * 3
    assert not set(data.labels[public]) & pairs.names


def test_limit_pairs_keeps_both_classes(lfw):
    pairs = ev.limit_pairs(rows(lfw)[1], 6)
    assert pairs.same.sum() == 3 and (~pairs.same).sum() == 3


def test_threshold_at_fpr():
    impostors = np.arange(1, 1001, dtype=float)
    t = ev.threshold_at_fpr(impostors, 0.01)
    assert np.mean(impostors <= t) == pytest.approx(0.01)
    assert np.mean(impostors <= ev.threshold_at_fpr(impostors, 0.0)) == 0.0


def test_small_real_run_writes_the_json(lfw, capsys, monkeypatch):
    monkeypatch.setenv("LATTICELOCK_CACHE", str(lfw / "user-cache"))
    environment = dict(os.environ)
    out = lfw / "result.json"
    code = main(["eval", "schemes", "--embeddings", str(lfw / "lfw.npz"), "--pairs", str(lfw / "pairs.txt"),
                 "--sets", "l2fe-facenet-m32", "--fast-kdf", "--decoder-backend", "cpu", "--security-sample", "2",
                 "--no-progress", "--json", str(out)])
    assert code == 0
    # The evaluation's bases went to its own temporary folder: nothing in the user's cache, and the
    # environment is as it was.
    assert not (lfw / "user-cache").exists() and dict(os.environ) == environment
    result = json.loads(out.read_text())
    names = [r["name"] for r in result["schemes"]]
    assert names[:3] == ["unprotected", "mrp", "facial-fe"]
    assert {"l2fe-hash/cvp", "l2fe-hash/babai", "l2fe-hash/babai-raw", "l2fe-hash/cvp@1e-2", "l2fe-hash/cvp@1e-3"} <= set(names)
    for row in result["schemes"]:
        assert {"name", "parameter_set", "tpr", "fpr"} <= set(row)
        assert 0 <= row["tpr"] <= 1 and 0 <= row["fpr"] <= 1
    # Clustered synthetic identities are easy: every genuine pair is accepted without the scheme.
    assert result["schemes"][0]["tpr"] == 1.0
    assert result["security"][0]["parameter_set"] == "l2fe-facenet-m32"
    assert result["security"][0]["mean_face_records_tested"] == 2
    printed = capsys.readouterr().out
    assert "Argon2id cost lowered" in printed and "l2fe-hash/cvp" in printed


def test_unknown_set_is_an_error(lfw, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "schemes", "--embeddings", str(lfw / "lfw.npz"), "--pairs", str(lfw / "pairs.txt"),
              "--sets", "l2fe-nope"])
    assert stop.value.code == 2 and "invalid choice: 'l2fe-nope'" in capsys.readouterr().err
