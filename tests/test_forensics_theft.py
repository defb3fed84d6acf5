"""Theft: a stolen image round-trips every store file, and inspect parses every record without secrets,
reporting damaged entries instead of failing."""

from __future__ import annotations

import numpy as np
import pytest

from latticelock.device.store import FlashStore
from latticelock.kernels.record import Record
from latticelock.tools.forensics.image import ImageError, read_image, steal
from latticelock.tools.forensics.inspect import format_report, inspect_image


def _records() -> dict[str, Record]:
    rng = np.random.default_rng(0)
    return {
        "alice": Record("l2fe-hash", "l2fe-facenet-m48", {
            "seed": bytes(32), "c": rng.integers(0, 65537, 48).astype(np.int64), "salt": bytes(16), "verifier": bytes(32)}),
        "bob": Record("mrp", "mrp-k128", {"R": rng.normal(size=(128, 512)), "v": rng.normal(size=128)}),
        "carol": Record("unprotected", "unprotected", {"embedding": rng.normal(size=512).astype(np.float32)}),
        "dave": Record("facial-fe", "facial-fe", {"helper": rng.normal(size=512), "hash": bytes(32)}),
    }


@pytest.fixture()
def store(tmp_path):
    flash = FlashStore(tmp_path / "store", allow_insecure_baselines=True)
    for name, record in _records().items():
        flash.put(name, record)
    return flash


def test_steal_round_trips_every_file(store, tmp_path):
    out = tmp_path / "dump.img"
    stolen = steal(store.path, out)
    image = read_image(out)
    assert image.image_checksum_ok
    assert [(e.path, e.data) for e in image.entries] == [(e.path, e.data) for e in stolen.entries]
    on_disk = {p.relative_to(store.path).as_posix(): p.read_bytes() for p in store.path.rglob("*") if p.is_file()}
    assert {e.path: e.data for e in image.entries} == on_disk


def test_inspect_lists_every_scheme_without_secrets(store, tmp_path):
    steal(store.path, tmp_path / "dump.img")
    report = inspect_image(tmp_path / "dump.img")
    by_user = {u.user: u for u in report.users}
    assert set(by_user) == {"alice", "bob", "carol", "dave"}
    assert by_user["alice"].scheme == "l2fe-hash" and by_user["alice"].parameter_set == "l2fe-facenet-m48"
    assert by_user["alice"].fields["c"] == "i8[48]" and by_user["alice"].fields["seed"] == "32 B"
    assert by_user["bob"].fields["R"] == "f8[128x512]"
    # plain L2FE-Hash leaks too: the lattice attack recovers the projected face (kernels.families)
    assert all(u.leaks_face for u in by_user.values()) and "lattice attack" in by_user["alice"].why
    assert report.corrupt == []
    assert "4 records parsed" in format_report(report)


def test_corrupt_entries_are_reported_not_fatal(store, tmp_path):
    victim = next(p for p in (store.path / "users").iterdir() if p.name == "bob".encode().hex() + ".rec")
    data = bytearray(victim.read_bytes())
    data[40] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = tmp_path / "dump.img"
    steal(store.path, out)
    # damage a second user inside the image itself, after its per-file checksum was written
    blob = bytearray(out.read_bytes())
    carol = "carol".encode().hex().encode()
    at = blob.index(carol) + 200
    blob[at] ^= 0x01
    out.write_bytes(bytes(blob))
    report = inspect_image(out)
    assert not read_image(out).image_checksum_ok
    assert {u.user for u in report.users} == {"alice", "dave"}
    reasons = dict(report.corrupt)
    assert any("checksum" in why for why in reasons.values())
    assert len(report.corrupt) == 2


@pytest.mark.parametrize("blob", [b"", b"LLDUMP", b"NOTADUMP" + bytes(64)])
def test_bad_images_give_clear_errors(tmp_path, blob):
    path = tmp_path / "x.img"
    path.write_bytes(blob)
    with pytest.raises(ImageError):
        read_image(path)


def test_truncated_image_is_an_error(store, tmp_path):
    out = tmp_path / "dump.img"
    steal(store.path, out)
    out.write_bytes(out.read_bytes()[:300])
    with pytest.raises(ImageError, match="truncated"):
        read_image(out)
