"""`latticelock eval schemes` and `latticelock eval projection`: the protection schemes on real faces.

`projection` fits the PCA shipped with the L2FE-Hash sets on LFW identities that lfw_pairs.txt never
names, and calibrates every threshold on those public identities (never on the evaluated pairs).
`schemes` enrols the first image of each LFW View 2 pair and verifies the second, for real, with every
scheme: TPR over the same-person pairs, FPR over the different-person pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from latticelock.tools import flags
from latticelock.tools.embeddings import EmbeddingsFile, load_embeddings
from latticelock.tools.pairs import PairRows, pair_rows, read_pairs

FPR_TARGET = 0.01
FPR_LOW = 1e-3
PROJECTION_DIMS = 64
IMPOSTOR_SAMPLE = 200_000


def limit_pairs(pairs: PairRows, limit: int | None) -> PairRows:
    """An evenly spread subset of `limit` pairs, as many same-person as different-person ones."""
    if not limit or limit >= len(pairs.first):
        return pairs
    keep = []
    for flag in (True, False):
        rows = np.flatnonzero(pairs.same == flag)
        keep.append(rows[np.linspace(0, len(rows) - 1, max(1, limit // 2)).astype(int)])
    keep = np.sort(np.concatenate(keep))
    return PairRows(pairs.first[keep], pairs.second[keep], pairs.same[keep], pairs.names, pairs.missing)


# ---------------------------------------------------------------- calibration on public identities

def public_rows(data: EmbeddingsFile, pairs_names: frozenset[str]) -> np.ndarray:
    return np.flatnonzero(~np.isin(data.labels, sorted(pairs_names)))


def public_pairs(labels: np.ndarray, rng: np.random.Generator, impostors: int = IMPOSTOR_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """(genuine [g,2], impostor [k,2]) index pairs among public images: every same-identity pair, and a
    random sample of different-identity pairs."""
    genuine = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        genuine += [(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :]]
    a = rng.integers(0, len(labels), impostors)
    b = rng.integers(0, len(labels), impostors)
    keep = labels[a] != labels[b]
    return np.array(genuine, dtype=int).reshape(-1, 2), np.stack([a[keep], b[keep]], axis=1)


def threshold_at_fpr(impostor_distances: np.ndarray, fpr: float) -> float:
    """Largest distance threshold whose false-accept rate on these impostor distances is at most fpr."""
    d = np.sort(np.asarray(impostor_distances))
    allowed = int(np.floor(fpr * len(d)))
    return float(d[allowed] - 1e-9) if allowed < len(d) else float(d[-1])


def facial_fe_accepts(scale: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from latticelock.kernels.hazmat.e8 import decode_blocks

    w = decode_blocks(scale * x)
    return np.all(decode_blocks(scale * y - (scale * x - w)) == w, axis=1)


def cross_fitted_thresholds(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, folds: int = 2) -> dict:
    """Projected-space thresholds measured on faces the PCA has not seen: split the public identities
    into folds, fit the PCA without a fold, measure that fold's impostor distances, average over folds."""
    from latticelock.kernels.projection import fit_projection

    identities = np.unique(labels)
    fold_of = dict(zip(identities, rng.permutation(len(identities)) % folds))
    fold = np.array([fold_of[label] for label in labels])
    thresholds: dict[str, dict[str, list[float]]] = {str(m): {str(FPR_TARGET): [], str(FPR_LOW): []} for m in (32, 48, 64)}
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        pca = fit_projection(x[fold != k], PROJECTION_DIMS, {})
        _, impostor = public_pairs(labels[held], rng)
        for m in (32, 48, 64):
            p = pca.project(x[held], m)
            d = np.linalg.norm(p[impostor[:, 0]] - p[impostor[:, 1]], axis=1)
            for f in (FPR_TARGET, FPR_LOW):
                thresholds[str(m)][str(f)].append(threshold_at_fpr(d, f))
    return {m: {f: float(np.mean(v)) for f, v in by_fpr.items()} for m, by_fpr in thresholds.items()}


