"""The forensics report: every attack against every scheme on identity-disjoint LFW victims.

For each scheme the victims are enrolled into a real flash store, the store is stolen as an image
and the thief's reader parses it: every attack below starts from those parsed records only.

Attacks (rows of the report):
- random guess: random public faces, per guess and "any of N" (embedding space, no record used);
- pipe: PIPE step 1 surrogate + step 2 inverse learned on public faces (embedding space);
- algebraic: what the record's algebra gives directly (unprotected: the embedding; MRP: the
  conditional mean under a public Gaussian prior; Facial-FE: the E8 codeword nearest the mean face);
- dictionary / dictionary-kmeans: public faces / k-means centroids through the scheme's own verify;
- lattice (L2FE-Hash): lattice points near c - (projected mean face, then centroids), each secret
  candidate tested against the stored verifier;
- pipe-image (with a generator): PIPE's recovered embedding (and, ours, the lattice attack's) drawn
  as a face and embedded again with FaceNet (`pipe_image`), per scheme and leakage mode;
- hardened mode (`hardened`, ours): the first `hardened_victims` attack victims, each enrolled on a
  simulated device of its own through the device's v2 path, attacked per threat model: flash only
  (the attacks above refuse the sealed record; PIPE's best picture is a random public face), device in
  hand (guesses through the live chip until it demands the passcode) and microcontroller secrets
  extracted (the lattice attack on the opened c). Each row names its `threat_model`.

Test sets: "enrolled" (the attack's embedding within tau of the image the victim enrolled with),
"other-image" (within tau of a different image of the victim: what a face-recognition system that
never saw the enrolment photo would accept), "unlock" (the scheme's own verification releases the key).

Presentation lives beside it: `tables` (the paper's tables by name, and ours), `figures` (ASR plots
and face grids), `html` (the one self-contained page).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from latticelock.kernels.params import DEFAULT_SET, OPERATING_POINTS, get_parameter_set
from latticelock.tools.embeddings import normalise
from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import protocol as P
from latticelock.tools.forensics.dictionary import dictionary_attack, kmeans_centroids
from latticelock.tools.forensics.pipe import LEAKAGE, algebraic, family, surrogates, train_pipe
from latticelock.tools.forensics.surrogates import FacePrior

DEFAULT_SCHEMES = ("unprotected", "mrp", "facial-fe", "l2fe-facenet-m32", "l2fe-facenet-m48", "l2fe-facenet-m64")
BUDGETS = (1, 10, 100, 1000, 10000)


@dataclass
class ReportConfig:
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    victim_fraction: float = 0.5
    max_victims: int | None = None
    attack_victims: int = 400  # victims run through the dictionary and lattice attacks
    train_faces: int = 3000  # public faces the PIPE inverse is trained on
    guesses: int = 1000  # random-guess baseline and dictionary size
    repeats: int = 10
    kmeans: int = 64
    target_fpr: float = P.DEFAULT_TARGET_FPR
    model: str = "ridge"
    lattice_budget: int = 100  # verifier evaluations per victim
    lattice_radius: float = 2.5  # enumeration radius, in units of the set's decoding radius
    lattice_bkz: int | None = None  # None: the device's block size
    device_kdf_victims: int = 3  # victims also attacked with records at the device's full Argon2id cost
    image_victims: int = 200  # victims (of the attack victims) whose recovered embeddings are drawn and re-embedded
    grid_victims: int = 6  # the fixed sample shown in the face grids
    hardened_victims: int = 100  # attack victims also enrolled on simulated hardened devices, one each (0: none)
    hardened_set: str = DEFAULT_SET  # the hardened devices' parameter set
    backend: str = "auto"
    seed: int = 0


@dataclass
class Report:
    config: dict
    data: dict
    threshold: dict
    baseline: dict
    rows: list[dict] = field(default_factory=list)
    costs: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    image_rows: list[dict] = field(default_factory=list)  # pipe-image: one row per scheme and mode
    accuracy: list[dict] = field(default_factory=list)  # TPR / FPR of each scheme on the victims
    threat_models: list[dict] = field(default_factory=list)  # what each threat model yields, per scheme family
    generator: dict | None = None  # the manifest of the generator behind `image_rows`, without its identity list
    provenance: dict = field(default_factory=dict)  # command, versions, hardware
    fleet: dict | None = None  # a `forensics fleet` summary, when one is attached
    notes: list[str] = field(default_factory=list)
    runtime_s: float = 0.0
    # Face grids (victims' photos and reconstructions): pictures only, in memory, never in the JSON.
    grids: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        data = asdict(self)
        del data["grids"]
        return data


def attack_row(scheme: str, parameter_set: str, attack: str, test_set: str, hits: np.ndarray, guesses: int, **extra) -> dict:
    hits = np.asarray(hits, dtype=bool)
    return {"scheme": scheme, "parameter_set": parameter_set, "attack": attack, "test_set": test_set,
            "asr": float(hits.mean()) if hits.size else float("nan"), "victims": int(hits.size),
            "guesses": int(guesses), **extra}


def make_scheme(name: str, backend: str = "auto", device_kdf: bool = False, projection=None):
    """The scheme under attack. L2FE-Hash records are made with the evaluation-only Argon2id cost unless
    `device_kdf` (decisions do not depend on the cost; what a guess costs is timed separately).
    `projection` replaces the set's shipped PCA projection (synthetic tests only)."""
    from latticelock.kernels.scheme import get_scheme

    if name.startswith("l2fe"):
        from latticelock.kernels.kdf import EVALUATION_COST

        options = {"backend": backend, "projection": projection}
        if not device_kdf:
            options["kdf"] = EVALUATION_COST
        return get_scheme(name, **options)
    return get_scheme(name)


