"""Protocol pieces (split, threshold, baseline) and the report's JSON, tables and plots, on small
synthetic data; the CLI's steal / inspect / report commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latticelock.kernels.projection import fit_projection
from latticelock.tools.cli import main
from latticelock.tools.embeddings import EmbeddingsFile, normalise
from latticelock.tools.forensics import protocol as P
from latticelock.tools.forensics.figures import write_plots
from latticelock.tools.forensics.inverse import MLPInverse, RidgeInverse
from latticelock.tools.forensics.report import ReportConfig, run_report, write_json
from latticelock.tools.forensics.tables import format_report

from test_forensics_attacks import synthetic_faces


def _faceset(identities: int = 150, per: int = 3) -> EmbeddingsFile:
    x, labels = synthetic_faces(identities, per=per, spread=0.3)
    files = np.array([f"{name}/{name}_{i % per + 1:04d}.jpg" for i, name in enumerate(labels)])
    return EmbeddingsFile(x, labels, files, (), (), {}, Path("synthetic.npz"), "")


def test_split_is_disjoint_by_identity_and_uses_two_images_per_victim():
    faces = _faceset()
    eligible = {f"id{i:04d}" for i in range(0, 150, 2)}
    split = P.split_identities(faces, 0.5, eligible=eligible)
    assert set(split.victim_labels) <= eligible
    assert not set(split.victim_labels) & set(split.public_labels)
    assert len(split.victim_labels) == round(0.5 * len(eligible))
    assert not np.any(np.all(split.enrolled == split.other, axis=1))
    assert len(split.public) + 3 * len(split.victim_labels) == len(faces.embeddings)


def test_tau_hits_the_target_fpr_on_public_impostors():
    faces = _faceset()
    thr = P.calibrate_tau(faces.embeddings, faces.labels, target_fpr=0.01, impostor_pairs=20_000)
    assert abs(thr.fpr - 0.01) < 0.002
    assert thr.tpr > 0.5 and thr.genuine_pairs == 150 * 3


def test_random_guess_baseline_counts_per_guess_and_any():
    public = np.eye(4, dtype=np.float32)
    targets = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 0, -1]], dtype=np.float32)
    base = P.random_guess_baseline(public, np.array(["a", "b", "c", "d"]), targets, tau=0.95, guesses=4, repeats=2)
    # guess e1 matches targets 0 and 1, e2 matches target 1: 3 hits of 12 pairs; 2 of 3 victims hit
    assert base.per_guess_mean == pytest.approx(3 / 12)
    assert base.any_mean == pytest.approx(2 / 3) and base.any_std == 0
    assert base.any_curve[-1] == pytest.approx(2 / 3)
    assert list(P.first_success_curve(np.array([0, 3, -1]), np.array([1, 4, 5]))) == pytest.approx([1 / 3, 2 / 3, 2 / 3])


@pytest.mark.parametrize("model", [RidgeInverse(), MLPInverse(hidden=64, epochs=100, batch=64, lr=1e-2, seed=0)])
def test_inverse_models_learn_a_linear_map(model):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(20, 8))
    x = rng.normal(size=(600, 20))
    y = normalise(x @ W)
    fitted = model.fit(x[:500], y[:500])
    cos = np.sum(normalise(fitted.predict(x[500:])) * y[500:], axis=1)
    assert np.mean(cos) > 0.9


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    faces = _faceset(120)
    projection = fit_projection(faces.embeddings[200:], 64, {})
    config = ReportConfig(schemes=("unprotected", "mrp", "l2fe-facenet-m32"), attack_victims=8, train_faces=200,
                          guesses=40, repeats=2, kmeans=4, lattice_budget=5, device_kdf_victims=0, hardened_victims=3,
                          hardened_set="l2fe-device-far1e-4")
    return run_report(faces, config, progress=False, projection=projection, workdir=tmp_path_factory.mktemp("work"))


def test_report_json_schema_and_plots(small_report, tmp_path):
    out = tmp_path / "report.json"
    write_json(small_report, out)
    data = json.loads(out.read_text())
    assert data["rows"], "no rows"
    for row in data["rows"]:
        assert {"scheme", "attack", "test_set", "asr", "guesses"} <= set(row)
        assert row["guesses"] >= (0 if row.get("not_applicable") else 1)
        assert (row["asr"] is None) == bool(row.get("not_applicable")) and (row["asr"] is None or 0.0 <= row["asr"] <= 1.0)
    attacks = {(r["parameter_set"], r["attack"], r["test_set"]) for r in data["rows"]}
    for pset in ("unprotected-facenet-l2", "mrp-facenet-k128", "l2fe-facenet-m32"):
        assert (pset, "pipe", "enrolled") in attacks and (pset, "dictionary", "unlock") in attacks
    assert ("l2fe-facenet-m32", "lattice", "unlock") in attacks
    assert ("-", "random-guess (any of 40)", "enrolled") in attacks
    assert 0 < data["threshold"]["tau"] < 2
    modes = {(r["parameter_set"], r.get("mode")) for r in data["rows"] if r["attack"] == "pipe"}
    assert {("mrp-facenet-k128", "full"), ("mrp-facenet-k128", "partial"), ("l2fe-facenet-m32", "plain")} <= modes
    assert {a["scheme"] for a in data["accuracy"]} == {"unprotected", "mrp", "l2fe-hash"}
    threats = {(t["scheme"], t["threat_model"]) for t in data["threat_models"]}
    assert threats == {(s, "flash only") for s in ("unprotected", "mrp", "l2fe-hash", "l2fe-hash-mcu")} | {
        ("l2fe-hash-mcu", "device in hand"), ("l2fe-hash-mcu", "mcu secrets extracted")}
    text = format_report(small_report)
    assert "Table IV: MRP" in text and "Table X: L2FE-Hash" in text and "Table XII: Accuracy" in text
    assert "Ours: lattice" in text and "[not in the paper]" in text
    plots = write_plots(small_report, tmp_path / "plots")
    assert [p.name for p in plots] == ["asr_vs_guesses.png", "lattice_asr_vs_evaluations.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)


def test_hardened_rows_measure_each_threat_model(small_report):
    rows = {(r["threat_model"], r["attack"], r["test_set"]): r for r in small_report.rows if r["scheme"] == "l2fe-hash-mcu"}
    assert {k[:2] for k in rows} == {("flash only", "lattice"), ("flash only", "dictionary"), ("flash only", "pipe"),
                                     ("device in hand", "chip dictionary (public faces)"),
                                     ("device in hand", "chip dictionary (centre first)"),
                                     ("mcu secrets extracted", "lattice (chip secrets)")}
    assert all(r["victims"] == 3 and r["parameter_set"] == "l2fe-device-far1e-4" for r in rows.values())
    for attack, why in (("lattice", "no c on the flash"), ("dictionary", "no verifier")):
        row = rows[("flash only", attack, "unlock")]
        assert row["not_applicable"] and row["asr"] is None and row["why"].startswith(why)
    assert "random public face" in rows[("flash only", "pipe", "enrolled")]["how"]
    public = rows[("device in hand", "chip dictionary (public faces)", "unlock")]
    assert public["k"] == 2 and public["cold_device"] == {"PASSCODE_REQUIRED": 3}
    # every counted attempt is accounted for: a reject, or an accept that ends (or continues) the run
    assert public["attempts_mean"] * 3 == public["chip_answers"].get("REJECT", 0) + public["chip_answers"].get("ACCEPT", 0)
    assert rows[("mcu secrets extracted", "lattice (chip secrets)", "unlock")]["exact_e_recovered"] == 1.0
    text = format_report(small_report)
    assert "Ours: hardened" in text and "l2fe-hash-mcu" not in text.split("Ours: dictionary")[1].split("Ours:")[0]


def test_unprotected_is_broken_by_every_attack(small_report):
    rows = {(r["parameter_set"], r["attack"], r["test_set"]): r["asr"] for r in small_report.rows}
    assert rows[("unprotected-facenet-l2", "algebraic", "enrolled")] == 1.0
    assert rows[("unprotected-facenet-l2", "pipe", "unlock")] == 1.0


def test_cli_steal_inspect_report(tmp_path, capsys):
    from latticelock.device.store import FlashStore
    from latticelock.kernels.scheme import get_scheme

    faces = _faceset(60)
    store = FlashStore(tmp_path / "store", allow_insecure_baselines=True)
    store.put("alice", get_scheme("mrp").enroll(faces.embeddings[0]))
    assert main(["forensics", "steal", "--store", str(store.path), "--out", str(tmp_path / "d.img")]) == 0
    assert main(["forensics", "inspect", str(tmp_path / "d.img"), "--json", str(tmp_path / "i.json")]) == 0
    listing = json.loads((tmp_path / "i.json").read_text())
    assert listing["users"][0]["scheme"] == "mrp" and listing["users"][0]["fields"]["R"] == "f4[128x512]"
    np.savez(tmp_path / "e.npz", embeddings=faces.embeddings, labels=faces.labels, files=faces.files,
             failures=np.array([], dtype=str))
    code = main(["forensics", "report", "--embeddings", str(tmp_path / "e.npz"), "--pairs", str(tmp_path / "none.txt"),
                 "--schemes", "unprotected", "--guesses", "20", "--repeats", "2", "--kmeans", "3",
                 "--train-faces", "50", "--attack-victims", "5", "--hardened-victims", "1", "--hardened-set", "l2fe-device-far1e-4",
                 "--no-image", "--quiet", "--json", str(tmp_path / "r.json")])
    assert code == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {r["threat_model"] for r in rows if r["scheme"] == "l2fe-hash-mcu"} == {"flash only", "device in hand",
                                                                                     "mcu secrets extracted"}
    code = main(["forensics", "report", "--embeddings", str(tmp_path / "e.npz"), "--hardened-set", "l2fe-bogus", "--no-image",
                 "--quiet"])
    assert code == 2 and "unknown parameter set 'l2fe-bogus'" in capsys.readouterr().err
    code = main(["forensics", "report", "--embeddings", str(tmp_path / "e.npz"), "--hardened-set", "l2fe-facenet-m32",
                 "--no-image", "--quiet"])
    assert code == 2 and "hardened devices enrol only at a device operating point" in capsys.readouterr().err
    assert main(["forensics", "inspect", str(tmp_path / "missing.img")]) == 2
    assert "latticelock: error:" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["report", "--no-image"], ["fleet", "--devices", "2", "--users", "1"], ["generator"]])
def test_truncated_or_foreign_embeddings_are_one_line_errors(tmp_path, capsys, command):
    faces = _faceset(20)
    np.savez(tmp_path / "e.npz", embeddings=faces.embeddings, labels=faces.labels, files=faces.files)
    blob = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    for bad in ("cut.npz", "foreign.npz"):
        code = main(["forensics", *command, "--embeddings", str(tmp_path / bad), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("latticelock: error:") and err.count("\n") == 1 and "Traceback" not in err
