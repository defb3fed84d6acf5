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
  candidate tested against the stored verifier.

Test sets: "enrolled" (the attack's embedding within tau of the image the victim enrolled with),
"other-image" (within tau of a different image of the victim: what a face-recognition system that
never saw the enrolment photo would accept), "unlock" (the scheme's own verification releases the key).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics import protocol as P
from latticelock.tools.forensics.dictionary import dictionary_attack, kmeans_centroids
from latticelock.tools.forensics.pipe import algebraic, family, surrogates, train_pipe
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
    notes: list[str] = field(default_factory=list)
    runtime_s: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def _row(scheme: str, parameter_set: str, attack: str, test_set: str, hits: np.ndarray, guesses: int, **extra) -> dict:
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
    from latticelock.kernels.params import get_parameter_set

    p = get_parameter_set(scheme_name)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        derive(np.zeros(p.n, dtype=np.int64), bytes(16), p.kdf)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_report(faces: P.FaceSet, config: ReportConfig, eligible: set[str] | None = None, workdir: Path | None = None,
               progress: bool = True, projection=None) -> Report:
    """Run every attack of `config` on `faces`; victims are drawn from `eligible` identities when given.
    Limits numpy's OpenBLAS to one thread (see `blas`): many small products, measured much faster."""
    import tempfile

    from latticelock.tools.forensics.blas import limit_blas_threads

    from tqdm import tqdm

    limit_blas_threads(1)

    started = time.perf_counter()
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    split = P.split_identities(faces, cfg.victim_fraction, cfg.max_victims, eligible, cfg.seed)
    thr = P.calibrate_tau(split.public, split.public_labels, cfg.target_fpr)
    tau = thr.tau
    V = len(split.enrolled)
    n_attack = min(cfg.attack_victims, V)
    attack_idx = np.sort(rng.choice(V, n_attack, replace=False))
    base_e = P.random_guess_baseline(split.public, split.enrolled, tau, cfg.guesses, cfg.repeats, cfg.seed + 1)
    base_o = P.random_guess_baseline(split.public, split.other, tau, cfg.guesses, cfg.repeats, cfg.seed + 1)
    report = Report(
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        data={"faces": int(len(faces.embeddings)), "identities": int(len(np.unique(faces.labels))),
              "public_faces": int(len(split.public)), "public_identities": int(len(np.unique(split.public_labels))),
              "victims": int(V), "attack_victims": int(n_attack),
              "victims_from": "identities of lfw_pairs.txt with 2+ images" if eligible is not None else "identities with 2+ images",
              "decoder_backend": _decoder_backend(cfg.backend)},
        threshold={**asdict(thr), "paper_tau": P.PAPER_TAU},
        baseline={"enrolled": {k: v for k, v in asdict(base_e).items() if k != "any_curve"},
                  "other-image": {k: v for k, v in asdict(base_o).items() if k != "any_curve"}},
    )
    report.curves["random-guess any (enrolled)"] = base_e.any_curve.tolist()
    for test_set, base in (("enrolled", base_e), ("other-image", base_o)):
        report.rows.append({"scheme": "any", "parameter_set": "-", "attack": "random-guess (per guess)", "test_set": test_set,
                            "asr": base.per_guess_mean, "asr_std": base.per_guess_std, "victims": V, "guesses": 1})
        report.rows.append({"scheme": "any", "parameter_set": "-", "attack": f"random-guess (any of {base.guesses})",
                            "test_set": test_set, "asr": base.any_mean, "asr_std": base.any_std, "victims": V,
                            "guesses": base.guesses})

    prior = FacePrior.fit(split.public)
    mean_face = P.normalise(prior.mean[None, :])[0]
    # the single guess every attacker starts from, and what an inverse that learns nothing outputs
    for test_set, targets in (("enrolled", split.enrolled), ("other-image", split.other)):
        hits = P.success(np.repeat(mean_face[None, :], V, axis=0), targets, tau)
        report.rows.append(_row("any", "-", "mean-face (1 guess)", test_set, hits, 1))
    centroids = kmeans_centroids(split.public, cfg.kmeans, cfg.seed)
    dictionary = split.public[rng.choice(len(split.public), min(cfg.guesses, len(split.public)), replace=False)]
    train = split.public[rng.choice(len(split.public), min(cfg.train_faces, len(split.public)), replace=False)]

    with tempfile.TemporaryDirectory(prefix="latticelock-report-", dir=workdir) as tmp:
        for name in cfg.schemes:
            scheme = make_scheme(name, cfg.backend, projection=projection)
            sid, pset = scheme.scheme_id, scheme.parameter_set
            kind = family(sid)
            store_dir = Path(tmp) / pset
            store_dir.mkdir()
            records = steal_records(scheme, split.enrolled, split.victim_labels, store_dir)

            # PIPE
            model = train_pipe(scheme, train, cfg.model, cfg.seed)
            predicted = model.predict(surrogates(scheme, records))
            extra = {"model": model.name, "train_faces": model.train_pairs, "train_s": round(model.train_seconds, 2)}
            for test_set, targets in (("enrolled", split.enrolled), ("other-image", split.other)):
                report.rows.append(_row(sid, pset, "pipe", test_set, P.success(predicted, targets, tau), 1, **extra))
            unlocked = [scheme.verify(records[i], predicted[i]) is not None for i in attack_idx]
            report.rows.append(_row(sid, pset, "pipe", "unlock", unlocked, 1, **extra))

            # algebraic
            recovered = [algebraic(scheme, r, prior) for r in records]
            if recovered[0] is not None:
                rec = P.normalise(np.stack(recovered))
                for test_set, targets in (("enrolled", split.enrolled), ("other-image", split.other)):
                    report.rows.append(_row(sid, pset, "algebraic", test_set, P.success(rec, targets, tau), 1,
                                            median_l2_to_enrolled=float(np.median(np.linalg.norm(rec - split.enrolled, axis=1)))))
                unlocked = [scheme.verify(records[i], rec[i]) is not None for i in attack_idx]
                report.rows.append(_row(sid, pset, "algebraic", "unlock", unlocked, 1))

            # dictionary attacks through the scheme's own verification
            victims = [records[i] for i in attack_idx]
            for attack, guesses in (("dictionary", dictionary), ("dictionary-kmeans", centroids)):
                bar = tqdm(total=len(victims), desc=f"{attack} {pset}", disable=not progress, mininterval=2.0)
                result = dictionary_attack(scheme, victims, guesses, progress=bar)
                bar.close()
                first = result.first_success
                report.rows.append(_row(sid, pset, attack, "unlock", first >= 0, len(guesses),
                                        guesses_per_s=round(result.guesses_per_second, 1)))
                budgets = np.arange(1, len(guesses) + 1)
                report.curves[f"{attack} {pset}"] = P.first_success_curve(first, budgets).tolist()
                report.costs.append({"scheme": sid, "parameter_set": pset, "attack": attack,
                                     "guesses_per_s": result.guesses_per_second,
                                     "s_per_guess": 1.0 / result.guesses_per_second,
                                     "verifications": result.guesses_tried, "seconds": result.seconds,
                                     "note": "records made with the evaluation Argon2id cost" if kind == "l2fe" else ""})

            if kind == "l2fe":
                _lattice_rows(report, scheme, name, records, attack_idx, split, mean_face, centroids, tau, cfg, progress, projection)
    report.runtime_s = time.perf_counter() - started
    return report


def _lattice_rows(report, scheme, name, records, attack_idx, split, mean_face, centroids, tau, cfg, progress, projection) -> None:
    from tqdm import tqdm

    from latticelock.kernels.hazmat.rep import preprocess
    from latticelock.tools.forensics.lattice_attack import lattice_attack

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
        hit = lattice_attack(scheme, records[i], centres_e, radius, cfg.lattice_budget, cfg.lattice_bkz)
        evaluations.append(hit.evaluations if hit.s is not None else -1)
        exact.append(hit.e is not None and np.array_equal(np.mod(hit.e, p.q), np.mod(truth[j], p.q)))
        # back to embedding space: x = mean + P^T (e / scale), on the sphere
        e = hit.e if hit.e is not None else centres_e[0]
        e = np.where(e > p.q // 2, e - p.q, e)
        recovered.append(proj.mean + (e / p.scale) @ proj.components[: p.m])
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
    report.rows.append(_row(scheme.scheme_id, p.name, "lattice", "unlock", found, cfg.lattice_budget, **extra))
    rec = P.normalise(np.stack(recovered))
    for test_set, targets in (("enrolled", split.enrolled[attack_idx]), ("other-image", split.other[attack_idx])):
        report.rows.append(_row(scheme.scheme_id, p.name, "lattice", test_set, P.success(rec, targets, tau), cfg.lattice_budget))
    report.curves[f"lattice {p.name}"] = P.first_success_curve(np.where(found, evaluations - 1, -1),
                                                               np.arange(1, cfg.lattice_budget + 1)).tolist()
    report.costs.append({"scheme": scheme.scheme_id, "parameter_set": p.name, "attack": "lattice",
                         "guesses_per_s": spent / seconds if seconds else None,
                         "s_per_guess": seconds / spent if spent else None, "verifications": spent, "seconds": seconds,
                         "note": f"evaluation-cost records; one device-cost Argon2id takes {kdf_s:.3f} s"})
    if cfg.device_kdf_victims:
        _device_cost_sample(report, name, split, centres_e, radius, attack_idx[: cfg.device_kdf_victims], cfg, projection)


def _device_cost_sample(report, name, split, centres_e, radius, victims, cfg, projection) -> None:
    """A few victims enrolled with the device's real Argon2id cost and attacked end to end."""
    from latticelock.tools.forensics.lattice_attack import lattice_attack

    scheme = make_scheme(name, cfg.backend, device_kdf=True, projection=projection)
    for i in victims:
        record = scheme.enroll(split.enrolled[i])
        start = time.perf_counter()
        hit = lattice_attack(scheme, record, centres_e, radius, cfg.lattice_budget, cfg.lattice_bkz)
        report.costs.append({"scheme": scheme.scheme_id, "parameter_set": scheme.parameter_set,
                             "attack": "lattice (device Argon2id cost)", "victim": str(split.victim_labels[i]),
                             "recovered": hit.s is not None, "verifications": hit.evaluations,
                             "seconds": time.perf_counter() - start,
                             "kdf": scheme.kdf.describe()})


# --- presentation ------------------------------------------------------------------------------------


def _pct(x) -> str:
    return "   -  " if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:5.1f}%"


def format_report(report: Report) -> str:
    t = report.threshold
    b = report.baseline
    lines = [
        f"data: {report.data}",
        f"tau = {t['tau']:.4f} (paper: {t['paper_tau']}): {t['how']}; public FPR {t['fpr']:.4f}, "
        f"public TPR {t['tpr']:.4f} on {t['genuine_pairs']} genuine pairs",
        "",
        "Table III-style: PIPE attack success rate (embedding-space inverse), with the random-guess baseline",
        f"{'scheme':<24} {'enrolled':>9} {'other-image':>12} {'unlock':>8}",
    ]
    by = {(r["parameter_set"], r["attack"], r["test_set"]): r for r in report.rows}
    psets = list(dict.fromkeys(r["parameter_set"] for r in report.rows if r["scheme"] != "any"))
    for ps in psets:
        cells = ["n/a" if by.get((ps, "pipe", ts), {}).get("not_applicable") else _pct(by.get((ps, "pipe", ts), {}).get("asr"))
                 for ts in ("enrolled", "other-image", "unlock")]
        lines.append(f"{ps:<24} {cells[0]:>9} {cells[1]:>12} {cells[2]:>8}")
    for ts in ("enrolled", "other-image"):
        lines.append(f"{'public mean face':<24} ({ts}) {_pct(by[('-', 'mean-face (1 guess)', ts)]['asr']).strip()}")
    for ts in ("enrolled", "other-image"):
        lines.append(f"{'random guess, per guess':<24} ({ts}) {100 * b[ts]['per_guess_mean']:.2f}% "
                     f"+- {100 * b[ts]['per_guess_std']:.2f}%; any of {b[ts]['guesses']}: "
                     f"{100 * b[ts]['any_mean']:.1f}% +- {100 * b[ts]['any_std']:.1f}% ({b[ts]['repeats']} repeats)")
    lines += ["", "Table IV-style: every attack (ASR by test set; guesses = per victim)",
              f"{'parameter set':<24} {'attack':<28} {'test set':<12} {'ASR':>7} {'guesses':>8} {'victims':>8}"]
    for r in report.rows:
        asr = "n/a" if r.get("not_applicable") else _pct(r["asr"])
        lines.append(f"{r['parameter_set']:<24} {r['attack']:<28} {r['test_set']:<12} {asr:>7} "
                     f"{r['guesses']:>8} {r['victims']:>8}")
    lines += ["", "Table X-style: cost per guess",
              f"{'parameter set':<24} {'attack':<32} {'guesses/s':>11} {'s/guess':>10} {'verif.':>8}  note"]
    for c in report.costs:
        gps = c.get("guesses_per_s")
        spg = c.get("s_per_guess")
        note = c.get("note", "")
        if "victim" in c:
            note = f"victim {c['victim']}: recovered={c['recovered']} in {c['seconds']:.1f} s, {c['kdf']}"
        gps_s = "-" if gps is None else f"{gps:.1f}"
        spg_s = "-" if spg is None else f"{spg:.2e}"
        lines.append(f"{c['parameter_set']:<24} {c['attack']:<32} {gps_s:>11} {spg_s:>10} {c['verifications']:>8}  {note}")
    lattice = [r for r in report.rows if r["attack"] == "lattice" and r["test_set"] == "unlock" and "kdf_evaluations" in r]
    for r in lattice:
        lines.append(f"lattice {r['parameter_set']}: {r['kdf_evaluations']} KDF evaluations in total for "
                     f"{r['victims']} victims, exact e recovered for {_pct(r['exact_e_recovered']).strip()}; at the device's "
                     f"Argon2id cost ({r['device_kdf_s']} s each) that is {r['device_kdf_total_s']} s")
    lines += [f"note: {n}" for n in report.notes]
    lines.append(f"runtime {report.runtime_s:.0f} s")
    return "\n".join(lines)


def write_plots(report: Report, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {}
    for label, curve in report.curves.items():
        if label.startswith("lattice"):
            continue
        attack, _, pset = label.partition(" ")
        if attack == "random-guess":
            style = {"color": "black", "linewidth": 2}
        else:
            colours.setdefault(pset, f"C{len(colours) % 10}")
            style = {"color": colours[pset], "linestyle": "--" if attack.endswith("kmeans") else "-"}
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label, **style)
    written.append(_save_plot(
        fig, ax, directory / "asr_vs_guesses.png", "guesses per victim", "attack success rate",
        "Dictionary attacks and random guessing (ASR against guesses)", legend_size=7,
    ))
    lattice = {k: v for k, v in report.curves.items() if k.startswith("lattice")}
    if lattice:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, curve in lattice.items():
            ax.step(np.arange(1, len(curve) + 1), curve, where="post", label=label)
        written.append(_save_plot(
            fig, ax, directory / "lattice_asr_vs_evaluations.png", "verifier (Argon2id) evaluations per victim",
            "attack success rate (key recovered)", "Lattice attack on L2FE-Hash records", legend_size=8,
        ))
    return written


def _save_plot(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend_size: int) -> Path:
    """Label a log-x ASR plot the same way for every figure, write it as PNG and free it."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=1, default=float) + "\n")
