"""`latticelock eval policy`: the device's unlock decision measured per attempt, not per frame.

A genuine attempt enrols a person from some of their images (the device's template: re-normalised
mean of the normalised embeddings, one Gen) and presents N frames drawn from their *other* images;
an impostor attempt presents N frames of one other person to that record. Each frame goes through
the real scheme (`verify_many`, exact CVP decoding), and each attempt through the device's own
`AttemptPolicy`, so the figures are those of the code that runs on the device. Rates come with
counts and 95% Wilson score intervals.

LFW frames are distinct photographs, less alike than the frames of one camera burst, so each frame
of an attempt is a fresh draw: the per-attempt rates measured here are those of independent frames.
Identities used to fit the parameter set's projection are left out (for LFW: only identities named
in lfw_pairs.txt are evaluated, the projection being fitted on the others). The KDF is replaced by a
cheap Argon2id for speed: no decision depends on its cost (the output says so).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latticelock.kernels.params import DEFAULT_SET
from latticelock.tools.errors import ToolsError
from latticelock.tools.forensics.protocol import pair_identities as pairs_identities

DEFAULT_POLICIES = ("1/1", "1/3", "2/3", "2/5", "3/5")
FRAME_INTERVAL_S = 0.1


def wilson_interval(errors: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound at 0 and at small counts)."""
    if trials == 0:
        return (0.0, 1.0)
    p = errors / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def parse_policy(text: str):
    from latticelock.device.policy import PolicyConfig

    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ToolsError(f"policy {text!r} must read K/N, e.g. 2/5") from None
    return PolicyConfig(k=k, n=n, window_s=max(1.0, (n + 1) * FRAME_INTERVAL_S))


@dataclass
class Embeddings:
    vectors: np.ndarray
    labels: np.ndarray
    name: str


def load_embeddings(path: Path, identities: set[str] | None = None) -> Embeddings:
    try:
        with np.load(path, allow_pickle=False) as data:
            vectors = np.asarray(data["embeddings"], dtype=np.float32)
            labels = np.asarray(data["labels"]).astype(str)
    except (OSError, KeyError, ValueError) as exc:
        raise ToolsError(f"{path}: not an embeddings file from `latticelock eval embed` ({exc})") from None
    if vectors.ndim != 2 or vectors.shape[1] != 512 or len(labels) != len(vectors):
        raise ToolsError(f"{path}: expected embeddings [N, 512] with N labels, got {vectors.shape} and {labels.shape}")
    if identities is not None:
        keep = np.isin(labels, sorted(identities))
        vectors, labels = vectors[keep], labels[keep]
    return Embeddings(vectors, labels, Path(path).name)


@dataclass
class PolicyResult:
    policy: str
    genuine_attempts: int
    false_rejects: int
    frr: float
    frr_ci: tuple[float, float]
    impostor_attempts: int
    false_accepts: int
    far: float
    far_ci: tuple[float, float]


@dataclass
class DatasetResult:
    dataset: str
    parameter_set: str
    people_enrolled: int
    genuine_frames: int
    genuine_frame_matches: int
    impostor_frames: int
    impostor_frame_matches: int
    policies: list[PolicyResult]


def run_attempt(policy_config, matched: list[bool]) -> bool:
    """Feed one attempt's frames (True: the frame reproduced the key) to the device policy."""
    from latticelock.device.policy import AttemptPolicy, Decision

    from latticelock.kernels.recipe import Candidate

    policy = AttemptPolicy(policy_config)
    for i, ok in enumerate(matched):
        ready = policy.observe(i * FRAME_INTERVAL_S, [Candidate("user", 0)] if ok else [])
        if ready is not None:
            return policy.accept(ready).decision is Decision.ACCEPT
        if policy.status().decision is not Decision.PENDING:
            return False
    return False


