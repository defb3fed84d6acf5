"""The face generator (PIPE step 2 in image space): closed-form training, the cached weights and
their manifest, the identity rule, and the image-space rows, grids and HTML of the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from latticelock.tools.embeddings import EmbeddingsFile, normalise
from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import generator

from test_forensics_attacks import synthetic_faces

pytest.importorskip("torch", reason="the [forensics] extra (PyTorch) is not installed")

SIZE = 64


def _pairs(n: int = 300, seed: int = 0):
    """Faces that are a fixed linear picture of their embedding, and embeddings on a 16-d subspace (as
    faces use few directions), so a few hundred pairs determine the generator."""
    rng = np.random.default_rng(seed)
    x = normalise(rng.normal(size=(n, 16)) @ rng.normal(size=(16, 512)))
    basis = rng.normal(size=(512, SIZE * SIZE * 3)) * 0.02
    images = np.clip(0.5 + x @ basis, 0, 1)
    return x, (images * 255).round().astype(np.uint8).reshape(n, SIZE, SIZE, 3), np.array([f"p{i // 2:03d}" for i in range(n)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    x, crops, labels = _pairs()
    out = tmp_path_factory.mktemp("generator") / "gen.pt"
    gen = generator.build(x[:250], crops[:250], labels[:250], {"path": "synthetic", "sha256": "-"}, out, threads=1)
    return gen, out, (x[250:], crops[250:])


def test_generator_learns_a_linear_picture_of_the_embedding(built):
    gen, _, (x, crops) = built
    faces = gen.generate(x)
    assert faces.shape == (len(x), SIZE, SIZE, 3) and faces.dtype == np.uint8
    held_out = np.sqrt(np.mean((faces.astype(float) - crops) ** 2)) / 255
    mean_face = np.sqrt(np.mean((crops.mean(0) - crops.astype(float)) ** 2)) / 255
    assert held_out < 0.2 * mean_face  # far better than drawing everyone as the mean face


def test_manifest_records_weights_training_and_hardware(built):
    gen, out, _ = built
    manifest = json.loads(generator.manifest_path(out).read_text())
    assert manifest["sha256"] == gen.manifest["sha256"] and len(manifest["sha256"]) == 64
    assert manifest["training"]["images"] == 250 and len(manifest["training"]["identities"]) == 125
    assert "CPU" in manifest["hardware"] and manifest["architecture"] == "cpu-ridge64"
    loaded = generator.load(out)
    assert np.array_equal(loaded.generate(built[2][0]), gen.generate(built[2][0]))
    assert loaded.identities == frozenset(f"p{i:03d}" for i in range(125))


def test_tampered_or_missing_weights_are_refused(built, tmp_path):
    import shutil

    out = tmp_path / "gen.pt"
    shutil.copy(built[1], out)
    shutil.copy(generator.manifest_path(built[1]), generator.manifest_path(out))
    data = bytearray(out.read_bytes())
    data[-10] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ToolsError, match="sha256"):
        generator.load(out)
    with pytest.raises(ToolsError, match="no face generator"):
        generator.load(tmp_path / "missing.pt")
    generator.manifest_path(out).write_text("{not json")
    with pytest.raises(ToolsError, match="corrupt"):
        generator.load(out)


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ToolsError, match=r"pip install -e '\.\[forensics\]'"):
        generator.require_torch()


@pytest.fixture(scope="module")
def image_report(tmp_path_factory):
    """A small report with the image-space attack, on synthetic faces: the generator draws each
    embedding as a fixed random picture of it, trained on the split's public faces only."""
    from latticelock.kernels.projection import fit_projection
    from latticelock.tools.forensics.pipe_image import ImageAttack
    from latticelock.tools.forensics.protocol import split_identities
    from latticelock.tools.forensics.report import ReportConfig, run_report

    x, labels = synthetic_faces(120, per=3, spread=0.3)
    files = np.array([f"{name}/{name}_{i % 3 + 1:04d}.jpg" for i, name in enumerate(labels)])
    faces = EmbeddingsFile(x, labels, files, (), (), {}, Path("synthetic.npz"), "")
    split = split_identities(faces, 0.5)
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(512, SIZE * SIZE * 3)) * 0.05
    crops = (np.clip(0.5 + split.public @ basis, 0, 1) * 255).astype(np.uint8).reshape(-1, SIZE, SIZE, 3)
    out = tmp_path_factory.mktemp("gen") / "gen.pt"
    gen = generator.build(split.public, crops, split.public_labels, {"path": "synthetic", "sha256": "-"}, out, threads=1)
    config = ReportConfig(schemes=("unprotected", "mrp"), attack_victims=12, image_victims=10, grid_victims=3,
                          train_faces=150, guesses=30, repeats=2, kmeans=3, device_kdf_victims=0, hardened_victims=4,
                          hardened_set="l2fe-device-far1e-4")
    projection = fit_projection(split.public, 64, {})
    report = run_report(faces, config, progress=False, projection=projection, image_attack=ImageAttack(gen, threads=1),
                        workdir=tmp_path_factory.mktemp("work"))
    return report, faces, gen, config


def test_image_rows_carry_the_issue_keys_and_grids(image_report):
    report, *_ = image_report
    modes = {(r["scheme"], r["mode"]) for r in report.image_rows}
    assert modes == {("unprotected", "full"), ("mrp", "full"), ("mrp", "partial"), ("l2fe-hash-mcu", "hardened")}
    for row in report.image_rows:
        assert {"attack", "scheme", "mode", "asr", "asr_other_image", "victims", "generator"} <= set(row)
        # the hardened devices hold the first 4 of the image victims
        assert row["victims"] == (4 if row["mode"] == "hardened" else 10)
        assert row["attack"] == "pipe-image" and row["generator"] == "cpu-ridge64"
        assert 0 <= row["asr"] <= 1 and 0 <= row["asr_other_image"] <= 1
    assert len(report.grids["pipe-image l2fe-device-far1e-4 hardened"]["victims"]) == 3
    grid = report.grids["pipe-image mrp-facenet-k128 partial"]
    assert len(grid["reconstructions"]) == 3 and grid["reconstructions"][0].shape == (SIZE, SIZE, 3)
    assert grid["photos"] == [None] * 3  # no dataset folder: no photos, and nothing fails
    assert "grids" not in report.to_json() and report.generator["training"]["identity_count"] > 0


def test_html_page_is_self_contained_and_names_the_paper_tables(image_report, tmp_path):
    from latticelock.tools.forensics.html import write_html

    report, *_ = image_report
    write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Table IV: MRP" in page and "Table XII" in page and "(ours: not in the paper)" in page
    assert page.count("data:image/png;base64,") >= 1 + len(report.grids)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "Protocol differences from the paper" in page and "cpu-ridge64" in page


def test_a_generator_that_saw_a_victim_is_refused(image_report, tmp_path):
    from latticelock.tools.forensics.pipe_image import ImageAttack
    from latticelock.tools.forensics.report import run_report

    _, faces, _, config = image_report
    x, crops, _ = _pairs(40)
    leaky = generator.build(x, crops, faces.labels[:40], {"path": "synthetic", "sha256": "-"}, tmp_path / "g.pt", threads=1)
    with pytest.raises(ToolsError, match="victim identities"):
        run_report(faces, config, progress=False, image_attack=ImageAttack(leaky, threads=1), workdir=tmp_path)
