"""Hardened mode v2 under the forensics tools (`tools/forensics/chip.py`): a device built through the
device's own enrolment path on a simulated chip, its flash stolen and parsed back, and each threat model:
flash only (the offline attacks refuse the record), device in hand (guesses through the live chip, its
limits on, on an injected clock) and the chip's secrets extracted (the lattice attack on the opened c).

Faces are the synthetic people of `device_fakes` (well apart, with the synthetic projection), on the
small m = 32 parameter set."""

from __future__ import annotations

import numpy as np
import pytest
from device_fakes import DIM, PARAMETER_SET, PROJECTION, person_centre

from latticelock.device.hardened import sealed_users
from latticelock.device.store import FlashStore
from latticelock.firmware_bridge.sealing import SealError
from latticelock.kernels.hazmat.rep import L2FERep, preprocess
from latticelock.kernels.projection import Projection
from latticelock.kernels.recipe import SEALED_SCHEME_ID, probe_vector
from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import chip

OWNERS = {"ann": 1, "bob": 2}
STRANGERS = range(10, 40)


def embedding(person: int, seed: int) -> np.ndarray:
    x = person_centre(person) + np.random.default_rng(seed).normal(scale=0.02, size=DIM)
    return x / np.linalg.norm(x)


def vectors(people, seed: int = 7) -> np.ndarray:
    return np.stack([probe_vector(embedding(p, seed), PARAMETER_SET, projection=PROJECTION) for p in people])


@pytest.fixture(scope="module")
def device(tmp_path_factory) -> chip.HardenedDevice:
    templates = {name: embedding(person, 100) for name, person in OWNERS.items()}
    return chip.build_device(tmp_path_factory.mktemp("dev") / "device", templates, PARAMETER_SET, PROJECTION)


@pytest.fixture(scope="module")
def stolen(device) -> list[chip.StolenRecord]:
    return chip.steal_device(device)


def test_the_device_is_enrolled_through_the_v2_path_and_its_flash_parses_back(device, stolen):
    store = FlashStore(device.store_dir, create=False)
    assert store.mode == "hardened" and device.refused == {} and set(device.public_keys) == set(OWNERS)
    on_flash = {u.name: (u.generation, u.sealed) for u in sealed_users(store)[0]}
    assert {s.user: (s.generation, s.sealed) for s in stolen} == on_flash
    assert all(s.record.scheme_id == SEALED_SCHEME_ID and s.generation == 1 for s in stolen)
    assert (device.root / "flash.img").is_file() and (device.state_dir / "mcu-state.bin").is_file()
    with pytest.raises(ToolsError, match="not empty"):
        chip.build_device(device.root, {"cy": embedding(3, 100)}, PARAMETER_SET, PROJECTION)


def test_every_offline_attack_refuses_a_sealed_record(stolen):
    refusals = chip.offline_refusals(stolen[0].record, PROJECTION)
    assert set(refusals) == {"lattice", "dictionary", "pipe"}
    assert "l2fe-hash-mcu" in refusals["lattice"] and "microcontroller" in refusals["dictionary"]


def test_strangers_get_the_counted_attempts_then_the_passcode(device, stolen):
    run = chip.device_in_hand_runs(device, stolen, {"strangers": vectors(STRANGERS)})["strangers"]
    assert run.cold == "PASSCODE_REQUIRED"  # a device taken switched off refuses every face
    assert (run.k, run.attempts, run.stopped_by, run.accepted) == (2, 10, "PASSCODE_REQUIRED", {})
    assert run.answers == {"REJECT": 10, "LOCKED_OUT": 5, "PASSCODE_REQUIRED": 1}
    assert run.waited_s == 30 + 60 + 120 + 240 + 480  # the back-off, waited out on the injected clock


def test_each_thief_meets_the_chip_as_stolen_and_the_owners_faces_are_signed(device, stolen):
    runs = chip.device_in_hand_runs(device, stolen, {"strangers": vectors(STRANGERS),
                                                      "photos": vectors([20, OWNERS["bob"], OWNERS["ann"]])})
    assert runs["strangers"].attempts == 10
    photos = runs["photos"]  # not locked out by the strangers' run: the flash was restored
    assert photos.accepted == {"bob": 1, "ann": 2} and photos.stopped_by == "every user accepted"
    # bob's photo is tried again on ann's record alone (a reject) before ann's photo
    assert photos.answers == {"REJECT": 2, "ACCEPT": 2} and photos.attempts == 4 and photos.waited_s == 0


def test_the_centre_guess_is_the_zero_vector_and_stands_for_the_projections_mean():
    mean = person_centre(9) * 0.5
    rep = L2FERep(PARAMETER_SET, projection=Projection(mean.astype(np.float32), PROJECTION.components, PROJECTION.provenance))
    faces = np.stack([embedding(5, 0), embedding(6, 0)])
    guesses, pictures = chip.centre_first(rep, faces)
    assert guesses.shape == (3, rep.params.m) and not guesses[0].any()
    assert np.array_equal(guesses[1:], preprocess(rep.params, rep.projection, faces)) and np.array_equal(pictures[1:], faces)
    assert np.allclose(pictures[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_extracted_secrets_open_every_blob_and_the_lattice_attack_recovers_face_and_key(device, stolen):
    rep = L2FERep(PARAMETER_SET, projection=PROJECTION)
    p = rep.params
    found = chip.secrets_extracted(device, stolen, np.zeros((1, p.m)), 2.5 * p.radius, 10)
    assert [x.user for x in found] == [s.user for s in stolen]
    for x in found:
        truth = probe_vector(embedding(OWNERS[x.user], 100), PARAMETER_SET, projection=PROJECTION)
        assert x.key and 1 <= x.evaluations <= 10
        assert np.array_equal(np.mod(x.e, p.q), np.mod(truth, p.q))


def test_the_stolen_flash_alone_opens_nothing_with_another_chips_secrets(device, stolen, tmp_path):
    other = chip.build_device(tmp_path / "other", {"ann": embedding(1, 100)}, PARAMETER_SET, PROJECTION)
    twin = chip.HardenedDevice(other.root, PARAMETER_SET, device.public_keys, {})
    with pytest.raises(SealError):
        chip.secrets_extracted(twin, stolen[:1], np.zeros((1, 32)), 100.0, 1)

