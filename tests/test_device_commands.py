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


PASSCODE = "246810"


@pytest.fixture()
def chip(tmp_path):
    """A simulated microcontroller serving on a local socket (provisioning mode), as `device mcu-sim` runs one."""
    from latticelock.firmware_bridge.simulator import McuSimulator

    sim = McuSimulator("listen://127.0.0.1:0", tmp_path / "mcu", provisioning=True, passcode_iterations=1000).start()
    yield sim.address
    sim.stop()


def run(argv, stdin="", monkeypatch=None):
    """`latticelock` with `stdin` as standard input (where passcodes come from in scripts)."""
    import io
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(argv)
    finally:
        sys.stdin = saved


def test_plain_enrol_unlock_users_delete(fake_cli, capsys):
    tmp = fake_cli
    enrol_dir = write_frames(tmp / "enrol", 1, range(5))
    assert main(["device", "enrol", "alice", "--source", f"dir://{enrol_dir}"]) == 2
    assert "needs the microcontroller" in capsys.readouterr().err and not (tmp / "store").exists()
    assert main(["device", "enrol", "alice", "--plain", "--source", f"dir://{enrol_dir}", "--json", str(tmp / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "enrolled 'alice' (generation 1) from 5 frames of 5 read" in out and "WARNING: plain mode" in out
    assert json.loads((tmp / "e.json").read_text())["frames_read"] == 5
    assert main(["device", "unlock", "-v", "--source", f"dir://{write_frames(tmp / 'p1', 1, [50, 51, 52])}", "--json", str(tmp / "u.json")]) == 0
    out = capsys.readouterr().out
    assert "ACCEPT 'alice': 2 usable frames" in out and "frame 0 p01_0050.png: match alice" in out
    assert json.loads((tmp / "u.json").read_text())["decision"] == "accept"
    assert main(["device", "unlock", "--source", f"dir://{write_frames(tmp / 'p2', 2, [60, 61, 62, 63, 64])}"]) == 1
    assert capsys.readouterr().out.startswith("REJECT: no 2 of 3 frames within 10 s")
    assert main(["device", "users"]) == 0
    assert re.search(r"alice\s+l2fe-hash\s+l2fe-device-far1e-4\s+\d+\s+1", capsys.readouterr().out)
    wallet_dir = f"dir://{write_frames(tmp / 'w', 3, range(5))}"
    assert main(["device", "enrol", "bob", "--purpose", "wallet", "--source", wallet_dir]) == 0
    assert "operating point l2fe-wallet-far1e-5 (wallet: calibrated for at most 1e-05 false accepts per attempt)" in capsys.readouterr().out
    assert main(["device", "enrol", "cy", "--parameter-set", "l2fe-far1e-9", "--source", wallet_dir]) == 2
    assert "unknown parameter set 'l2fe-far1e-9'" in capsys.readouterr().err
    assert main(["device", "delete", "alice"]) == 0
    assert main(["device", "delete", "alice"]) == 2
    assert "no user named 'alice'" in capsys.readouterr().err


def test_hardened_walkthrough_with_the_passcode(fake_cli, chip, capsys):
    tmp = fake_cli
    enrol_dir = f"dir://{write_frames(tmp / 'enrol', 1, range(5))}"
    mcu = ["--mcu", chip]
    assert run(["device", "enrol", "alice", "--source", enrol_dir, *mcu]) == 2
    assert "set the device passcode first" in capsys.readouterr().err and not (tmp / "store").exists()
    assert run(["device", "set-passcode", *mcu], PASSCODE + "\n") == 0
    assert run(["device", "enrol", "alice", "--source", enrol_dir, *mcu], PASSCODE + "\n") == 0
    out = capsys.readouterr().out
    assert "l2fe-hash-mcu" in out and "sealed to the microcontroller" in out
    # Another person's enrolment that would unlock alice is refused; nothing is stored.
    assert run(["device", "enrol", "mallory", "--source", f"dir://{write_frames(tmp / 'm', 1, range(30, 35))}", *mcu]) == 2
    assert "unlocks the record of 'alice'" in capsys.readouterr().err and "mallory" not in open_users(tmp)
    probe = f"dir://{write_frames(tmp / 'p1', 1, [50, 51, 52])}"
    assert run(["device", "unlock", "-v", "--source", probe, *mcu]) == 0
    out = capsys.readouterr().out
    assert "ACCEPT 'alice'" in out and "signed its session nonce" in out and "sent to the microcontroller" in out
    assert run(["device", "wallet", "sign", "--message", "pay 1", "--source", probe, "--liveness", "none", *mcu]) == 0
    out = capsys.readouterr().out
    public = re.search(r"public key:\s+(\S+)", out).group(1)
    signature = re.search(r"signature:\s+(\S+)", out).group(1)
    assert main(["device", "wallet", "verify", "--public-key", public, "--message", "pay 1", "--signature", signature]) == 0
    assert run(["device", "unlock", "--passcode", *mcu], "wrong-code\n") == 2
    assert "WRONG_PASSCODE" in capsys.readouterr().err
    assert run(["device", "unlock", "--passcode", *mcu], PASSCODE + "\n") == 0
    assert run(["device", "status", "--mcu", chip, "--json", str(tmp / "s.json")]) == 0
    assert json.loads((tmp / "s.json").read_text())["microcontroller"]["users"] == 1
    assert run(["device", "delete", "alice", *mcu]) == 0
    assert "on the microcontroller too" in capsys.readouterr().out and open_users(tmp) == []


def open_users(tmp):
    from latticelock.device.store import FlashStore

    return [u.name for u in FlashStore(tmp / "store", create=False).users()]


def test_wallet_address_and_sign_plain(fake_cli, capsys):
    tmp = fake_cli
    main(["device", "enrol", "alice", "--plain", "--source", f"dir://{write_frames(tmp / 'enrol', 1, range(5))}"])
    probe = f"dir://{write_frames(tmp / 'p1', 1, [50, 51, 52])}"
    assert main(["device", "wallet", "address", "--source", probe]) == 1  # liveness is on for the wallet: a still replay fails
    assert "liveness" in capsys.readouterr().out
    assert main(["device", "wallet", "address", "--source", probe, "--liveness", "none"]) == 0
    out = capsys.readouterr().out
    address = re.search(r"address:\s+(ll1[0-9a-f]{40})", out).group(1)
    assert main(["device", "wallet", "sign", "--source", probe, "--message", "pay 1", "--liveness", "none"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"address:\s+(\S+)", out).group(1) == address
    public = re.search(r"public key:\s+(\S+)", out).group(1)
    signature = re.search(r"signature:\s+(\S+)", out).group(1)
    assert main(["device", "wallet", "verify", "--public-key", public, "--message", "pay 1", "--signature", signature, "--address", address]) == 0
    assert main(["device", "wallet", "verify", "--public-key", public, "--message", "pay 2", "--signature", signature]) == 1
    assert main(["device", "wallet", "sign", "--source", f"dir://{write_frames(tmp / 'p2', 2, [60, 61, 62, 63, 64])}", "--message", "x",
                 "--liveness", "none"]) == 1
    assert "signature" not in capsys.readouterr().out
    assert not any("wallet" in p.name for p in (tmp / "store").rglob("*"))


def test_config_file_and_errors(fake_cli, capsys):
    tmp = fake_cli
    config = tmp / "device.json"
    config.write_text(json.dumps({"store": str(tmp / "other"), "frames": 3, "plain": True}))
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


def test_bad_input_gives_one_clear_line(fake_cli, capsys, tmp_path):
    """Issue 11, case 6: each of these was a traceback or a hang; now exit 2 with one line, nothing written."""
    tmp = fake_cli
    enrol_dir = f"dir://{write_frames(tmp / 'enrol', 1, range(5))}"
    main(["device", "enrol", "alice", "--plain", "--source", enrol_dir])
    capsys.readouterr()
    probe = f"dir://{write_frames(tmp / 'p', 1, [50, 51])}"
    cases = [
        (["device", "unlock", "--source", probe, "--input-width", "100000"], "must be in 1..8192"),
        (["device", "unlock", "--source", probe, "--json", str(tmp / "missing" / "u.json")], "does not exist"),
        (["device", "unlock", "--source", probe, "--policy-k", "1", "--policy-n", "100000", "--policy-window", "1e9"],
         "may only be tightened"),
        (["device", "mcu-sim", "--url", "listen://127.0.0.1:0", "--state", str(tmp / "enrol" / "p01_0000.png")], "is not a directory"),
        (["device", "mcu-sim", "--url", "listen://127.0.0.1:99999", "--state", str(tmp / "mcu-state")], "PORT in 0..65535"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for name in ("LOCK", "attempts.log"):
        path = tmp / "store" / name
        path.unlink(missing_ok=True)
        path.mkdir()
        assert main(["device", "unlock", "--source", probe]) == 2
        assert "is a directory" in capsys.readouterr().err
        path.rmdir()


def test_a_failed_enrolment_leaves_no_store(fake_cli, capsys):
    tmp = fake_cli
    nobody = write_frames(tmp / "nobody", 1, range(3), face=False)
    assert main(["device", "enrol", "alice", "--plain", "--source", f"dir://{nobody}"]) == 2
    assert "good frames" in capsys.readouterr().err and not (tmp / "store").exists()


@pytest.mark.integration
def test_real_faces_enrol_accept_reject(datasets, tmp_path, monkeypatch, capsys, chip):
    """Real MTCNN + FaceNet on faces94, hardened with the simulated chip: enrol one person, accept them,
    reject another; nothing biometric on the flash."""
    monkeypatch.setenv("LATTICELOCK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LATTICELOCK_DEVICE_CONFIG", "")
    faces = datasets / "faces94_subset"
    args = ["--threads", "2", "--mcu", chip]
    assert run(["device", "set-passcode", "--mcu", chip], PASSCODE + "\n") == 0
    assert run(["device", "enrol", "anpage", "--source", f"dir://{faces / 'anpage'}?count=5", *args], PASSCODE + "\n") == 0
    assert run(["device", "unlock", "--source", f"dir://{faces / 'anpage'}?start=5&count=5", *args]) == 0
    assert "ACCEPT 'anpage'" in capsys.readouterr().out
    assert run(["device", "unlock", "--source", f"dir://{faces / '9336923'}?count=5", *args]) == 1
    assert "REJECT" in capsys.readouterr().out
    from test_device_store import biometric_traces

    assert biometric_traces(tmp_path / "store") == {}


def test_config_values_of_the_wrong_type_are_clear_errors(fake_cli, capsys):
    tmp = fake_cli
    config = tmp / "device.json"
    enrol_dir = write_frames(tmp / "enrol", 1, range(3))
    assert main(["device", "enrol", "bob", "--plain", "--source", f"dir://{enrol_dir}", "--frames", "3"]) == 0
    capsys.readouterr()
    for bad in ({"frames": "three"}, {"frames": 2.5}, {"input_width": [640]}, {"policy_window": True}, {"store": 123}):
        config.write_text(json.dumps(bad))
        command = "unlock" if ("policy_window" in bad or "store" in bad) else "enrol"
        argv = ["device", command, *(["bob"] if command == "enrol" else []), "--config", str(config), "--source", f"dir://{enrol_dir}"]
        assert main(argv) == 2
        assert f"setting {next(iter(bad))} must be" in capsys.readouterr().err
