"""Fleet-scale theft: N simulated devices, each a flash store of K users, every flash stolen and
attacked, one device per Ray task.

`attack_device` is the whole per-device job as a plain function (tested without Ray): build the
device the way its kind enrols users, steal the image, parse it with no secret, run the attack suite
on every record, and, for a kind that has more to give than its flash (hardened: the device in hand,
the chip's secrets extracted), measure that too. `run_fleet` wraps it in `ray.remote` at the edge,
keeps at most `max_in_flight` tasks running (`ray.wait`), writes each device's result as it arrives,
and skips devices already written, so a rerun after an interruption resumes.

Each device lives in a folder of its own, beside its result when `FleetContext.devices` is set (the
CLI sets it to the results folder): store/, flash.img and, hardened, mcu/ (the chip's flash). A device
whose result was not written is built afresh (its folder is emptied first: a half-attacked chip has
spent attempts that a rerun must not inherit).

Device kinds are pluggable (`DEVICE_KINDS`: how a kind enrols users, and what it yields beyond its
flash), and so are attacks by record family (`ATTACKS`): plain L2FE-Hash records get the lattice
attack, sealed ones (`fleet_hardened`) the offline attacks that refuse them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import fleet_hardened
from latticelock.tools.forensics.chip import FLASH_ONLY

INSTALL_HINT = "install the extra: pip install -e '.[fleet]'"


@dataclass(frozen=True)
class DeviceSpec:
    device: str
    kind: str
    parameter_set: str
    users: tuple[str, ...]  # victim identities enrolled on this device


@dataclass
class FleetContext:
    """What every device task shares: the victims' templates (the simulator's ground truth, never the
    thief's), the thief's public knowledge, and the attack's settings."""

    enrolled: dict[str, np.ndarray]  # user -> embedding the device enrolled
    other: dict[str, np.ndarray]  # user -> another image of the user (scoring only)
    centres: np.ndarray  # the thief's guesses of a face: public mean face, then k-means centroids
    tau: float
    budget: int = 100  # verifier evaluations per record
    radius: float = 2.5  # enumeration radius, in decoding radii
    fast_kdf: bool = False  # records with the evaluation Argon2id cost instead of the device's
    projection: object = None  # a replacement PCA projection (synthetic tests only)
    devices: Path | None = None  # where each device's folder is kept (None: a temporary folder)

    def falls(self, x: np.ndarray, user: str) -> tuple[bool, bool]:
        """Whether the embedding `x` lies within tau of the user's enrolled embedding, and of the other image."""
        return (bool(np.linalg.norm(x - self.enrolled[user]) <= self.tau),
                bool(np.linalg.norm(x - self.other[user]) <= self.tau))


@dataclass(frozen=True)
class Enrolled:
    refused: dict[str, str]  # user -> why the device refused to enrol them (a collision with an earlier user)
    device: Any = None  # what the kind's `beyond_flash` needs (hardened: `chip.HardenedDevice`)


@dataclass(frozen=True)
class DeviceKind:
    name: str
    description: str
    enrol: Callable[[Path, DeviceSpec, FleetContext], Enrolled]  # writes folder/store
    # threat model -> {"results": [UserResult as dict], and the chip's counts}: what the stolen device gives
    # beyond its flash, from `Enrolled.device` and the parsed records
    beyond_flash: Callable[[Any, list, DeviceSpec, FleetContext], dict[str, dict]] | None = None


def _kdf(context: FleetContext):
    from latticelock.kernels.kdf import EVALUATION_COST

    return EVALUATION_COST if context.fast_kdf else None


def enrol_plain(folder: Path, spec: DeviceSpec, context: FleetContext) -> Enrolled:
    """The device's plain mode: each user's template through the kernels recipe, bound to the user name."""
    from latticelock.device.store import FlashStore
    from latticelock.kernels.recipe import enrol

    store = FlashStore(folder / "store", mode="plain")
    for user in spec.users:
        store.put(user, enrol(context.enrolled[user], spec.parameter_set, label=user.encode("utf-8"),
                              kdf=_kdf(context), projection=context.projection))
    return Enrolled({})


DEVICE_KINDS: dict[str, DeviceKind] = {
    "plain": DeviceKind("plain", "plain L2FE-Hash records in the host flash", enrol_plain),
    "hardened": DeviceKind("hardened", "helper vector sealed to the microcontroller, which matches every face",
                           fleet_hardened.enrol, fleet_hardened.beyond_flash),
}


@dataclass
class UserResult:
    user: str
    scheme: str
    attack: str
    key: bool  # the thief recovered the user's key (hardened, device in hand: the chip signed with it)
    face: bool  # the thief's recovered embedding lies within tau of the user's enrolled embedding
    face_other_image: bool
    kdf_evaluations: int  # Argon2id evaluations (the chip's HMAC tag checks are counted by their threat model)
    seconds: float