def steal_records(scheme, embeddings: np.ndarray, names: np.ndarray, workdir: Path) -> list:
    """Enrol each victim into a fresh flash store, image it as a thief, and parse it back."""
    from latticelock.device.store import FlashStore
    from latticelock.tools.forensics.image import steal
    from latticelock.tools.forensics.inspect import inspect_image

    store = FlashStore(workdir / "store", allow_insecure_baselines=True)
    for name, x in zip(names, embeddings):
        store.put(str(name), scheme.enroll(x))
    steal(store.path, workdir / "dump.img")
    report = inspect_image(workdir / "dump.img")
    by_name = {u.user: u.record for u in report.users}
    if report.corrupt or len(by_name) != len(names):
        raise ToolsError(f"theft simulation lost records: {report.corrupt}")
    return [by_name[str(n)] for n in names]


def _decoder_backend(backend: str) -> str:
    """Which decoders kernels/decode.py dispatches to for `backend`, in words."""
    from latticelock.kernels.hazmat import gpu

    if backend == "cpu":
        return "cpu (numba)"
    if gpu.available():
        return "gpu (PyCUDA)"
    return f"cpu (numba); GPU unavailable: {gpu.unavailable_reason()}"


def _timed_kdf(scheme_name: str) -> float:
    """Median seconds of one verifier evaluation at the set's device Argon2id cost."""
    from latticelock.kernels.hazmat.rep import derive

    p = get_parameter_set(scheme_name)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        derive(np.zeros(p.n, dtype=np.int64), bytes(16), p.kdf)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def embedding_description(config: dict) -> str:
    """How the faces were embedded, from the options `eval embed` recorded."""
    if not config:
        return "embedding options not recorded"
    mirror = "with flip averaging, as enrolment embeds" if config.get("flip_average") else "embedded once, as the unlock loop embeds frames"
    return f"{config.get('alignment', 'margin')} crop, {mirror}"


