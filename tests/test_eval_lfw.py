"""LFW protocol maths, the embeddings file, and resumable dataset embedding."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.tools.cli import main
from latticelock.tools.embeddings import load_embeddings
from latticelock.tools.errors import ToolsError
from latticelock.tools.embeddings import EmbeddingsWriter
from latticelock.tools.eval_embed import embed_dataset, list_images, parallelism, partial_path
from latticelock.tools.eval_lfw import Side, best_threshold, equal_error_rate, evaluate, lfw_report, roc, tar_at_far
from latticelock.tools.pairs import Pair, read_pairs

# --- pairs file ------------------------------------------------------------------------------------

PAIRS_TEXT = "2 1\nAna 1 2\nAna 1 Bob 1\nBob 1 2\nCid 3 Ana 2\n"


def test_read_pairs_follows_the_lfw_layout(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS_TEXT)
    pairs = read_pairs(path)
    assert pairs == [
        Pair(0, "Ana/Ana_0001.jpg", "Ana/Ana_0002.jpg", True),
        Pair(0, "Ana/Ana_0001.jpg", "Bob/Bob_0001.jpg", False),
        Pair(1, "Bob/Bob_0001.jpg", "Bob/Bob_0002.jpg", True),
        Pair(1, "Cid/Cid_0003.jpg", "Ana/Ana_0002.jpg", False),
    ]


@pytest.mark.parametrize(
    "text", ["", "two 1\n", "2 1\nAna 1 2\n", "1 1\nAna 1 2\nAna x Bob 1\n", "1 1\nAna 1\nB 1 C 1\n", "0 300\n", "3 0\n"]
)
def test_read_pairs_rejects_malformed_files(tmp_path, text):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ToolsError):
        read_pairs(path)


def test_official_pairs_file_has_ten_folds_of_six_hundred(datasets):
    pairs = read_pairs(datasets / "lfw_pairs.txt")
    assert len(pairs) == 6000
    assert [sum(p.fold == k for p in pairs) for k in range(10)] == [600] * 10
    assert sum(p.same for p in pairs) == 3000


# --- verification maths ----------------------------------------------------------------------------

def _brute_best_accuracy(d, s):
    candidates = np.concatenate([[-1.0], d])
    return max(np.mean((d <= t) == s) for t in candidates)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=40))
def test_best_threshold_matches_brute_force(items):
    d = np.array([x / 10 for x, _ in items], dtype=float)
    s = np.array([b for _, b in items])
    threshold, accuracy = best_threshold(d, s)
    assert accuracy == pytest.approx(_brute_best_accuracy(d, s))
    assert np.mean((d <= threshold) == s) == pytest.approx(accuracy)


def test_evaluate_on_separable_and_overlapping_scores():
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 500)
    folds = np.tile(np.arange(10), 100)
    separable = np.where(same, rng.uniform(0.2, 0.8, 1000), rng.uniform(1.2, 1.8, 1000))
    figures = evaluate(separable, same, folds)
    assert figures["accuracy"] == 1.0 and figures["eer"] == 0.0 and figures["tar_at_far"]["1e-3"] == 1.0
    assert 0.8 < figures["threshold"] < 1.2
    # Overlapping Gaussians at +-1 sigma around the midpoint: accuracy and 1 - EER near Phi(1) = 0.841.
    noisy = np.where(same, rng.normal(0.0, 1.0, 1000), rng.normal(2.0, 1.0, 1000))
    figures = evaluate(noisy, same, folds)
    assert 0.79 < figures["accuracy"] < 0.89 and 0.11 < figures["eer"] < 0.21
    assert figures["accuracy_std"] > 0


def test_roc_is_monotone_and_tar_at_far_reads_it():
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    s = np.array([True, True, False, True, False, False])
    far, tar, _ = roc(d, s)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    assert far[-1] == 1.0 and tar[-1] == 1.0
    assert tar_at_far(far, tar, 0.0) == pytest.approx(2 / 3)
    assert tar_at_far(far, tar, 1 / 3) == 1.0
    assert equal_error_rate(far, tar) == pytest.approx(1 / 3)


def test_evaluate_needs_two_folds():
    with pytest.raises(ToolsError):
        evaluate(np.array([0.1, 0.2]), np.array([True, False]), np.array([0, 0]))


# --- embeddings files and failures -------------------------------------------------------------------

def _pairs_and_embeddings(n_people=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 512))
    embeddings, pairs = {}, []
    for k in range(n_people):
        for i in (1, 2):
            v = centres[k] + rng.normal(scale=0.3, size=512)
            embeddings[f"P{k}/P{k}_{i:04d}.jpg"] = (v / np.linalg.norm(v)).astype(np.float32)
    for k in range(n_people):
        pairs.append(Pair(k % 2, f"P{k}/P{k}_0001.jpg", f"P{k}/P{k}_0002.jpg", True))
        pairs.append(Pair(k % 2, f"P{k}/P{k}_0001.jpg", f"P{(k + 1) % n_people}/P{(k + 1) % n_people}_0002.jpg", False))
    return pairs, embeddings


def test_failed_detections_count_as_rejections_without_a_dataset():
    pairs, embeddings = _pairs_and_embeddings()
    failed = "P0/P0_0002.jpg"
    del embeddings[failed]
    report = lfw_report(pairs, Side(embeddings, [failed]), dataset=None)
    assert report.pairs == len(pairs) and report.pairs_with_fallback == 2
    assert "infinite" in report.fallback
    assert report.accuracy < 1.0  # the same-person pair P0 is now a false rejection


def test_images_neither_embedded_nor_failed_are_an_error():
    pairs, embeddings = _pairs_and_embeddings()
    del embeddings["P3/P3_0001.jpg"]
    with pytest.raises(ToolsError, match="neither embedded nor listed"):
        lfw_report(pairs, Side(embeddings, []), dataset=None)


def test_probe_embeddings_supply_every_pairs_second_image_only():
    pairs, embeddings = _pairs_and_embeddings()
    templates = Side(embeddings, [])
    assert lfw_report(pairs, templates, None, second=Side(dict(embeddings), [])).accuracy == 1.0
    frames = dict(embeddings)
    frames["P0/P0_0001.jpg"] = -frames["P0/P0_0001.jpg"]  # a first image: read from the templates, so harmless
    assert lfw_report(pairs, templates, None, second=Side(frames, [])).accuracy == 1.0
    frames["P0/P0_0002.jpg"] = -frames["P0/P0_0002.jpg"]  # the genuine pair's second image now points away
    mixed = lfw_report(pairs, templates, None, second=Side(frames, []))
    assert mixed.accuracy < 1.0 and mixed.pairs_with_fallback == 0
    del frames["P0/P0_0002.jpg"]
    with pytest.raises(ToolsError, match="frames.npz: 1 of the pairs' second images"):
        lfw_report(pairs, templates, None, second=Side(frames, [], name="frames.npz"))


def test_a_failure_in_one_file_touches_only_the_pairs_that_read_it_there():
    pairs, embeddings = _pairs_and_embeddings()
    frames = dict(embeddings)
    failed = "P1/P1_0002.jpg"  # the second image of P1's genuine pair and of P0's impostor pair
    del frames[failed]
    report = lfw_report(pairs, Side(embeddings, []), None, second=Side(frames, [failed]))
    assert report.pairs_with_fallback == sum(p.second == failed for p in pairs) == 2


def test_fallbacks_fill_only_the_side_that_failed_embedded_as_that_file_was(monkeypatch, tmp_path):
    import latticelock.tools.eval_lfw as eval_lfw

    pairs, embeddings = _pairs_and_embeddings()
    failed = "P1/P1_0002.jpg"
    pairs.append(Pair(1, failed, "P1/P1_0001.jpg", True))  # the templates' side reads it too, and has it
    frames = dict(embeddings)
    del frames[failed]
    calls = []

    def fake_crops(dataset, files, threads, mirror=True):
        calls.append((tuple(files), mirror))
        return {f: embeddings[f] for f in files}

    monkeypatch.setattr(eval_lfw, "centre_crop_embeddings", fake_crops)
    report = lfw_report(pairs, Side(embeddings, []), tmp_path, second=Side(frames, [failed], mirror=False))
    assert calls == [((failed,), False)]  # only the frames' side, in one pass as that file was embedded
    assert report.pairs_with_fallback == 2 and report.accuracy == 1.0


def test_eval_lfw_command_prints_a_table_and_writes_json(tmp_path, capsys):
    pairs, embeddings = _pairs_and_embeddings()
    (tmp_path / "pairs.txt").write_text(
        "2 6\n" + "".join(
            (f"{p.first.split('/')[0]} {int(p.first[-8:-4])} {int(p.second[-8:-4])}\n" if p.same else
             f"{p.first.split('/')[0]} {int(p.first[-8:-4])} {p.second.split('/')[0]} {int(p.second[-8:-4])}\n")
            for fold in (0, 1) for same in (True, False) for p in pairs if p.fold == fold and p.same == same
        )
    )
    files = sorted(embeddings)
    np.savez(tmp_path / "e.npz", embeddings=np.stack([embeddings[f] for f in files]),
             labels=np.array([f.split("/")[0] for f in files]), files=np.array(files), failures=np.array([], dtype=str))
    code = main(["eval", "lfw", "--pairs", str(tmp_path / "pairs.txt"), "--embeddings", str(tmp_path / "e.npz"),
                 "--json", str(tmp_path / "out.json")])
    assert code == 0
    assert "accuracy" in capsys.readouterr().out
    result = json.loads((tmp_path / "out.json").read_text())
    for key in ("accuracy", "accuracy_std", "tar_at_far_1e-3", "eer", "threshold"):
        assert key in result
    assert result["accuracy"] == 1.0


def test_eval_lfw_command_reports_an_unreadable_embeddings_file(tmp_path, capsys):
    (tmp_path / "pairs.txt").write_text(PAIRS_TEXT)
    (tmp_path / "e.npz").write_bytes(b"not an npz")
    assert main(["eval", "lfw", "--pairs", str(tmp_path / "pairs.txt"), "--embeddings", str(tmp_path / "e.npz")]) == 2
    assert "not a .npz archive" in capsys.readouterr().err


# --- resumable dataset embedding -------------------------------------------------------------------

class FakePipeline:
    """Stands in for FacePipeline: faces everywhere except in images whose top-left pixel is black."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def faces(self, image):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # simulates the run being stopped
        return [] if image[0, 0, 0] == 0 else ["face"]

    @staticmethod
    def choose(faces, shape):
        return faces[0] if faces else None

    @staticmethod
    def crop(image, face):
        return np.zeros((160, 160, 3), np.uint8) + image[0, 0]

    @staticmethod
    def embed_crops(crops):
        out = np.zeros((len(crops), 512), np.float32)
        out[:, 0] = crops[:, 0, 0, 0]
        return out


