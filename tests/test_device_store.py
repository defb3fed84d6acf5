"""Flash store: format, corruption handling, version refusal, crash safety, nothing biometric on disk."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.device.errors import (
    CorruptEntryError,
    InsecureSchemeError,
    StoreError,
    StoreVersionError,
    UnknownUserError,
)
from latticelock.device.store import STORE_MAGIC, FlashStore, decode_user, encode_user, scan_store


@dataclass
class FakeRecord:
    scheme_id: str
    payload: bytes

    def to_bytes(self) -> bytes:
        return self.payload


def l2fe(payload: bytes) -> FakeRecord:
    return FakeRecord("l2fe-hash-mcu", payload)


# --- the scanner used to prove that nothing biometric reaches the store -----------------------


def float_runs(data: bytes, min_run: int = 16) -> list[tuple[str, int, int]]:
    """Runs of >= min_run consecutive float32/float64 values with embedding-like magnitudes."""
    found = []
    for dtype, width in (("<f4", 4), ("<f8", 8)):
        for offset in range(width):
            usable = (len(data) - offset) // width
            if usable < min_run:
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                values = np.frombuffer(data, dtype=dtype, count=usable, offset=offset).astype(np.float64)
                plausible = np.isfinite(values) & (np.abs(values) > 1e-4) & (np.abs(values) < 10.0)
            run = 0
            for i, ok in enumerate(plausible):
                run = run + 1 if ok else 0
                if run == min_run:
                    found.append((dtype, offset, i - min_run + 1))
    return found


def image_traces(data: bytes) -> list[str]:
    traces = []
    for name, magic in (("jpeg", b"\xff\xd8\xff"), ("png", b"\x89PNG\r\n\x1a\n")):
        if magic in data:
            traces.append(name)
    for start in range(0, max(0, len(data) - 4096) + 1, 2048):
        block = data[start : start + 4096]
        if len(block) < 4096 or all(32 <= b < 127 or b in (9, 10, 13) for b in block):
            continue
        counts = np.bincount(np.frombuffer(block, np.uint8), minlength=256)
        p = counts[counts > 0] / len(block)
        if -(p * np.log2(p)).sum() < 7.0:
            traces.append(f"low-entropy binary block at {start}")
    return traces


def biometric_traces(root: Path) -> dict[str, list]:
    traces = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found = float_runs(data) + image_traces(data)
            if found:
                traces[str(path.relative_to(root))] = found
    return traces


def test_scanner_catches_embeddings_and_images(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=512).astype(np.float32)
    emb /= np.linalg.norm(emb)
    store = FlashStore(tmp_path / "s", allow_insecure_baselines=True)
    store.put("leaky", FakeRecord("unprotected", b"hdr" + emb.tobytes()))
    store.put("leaky64", FakeRecord("unprotected", b"h" + emb.astype(np.float64).tobytes()))
    store.put("jpeg", FakeRecord("unprotected", b"\xff\xd8\xff\xe0" + bytes(100)))
    store.put("raw", FakeRecord("unprotected", bytes(range(64)) * 200))
    traces = biometric_traces(tmp_path / "s")
    assert len(traces) == 4


def test_scanner_passes_random_and_integer_data():
    rng = np.random.default_rng(2)
    assert float_runs(rng.bytes(4096)) == []
    assert float_runs(rng.integers(0, 3329, 48).astype("<i4").tobytes()) == []
    assert image_traces(rng.bytes(20000)) == []


# --- format and API ----------------------------------------------------------------------------


def test_put_get_list_delete(tmp_path):
    store = FlashStore(tmp_path / "s")
    store.put("alice", l2fe(b"A" * 40), now=1000)
    store.put("bob", l2fe(b"B" * 10))
    assert [u.name for u in store.users()] == sorted(["alice", "bob"], key=lambda n: n.encode().hex())
    alice = store.get("alice")
    assert (alice.record_bytes, alice.generation, alice.enrolled_at, alice.scheme_id) == (b"A" * 40, 1, 1000, "l2fe-hash-mcu")
    assert "alice" in store and "carol" not in store
    store.delete("alice")
    with pytest.raises(UnknownUserError):
        store.get("alice")
    with pytest.raises(UnknownUserError):
        store.delete("alice")
    assert [u.name for u in FlashStore(tmp_path / "s").users()] == ["bob"]


def test_reenrolment_replaces_and_counts_generations(tmp_path):
    store = FlashStore(tmp_path / "s")
    store.put("alice", l2fe(b"old"))
    store.put("alice", l2fe(b"new"))
    user = store.get("alice")
    assert (user.record_bytes, user.generation) == (b"new", 2)
    assert len(list(store.users_dir.iterdir())) == 1


def test_a_store_holds_only_its_modes_records(tmp_path):
    hardened, plain = FlashStore(tmp_path / "h"), FlashStore(tmp_path / "p", mode="plain")
    assert (hardened.mode, plain.mode) == ("hardened", "plain")
    assert FlashStore(tmp_path / "p").mode == "plain"  # the mode is the header's, not the opener's
    with pytest.raises(InsecureSchemeError, match="hardened store"):
        hardened.put("x", FakeRecord("l2fe-hash", b"1"))
    with pytest.raises(InsecureSchemeError, match="plain store"):
        plain.put("x", FakeRecord("l2fe-hash-mcu", b"1"))
    plain.put("x", FakeRecord("l2fe-hash", b"1"))


def test_store_files_replaced_by_directories_or_links_are_clear_errors(tmp_path):
    from latticelock.device.lockout import Lockout

    store = FlashStore(tmp_path / "s")
    lockout = Lockout(store)
    (store.path / "attempts.log").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        lockout.log_attempt("reject")
    (store.path / "attempts.log").rmdir()
    target = tmp_path / "elsewhere.txt"
    (store.path / "attempts.log").symlink_to(target)
    with pytest.raises(StoreError, match="links are not followed"):
        lockout.log_attempt("reject")
    assert not target.exists()
    (store.path / "lockout.bin").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        lockout.record_failure()
    (store.path / "LOCK").unlink()
    (store.path / "LOCK").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        store.put("alice", l2fe(b"x"))


def test_baselines_need_explicit_permission(tmp_path):
    store = FlashStore(tmp_path / "s")
    for scheme in ("unprotected", "mrp", "facial-fe"):
        with pytest.raises(InsecureSchemeError, match="allow_insecure_baselines"):
            store.put("x", FakeRecord(scheme, b"1"))
    assert store.users() == []
    FlashStore(tmp_path / "s", allow_insecure_baselines=True).put("x", FakeRecord("mrp", b"1"))
    assert scan_store(tmp_path / "s").users[0].scheme_id == "mrp"


@pytest.mark.parametrize("name", ["", " lead", "tab\there", "nl\n", "x" * 65, "\x00"])
def test_bad_user_names_are_refused(tmp_path, name):
    with pytest.raises(StoreError):
        FlashStore(tmp_path / "s").put(name, l2fe(b"1"))


def test_unicode_names_round_trip(tmp_path):
    store = FlashStore(tmp_path / "s")
    store.put("Zoë Ångström", l2fe(b"1"))
    assert store.get("Zoë Ångström").name == "Zoë Ångström"


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable() and s.strip() == s),
       record=st.binary(max_size=300), generation=st.integers(1, 2**32 - 1))
def test_user_encoding_round_trips(name, record, generation):
    data = encode_user(name, "l2fe-hash", record, generation, 123)
    user = decode_user(data, Path("x"))
    assert (user.name, user.record_bytes, user.generation, user.enrolled_at) == (name, record, generation, 123)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7), cut=st.integers(0, 10_000))
def test_any_flipped_bit_or_truncation_is_detected(position, bit, cut):
    data = bytearray(encode_user("alice", "l2fe-hash", bytes(range(100)), 3, 5))
    flipped = bytearray(data)
    flipped[position % len(data)] ^= 1 << bit
    with pytest.raises(CorruptEntryError):
        decode_user(bytes(flipped), Path("x"))
    with pytest.raises(CorruptEntryError):
        decode_user(bytes(data[: cut % len(data)]), Path("x"))


def test_corrupt_record_is_reported_and_skipped(tmp_path, caplog):
    store = FlashStore(tmp_path / "s")
    store.put("alice", l2fe(b"A" * 40))
    store.put("bob", l2fe(b"B" * 40))
    path = store.get("alice").path
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    scan = store.scan()
    assert [u.name for u in scan.users] == ["bob"]
    assert len(scan.corrupt) == 1 and "checksum" in scan.corrupt[0].reason
    assert "corrupt" in caplog.text
    with pytest.raises(CorruptEntryError):
        store.get("alice")
    store.put("alice", l2fe(b"fresh"))
    assert store.get("alice").record_bytes == b"fresh"


def test_swapped_file_names_are_detected(tmp_path):
    store = FlashStore(tmp_path / "s")
    a, b = store.put("alice", l2fe(b"A")).path, store.put("bob", l2fe(b"B")).path
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    scan = scan_store(tmp_path / "s")
    assert [u.name for u in scan.users] == ["bob"] and "file name" in scan.corrupt[0].reason
    b.write_bytes(a_bytes)
    scan = scan_store(tmp_path / "s")
    assert scan.users == [] and len(scan.corrupt) == 2


def test_newer_and_foreign_stores_are_refused(tmp_path):
    store = FlashStore(tmp_path / "s")
    header = store.path / "STORE"
    import hashlib

    body = STORE_MAGIC + struct.pack("<H", 4)
    header.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(StoreVersionError, match="newer"):
        FlashStore(tmp_path / "s")
    with pytest.raises(StoreVersionError):
        scan_store(tmp_path / "s")
    body = STORE_MAGIC + struct.pack("<H", 1)
    header.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(StoreVersionError, match="re-enrol"):
        FlashStore(tmp_path / "s")
    body = STORE_MAGIC + struct.pack("<H", 3) + b"fields of a future header"
    header.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(StoreVersionError, match="version 3 was written by a newer"):
        FlashStore(tmp_path / "s")
    body = STORE_MAGIC + struct.pack("<H", 2) + b"xy"
    header.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(StoreError, match="corrupt"):
        FlashStore(tmp_path / "s")
    header.write_bytes(STORE_MAGIC + b"\x01")
    with pytest.raises(StoreError, match="corrupt"):
        FlashStore(tmp_path / "s")
    header.write_bytes(b"SOMETHING ELSE ENTIRELY" + bytes(40))
    with pytest.raises(StoreVersionError, match="foreign"):
        FlashStore(tmp_path / "s")


def test_no_store_in_a_non_empty_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="not an empty directory"):
        FlashStore(tmp_path / "d")
    with pytest.raises(StoreError, match="no LatticeLock store"):
        FlashStore(tmp_path / "e", create=False)


# --- crash safety -------------------------------------------------------------------------------


def test_failed_write_leaves_the_old_record(tmp_path, monkeypatch):
    store = FlashStore(tmp_path / "s")
    store.put("alice", l2fe(b"old"))
    real_replace = os.replace

    def boom(*args):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.put("alice", l2fe(b"new" * 100))
    monkeypatch.setattr(os, "replace", real_replace)
    assert store.get("alice").record_bytes == b"old"
    assert [p.name for p in store.users_dir.iterdir()] == [store.get("alice").path.name]


WRITER = textwrap.dedent(
    """
    import sys
    from latticelock.device.store import FlashStore

    class R:
        scheme_id = "l2fe-hash-mcu"
        def __init__(self, payload):
            self.payload = payload
        def to_bytes(self):
            return self.payload

    store = FlashStore(sys.argv[1])
    records = [R(b"A" * 700), R(b"B" * 9000), R(bytes(range(256)) * 30)]
    i = 0
    while True:
        store.put("alice", records[i % 3])
        i += 1
    """
)


def test_killed_writer_never_leaves_a_torn_record(tmp_path):
    """SIGKILL a process that re-enrols one user in a loop at random moments; every survivor is whole."""
    valid = {b"A" * 700, b"B" * 9000, bytes(range(256)) * 30}
    rng = random.Random(7)
    path = tmp_path / "s"
    FlashStore(path).put("alice", l2fe(b"A" * 700))
    generations = []
    started = time.monotonic()
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        first = FlashStore(path).get("alice").generation
        deadline = time.monotonic() + 10
        while FlashStore(path, create=False).get("alice").generation == first and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = FlashStore(path, create=False)
        user = store.get("alice")
        assert user.record_bytes in valid
        assert [p.name for p in store.users_dir.iterdir()] == [user.path.name]
        generations.append(user.generation)
    assert generations == sorted(generations) and generations[-1] > 25
    assert time.monotonic() - started < 30


def test_a_store_that_lost_its_users_folder_opens_empty(tmp_path):
    store = FlashStore(tmp_path / "s")
    store.put("alice", l2fe(b"A"))
    for path in store.users_dir.iterdir():
        path.unlink()
    store.users_dir.rmdir()
    assert FlashStore(tmp_path / "s").users() == []
    store.users_dir.rmdir()
    store.users_dir.write_bytes(b"not a folder")
    with pytest.raises(StoreError, match="not a directory"):
        FlashStore(tmp_path / "s")
