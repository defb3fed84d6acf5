"""What the tools share: the embeddings reader, the pairs reader, the datasets resolver and the --json
flag, each tested once here and through the commands that use them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latticelock.tools import datasets, flags
from latticelock.tools.cli import main
from latticelock.tools.embeddings import EmbeddingsWriter, load_embeddings
from latticelock.tools.errors import ToolsError
from latticelock.tools.pairs import pair_rows, read_pairs

PAIRS_TEXT = "1 1\nAna 1 2\nAna 1 Bob 1\n"


@pytest.fixture
def files(tmp_path):
    """A good embeddings file, its truncated copy, a foreign .npz and a pairs file naming its images."""
    rng = np.random.default_rng(0)
    writer = EmbeddingsWriter(config={"alignment": "margin"})
    for name in ("Ana/Ana_0001.jpg", "Ana/Ana_0002.jpg", "Bob/Bob_0001.jpg"):
        writer.files.append(name)
        writer.embeddings.append(rng.standard_normal(512).astype(np.float32))
    writer.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(1).bytes(1000))
    (tmp_path / "pairs.txt").write_text(PAIRS_TEXT)
    return tmp_path


# --- embeddings files --------------------------------------------------------------------------------

def test_embeddings_round_trip_as_unit_rows(files):
    data = load_embeddings(files / "good.npz")
    assert len(data) == 3 and data.config == {"alignment": "margin"}
    np.testing.assert_allclose(np.linalg.norm(data.embeddings, axis=1), 1.0, rtol=1e-6)
    assert list(data.labels) == ["Ana", "Ana", "Bob"] and data.index()["Bob/Bob_0001.jpg"] == 2


@pytest.mark.parametrize("name, message", [
    ("absent.npz", "not found"),
    ("truncated.npz", "cannot read embeddings file"),
    ("foreign.npz", "not an embeddings file"),
    ("random.npz", "not a .npz archive"),
])
def test_unreadable_embeddings_are_one_clear_error(files, name, message):
    with pytest.raises(ToolsError, match=message):
        load_embeddings(files / name)


@pytest.mark.parametrize("command", [
    ["eval", "lfw"],
    ["eval", "schemes", "--no-progress"],
    ["eval", "projection", "--out", "unused.npz"],
])
@pytest.mark.parametrize("name", ["truncated.npz", "foreign.npz", "random.npz"])
def test_commands_report_a_bad_embeddings_file_in_one_line(files, capsys, command, name):
    code = main([*command, "--embeddings", str(files / name), "--pairs", str(files / "pairs.txt")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("latticelock: error: ") and str(files / name) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_npz_readers_name_bytes_that_are_no_archive_and_open_archives(files, tmp_path):
    from latticelock.tools.forensics.crops import _read_cache
    from latticelock.tools.npz import load_npz

    (tmp_path / "crops.npz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ToolsError, match=r"is not a crops cache of the face generator; delete it to start over \(not a .npz archive\)"):
        _read_cache(tmp_path / "crops.npz", 64)
    with load_npz(files / "foreign.npz", "anything") as data:
        assert list(data.files) == ["weights"]


# --- pairs files --------------------------------------------------------------------------------------

def test_pairs_map_onto_embedding_rows(files):
    rows = pair_rows(read_pairs(files / "pairs.txt"), load_embeddings(files / "good.npz"))
    assert rows.first.tolist() == [0, 0] and rows.second.tolist() == [1, 2] and rows.same.tolist() == [True, False]
    assert rows.names == {"Ana", "Bob"} and rows.missing == 0


def test_a_malformed_pairs_line_is_named(tmp_path):
    (tmp_path / "bad.txt").write_text("1 1\nonly_two 1\nAna 1 Bob 1\n")
    with pytest.raises(ToolsError, match=r"bad.txt: line 2 is not a pair"):
        read_pairs(tmp_path / "bad.txt")


# --- the datasets folder ----------------------------------------------------------------------------

def _package_at(monkeypatch, folder):
    """Pretend latticelock.tools was imported from `folder` (a checkout's tools/ or a wheel's)."""
    import latticelock.tools

    folder.mkdir(parents=True)
    monkeypatch.setattr(latticelock.tools, "__file__", str(folder / "__init__.py"))


def test_datasets_folder_order_flag_then_environment_then_checkout(tmp_path, monkeypatch):
    flag, env, beside = tmp_path / "flag", tmp_path / "env", tmp_path / "shared" / "datasets"
    for folder in (flag, env, beside):
        folder.mkdir(parents=True)
    _package_at(monkeypatch, tmp_path / "checkout" / "tools")
    (tmp_path / "checkout" / "pyproject.toml").write_text("")
    monkeypatch.setenv(datasets.ENV, str(env))
    assert datasets.datasets_dir(flag) == flag
    assert datasets.datasets_dir() == env
    monkeypatch.delenv(datasets.ENV)
    assert datasets.datasets_dir() == beside


def test_an_installed_wheel_needs_the_flag_or_the_environment(tmp_path, monkeypatch):
    _package_at(monkeypatch, tmp_path / "site-packages" / "latticelock" / "tools")
    monkeypatch.delenv(datasets.ENV, raising=False)
    assert datasets.checkout_default() is None and datasets.find_datasets() is None
    with pytest.raises(ToolsError, match="no source checkout"):
        datasets.datasets_dir()
    assert datasets.datasets_dir(tmp_path) == tmp_path


def test_a_missing_datasets_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV, str(tmp_path / "absent"))
    assert datasets.find_datasets() is None
    with pytest.raises(ToolsError, match="pass --datasets DIR or set"):
        datasets.datasets_dir()
    (tmp_path / "present").mkdir()
    with pytest.raises(ToolsError, match="dataset 'lfw' not found"):
        datasets.dataset_path("lfw", tmp_path / "present")


# --- --json -------------------------------------------------------------------------------------------

def test_json_goes_to_an_existing_folder_or_fails_before_the_work(tmp_path):
    with pytest.raises(ToolsError, match="does not exist"):
        flags.check_json_target(tmp_path / "absent" / "out.json")
    flags.write_json(tmp_path / "out.json", {"path": tmp_path})
    assert json.loads((tmp_path / "out.json").read_text()) == {"path": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


@pytest.mark.parametrize("command", [
    ["eval", "lfw", "--embeddings", "{files}/truncated.npz", "--pairs", "{files}/pairs.txt"],
    ["eval", "schemes", "--embeddings", "{files}/truncated.npz", "--pairs", "{files}/pairs.txt"],
    ["eval", "projection", "--embeddings", "{files}/truncated.npz", "--pairs", "{files}/pairs.txt"],
    ["bench", "fe", "--records", "1"],
    ["bench", "decode", "--m", "16", "--n", "4"],
    ["models", "build"],
    ["models", "verify"],
    ["models", "info"],
])
def test_commands_check_their_json_target_before_the_work(files, capsys, command):
    argv = [a.format(files=files) for a in command]
    assert main([*argv, "--json", str(files / "absent" / "out.json")]) == 2
    assert "--json" in capsys.readouterr().err  # the folder is reported, before any input is read