def run_report(faces, config: ReportConfig, eligible: set[str] | None = None, workdir: Path | None = None,
               progress: bool = True, projection=None, image_attack=None, dataset: Path | None = None) -> Report:
    """Run every attack of `config` on `faces` (an `EmbeddingsFile`); victims are drawn from `eligible`
    identities when given. With `image_attack` (`pipe_image.ImageAttack`) the recovered embeddings are
    also drawn as faces and scored again; `dataset` (the images' folder) adds the victims' photos to
    the face grids. Limits numpy's OpenBLAS to one thread (see `blas`): many small products, measured
    much faster."""
    import tempfile

    from tqdm import tqdm

    from latticelock.tools.forensics.blas import limit_blas_threads

    limit_blas_threads(1)

    started = time.perf_counter()
    cfg = config
    if cfg.hardened_victims:  # a set hardened enrolment refuses fails now, not after every other scheme's attacks
        get_parameter_set(cfg.hardened_set)
        point = OPERATING_POINTS.get(cfg.hardened_set)
        if point is None or point.far_per_attempt is None:
            raise ToolsError(f"--hardened-set {cfg.hardened_set}: hardened devices enrol only at a device operating point "
                             f"({', '.join(n for n, o in OPERATING_POINTS.items() if o.far_per_attempt is not None)})")
    rng = np.random.default_rng(cfg.seed)
    split = P.split_identities(faces, cfg.victim_fraction, cfg.max_victims, eligible, cfg.seed)
    thr = P.calibrate_tau(split.public, split.public_labels, cfg.target_fpr)
    tau = thr.tau
    V = len(split.enrolled)
    n_attack = min(cfg.attack_victims, V)
    attack_idx = np.sort(rng.choice(V, n_attack, replace=False))
    image_idx = attack_idx[: cfg.image_victims]
    base_e = P.random_guess_baseline(split.public, split.public_labels, split.enrolled, tau, cfg.guesses, cfg.repeats, cfg.seed + 1)
    base_o = P.random_guess_baseline(split.public, split.public_labels, split.other, tau, cfg.guesses, cfg.repeats, cfg.seed + 1)
    report = Report(
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        data={"faces": int(len(faces.embeddings)), "identities": int(len(np.unique(faces.labels))),
              "public_faces": int(len(split.public)), "public_identities": int(len(np.unique(split.public_labels))),
              "victims": int(V), "attack_victims": int(n_attack),
              "victims_from": "identities of lfw_pairs.txt with 2+ images" if eligible is not None else "identities with 2+ images",
              "decoder_backend": _decoder_backend(cfg.backend), "embedding": embedding_description(getattr(faces, "config", {}))},
        threshold={**asdict(thr), "paper_tau": P.PAPER_TAU},
        baseline={"enrolled": {k: v for k, v in asdict(base_e).items() if k != "any_curve"},
                  "other-image": {k: v for k, v in asdict(base_o).items() if k != "any_curve"},
                  "protocol": f"each repeat: one random image of each of {base_e.guesses} distinct public identities"},
    )
    report.curves["random-guess any (enrolled)"] = base_e.any_curve.tolist()
    for test_set, base in (("enrolled", base_e), ("other-image", base_o)):
        report.rows.append({"scheme": "any", "parameter_set": "-", "attack": "random-guess (per guess)", "test_set": test_set,
                            "asr": base.per_guess_mean, "asr_std": base.per_guess_std, "victims": V, "guesses": 1})
        report.rows.append({"scheme": "any", "parameter_set": "-", "attack": f"random-guess (any of {base.guesses})",
                            "test_set": test_set, "asr": base.any_mean, "asr_std": base.any_std, "victims": V,
                            "guesses": base.guesses})

    prior = FacePrior.fit(split.public)
    mean_face = normalise(prior.mean[None, :])[0]
    # the single guess every attacker starts from, and what an inverse that learns nothing outputs
    for test_set, targets in (("enrolled", split.enrolled), ("other-image", split.other)):
        hits = P.success(np.repeat(mean_face[None, :], V, axis=0), targets, tau)
        report.rows.append(attack_row("any", "-", "mean-face (1 guess)", test_set, hits, 1))
    centroids = kmeans_centroids(split.public, cfg.kmeans, cfg.seed)
    dictionary = split.public[rng.choice(len(split.public), min(cfg.guesses, len(split.public)), replace=False)]
    train = split.public[rng.choice(len(split.public), min(cfg.train_faces, len(split.public)), replace=False)]
    images = _ImageRows(report, image_attack, split, image_idx, tau, cfg, dataset, faces)

    with tempfile.TemporaryDirectory(prefix="latticelock-report-", dir=workdir) as tmp:
        for name in cfg.schemes:
            scheme = make_scheme(name, cfg.backend, projection=projection)
            sid, pset = scheme.scheme_id, scheme.parameter_set
            kind = family(sid)
            store_dir = Path(tmp) / pset
            store_dir.mkdir()
            records = steal_records(scheme, split.enrolled, split.victim_labels, store_dir)
            report.accuracy.append(_accuracy(scheme, records, split, attack_idx))

            # PIPE, once per leakage mode (MRP: full, and partial with R kept from the thief)
            for mode in LEAKAGE[kind]:
                model = train_pipe(scheme, train, cfg.model, cfg.seed, leakage=mode)
                predicted = model.predict(surrogates(scheme, records, leakage=mode))
                extra = {"model": model.name, "train_faces": model.train_pairs, "train_s": round(model.train_seconds, 2),
                         "mode": mode}
                for test_set, targets in (("enrolled", split.enrolled), ("other-image", split.other)):
                    report.rows.append(attack_row(sid, pset, "pipe", test_set, P.success(predicted, targets, tau), 1, **extra))
                unlocked = [scheme.verify(records[i], predicted[i]) is not None for i in attack_idx]
                report.rows.append(attack_row(sid, pset, "pipe", "unlock", unlocked, 1, **extra))
                images.add(sid, pset, mode, predicted[image_idx], "paper's PIPE: surrogate, then the " + model.name + " inverse")

            # algebraic
            recovered = [algebraic(scheme, r, prior) for r in records]
            if recovered[0] is not None:
                rec = normalise(np.stack(recovered))
                for test_set, targets in (("enrolled", split.enrolled), ("other-image", split.other)):
                    report.rows.append(attack_row(sid, pset, "algebraic", test_set, P.success(rec, targets, tau), 1,
                                            median_l2_to_enrolled=float(np.median(np.linalg.norm(rec - split.enrolled, axis=1)))))
                unlocked = [scheme.verify(records[i], rec[i]) is not None for i in attack_idx]
                report.rows.append(attack_row(sid, pset, "algebraic", "unlock", unlocked, 1))

            # dictionary attacks through the scheme's own verification
            victims = [records[i] for i in attack_idx]
            for attack, guesses in (("dictionary", dictionary), ("dictionary-kmeans", centroids)):
                bar = tqdm(total=len(victims), desc=f"{attack} {pset}", disable=not progress, mininterval=2.0)
                result = dictionary_attack(scheme, victims, guesses, progress=bar)
                bar.close()
                first = result.first_success
                report.rows.append(attack_row(sid, pset, attack, "unlock", first >= 0, len(guesses),
                                        guesses_per_s=round(result.guesses_per_second, 1)))
                budgets = np.arange(1, len(guesses) + 1)
                report.curves[f"{attack} {pset}"] = P.first_success_curve(first, budgets).tolist()
                report.costs.append({"scheme": sid, "parameter_set": pset, "attack": attack,
                                     "guesses_per_s": result.guesses_per_second,
                                     "s_per_guess": 1.0 / result.guesses_per_second,
                                     "verifications": result.guesses_tried, "seconds": result.seconds,
                                     "note": "records made with the evaluation Argon2id cost" if kind == "l2fe-hash" else ""})

            if kind == "l2fe-hash":
                lattice = _lattice_rows(report, scheme, name, records, attack_idx, split, mean_face, centroids, tau, cfg,
                                        progress, projection)
                # ours: the lattice attack's recovered embedding, drawn as a face
                images.add(sid, pset, "plain", lattice[: len(image_idx)], "ours: lattice attack, then the generator",
                           attack="lattice-image")
        if cfg.hardened_victims:
            from latticelock.tools.forensics.hardened import hardened_rows

            hardened_rows(report, images, split, attack_idx[: cfg.hardened_victims], dictionary, mean_face, centroids, tau,
                          cfg, Path(tmp), projection, progress)
    report.threat_models = threat_models(report)
    report.runtime_s = time.perf_counter() - started
    return report