def _dataset(tmp_path):
    import cv2

    root = tmp_path / "faces"
    for person in ("ann", "bob"):
        (root / person).mkdir(parents=True)
        for i in range(5):
            value = 0 if (person, i) == ("bob", 3) else 10 * i + (100 if person == "bob" else 50)
            cv2.imwrite(str(root / person / f"{i}.png"), np.full((20, 20, 3), value, np.uint8))
    (root / "bob" / "broken.jpg").write_bytes(b"garbage")
    (root / "notes.csv").write_text("not an identity folder\n")
    return root


def test_embed_dataset_resumes_from_its_checkpoint(tmp_path):
    root = _dataset(tmp_path)
    files = list_images(root)
    assert len(files) == 11 and files[0] == "ann/0.png"
    out = tmp_path / "out.npz"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(root, files, lambda: FakePipeline(fail_after=6), out, {"k": 1}, checkpoint_every=2, chunk=2,
                      progress=False)
    assert not out.exists()
    saved = EmbeddingsWriter.resume(partial_path(out))
    assert 0 < len(saved.done()) < 11
    fresh = FakePipeline()
    result = embed_dataset(root, files, lambda: fresh, out, {"k": 1}, checkpoint_every=2, chunk=2, progress=False)
    remaining = [f for f in files if f not in saved.done()]
    # Only the images not yet done are looked at again (the broken file fails before detection).
    assert fresh.calls == len([f for f in remaining if f != "bob/broken.jpg"])
    assert not partial_path(out).exists()
    with np.load(out) as data:
        assert sorted(data["files"]) == sorted(f for f in files if f not in ("bob/3.png", "bob/broken.jpg"))
        assert sorted(data["failures"]) == ["bob/3.png", "bob/broken.jpg"]
        assert list(data["labels"]) == [f.split("/")[0] for f in data["files"]]
        by_file = dict(zip(data["files"], data["embeddings"][:, 0], strict=True))
        assert result.files == [str(f) for f in data["files"]]  # what it returns is what it wrote
    assert by_file["bob/4.png"] == 140 and by_file["ann/0.png"] == 50


