"""Fleet theft: the per-device function without Ray, the plan, and the Ray runner's bounded,
resumable run (including a run killed midway and started again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from latticelock.tools.embeddings import normalise
from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import fleet as F

from test_forensics_attacks import synthetic_faces

DEVICE_POINT = "l2fe-device-far1e-4"  # hardened enrolment takes only a device operating point


@pytest.fixture(scope="module")
def context():
    from latticelock.kernels.projection import fit_projection
    from latticelock.tools.forensics.protocol import calibrate_tau

    x, labels = synthetic_faces(200, per=2)
    public, public_labels = x[200:], labels[200:]
    users = [str(name) for name in labels[:200:2]]
    tau = calibrate_tau(public, public_labels, impostor_pairs=5000).tau
    return F.FleetContext({u: x[2 * i] for i, u in enumerate(users)}, {u: x[2 * i + 1] for i, u in enumerate(users)},
                          normalise(public.mean(0)[None, :]), tau, budget=20, fast_kdf=True,
                          projection=fit_projection(public, 64, {}))


def test_plain_device_falls_to_the_lattice_attack_without_ray(context):
    users = tuple(list(context.enrolled)[:3])
    result = F.attack_device(F.DeviceSpec("device-0000", "plain", "l2fe-facenet-m32", users), context)
    assert result["corrupt"] == [] and result["users"] == 3 and result["refused"] == {} and result["beyond_flash"] == {}
    assert [r["user"] for r in result["results"]] == sorted(users)
    assert all(r["attack"] == "lattice" and r["scheme"] == "l2fe-hash" for r in result["results"])
    # synthetic faces sit near the mean face, inside the decoding radius: every key and face falls
    assert all(r["key"] and r["face"] and 1 <= r["kdf_evaluations"] <= 20 for r in result["results"])


def test_hardened_device_is_enrolled_on_its_chip_and_measured_per_threat_model(context, tmp_path):
    from dataclasses import replace

    kept = replace(context, devices=tmp_path)
    users = ("id0000", "id0014", "id0028")
    result = F.attack_device(F.DeviceSpec("device-0001", "hardened", DEVICE_POINT, users), kept)
    assert sorted(p.name for p in (tmp_path / "device-0001").iterdir()) == ["flash.img", "mcu", "store"]
    enrolled = sorted(set(users) - set(result["refused"]))
    assert [r["user"] for r in result["results"]] == enrolled and result["corrupt"] == []
    assert all(r["scheme"] == "l2fe-hash-mcu" and not (r["key"] or r["face"]) for r in result["results"])  # flash only
    in_hand, extracted = result["beyond_flash"]["device in hand"], result["beyond_flash"]["mcu secrets extracted"]
    assert in_hand["cold"] == "PASSCODE_REQUIRED" and in_hand["k"] == 2
    assert sum(in_hand["chip_answers"].values()) >= in_hand["attempts"]
    assert [r["user"] for r in in_hand["results"]] == [r["user"] for r in extracted["results"]] == enrolled
    # synthetic faces sit near the mean face: the chip's secrets give every key and face back
    assert all(r["key"] and r["face"] for r in extracted["results"]) and 1 <= extracted["tag_checks"] <= 20 * len(enrolled)
    again = F.attack_device(F.DeviceSpec("device-0001", "hardened", DEVICE_POINT, users), kept)
    assert again["refused"] == result["refused"]  # an unfinished device is rebuilt from a blank chip
    with pytest.raises(ToolsError, match="unknown device kind"):
        F.attack_device(F.DeviceSpec("device-0002", "quantum", "l2fe-facenet-m32", ("id0000",)), context)


def test_plan_gives_distinct_users_per_device_and_the_hardened_share():
    specs = F.plan_fleet(10, 3, [f"v{i}" for i in range(40)], 0.3, "l2fe-facenet-m64", seed=1)
    assert [s.device for s in specs] == [f"device-{d:04d}" for d in range(10)]
    assert sum(s.kind == "hardened" for s in specs) == 3
    assert all(len(set(s.users)) == 3 for s in specs)
    assert len({u for s in specs for u in s.users}) == 30
    with pytest.raises(ToolsError, match="users per device"):
        F.plan_fleet(2, 5, ["a", "b"], 0.0, "l2fe-facenet-m64")


def test_summary_counts_devices_and_users(context):
    results = [F.attack_device(F.DeviceSpec(f"device-{d:04d}", kind, DEVICE_POINT if kind == "hardened" else "l2fe-facenet-m32",
                                            (f"id{2 * d:04d}", f"id{2 * d + 2:04d}")),
                               context) for d, kind in enumerate(("plain", "plain", "hardened"))]
    summary = F.summarise(results, {"devices": 3, "users": 2, "fast_kdf": True, "budget": 20, "tau": context.tau})
    rows = {(r["kind"], r["threat_model"]): r for r in summary["rows"]}
    assert set(rows) == {("plain", "flash only"), ("hardened", "flash only"), ("hardened", "device in hand"),
                         ("hardened", "mcu secrets extracted")}
    plain = rows[("plain", "flash only")]
    assert plain["devices"] == 2 and plain["users_key_falls"] == 1.0 and plain["devices_face_falls"] == 1.0
    flash = rows[("hardened", "flash only")]
    assert flash["devices"] == 1 and flash["users_key_falls"] == 0.0 and flash["users_face_falls"] == 0.0
    assert rows[("hardened", "device in hand")]["chip_attempts"] == results[2]["beyond_flash"]["device in hand"]["attempts"]
    table = F.summary_table(summary)
    assert table.name == "Ours: fleet" and len(table.rows) == 4 and len(table.notes) == 2


def test_missing_ray_names_the_extra(monkeypatch, context, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    spec = F.DeviceSpec("device-0000", "plain", "l2fe-facenet-m32", ("id0000",))
    with pytest.raises(ToolsError, match=r"pip install -e '\.\[fleet\]'"):
        F.run_fleet([spec], context, tmp_path)


def test_a_results_folder_of_another_fleet_is_refused(tmp_path):
    F.check_plan(tmp_path, {"devices": 2})
    F.check_plan(tmp_path, {"devices": 2})
    with pytest.raises(ToolsError, match="another fleet"):
        F.check_plan(tmp_path, {"devices": 3})


def _embeddings_file(path: Path) -> Path:
    x, labels = synthetic_faces(80, per=2, spread=0.3)
    files = np.array([f"{name}/{name}_{i % 2 + 1:04d}.jpg" for i, name in enumerate(labels)])
    np.savez(path, embeddings=x, labels=labels, files=files)
    return path


def _fleet_command(embeddings: Path, out: Path, devices: int) -> list[str]:
    return [sys.executable, "-m", "latticelock.tools", "forensics", "fleet", "--embeddings", str(embeddings),
            "--pairs", str(embeddings.with_name("none.txt")), "--devices", str(devices), "--users", "2",
            "--fast-kdf", "--budget", "2", "--kmeans", "2", "--max-in-flight", "1", "--quiet", "--out", str(out),
            "--json", str(out.parent / "summary.json")]


def test_fleet_on_local_ray_resumes_after_being_killed(tmp_path):
    pytest.importorskip("ray", reason="the [fleet] extra (Ray) is not installed")
    embeddings, out = _embeddings_file(tmp_path / "e.npz"), tmp_path / "fleet"
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    first = subprocess.Popen(_fleet_command(embeddings, out, 4), env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob("device-*.json")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[1].decode()[-2000:]
    os.killpg(first.pid, signal.SIGKILL)  # the whole run, Ray's workers included, dies midway
    first.wait()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("device-*.json")}
    assert 1 <= len(before) < 4, "the run was not caught midway"
    second = subprocess.run(_fleet_command(embeddings, out, 4), env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("device-*.json")}
    assert len(after) == 4 and all(after[name] == mtime for name, mtime in before.items())  # done devices kept
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sum(r["devices"] for r in summary["rows"] if r["threat_model"] == "flash only") == 4
    assert "Ours: fleet" in second.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"device-{d:04d}" for d in range(4)]  # kept beside