def _accuracy(scheme, records: list, split: P.Split, idx: np.ndarray) -> dict:
    """The scheme's own decisions on the attack victims (Table XII's columns): TPR with another image of
    the victim, FPR with another victim's other image (the next victim in order)."""
    genuine = [scheme.verify(records[i], split.other[i]) is not None for i in idx]
    impostor = [scheme.verify(records[i], split.other[j]) is not None for i, j in zip(idx, np.roll(idx, 1))]
    return {"scheme": scheme.scheme_id, "parameter_set": scheme.parameter_set, "tpr": float(np.mean(genuine)),
            "fpr": float(np.mean(impostor)), "genuine_pairs": len(genuine), "impostor_pairs": len(impostor)}


class _ImageRows:
    """Collects the image-space rows and the face grids as the report's attacks produce embeddings."""

    def __init__(self, report: Report, attack, split: P.Split, idx: np.ndarray, tau: float, cfg: ReportConfig,
                 dataset: Path | None, faces) -> None:
        self.report, self.attack, self.split, self.idx, self.tau = report, attack, split, idx, tau
        self.sample = idx[: cfg.grid_victims]
        self.photos = None
        if attack is None:
            return
        report.generator = {k: v for k, v in attack.generator.manifest.items() if k != "training"}
        report.generator["training"] = {k: v for k, v in attack.generator.manifest["training"].items() if k != "identities"}
        report.generator["training"]["identity_count"] = len(attack.generator.identities)
        report.generator["description"] = attack.generator.describe()
        seen = attack.generator.identities & set(split.victim_labels.tolist())
        if seen:
            raise ToolsError(f"the face generator was trained on {len(seen)} victim identities (e.g. {sorted(seen)[0]!r}): "
                             "rebuild it on this split's public identities")
        if dataset is not None:
            from latticelock.tools.forensics.crops import photos

            size = attack.generator.manifest["size"]
            self.photos = photos(dataset, [str(f) for f in split.enrolled_files[self.sample]], faces.config, size)

    def add(self, scheme: str, pset: str, mode: str, recovered: np.ndarray, how: str, attack: str | None = None,
            **extra) -> None:
        """Draw and score `recovered`: one embedding per image victim, or per the first of them."""
        if self.attack is None:
            return
        from latticelock.tools.forensics import pipe_image

        idx = self.idx[: len(recovered)]
        result = self.attack.reconstruct(normalise(recovered), self.split.enrolled[idx], self.split.other[idx])
        row = pipe_image.row(scheme, pset, mode, result, self.tau, self.attack.generator.manifest["architecture"], how=how,
                             **extra)
        if attack is not None:
            row["attack"] = attack
        self.report.image_rows.append(row)
        n = min(len(self.sample), len(idx))
        self.report.grids[f"{row['attack']} {pset} {mode}"] = {
            "victims": [str(v) for v in self.split.victim_labels[self.sample[:n]]],
            "photos": (self.photos or [None] * len(self.sample))[:n],
            "reconstructions": list(result.images[:n]),
            "distances": result.to_enrolled[:n].tolist(),
            "tau": self.tau,
        }