def draw(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    """`count` frames from `pool`: without replacement when it is large enough, else with."""
    return rng.choice(pool, size=count, replace=len(pool) < count)


def evaluate(
    data: Embeddings,
    scheme,
    policies: list,
    *,
    enrol_images: int = 3,
    genuine_attempts: int = 10,
    impostor_people: int = 10,
    max_people: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> DatasetResult:
    """Simulate genuine and impostor attempts; every frame decision comes from `scheme.verify_many`."""
    from tqdm import tqdm

    from latticelock.device.enrol import make_template

    for name, value in (("enrol_images", enrol_images), ("genuine_attempts", genuine_attempts), ("impostor_people", impostor_people)):
        if value < 1:
            raise ToolsError(f"{name} must be at least 1, got {value}")
    if max_people is not None and max_people < 1:
        raise ToolsError(f"max_people must be at least 1, got {max_people}")
    rng = np.random.default_rng(seed)
    names, inverse = np.unique(data.labels, return_inverse=True)
    if len(names) < 2:
        raise ToolsError(f"{data.name}: impostor attempts need at least two identities, found {len(names)}")
    members = [np.flatnonzero(inverse == i) for i in range(len(names))]
    enrollable = [i for i, m in enumerate(members) if len(m) > enrol_images]
    if not enrollable:
        raise ToolsError(f"{data.name}: no identity has more than {enrol_images} images")
    if max_people is not None and len(enrollable) > max_people:
        enrollable = sorted(rng.choice(enrollable, size=max_people, replace=False).tolist())
    n_max = max(p.n for p in policies)
    genuine: list[list[bool]] = []
    impostor: list[list[bool]] = []
    g_frames = g_hits = i_frames = i_hits = 0
    for person in tqdm(enrollable, desc=f"policy {data.name}", unit="person", disable=not progress):
        images = rng.permutation(members[person])
        enrol_idx, probe_idx = images[:enrol_images], images[enrol_images:]
        record = scheme.enroll(make_template(data.vectors[enrol_idx]))
        others = [i for i in range(len(names)) if i != person]
        impostors = rng.choice(others, size=min(impostor_people, len(others)), replace=False)
        attempts = [draw(rng, probe_idx, n_max) for _ in range(genuine_attempts)]
        imp_attempts = [draw(rng, members[other], n_max) for other in impostors]
        frames = np.unique(np.concatenate([probe_idx, *imp_attempts]))
        keys = scheme.verify_many(record, data.vectors[frames])
        matched = dict(zip(frames.tolist(), (k is not None for k in keys), strict=True))
        g_frames += len(probe_idx)
        g_hits += sum(matched[i] for i in probe_idx.tolist())
        for attempt in attempts:
            genuine.append([matched[i] for i in attempt.tolist()])
        for attempt in imp_attempts:
            impostor.append([matched[i] for i in attempt.tolist()])
            i_frames += len(np.unique(attempt))
            i_hits += sum(matched[i] for i in np.unique(attempt).tolist())
    results = []
    for config in policies:
        rejects = sum(not run_attempt(config, a[: config.n]) for a in genuine)
        accepts = sum(run_attempt(config, a[: config.n]) for a in impostor)
        results.append(PolicyResult(
            f"{config.k}/{config.n}", len(genuine), rejects, rejects / len(genuine), wilson_interval(rejects, len(genuine)),
            len(impostor), accepts, accepts / len(impostor), wilson_interval(accepts, len(impostor)),
        ))
    return DatasetResult(data.name, scheme.parameter_set, len(enrollable), g_frames, g_hits, i_frames, i_hits, results)


def format_table(result: DatasetResult) -> str:
    g_rate = 1 - result.genuine_frame_matches / max(1, result.genuine_frames)
    i_rate = result.impostor_frame_matches / max(1, result.impostor_frames)
    lines = [
        f"{result.dataset}: {result.parameter_set}, {result.people_enrolled} people enrolled",
        f"  per frame: FRR {g_rate:.4f} ({result.genuine_frames - result.genuine_frame_matches}/{result.genuine_frames}), "
        f"FAR {i_rate:.4f} ({result.impostor_frame_matches}/{result.impostor_frames})",
        f"  {'policy':>6}  {'FRR':>7} {'rejects':>13} {'95% CI':>17}  {'FAR':>7} {'accepts':>13} {'95% CI':>17}",
    ]
    for p in result.policies:
        lines.append(
            f"  {p.policy:>6}  {p.frr:7.4f} {p.false_rejects:>6}/{p.genuine_attempts:<6} [{p.frr_ci[0]:.4f}, {p.frr_ci[1]:.4f}]"
            f"  {p.far:7.4f} {p.false_accepts:>6}/{p.impostor_attempts:<6} [{p.far_ci[0]:.4f}, {p.far_ci[1]:.4f}]"
        )
    return "\n".join(lines)


def _handler(args) -> int:
    from latticelock.kernels.kdf import EVALUATION_COST
    from latticelock.kernels.scheme import get_scheme
    from latticelock.tools.bench_pipeline import datasets_dir

    policies = [parse_policy(p) for p in (args.policy or DEFAULT_POLICIES)]
    scheme = get_scheme(args.parameter_set, kdf=EVALUATION_COST, backend=args.decoder_backend)
    pairs = None if args.all_identities else Path(args.pairs) if args.pairs else datasets_dir() / "lfw_pairs.txt"
    inputs = [(Path(args.embeddings), pairs_identities(pairs) if pairs else None)]
    if args.faces94:
        inputs.append((Path(args.faces94), None))
    report = {
        "parameter_set": args.parameter_set,
        "kdf": f"{EVALUATION_COST.describe()} (decisions do not depend on the KDF cost)",
        "settings": {"enrol_images": args.enrol_images, "genuine_attempts_per_person": args.genuine_attempts,
                     "impostor_people_per_person": args.impostor_people, "max_people": args.max_people, "seed": args.seed,
                     "pairs_identities_only": str(pairs) if pairs else None},
        "datasets": [],
    }
    print(f"parameter set {args.parameter_set}; KDF {report['kdf']}")
    for path, identities in inputs:
        data = load_embeddings(path, identities)
        result = evaluate(
            data, scheme, policies, enrol_images=args.enrol_images, genuine_attempts=args.genuine_attempts,
            impostor_people=args.impostor_people, max_people=args.max_people, seed=args.seed,
        )
        print(format_table(result))
        report["datasets"].append(asdict(result))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "policy",
        help="FAR/FRR per unlock attempt of the device's multi-frame policy",
        description="Simulate unlock attempts on embedded faces and report FAR/FRR per attempt with 95%% Wilson intervals.",
    )
    parser.add_argument("--embeddings", required=True, help="LFW embeddings (.npz from `latticelock eval embed`)")
    parser.add_argument("--faces94", help="faces94 embeddings (.npz), evaluated on all its identities")
    parser.add_argument("--parameter-set", default=DEFAULT_SET, help=f"L2FE-Hash parameter set (default {DEFAULT_SET})")
    parser.add_argument("--policy", action="append", metavar="K/N", help=f"policy to measure, repeatable (default {' '.join(DEFAULT_POLICIES)})")
    parser.add_argument("--enrol-images", type=int, default=3, help="images averaged into the enrolment template (default 3)")
    parser.add_argument("--genuine-attempts", type=int, default=10, help="genuine attempts per enrolled person (default 10)")
    parser.add_argument("--impostor-people", type=int, default=10, help="impostor identities tried against each record (default 10)")
    parser.add_argument("--max-people", type=int, default=300, help="enrol at most this many people per dataset (default 300)")
    parser.add_argument("--pairs", help="LFW pairs file whose identities are evaluated (default: $LATTICELOCK_DATASETS/lfw_pairs.txt)")
    parser.add_argument("--all-identities", action="store_true", help="evaluate every LFW identity (only if the projection was not fitted on them)")
    parser.add_argument("--decoder-backend", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.set_defaults(func=_handler)
