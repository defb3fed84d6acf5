"""Fleet-scale theft: N simulated devices, each a flash store of K users, every flash stolen and
attacked, one device per Ray task.

`attack_device` is the whole per-device job as a plain function (tested without Ray): build the
device's store the way its kind enrols users, steal the image, parse it with no secret, and run the
attack suite on every record. `run_fleet` wraps it in `ray.remote` at the edge, keeps at most
`max_in_flight` tasks running (`ray.wait`), writes each device's result as it arrives, and skips
devices already written, so a rerun after an interruption resumes.

Device kinds are pluggable: `DEVICE_KINDS` maps a kind to how it enrols users into a store. A kind
without an enrolment function (hardened mode, until this build has it) is counted as not
attackable from flash, with its reason in every result. Attacks are pluggable by record family
(`ATTACKS`): plain L2FE-Hash records get the lattice attack.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from latticelock.tools.errors import ToolsError

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


@dataclass(frozen=True)
class DeviceKind:
    name: str
    description: str
    enrol: Callable[[Path, DeviceSpec, FleetContext], None] | None
    unavailable: str = ""  # why a kind without `enrol` cannot be simulated, and how it is counted


def _kdf(context: FleetContext):
    from latticelock.kernels.kdf import EVALUATION_COST

    return EVALUATION_COST if context.fast_kdf else None


def enrol_plain(store_path: Path, spec: DeviceSpec, context: FleetContext) -> None:
    """The device's plain mode: each user's template through the kernels recipe, bound to the user name."""
    from latticelock.device.store import FlashStore
    from latticelock.kernels.recipe import enrol

    store = FlashStore(store_path, mode="plain")
    for user in spec.users:
        store.put(user, enrol(context.enrolled[user], spec.parameter_set, label=user.encode("utf-8"),
                              kdf=_kdf(context), projection=context.projection))


DEVICE_KINDS: dict[str, DeviceKind] = {
    "plain": DeviceKind("plain", "plain L2FE-Hash records in the host flash", enrol_plain),
    "hardened": DeviceKind("hardened", "helper vector sealed to the microcontroller", None,
                           "hardened mode unavailable: counted as not attackable from flash"),
}


@dataclass
class UserResult:
    user: str
    scheme: str
    attack: str
    key: bool  # the thief recovered the user's key
    face: bool  # the thief's recovered embedding lies within tau of the user's enrolled embedding
    face_other_image: bool
    kdf_evaluations: int
    seconds: float


def lattice_user(record, user: str, spec: DeviceSpec, context: FleetContext) -> UserResult:
    """The lattice attack on one plain L2FE-Hash record (labels are user names, in the clear in the store)."""
    from latticelock.kernels.hazmat.rep import L2FERep, preprocess
    from latticelock.tools.embeddings import normalise
    from latticelock.tools.forensics.lattice_attack import lattice_attack

    start = time.perf_counter()
    rep = L2FERep(record.parameter_set, kdf=_kdf(context), projection=context.projection)
    p = rep.params
    centres_e = preprocess(p, rep.projection, context.centres)
    hit = lattice_attack(rep, record, centres_e, context.radius * p.radius, context.budget, label=user.encode("utf-8"))
    face = other = False
    if hit.e is not None:
        e = np.where(hit.e > p.q // 2, hit.e - p.q, hit.e)
        x = normalise(rep.projection.mean + (e / p.scale) @ rep.projection.components[: p.m])
        face = bool(np.linalg.norm(x - context.enrolled[user]) <= context.tau)
        other = bool(np.linalg.norm(x - context.other[user]) <= context.tau)
    return UserResult(user, record.scheme_id, "lattice", hit.s is not None, face, other, hit.evaluations,
                      time.perf_counter() - start)


ATTACKS: dict[str, Callable] = {"l2fe-hash": lattice_user}


def attack_device(spec: DeviceSpec, context: FleetContext) -> dict:
    """Simulate one device, steal its flash and attack every record it holds (a plain function)."""
    from latticelock.tools.forensics.image import read_image, steal
    from latticelock.tools.forensics.inspect import inspect_dump

    if spec.kind not in DEVICE_KINDS:
        raise ToolsError(f"unknown device kind {spec.kind!r}; known: {', '.join(DEVICE_KINDS)}")
    kind = DEVICE_KINDS[spec.kind]
    result = {"device": spec.device, "kind": spec.kind, "parameter_set": spec.parameter_set, "users": len(spec.users),
              "attackable": kind.enrol is not None, "note": kind.unavailable, "results": [], "corrupt": []}
    if kind.enrol is None:
        return result
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"latticelock-{spec.device}-") as tmp:
        kind.enrol(Path(tmp) / "store", spec, context)
        steal(Path(tmp) / "store", Path(tmp) / "flash.img")
        inspected = inspect_dump(read_image(Path(tmp) / "flash.img"), spec.device)
    result["corrupt"] = [f"{path}: {why}" for path, why in inspected.corrupt]
    for user in inspected.users:
        attack = ATTACKS.get(user.scheme)
        if attack is None:
            result["results"].append(asdict(UserResult(user.user, user.scheme, "none in this suite", False, False, False, 0, 0.0)))
            continue
        result["results"].append(asdict(attack(user.record, user.user, spec, context)))
    result["seconds"] = time.perf_counter() - start
    return result


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
    """Shares of devices and users whose faces or keys fall, per kind and parameter set, with cost."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["kind"], r["parameter_set"]), []).append(r)
    rows = []
    for (kind, pset), devices in sorted(groups.items()):
        users = [u for d in devices for u in d["results"]]
        n_users = sum(d["users"] for d in devices)
        rows.append({
            "kind": kind, "parameter_set": pset, "devices": len(devices), "users": n_users,
            "attackable_devices": sum(d["attackable"] for d in devices),
            "devices_face_falls": sum(any(u["face"] for u in d["results"]) for d in devices) / len(devices),
            "devices_key_falls": sum(any(u["key"] for u in d["results"]) for d in devices) / len(devices),
            "users_face_falls": sum(u["face"] for u in users) / n_users if n_users else 0.0,
            "users_face_other_image": sum(u["face_other_image"] for u in users) / n_users if n_users else 0.0,
            "users_key_falls": sum(u["key"] for u in users) / n_users if n_users else 0.0,
            "kdf_evaluations": sum(u["kdf_evaluations"] for u in users),
            "attack_seconds": sum(u["seconds"] for u in users),
            "note": devices[0]["note"],
        })
    return {"plan": plan, "rows": rows}


def summary_table(summary: dict):
    """The fleet summary as a report table (ours)."""
    from latticelock.tools.forensics.tables import Table, pct

    plan = summary["plan"]
    rows = [[r["kind"], r["parameter_set"], str(r["devices"]), str(r["users"]), pct(r["devices_face_falls"]),
             pct(r["devices_key_falls"]), pct(r["users_face_falls"]), pct(r["users_key_falls"]), str(r["kdf_evaluations"]),
             f"{r['attack_seconds']:.1f}", r["note"] or "-"] for r in summary["rows"]]
    return Table("Ours: fleet", f"Fleet theft: {plan['devices']} devices x {plan['users']} users, every flash stolen",
                 ["kind", "parameter set", "devices", "users", "devices: face falls", "devices: key falls", "users: face falls",
                  "users: key falls", "Argon2id evaluations", "attack s (CPU)", "note"], rows,
                 [f"Argon2id cost: {'evaluation (fast)' if plan.get('fast_kdf') else 'the device cost'}; "
                  f"lattice budget {plan.get('budget')} evaluations per record; tau {plan.get('tau'):.4f}"])
