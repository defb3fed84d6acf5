"""`latticelock device ...` end to end through the CLI, with the fake pipeline (fast) and the real one (integration)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from device_fakes import RECIPE_OPTIONS, FakePipeline, write_frames
from latticelock.tools.cli import main


@pytest.fixture()
def fake_cli(monkeypatch, tmp_path):
    from latticelock.tools import device_commands as commands

    monkeypatch.setattr(commands, "_pipeline", lambda args, config: FakePipeline())
    monkeypatch.setattr(commands, "_recipe_options", lambda args, config: dict(RECIPE_OPTIONS))
    monkeypatch.setenv("LATTICELOCK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LATTICELOCK_DEVICE_CONFIG", "")
    return tmp_path


def test_enrol_unlock_users_delete(fake_cli, capsys):
    tmp = fake_cli
    enrol_dir = write_frames(tmp / "enrol", 1, range(5))
    assert main(["device", "enrol", "alice", "--source", f"dir://{enrol_dir}", "--json", str(tmp / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "enrolled 'alice' (generation 1) from 5 frames of 5 read" in out
    assert json.loads((tmp / "e.json").read_text())["frames_read"] == 5
    assert main(["device", "unlock", "-v", "--source", f"dir://{write_frames(tmp / 'p1', 1, [50, 51, 52])}", "--json", str(tmp / "u.json")]) == 0
    out = capsys.readouterr().out
    assert "ACCEPT 'alice': 2 matching of 2 usable frames" in out and "frame 0 p01_0050.png: match alice" in out
    assert json.loads((tmp / "u.json").read_text())["decision"] == "accept"
    assert main(["device", "unlock", "--source", f"dir://{write_frames(tmp / 'p2', 2, [60, 61, 62, 63, 64])}"]) == 1
    assert capsys.readouterr().out.startswith("REJECT: no 2 of 3 frames within 10 s")
    assert main(["device", "users"]) == 0
    assert re.search(r"alice\s+l2fe-hash\s+\d+\s+1", capsys.readouterr().out)
    assert main(["device", "delete", "alice"]) == 0
    assert main(["device", "delete", "alice"]) == 2
    assert "no user named 'alice'" in capsys.readouterr().err


def test_wallet_address_and_sign(fake_cli, capsys):
    tmp = fake_cli
    main(["device", "enrol", "alice", "--source", f"dir://{write_frames(tmp / 'enrol', 1, range(5))}"])
    probe = f"dir://{write_frames(tmp / 'p1', 1, [50, 51, 52])}"
    assert main(["device", "wallet", "address", "--source", probe]) == 0
    out = capsys.readouterr().out
    address = re.search(r"address:\s+(ll1[0-9a-f]{40})", out).group(1)
    assert main(["device", "wallet", "sign", "--source", probe, "--message", "pay 1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"address:\s+(\S+)", out).group(1) == address
    public = re.search(r"public key:\s+(\S+)", out).group(1)
    signature = re.search(r"signature:\s+(\S+)", out).group(1)
    assert main(["device", "wallet", "verify", "--public-key", public, "--message", "pay 1", "--signature", signature, "--address", address]) == 0
    assert main(["device", "wallet", "verify", "--public-key", public, "--message", "pay 2", "--signature", signature]) == 1
    assert main(["device", "wallet", "sign", "--source", f"dir://{write_frames(tmp / 'p2', 2, [60, 61, 62, 63, 64])}", "--message", "x"]) == 1
    assert "signature" not in capsys.readouterr().out
    assert not any("wallet" in p.name for p in (tmp / "store").rglob("*"))


def test_config_file_and_errors(fake_cli, capsys, monkeypatch):
    tmp = fake_cli
    config = tmp / "device.json"
    config.write_text(json.dumps({"store": str(tmp / "other"), "frames": 3}))
    enrol_dir = write_frames(tmp / "enrol", 1, range(3))
    assert main(["device", "enrol", "bob", "--config", str(config), "--source", f"dir://{enrol_dir}"]) == 0
    assert "from 3 frames" in capsys.readouterr().out
    assert (tmp / "other" / "users").is_dir()
    assert main(["device", "unlock", "--config", str(config)]) == 2
    assert "no frame source" in capsys.readouterr().err
    config.write_text("{not json")
    assert main(["device", "users", "--config", str(config)]) == 2
    assert "not a readable JSON configuration" in capsys.readouterr().err
    assert main(["device", "unlock", "--source", "ftp://x"]) == 2
    assert "no LatticeLock store" in capsys.readouterr().err


@pytest.mark.integration
def test_real_faces_enrol_accept_reject(datasets, tmp_path, monkeypatch, capsys):
    """Real MTCNN + FaceNet + L2FE-Hash (device KDF) on faces94: enrol one person, accept them, reject another."""
    monkeypatch.setenv("LATTICELOCK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LATTICELOCK_DEVICE_CONFIG", "")
    faces = datasets / "faces94_subset"
    args = ["--threads", "2", "--decoder-backend", "cpu"]
    assert main(["device", "enrol", "anpage", "--source", f"dir://{faces / 'anpage'}?count=5", *args]) == 0
    assert main(["device", "unlock", "--source", f"dir://{faces / 'anpage'}?start=5&count=5", *args]) == 0
    assert "ACCEPT 'anpage'" in capsys.readouterr().out
    assert main(["device", "unlock", "--source", f"dir://{faces / '9336923'}?count=5", *args]) == 1
    assert "REJECT" in capsys.readouterr().out
    from test_device_store import biometric_traces

    assert biometric_traces(tmp_path / "store") == {}


def test_config_values_of_the_wrong_type_are_clear_errors(fake_cli, capsys):
    tmp = fake_cli
    config = tmp / "device.json"
    enrol_dir = write_frames(tmp / "enrol", 1, range(3))
    for bad in ({"frames": "three"}, {"frames": 2.5}, {"input_width": [640]}, {"policy_window": True}):
        config.write_text(json.dumps(bad))
        command = "unlock" if "policy_window" in bad else "enrol"
        argv = ["device", command, *(["bob"] if command == "enrol" else []), "--config", str(config), "--source", f"dir://{enrol_dir}"]
        if command == "unlock":
            assert main(["device", "enrol", "bob", "--source", f"dir://{enrol_dir}", "--frames", "3"]) == 0
            capsys.readouterr()
        assert main(argv) == 2
        assert f"setting {next(iter(bad))} must be" in capsys.readouterr().err