def lattice_user(record, user: str, spec: DeviceSpec, context: FleetContext) -> UserResult:
    """The lattice attack on one plain L2FE-Hash record (labels are user names, in the clear in the store)."""
    from latticelock.kernels.hazmat.rep import L2FERep, preprocess
    from latticelock.tools.forensics.lattice_attack import embedding_of, lattice_attack

    start = time.perf_counter()
    rep = L2FERep(record.parameter_set, kdf=_kdf(context), projection=context.projection)
    p = rep.params
    centres_e = preprocess(p, rep.projection, context.centres)
    hit = lattice_attack(rep, record, centres_e, context.radius * p.radius, context.budget, label=user.encode("utf-8"))
    face, other = context.falls(embedding_of(hit.e, p, rep.projection), user) if hit.e is not None else (False, False)
    return UserResult(user, record.scheme_id, "lattice", hit.s is not None, face, other, hit.evaluations,
                      time.perf_counter() - start)


ATTACKS: dict[str, Callable] = {"l2fe-hash": lattice_user, "l2fe-hash-mcu": fleet_hardened.sealed_user}


@contextlib.contextmanager
def _folder(spec: DeviceSpec, context: FleetContext) -> Iterator[Path]:
    if context.devices is None:
        with tempfile.TemporaryDirectory(prefix=f"latticelock-{spec.device}-") as tmp:
            yield Path(tmp)
        return
    folder = context.devices / spec.device
    if folder.exists():  # an interrupted run's device: rebuilt, never resumed (its chip may have counted attempts)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    yield folder


def attack_device(spec: DeviceSpec, context: FleetContext) -> dict:
    """Simulate one device, steal its flash and attack every record it holds (a plain function)."""
    from latticelock.tools.forensics.image import read_image, steal
    from latticelock.tools.forensics.inspect import inspect_dump

    if spec.kind not in DEVICE_KINDS:
        raise ToolsError(f"unknown device kind {spec.kind!r}; known: {', '.join(DEVICE_KINDS)}")
    kind = DEVICE_KINDS[spec.kind]
    start = time.perf_counter()
    with _folder(spec, context) as folder:
        enrolled = kind.enrol(folder, spec, context)
        steal(folder / "store", folder / "flash.img")
        inspected = inspect_dump(read_image(folder / "flash.img"), spec.device)
        results = []
        for user in inspected.users:
            attack = ATTACKS.get(user.scheme)
            if attack is None:
                results.append(asdict(UserResult(user.user, user.scheme, "none in this suite", False, False, False, 0, 0.0)))
                continue
            results.append(asdict(attack(user.record, user.user, spec, context)))
        beyond = kind.beyond_flash(enrolled.device, inspected.users, spec, context) if kind.beyond_flash else {}
    return {"device": spec.device, "kind": spec.kind, "parameter_set": spec.parameter_set, "users": len(spec.users),
            "refused": enrolled.refused, "results": results, "beyond_flash": beyond,
            "corrupt": [f"{path}: {why}" for path, why in inspected.corrupt], "seconds": time.perf_counter() - start}


def plan_fleet(devices: int, users: int, victims: list[str], hardened_share: float, parameter_set: str,
               seed: int = 0) -> list[DeviceSpec]:
    """N devices of K distinct users each (victims reused only when the fleet needs more than there are),
    a `hardened_share` of them hardened, the rest plain, shuffled with `seed`."""
    if devices < 1 or users < 1:
        raise ToolsError("a fleet needs at least one device and one user per device")
    if users > len(victims):
        raise ToolsError(f"{users} users per device but only {len(victims)} victim identities")
    rng = np.random.default_rng(seed)
    order = [str(v) for v in rng.permutation(victims)]
    hardened = set(rng.choice(devices, int(round(hardened_share * devices)), replace=False).tolist())
    specs = []
    for d in range(devices):
        chosen = tuple(order[(d * users + k) % len(order)] for k in range(users))
        specs.append(DeviceSpec(f"device-{d:04d}", "hardened" if d in hardened else "plain", parameter_set, chosen))
    return specs