def test_embed_dataset_refuses_a_checkpoint_from_other_options(tmp_path):
    root = _dataset(tmp_path)
    out = tmp_path / "out.npz"
    EmbeddingsWriter(config={"alignment": "margin"}).save(partial_path(out))
    with pytest.raises(ToolsError, match="other options"):
        embed_dataset(root, list_images(root), FakePipeline, out, {"alignment": "landmarks"}, progress=False)


def test_list_images_needs_identity_folders(tmp_path):
    with pytest.raises(ToolsError):
        list_images(tmp_path / "absent")
    with pytest.raises(ToolsError):
        list_images(tmp_path)


@pytest.mark.integration
def test_eval_embed_command_on_real_faces(tmp_path, datasets, capsys):
    root = tmp_path / "lfw"
    for name in ("Colin_Powell/Colin_Powell_0001.jpg", "Colin_Powell/Colin_Powell_0002.jpg", "Serena_Williams/Serena_Williams_0001.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(datasets / "lfw" / name, root / name)
    (root / "Serena_Williams" / "empty.jpg").write_bytes(b"")
    out, mirrored = tmp_path / "e.npz", tmp_path / "mirrored.npz"
    assert main(["eval", "embed", str(root), "--out", str(out), "--threads", "1", "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    assert main(["eval", "embed", str(root), "--out", str(mirrored), "--threads", "1", "--quiet", "--mirror-average"]) == 0
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["flip_average"] is False and summary["min_face_size"] == 40
    with np.load(out) as data:
        assert data["embeddings"].shape == (3, 512) and data["embeddings"].dtype == np.float32
        assert list(data["failures"]) == ["Serena_Williams/empty.jpg"]
        e = dict(zip(data["files"], data["embeddings"], strict=True))
    with np.load(mirrored) as data:
        m = dict(zip(data["files"], data["embeddings"], strict=True))
    assert np.linalg.norm(e["Colin_Powell/Colin_Powell_0001.jpg"] - e["Colin_Powell/Colin_Powell_0002.jpg"]) < np.linalg.norm(
        e["Colin_Powell/Colin_Powell_0001.jpg"] - e["Serena_Williams/Serena_Williams_0001.jpg"]
    )
    # The default embeds as the unlock loop does (one pass), --mirror-average as enrolment does.
    from latticelock.device.frames import LOOP_FLIP_AVERAGE
    from latticelock.models.mtcnn import Detector
    from latticelock.models.pipeline import FacePipeline, load_image

    image = load_image(root / "Colin_Powell/Colin_Powell_0001.jpg")
    for flip, written in ((LOOP_FLIP_AVERAGE, e), (True, m)):
        pipeline = FacePipeline(detector=Detector(threads=1, min_face_size=40), flip_average=flip, threads=1)
        np.testing.assert_allclose(written["Colin_Powell/Colin_Powell_0001.jpg"], pipeline.embed_image(image).embedding, atol=1e-5)
    assert np.linalg.norm(e["Colin_Powell/Colin_Powell_0001.jpg"] - m["Colin_Powell/Colin_Powell_0001.jpg"]) > 1e-3


def make_fake_pipeline() -> FakePipeline:
    return FakePipeline()


def test_worker_processes_give_the_same_file_as_one_process(tmp_path):
    root = _dataset(tmp_path)
    files = list_images(root)
    one = embed_dataset(root, files, make_fake_pipeline, tmp_path / "one.npz", {}, chunk=2, progress=False)
    two = embed_dataset(root, files, make_fake_pipeline, tmp_path / "two.npz", {}, chunk=2, workers=2, progress=False)
    assert one.files == two.files and one.failures == two.failures
    np.testing.assert_array_equal(np.stack(one.embeddings), np.stack(two.embeddings))


def test_truncated_or_inconsistent_npz_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.npz"
    EmbeddingsWriter(config={}, files=["a/1.jpg"], embeddings=[np.ones(512, np.float32)]).save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ToolsError, match="cannot read embeddings file"):
        load_embeddings(truncated)
    with pytest.raises(ToolsError, match="delete it to start over"):
        EmbeddingsWriter.resume(truncated)
    inconsistent = tmp_path / "inconsistent.npz"
    with np.load(good) as data:
        arrays = dict(data)
    np.savez(inconsistent, **{**arrays, "embeddings": np.zeros((2, 512), np.float32)})
    with pytest.raises(ToolsError, match="disagree"):
        EmbeddingsWriter.resume(inconsistent)


@pytest.mark.parametrize(
    "asked, cores, chosen",
    [((None, None), 2, (2, 1)), ((None, None), 1, (1, 1)), ((None, None), 32, (8, 4)), ((1, None), 2, (1, 2)),
     ((None, 2), 2, (1, 2)), ((None, 4), 2, (1, 4)), ((3, 3), 2, (3, 3))],
)
def test_eval_embed_parallelism_fills_in_from_the_cores(asked, cores, chosen):
    assert parallelism(*asked, cores=cores) == chosen


def test_eval_embed_parallelism_refuses_zero():
    with pytest.raises(ToolsError, match="--workers"):
        parallelism(0, None, cores=2)
    with pytest.raises(ToolsError, match="--threads"):
        parallelism(None, 0, cores=2)


# --- eval embed: bad options are refused before any work ------------------------------------------

def _embed(tmp_path, *extra):
    root = tmp_path / "faces" if (tmp_path / "faces").is_dir() else _dataset(tmp_path)
    return main(["eval", "embed", str(root), "--quiet", "--workers", "2", *extra])


def test_eval_embed_refuses_a_min_face_size_below_mtcnns_window_before_starting_workers(tmp_path, capsys):
    assert _embed(tmp_path, "--out", str(tmp_path / "e.npz"), "--min-face-size", "5") == 2
    err = capsys.readouterr().err
    assert "--min-face-size must be at least 12" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("out", ["folder", ""])
def test_eval_embed_refuses_an_out_that_is_no_file_name(tmp_path, capsys, out):
    (tmp_path / "folder").mkdir()
    assert _embed(tmp_path, "--out", str(tmp_path / out) if out else "") == 2
    assert "give a file name" in capsys.readouterr().err


def test_eval_embed_keeps_an_existing_out_made_with_other_options(tmp_path, capsys):
    out = tmp_path / "lfw.npz"
    EmbeddingsWriter(config={"flip_average": True, "min_face_size": 40}, files=["a/1.jpg"],
                     embeddings=[np.ones(512, np.float32)]).save(out)
    before = out.read_bytes()
    assert _embed(tmp_path, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "exists, made with other options" in err and "--mirror-average: on, not off" in err
    assert out.read_bytes() == before


def test_a_checkpoint_of_other_options_is_named_by_its_flags(tmp_path):
    root = _dataset(tmp_path)
    out = tmp_path / "out.npz"
    EmbeddingsWriter(config={"flip_average": True, "min_face_size": 20}).save(partial_path(out))
    with pytest.raises(ToolsError, match=r"--mirror-average: on, not off; --min-face-size: 20, not 40"):
        embed_dataset(root, list_images(root), FakePipeline, out, {"flip_average": False, "min_face_size": 40}, progress=False)


def test_eval_lfw_refuses_probes_embedded_from_another_dataset_or_otherwise(tmp_path, capsys):
    (tmp_path / "pairs.txt").write_text(PAIRS_TEXT)
    files = ["Ana/Ana_0001.jpg", "Ana/Ana_0002.jpg", "Bob/Bob_0001.jpg", "Bob/Bob_0002.jpg", "Cid/Cid_0003.jpg"]
    vectors = [np.eye(512, dtype=np.float32)[i] for i in range(len(files))]
    base = {"dataset": "/data/lfw", "alignment": "margin", "min_face_size": 40, "flip_average": True}
    for name, changes in (("same.npz", {"dataset": "/moved/lfw", "flip_average": False}),
                          ("other.npz", {"dataset": "/data/faces94"}), ("small.npz", {"min_face_size": 20})):
        EmbeddingsWriter(config={**base, **changes}, files=files, embeddings=vectors).save(tmp_path / name)
    EmbeddingsWriter(config=base, files=files, embeddings=vectors).save(tmp_path / "templates.npz")
    run = lambda probes: main(["eval", "lfw", "--pairs", str(tmp_path / "pairs.txt"), "--embeddings",  # noqa: E731
                               str(tmp_path / "templates.npz"), "--probe-embeddings", str(tmp_path / probes), "--folds", "2"])
    assert run("other.npz") == 2 and "DATASET_DIR: faces94, not lfw" in capsys.readouterr().err
    assert run("small.npz") == 2 and "--min-face-size: 20, not 40" in capsys.readouterr().err
    assert run("same.npz") == 0  # the same folder, moved, embedded in one pass: the device's case


def test_the_json_never_replaces_a_file_the_command_reads_or_writes(tmp_path, capsys):
    out = tmp_path / "e.npz"
    assert _embed(tmp_path, "--out", str(out), "--json", str(out)) == 2
    assert "would replace the file given as --out" in capsys.readouterr().err and not out.exists()
    pairs, embeddings = _pairs_and_embeddings()
    files = sorted(embeddings)
    EmbeddingsWriter(config={}, files=files, embeddings=[embeddings[f] for f in files]).save(out)
    before = out.read_bytes()
    (tmp_path / "pairs.txt").write_text(PAIRS_TEXT)
    (tmp_path / "templates.npz").write_bytes(before)
    assert main(["eval", "lfw", "--pairs", str(tmp_path / "pairs.txt"), "--embeddings", str(tmp_path / "templates.npz"),
                 "--probe-embeddings", str(out), "--json", str(out)]) == 2
    assert "--probe-embeddings" in capsys.readouterr().err and out.read_bytes() == before


def test_eval_embed_refuses_an_out_it_could_not_write_before_the_work(tmp_path, capsys):
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    assert _embed(tmp_path, "--out", str(tmp_path / "plain.txt" / "e.npz")) == 2
    assert "cannot write there" in capsys.readouterr().err
    assert _embed(tmp_path, "--out", str(tmp_path / ("a" * 250 + ".npz"))) == 2
    assert "too long" in capsys.readouterr().err
    assert _embed(tmp_path, "--out", str(tmp_path / "e.npz"), "--folds", "2") == 2
    assert "--folds chooses folds of --pairs" in capsys.readouterr().err


def test_stored_options_must_be_an_object_and_their_absence_is_named(tmp_path, capsys):
    good = tmp_path / "good.npz"
    EmbeddingsWriter(config={}, files=["a/1.jpg"], embeddings=[np.ones(512, np.float32)]).save(good)
    with np.load(good) as data:
        arrays = dict(data)
    np.savez(tmp_path / "list.npz", **{**arrays, "config": np.asarray("[1, 2]")})
    with pytest.raises(ToolsError, match="stored options are list, not a JSON object"):
        load_embeddings(tmp_path / "list.npz")
    assert _embed(tmp_path, "--out", str(good)) == 2
    assert "it records none: an older version wrote it" in capsys.readouterr().err


def test_the_forensics_cache_must_hold_mirror_averaged_templates(tmp_path, monkeypatch):
    import argparse

    from latticelock.tools.forensics.commands import _embeddings
    from latticelock.tools.forensics.report import embedding_description

    monkeypatch.setenv("LATTICELOCK_CACHE", str(tmp_path))
    cache = tmp_path / "embeddings" / "lfw.npz"
    EmbeddingsWriter(config={"flip_average": False}, files=["a/1.jpg"], embeddings=[np.ones(512, np.float32)]).save(cache)
    with pytest.raises(ToolsError, match="one-pass embeddings"):
        _embeddings(argparse.Namespace(embeddings=None, datasets=None))
    EmbeddingsWriter(config={"flip_average": True, "alignment": "margin"}, files=["a/1.jpg"],
                     embeddings=[np.ones(512, np.float32)]).save(cache)
    assert _embeddings(argparse.Namespace(embeddings=None, datasets=None)).config["flip_average"] is True
    assert embedding_description({"flip_average": False, "alignment": "margin"}) == "margin crop, embedded once, as the unlock loop embeds frames"
    assert embedding_description({}) == "embedding options not recorded"