def calibrate(data: EmbeddingsFile, public: np.ndarray, projection, fnr_target: float, seed: int = 0) -> dict:
    """Every threshold, from public identities only."""
    from latticelock.kernels.mrp import K

    rng = np.random.default_rng(seed)
    x = data.embeddings[public].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    genuine, impostor = public_pairs(data.labels[public], rng)
    out: dict = {"public_images": int(len(public)), "public_identities": int(len(np.unique(data.labels[public]))),
                 "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor))}
    full = np.linalg.norm(x[impostor[:, 0]] - x[impostor[:, 1]], axis=1)
    out["unprotected"] = {str(f): threshold_at_fpr(full, f) for f in (FPR_TARGET, FPR_LOW)}
    sample = impostor[:20_000]
    mrp = np.empty(len(sample))
    for i, (a, b) in enumerate(sample):
        R = rng.standard_normal((K, 512))
        mrp[i] = np.linalg.norm(R @ (x[a] - x[b])) / np.sqrt(K)
    out["mrp"] = {str(FPR_TARGET): threshold_at_fpr(mrp, FPR_TARGET)}
    out["projected"] = cross_fitted_thresholds(x, data.labels[public], rng)
    # For reference: the same thresholds measured on the images the shipped PCA was fitted on, which
    # are biased high (a PCA spreads its own training faces apart more than new faces).
    out["projected_in_sample"] = {}
    for m in (32, 48, 64):
        p = projection.project(x, m)
        d = np.linalg.norm(p[impostor[:, 0]] - p[impostor[:, 1]], axis=1)
        out["projected_in_sample"][str(m)] = {str(f): threshold_at_fpr(d, f) for f in (FPR_TARGET, FPR_LOW)}
    scales = np.round(np.arange(0.5, 12.01, 0.1), 2)
    fnr = [1.0 - float(facial_fe_accepts(s, x[genuine[:, 0]], x[genuine[:, 1]]).mean()) for s in scales]
    ok = [s for s, f in zip(scales, fnr) if f <= fnr_target]
    out["facial_fe"] = {"fnr_target": fnr_target, "scale": float(max(ok)) if ok else float(scales[0]),
                        "fnr_by_scale": {str(s): f for s, f in zip(scales, fnr)}}
    return out


# ---------------------------------------------------------------- evaluation

def prepare(scheme, record, basis_cache: Path) -> None:
    """`scheme.prepare(record)` with the record's basis reduced into `basis_cache`, a folder of the caller's.

    The scheme's own lookups of that basis (prepare, verify, the mean-face attack) then find it in the
    lattice module's memory, so the user's cache is neither read nor written as long as they follow at once.
    """
    from latticelock.kernels.hazmat.lattice import reduced_basis_for

    p = scheme.params
    reduced_basis_for(record["seed"], p.m, p.n, p.q, p.bkz_block, cache=basis_cache)
    scheme.prepare(record)


def _roc_tpr_at(genuine: np.ndarray, impostor: np.ndarray, fpr: float) -> float:
    """TPR of the distance score at the largest threshold whose FPR on these impostors is <= fpr."""
    t = threshold_at_fpr(impostor, fpr)
    return float(np.mean(genuine <= t))


def _row(name: str, parameter_set: str, accepted: np.ndarray, same: np.ndarray, **extra) -> dict:
    return {"name": name, "parameter_set": parameter_set,
            "tpr": float(accepted[same].mean()), "fpr": float(accepted[~same].mean()),
            "genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()), **extra}


def evaluate(data: EmbeddingsFile, pairs: PairRows, sets: list[str], decoders: list[str], fast_kdf: bool,
             seed_pool: int, backend: str, security_sample: int, progress: bool = True) -> dict:
    from tqdm import tqdm

    from latticelock.kernels.hazmat import security
    from latticelock.kernels.kdf import EVALUATION_COST
    from latticelock.kernels.hazmat.rep import COIN_BYTES, SEED_BYTES, derive, preprocess
    from latticelock.kernels.l2fe import L2FEScheme
    from latticelock.kernels.params import get_parameter_set
    from latticelock.kernels.scheme import get_scheme

    x1 = data.embeddings[pairs.first].astype(np.float64)
    x2 = data.embeddings[pairs.second].astype(np.float64)
    x1 /= np.linalg.norm(x1, axis=1, keepdims=True)
    x2 /= np.linalg.norm(x2, axis=1, keepdims=True)
    same = pairs.same
    rows: list[dict] = []
    k = len(same)

    distance = np.linalg.norm(x1 - x2, axis=1)
    roc = lambda d, f: _roc_tpr_at(d[same], d[~same], f)  # noqa: E731

    def run(name: str, scheme, note: str = "") -> np.ndarray:
        accepted = np.zeros(k, dtype=bool)
        t0 = time.perf_counter()
        for i in tqdm(range(k), desc=name, disable=not progress, leave=False):
            accepted[i] = scheme.verify(scheme.enroll(x1[i]), x2[i]) is not None
        rows.append(_row(name, scheme.parameter_set, accepted, same, seconds_per_pair=(time.perf_counter() - t0) / k, note=note))
        return accepted

    run("unprotected", get_scheme("unprotected"))
    rows[-1]["tpr_at_fpr_1e-3"] = roc(distance, FPR_LOW)
    rows[-1]["roc_tpr_at_fpr_1e-2"] = roc(distance, FPR_TARGET)
    rows[-1]["roc_note"] = "TPR@1e-3: ROC of the L2 distance on the evaluated pairs"
    mrp_scheme = get_scheme("mrp")
    mrp_distance = np.zeros(k)
    mrp_accepted = np.zeros(k, dtype=bool)
    t0 = time.perf_counter()
    for i in tqdm(range(k), desc="mrp", disable=not progress, leave=False):
        record = mrp_scheme.enroll(x1[i])
        mrp_accepted[i] = mrp_scheme.verify(record, x2[i]) is not None
        R, v = record["R"].astype(np.float64), record["v"].astype(np.float64)
        mrp_distance[i] = np.linalg.norm(R @ x2[i] / np.sqrt(R.shape[0]) - v)
    rows.append(_row("mrp", mrp_scheme.parameter_set, mrp_accepted, same,
                     seconds_per_pair=(time.perf_counter() - t0) / k, note="",
                     **{"tpr_at_fpr_1e-3": roc(mrp_distance, FPR_LOW)}))
    fe_scheme = get_scheme("facial-fe")
    run("facial-fe", fe_scheme, note=f"scale {fe_scheme.scale}")

    kdf = EVALUATION_COST if fast_kdf else None
    kdf_note = f"KDF lowered to {EVALUATION_COST.describe()} for speed" if fast_kdf else ""
    # Each parameter set's enrolments reduce their bases into one temporary folder, deleted afterwards (it
    # is public data, but thousands of evaluation bases should not pile up in the user's cache); every
    # use of a record's basis follows its enrolment at once (see `prepare`).
    security_rows = []
    with tempfile.TemporaryDirectory(prefix="latticelock-eval-") as cache:
        for set_name in sets:
            params = get_parameter_set(set_name)
            base = L2FEScheme(set_name, kdf=kdf, backend=backend)
            projection = base.projection
            e1 = preprocess(params, projection, x1)
            e2 = preprocess(params, projection, x2)
            scaled = np.linalg.norm(e1 - e2, axis=1)
            # ROC points: the radius whose FPR on the evaluated pairs is 1e-2 / 1e-3 (never above the set's).
            roc_radius = {f"cvp@{label}": min(threshold_at_fpr(scaled[~same], f), params.radius)
                          for label, f in (("1e-2", FPR_TARGET), ("1e-3", FPR_LOW))}
            verifiers = {d: L2FEScheme(set_name, kdf=kdf, backend=backend, decoder=d) for d in decoders}
            if "cvp" in decoders:
                for label, radius in roc_radius.items():
                    verifiers[label] = L2FEScheme(set_name, kdf=kdf, backend=backend, decoder="cvp", radius=radius)
            pool = [os.urandom(SEED_BYTES) for _ in range(seed_pool)]
            accepted = {d: np.zeros(k, dtype=bool) for d in verifiers}
            seconds = {d: 0.0 for d in verifiers}
            enrol_seconds = 0.0
            attacker = verifiers.get("cvp") or base
            hits = []
            for i in tqdm(range(k), desc=set_name, disable=not progress, leave=False):
                t0 = time.perf_counter()
                if pool:
                    record = base.enroll_derand(x1[i], pool[i % len(pool)] + os.urandom(COIN_BYTES - SEED_BYTES))
                else:
                    record = base.enroll(x1[i])
                prepare(base, record, Path(cache))
                enrol_seconds += time.perf_counter() - t0
                for d, scheme in verifiers.items():
                    t0 = time.perf_counter()
                    accepted[d][i] = scheme.verify(record, x2[i]) is not None
                    seconds[d] += time.perf_counter() - t0
                if i < security_sample:  # the mean-face attack on the first records
                    hits.append(bool(security.nearest_is_secret(attacker, [record])[0]))
            notes = [n for n in (kdf_note, f"public seeds drawn from a pool of {seed_pool}" if pool else "") if n]
            roc_note = "radius at this FPR of the evaluated pairs (ROC point)"
            unprotected_projected = lambda f: _roc_tpr_at(scaled[same], scaled[~same], f)  # noqa: E731
            for d, acc in accepted.items():
                row = _row(f"l2fe-hash/{d}", set_name, acc, same, decoder=d.split("@")[0],
                           radius=roc_radius.get(d, params.radius),
                           enrol_seconds_per_pair=enrol_seconds / k, verify_seconds_per_pair=seconds[d] / k,
                           note="; ".join(([roc_note] if d in roc_radius else []) + notes))
                fpr = row["fpr"]
                row["unprotected_roc_tpr_at_same_fpr"] = roc(distance, fpr)
                row["gap_to_unprotected_roc"] = row["unprotected_roc_tpr_at_same_fpr"] - row["tpr"]
                row["projected_roc_tpr_at_same_fpr"] = unprotected_projected(fpr)
                rows.append(row)
            # Security: spread of e and the mean-face attack, on the evaluated (victim) faces.
            victims = np.unique(np.concatenate([pairs.first, pairs.second]))
            xv = data.embeddings[victims].astype(np.float64)
            ev = preprocess(params, projection, xv)
            sigma = float(np.sqrt(np.mean(ev.astype(np.float64) ** 2)))
            usvp = security.primal_usvp(params.n, params.m, params.q, sigma)
            counts = security.mean_face_counts(params, ev)
            hits = np.array(hits, dtype=bool)
            t0 = time.perf_counter()
            derive(np.zeros(params.n, dtype=np.int64), b"\0" * 16, params.kdf)
            kdf_seconds = time.perf_counter() - t0
            security_rows.append({
                "parameter_set": set_name, "m": params.m, "n": params.n, "q": params.q,
                "scale": params.scale, "radius": params.radius, "lambda1_gh": params.lambda1,
                "sigma_e": sigma, "e_norm": security.summarise(np.linalg.norm(ev, axis=1)),
                "usvp_beta": usvp.beta, "usvp_samples": usvp.samples, "usvp_log2_cost": usvp.log2_cost,
                "mean_face_log2_candidates": security.summarise(counts),
                "mean_face_first_guess_recovers": float(hits.mean()) if len(hits) else None,
                "mean_face_unlocks": security.mean_face_acceptance(params, projection, xv),
                "mean_face_records_tested": int(len(hits)),
                "kdf": params.kdf.describe(), "kdf_seconds_per_test": kdf_seconds,
                "mean_face_seconds_median": float(np.exp2(np.median(counts)) * kdf_seconds),
            })
    victims = np.unique(np.concatenate([pairs.first, pairs.second]))
    xv = data.embeddings[victims].astype(np.float64)
    xv /= np.linalg.norm(xv, axis=1, keepdims=True)
    from latticelock.kernels.params import PROJECTION
    from latticelock.kernels.projection import load_projection

    public_mean = load_projection(PROJECTION).mean.astype(np.float64)
    mean_unit = public_mean / np.linalg.norm(public_mean)
    unprotected_mean_face = float(np.mean(np.linalg.norm(xv - mean_unit, axis=1) <= get_scheme("unprotected").threshold))
    return {"pairs": int(k), "pairs_missing_embeddings": pairs.missing, "fast_kdf": fast_kdf,
            "unprotected_mean_face_unlocks": unprotected_mean_face,
            "seed_pool": seed_pool, "embeddings": str(data.path), "embeddings_sha256": data.sha256,
            "schemes": rows, "security": security_rows}


# ---------------------------------------------------------------- command line

def _fmt(v, spec=".4f") -> str:
    return "-" if v is None else format(v, spec)


def print_schemes(result: dict) -> None:
    print(f"LFW View 2: {result['pairs']} pairs evaluated ({result['pairs_missing_embeddings']} dropped: no embedding)")
    header = f"{'scheme':<20} {'parameter set':<24} {'TPR':>7} {'FPR':>7} {'TPR@1e-3':>9} {'unprot@FPR':>10} {'gap':>7}  note"
    print(header)
    print("-" * len(header))
    for r in result["schemes"]:
        print(f"{r['name']:<20} {r['parameter_set']:<24} {r['tpr']:>7.4f} {r['fpr']:>7.4f} "
              f"{_fmt(r.get('tpr_at_fpr_1e-3')):>9} {_fmt(r.get('unprotected_roc_tpr_at_same_fpr')):>10} "
              f"{_fmt(r.get('gap_to_unprotected_roc')):>7}  {r.get('note', '')}")
    print(f"the normalised public mean face unlocks {result['unprotected_mean_face_unlocks']:.3f} of the evaluated faces "
          f"through the unprotected threshold")
    if result["security"]:
        print()
        print(f"{'parameter set':<18} {'sigma_e':>8} {'uSVP beta':>9} {'log2 cost':>9} {'log2 cand. p10/med/p90':>24} "
              f"{'1st guess':>9} {'mean face':>9} {'KDF s':>7}")
        for s in result["security"]:
            c = s["mean_face_log2_candidates"]
            print(f"{s['parameter_set']:<18} {s['sigma_e']:>8.1f} {_fmt(s['usvp_beta'], 'd'):>9} {_fmt(s['usvp_log2_cost'], '.1f'):>9} "
                  f"{c['p10']:>7.1f}/{c['median']:>6.1f}/{c['p90']:>7.1f} {_fmt(s['mean_face_first_guess_recovers'], '.3f'):>9} "
                  f"{s['mean_face_unlocks']:>9.3f} {s['kdf_seconds_per_test']:>7.3f}")


def cmd_schemes(args: argparse.Namespace) -> int:
    flags.check_json_target(args.json)
    data = load_embeddings(args.embeddings)
    pairs = limit_pairs(pair_rows(read_pairs(args.pairs), data), args.limit_pairs)
    if args.fast_kdf:
        print("note: Argon2id cost lowered for evaluation speed (--fast-kdf); accept/reject decisions do not depend on it")
    result = evaluate(data, pairs, args.sets, args.decoders, args.fast_kdf, args.seed_pool, args.decoder_backend,
                      args.security_sample, progress=not args.no_progress)
    print_schemes(result)
    flags.write_json(args.json, result)
    return 0


def cmd_projection(args: argparse.Namespace) -> int:
    from latticelock.kernels.projection import PROJECTIONS_DIR, fit_projection, save_projection

    flags.check_json_target(args.json)
    data = load_embeddings(args.embeddings)
    pairs = pair_rows(read_pairs(args.pairs), data)
    public = public_rows(data, pairs.names)
    provenance = {
        "source": str(args.embeddings), "source_sha256": data.sha256, "images": int(len(public)),
        "identities": int(len(np.unique(data.labels[public]))),
        "excluded": f"every identity named in {args.pairs.name}",
        "command": "latticelock eval projection --embeddings LFW.npz --pairs lfw_pairs.txt",
    }
    if data.config:
        # As `eval embed` stored it: its options as sorted-key JSON.
        provenance["embedding_config"] = json.dumps(data.config, sort_keys=True)
    projection = fit_projection(data.embeddings[public], PROJECTION_DIMS, provenance)
    out = args.out or PROJECTIONS_DIR / f"{args.name}.npz"
    save_projection(projection, out)
    calibration = calibrate(data, public, projection, args.fnr_target)
    print(f"projection: {out} ({len(public)} public images, {provenance['identities']} identities, source sha256 {data.sha256[:16]}...)")
    print(f"public pairs: {calibration['genuine_pairs']} genuine, {calibration['impostor_pairs']} impostor")
    print(f"unprotected L2 threshold: FPR 1e-2 {calibration['unprotected']['0.01']:.4f}, FPR 1e-3 {calibration['unprotected']['0.001']:.4f}")
    print(f"mrp L2 threshold:         FPR 1e-2 {calibration['mrp']['0.01']:.4f}")
    for m, t in calibration["projected"].items():
        inside = calibration["projected_in_sample"][m]
        print(f"projected m={m:<3} threshold: FPR 1e-2 {t['0.01']:.4f}, FPR 1e-3 {t['0.001']:.4f} (cross-fitted; "
              f"on the PCA's own images {inside['0.01']:.4f} / {inside['0.001']:.4f})")
    fe = calibration["facial_fe"]
    print(f"facial-fe scale for FNR <= {fe['fnr_target']}: {fe['scale']} (public FNR {fe['fnr_by_scale'][str(fe['scale'])]:.3f})")
    flags.write_json(args.json, {"projection": str(out), "provenance": projection.provenance, "calibration": calibration})
    return 0


def register(commands) -> None:
    p = commands.add_parser("schemes", help="TPR/FPR of every protection scheme on the LFW pairs, and security figures")
    flags.embeddings(p)
    flags.pairs(p)
    flags.json_output(p, "the results")
    p.add_argument("--limit-pairs", type=int, help="evaluate an evenly spread subset of N pairs")
    flags.parameter_sets(p)
    p.add_argument("--decoders", nargs="+", default=["cvp", "babai", "babai-raw"], choices=["cvp", "babai", "babai-raw"])
    p.add_argument("--fast-kdf", action="store_true", help="lower the Argon2id cost (decisions do not depend on it)")
    p.add_argument("--seed-pool", type=int, default=0,
                   help="draw each record's public seed from a pool of N (saves BKZ time; 0: a fresh seed per record)")
    flags.decoder_backend(p)
    p.add_argument("--security-sample", type=int, default=100, help="records tested with the mean-face attack per set")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_schemes)

    p = commands.add_parser("projection", help="fit the shipped PCA on public LFW identities and calibrate thresholds")
    flags.embeddings(p)
    flags.pairs(p, "LFW pairs file: its identities are excluded from the fit")
    p.add_argument("--name", default="lfw-public-pca64", help="projection name (kernels/projections/NAME.npz)")
    p.add_argument("--out", type=Path, help="write the projection here instead")
    p.add_argument("--fnr-target", type=float, default=0.10, help="facial-fe false-negative-rate target")
    flags.json_output(p, "the provenance and calibration")
    p.set_defaults(func=cmd_projection)
