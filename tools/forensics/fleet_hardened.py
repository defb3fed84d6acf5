"""The fleet's hardened devices (hardened mode v2), plugged into `fleet.DEVICE_KINDS` and `fleet.ATTACKS`.

- `enrol`: the device's users enrolled on a simulated chip of its own through the device's path
  (`chip.build_device`); the chip's flash (mcu/) stays in the device's folder beside its result.
- `sealed_user` (flash only): the thief's offline attacks on a sealed record; each refuses it.
- `beyond_flash`: what the stolen device gives beyond its flash. Device in hand: guesses through the
  live chip, the zero probe vector (the projection's centre) first, then the public mean face and the
  k-means centroids, until the chip demands the passcode. MCU secrets extracted: the lattice attack on
  the opened c over the device lattice (`chip.secrets_extracted`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latticelock.tools.forensics.chip import HardenedDevice
    from latticelock.tools.forensics.fleet import DeviceSpec, Enrolled, FleetContext, UserResult

def enrol(folder: Path, spec: "DeviceSpec", context: "FleetContext") -> "Enrolled":
    from latticelock.tools.forensics.chip import build_device
    from latticelock.tools.forensics.fleet import Enrolled

    device = build_device(folder, {u: context.enrolled[u] for u in spec.users}, spec.parameter_set, context.projection)
    return Enrolled(device.refused, device)


def sealed_user(record, user: str, spec: "DeviceSpec", context: "FleetContext") -> "UserResult":
    """Flash only: nothing falls, because each offline attack refuses the sealed record."""
    from latticelock.tools.forensics.chip import offline_refusals
    from latticelock.tools.forensics.fleet import UserResult

    start = time.perf_counter()
    refused = offline_refusals(record, context.projection)
    return UserResult(user, record.scheme_id, f"refused by {', '.join(refused)} (sealed)", False, False, False, 0,
                      time.perf_counter() - start)


def beyond_flash(device: "HardenedDevice", users: list, spec: "DeviceSpec", context: "FleetContext") -> dict[str, dict]:
    """The device in hand and the chip's secrets extracted, on the records parsed from the stolen image."""
    from latticelock.kernels.hazmat.rep import L2FERep, preprocess
    from latticelock.tools.forensics.chip import (DEVICE_IN_HAND, SECRETS_EXTRACTED, StolenRecord, centre_first,
                                                   device_in_hand, secrets_extracted)
    from latticelock.tools.forensics.fleet import UserResult
    from latticelock.tools.forensics.lattice_attack import embedding_of

    stolen = [StolenRecord(u.user, u.generation, u.record) for u in users]
    if not stolen:
        return {}
    rep = L2FERep(spec.parameter_set, projection=context.projection)
    p, proj = rep.params, rep.projection
    centres_e = preprocess(p, proj, context.centres)
    guesses, pictures = centre_first(rep, context.centres)

    start = time.perf_counter()
    run = device_in_hand(device, stolen, guesses)
    each = (time.perf_counter() - start) / len(stolen)
    in_hand = []
    for s in stolen:
        signed = s.user in run.accepted
        face, other = context.falls(pictures[run.accepted[s.user]], s.user) if signed else (False, False)
        in_hand.append(asdict(UserResult(s.user, s.record.scheme_id, "chip dictionary (centre first)", signed, face, other,
                                         0, each)))

    start = time.perf_counter()
    found = secrets_extracted(device, stolen, centres_e, context.radius * p.radius, context.budget)
    each = (time.perf_counter() - start) / len(stolen)
    extracted = []
    for s, x in zip(stolen, found):
        face, other = context.falls(embedding_of(x.e, p, proj), s.user) if x.e is not None else (False, False)
        extracted.append(asdict(UserResult(s.user, s.record.scheme_id, "lattice (chip secrets)", x.key, face, other, 0, each)))
    return {
        DEVICE_IN_HAND: {"results": in_hand, "attempts": run.attempts, "waited_s": run.waited_s, "k": run.k,
                         "stopped_by": run.stopped_by, "cold": run.cold, "chip_answers": run.answers},
        SECRETS_EXTRACTED: {"results": extracted, "tag_checks": sum(x.evaluations for x in found)},
    }