def _write_atomically(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, default=float)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_plan(out: Path, plan: dict) -> None:
    """Start a results folder, or check that it holds results of this very fleet (so a rerun resumes it)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "fleet.json"
    if manifest.exists():
        try:
            existing = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise ToolsError(f"{manifest} is unreadable ({exc}); remove the folder to start over") from None
        if existing != plan:
            raise ToolsError(f"{out} holds results of another fleet (other devices, users, seed or data); "
                             "pass another --out or remove it")
    else:
        _write_atomically(manifest, plan)


def done_devices(out: Path) -> dict[str, dict]:
    """Results already written (a truncated or foreign file is recomputed, not trusted)."""
    done = {}
    for path in sorted(out.glob("device-*.json")):
        try:
            result = json.loads(path.read_text())
            done[result["device"]] = result
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return done


def run_fleet(specs: list[DeviceSpec], context: FleetContext, out: Path, *, address: str | None = None,
              max_in_flight: int = 2, cpus: int | None = None, progress: bool = True) -> list[dict]:
    """Every device's result, running the missing ones as Ray tasks (local Ray unless `address`)."""
    try:
        import ray
    except ImportError:
        raise ToolsError(f"fleet runs need Ray, which is not installed; {INSTALL_HINT}") from None
    from tqdm import tqdm

    results = done_devices(out)
    todo = [s for s in specs if s.device not in results]
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="fleet", unit="device", disable=not progress)
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            options = {"address": address} if address else {"num_cpus": cpus or os.cpu_count()}
            ray.init(**options, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            task = ray.remote(num_cpus=1, max_retries=1)(attack_device)
            shared = ray.put(context)
            pending: dict = {}
            while todo or pending:
                while todo and len(pending) < max_in_flight:
                    spec = todo.pop(0)
                    pending[task.remote(spec, shared)] = spec
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    spec = pending.pop(ref)
                    result = ray.get(ref)
                    _write_atomically(out / f"{spec.device}.json", result)
                    results[spec.device] = result
                    bar.update(1)
        finally:
            if started_here:
                ray.shutdown()
    bar.close()
    return [results[s.device] for s in specs]


def summarise(results: list[dict], plan: dict) -> dict:
    """Shares of devices and users whose faces or keys fall, per kind, parameter set and threat model
    (flash only for every device; the kind's `beyond_flash` ones after it), with cost."""
    groups: dict[tuple[str, str, str], list[tuple[dict, dict]]] = {}
    for r in sorted(results, key=lambda r: (r["kind"], r["parameter_set"])):
        groups.setdefault((r["kind"], r["parameter_set"], FLASH_ONLY), []).append((r, {"results": r["results"]}))
        for threat, outcome in r["beyond_flash"].items():
            groups.setdefault((r["kind"], r["parameter_set"], threat), []).append((r, outcome))
    rows = []
    for (kind, pset, threat), entries in groups.items():
        users = [u for _, outcome in entries for u in outcome["results"]]
        n_users = sum(d["users"] - len(d["refused"]) for d, _ in entries)

        def share(key: str) -> float:
            return sum(u[key] for u in users) / n_users if n_users else 0.0

        rows.append({
            "kind": kind, "parameter_set": pset, "threat_model": threat, "devices": len(entries), "users": n_users,
            "refused_enrolments": sum(len(d["refused"]) for d, _ in entries),
            "devices_face_falls": sum(any(u["face"] for u in o["results"]) for _, o in entries) / len(entries),
            "devices_key_falls": sum(any(u["key"] for u in o["results"]) for _, o in entries) / len(entries),
            "users_face_falls": share("face"), "users_face_other_image": share("face_other_image"),
            "users_key_falls": share("key"),
            "kdf_evaluations": sum(u["kdf_evaluations"] for u in users),
            "attack_seconds": sum(u["seconds"] for u in users),
            "chip_attempts": sum(o.get("attempts", 0) for _, o in entries),
            "chip_waited_s": sum(o.get("waited_s", 0.0) for _, o in entries),
            "tag_checks": sum(o.get("tag_checks", 0) for _, o in entries),
            "stopped_by": dict(Counter(o["stopped_by"] for _, o in entries if "stopped_by" in o)),
        })
    return {"plan": plan, "rows": rows}


def _note(row: dict) -> str:
    """What a summary row's numbers do not say: refused enrolments, and what the chip counted."""
    parts = []
    if row["refused_enrolments"] and row["threat_model"] == FLASH_ONLY:
        parts.append(f"{row['refused_enrolments']} enrolments refused by the chip (collisions)")
    if row["stopped_by"]:
        parts.append(f"{row['chip_attempts'] / row['devices']:.1f} counted attempts per device, "
                     f"{row['chip_waited_s'] / row['devices']:.0f} s of back-off waited (injected clock), then "
                     + ", ".join(f"{k} ({v})" for k, v in row["stopped_by"].items()))
    if row["tag_checks"]:
        parts.append(f"{row['tag_checks']} HMAC tag checks")
    return "; ".join(parts) or "-"


def summary_table(summary: dict):
    """The fleet summary as a report table (ours)."""
    from latticelock.tools.forensics.tables import Table, pct

    plan = summary["plan"]
    notes = [f"Argon2id cost: {'evaluation (fast)' if plan.get('fast_kdf') else 'the device cost'}; "
             f"lattice budget {plan.get('budget')} evaluations per record; tau {plan.get('tau'):.4f}"]
    if any(r["threat_model"] != FLASH_ONLY for r in summary["rows"]):
        notes.append("device in hand: the thief guesses through the live chip (the zero probe vector, then the public "
                     "mean face and k-means centroids), key = the chip signed; mcu secrets extracted: the lattice attack "
                     "on the opened c over the device lattice")
    rows = [[r["kind"], r["parameter_set"], r["threat_model"], str(r["devices"]), str(r["users"]), pct(r["devices_face_falls"]),
             pct(r["devices_key_falls"]), pct(r["users_face_falls"]), pct(r["users_key_falls"]), str(r["kdf_evaluations"]),
             f"{r['attack_seconds']:.1f}", _note(r)] for r in summary["rows"]]
    return Table("Ours: fleet", f"Fleet theft: {plan['devices']} devices x {plan['users']} users, every device stolen",
                 ["kind", "parameter set", "threat model", "devices", "users", "devices: face falls", "devices: key falls",
                  "users: face falls", "users: key falls", "Argon2id evaluations", "attack s (CPU)", "note"], rows, notes)