def threat_models(report: Report) -> list[dict]:
    """What each threat model yields, per scheme measured: the face (best ASR of any attack on the enrolled
    image, image space where measured) and the key (best unlock rate). A row belongs to the threat model
    it names (`threat_model`, default "flash only": the rows of the plain schemes); rows the attack could
    not run on (`not_applicable`) are listed instead of scored. `why` is the best row's own, else the
    scheme family's."""
    from latticelock.kernels.families import family as scheme_family
    from latticelock.tools.forensics.chip import FLASH_ONLY

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in report.rows + report.image_rows:
        if r["scheme"] != "any":
            groups.setdefault((r["scheme"], r.get("threat_model", FLASH_ONLY)), []).append(r)
    out = []
    for (scheme, threat), rows in groups.items():
        measured = [r for r in rows if not r.get("not_applicable")]
        # image rows have no test set: their `asr` is against the enrolled image
        best_face = max((r for r in measured if r.get("test_set", "enrolled") == "enrolled"), key=lambda r: r["asr"], default=None)
        best_key = max((r for r in measured if r.get("test_set") == "unlock"), key=lambda r: r["asr"], default=None)
        refused = sorted({r["attack"] for r in rows if r.get("not_applicable")})
        key_by = _by(best_key) or (f"not applicable ({', '.join(refused)})" if refused else None)
        why = next((r["why"] for r in (best_key, best_face) if r is not None and r.get("why")), scheme_family(scheme).why)
        out.append({"family": scheme_family(scheme).title, "scheme": scheme, "threat_model": threat,
                    "face_asr": best_face["asr"] if best_face else None, "face_by": _by(best_face),
                    "key_asr": best_key["asr"] if best_key else None, "key_by": key_by, "why": why})
    return out


def _by(row: dict | None) -> str | None:
    return f"{row['attack']} ({row['parameter_set']})" if row else None


def _lattice_rows(report, scheme, name, records, attack_idx, split, mean_face, centroids, tau, cfg, progress,
                  projection) -> np.ndarray:
    """The lattice attack's rows and costs; returns its recovered embeddings, one per attack victim."""
    from tqdm import tqdm

    from latticelock.kernels.hazmat.rep import preprocess
    from latticelock.tools.forensics.lattice_attack import embedding_of, lattice_attack

    p = scheme.params
    proj = scheme.projection
    centres = np.concatenate([mean_face[None, :], centroids])
    centres_e = preprocess(p, proj, centres)
    radius = cfg.lattice_radius * p.radius
    truth = preprocess(p, proj, split.enrolled[attack_idx])
    evaluations, exact, recovered = [], [], []
    start = time.perf_counter()
    bar = tqdm(total=len(attack_idx), desc=f"lattice {p.name}", disable=not progress, mininterval=2.0)
    for j, i in enumerate(attack_idx):
        hit = lattice_attack(scheme, records[i], centres_e, radius, cfg.lattice_budget, cfg.lattice_bkz, scheme.label)
        evaluations.append(hit.evaluations if hit.s is not None else -1)
        exact.append(hit.e is not None and np.array_equal(np.mod(hit.e, p.q), np.mod(truth[j], p.q)))
        recovered.append(embedding_of(hit.e if hit.e is not None else centres_e[0], p, proj))
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    evaluations = np.array(evaluations)
    found = evaluations >= 0
    spent = int(np.sum(np.where(found, evaluations, cfg.lattice_budget)))
    kdf_s = _timed_kdf(name)
    extra = {"radius_x_decoding_radius": cfg.lattice_radius, "centres": len(centres),
             "bkz": cfg.lattice_bkz or p.bkz_block, "kdf_evaluations": spent, "wall_s": round(seconds, 2),
             "median_evaluations_when_found": float(np.median(evaluations[found])) if found.any() else None,
             "exact_e_recovered": float(np.mean(exact)), "device_kdf_s": round(kdf_s, 4),
             "device_kdf_total_s": round(spent * kdf_s, 1)}
    report.rows.append(attack_row(scheme.scheme_id, p.name, "lattice", "unlock", found, cfg.lattice_budget, **extra))
    rec = normalise(np.stack(recovered))
    for test_set, targets in (("enrolled", split.enrolled[attack_idx]), ("other-image", split.other[attack_idx])):
        report.rows.append(attack_row(scheme.scheme_id, p.name, "lattice", test_set, P.success(rec, targets, tau), cfg.lattice_budget))
    report.curves[f"lattice {p.name}"] = P.first_success_curve(np.where(found, evaluations - 1, -1),
                                                               np.arange(1, cfg.lattice_budget + 1)).tolist()
    report.costs.append({"scheme": scheme.scheme_id, "parameter_set": p.name, "attack": "lattice",
                         "guesses_per_s": spent / seconds if seconds else None,
                         "s_per_guess": seconds / spent if spent else None, "verifications": spent, "seconds": seconds,
                         "note": f"evaluation-cost records; one device-cost Argon2id takes {kdf_s:.3f} s"})
    if cfg.device_kdf_victims:
        _device_cost_sample(report, name, split, centres_e, radius, attack_idx[: cfg.device_kdf_victims], cfg, projection)
    return rec


def _device_cost_sample(report, name, split, centres_e, radius, victims, cfg, projection) -> None:
    """A few victims enrolled with the device's real Argon2id cost and attacked end to end."""
    from latticelock.tools.forensics.lattice_attack import lattice_attack

    scheme = make_scheme(name, cfg.backend, device_kdf=True, projection=projection)
    for i in victims:
        record = scheme.enroll(split.enrolled[i])
        start = time.perf_counter()
        hit = lattice_attack(scheme, record, centres_e, radius, cfg.lattice_budget, cfg.lattice_bkz, scheme.label)
        report.costs.append({"scheme": scheme.scheme_id, "parameter_set": scheme.parameter_set,
                             "attack": "lattice (device Argon2id cost)", "victim": str(split.victim_labels[i]),
                             "recovered": hit.s is not None, "verifications": hit.evaluations,
                             "seconds": time.perf_counter() - start,
                             "kdf": scheme.kdf.describe()})




def write_json(report: Report, path: Path) -> None:
    """The report as JSON, atomically (`flags.write_json`); numpy scalars become plain numbers first."""
    from latticelock.tools.flags import write_json as write

    write(path, json.loads(json.dumps(report.to_json(), default=float)))


def provenance(command: str) -> dict:
    """The command and the versions and hardware behind a report (shown on its HTML page)."""
    import importlib.metadata
    import os
    import platform

    versions = {"python": platform.python_version()}
    for package in ("latticelock", "numpy", "onnxruntime", "opencv-python-headless", "fpylll", "torch", "ray"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"commands": [command], "versions": versions,
            "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}"}
