"""`latticelock eval policy`: how often a stranger gets in, per unlock attempt, on the device's own objects.

Datasets: LFW (`--embeddings`, photos in the wild; only the identities that lfw_pairs.txt names, the
others having calibrated the operating points), faces94 (`--faces94`, device-like captures: frames of
one sitting), deepface (`--deepface`, unconstrained photos), and cross-dataset "A->B" (the people of
A against templates enrolled from B: lfw->faces94 and faces94->lfw when both files are given).

Enrolments and attempts are formed as `tools.attempts` describes (the device's 5-frame template, the
default policy's n-frame slices, one identity per attempt) and run through the device's matcher as
`tools.policy_sim` describes, for every named operating point and for stores of 1 and `--users`
people (an impostor attempt against N users is N chances). Each row gives FAR per attempt with its 95%
upper bound and the number of impostor attempts, FRR likewise; a DET plot per dataset marks the named
points. The 1-user figures are checked against the distance model (acceptance is exactly |e - e'| <=
radius), which draws the DET curves. The KDF runs at the evaluation cost: no decision depends on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latticelock.tools.attempts import (Enrolled, enrol_identities, identities, point_limit, point_scores, probe_keys,
                                       probe_vectors, scaled, slices)
from latticelock.tools.errors import ToolsError
from latticelock.tools.policy_sim import Pool, simulate
from latticelock.tools.rates import Rate

if TYPE_CHECKING:
    from latticelock.device.policy import PolicyConfig
    from latticelock.kernels.params import L2FEParams, OperatingPoint
    from latticelock.tools.embeddings import EmbeddingsFile

# Every slice of a 20-frame faces94 folder; LFW's largest folders (530 photos) are capped there.
DEFAULT_MAX_SLICES = 6


@dataclass(frozen=True)
class Row:
    dataset: str
    operating_point: str
    purpose: str
    radius: float  # the set's radius: every record's, or under a stranger_z the most any record may have
    threshold: float | None  # radius / scale, for a set with one radius
    stranger_z: float | None  # each record's radius from the strangers around its template (`kernels.radii`)
    users: int
    policy: str
    probe: str
    far: float | None
    far_upper95: float | None
    false_accepts: int
    impostor_attempts: int
    frr: float | None
    frr_upper95: float | None
    false_rejects: int
    genuine_attempts: int
    misidentified: int
    device_default: bool
    wallet_default: bool
    distance_model_agrees: bool | None  # 1-user rows: the device's decisions equal |e - e'| <= radius


def parse_policy(text: str) -> "PolicyConfig":
    """K/N: the device's default policy with k and n replaced (ConfigError for an impossible one)."""
    from latticelock.device.policy import DEFAULT_POLICY

    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ToolsError(f"policy {text!r} must read K/N, e.g. 2/3") from None
    return replace(DEFAULT_POLICY, k=k, n=n)


def dataset_pool(name: str, data: "EmbeddingsFile", names: frozenset[str] | None, frames: int, n: int, max_slices: int) -> Pool:
    people = identities(data, names)
    if len(people) < 2:
        raise ToolsError(f"{name}: impostor attempts need at least two identities, found {len(people)}")
    enrolled = enrol_identities(data, people, frames, n)
    if not enrolled:
        raise ToolsError(f"{name}: no identity has more than the {frames} images an enrolment uses")
    return Pool(name, data.embeddings, enrolled, {p.name: tuple(slices(p.rows, n)[:max_slices]) for p in people})


def with_probes(pool: Pool, data: "EmbeddingsFile", probes: "EmbeddingsFile") -> Pool:
    """`pool` with every attempt's frames read from `probes`, matched by file, and its templates kept:
    e.g. mirror-averaged enrolment against frames embedded once, as the unlock loop embeds them."""
    from latticelock.tools.embeddings import check_same_embedding

    check_same_embedding(data, probes)
    index = probes.index()
    wanted = list(data.index())  # in row order: one key per file
    if len(wanted) != len(data.files):
        raise ToolsError(f"{data.path}: two rows name the same image")
    missing = [name for name in wanted if name not in index]
    if missing:
        raise ToolsError(f"{probes.path}: no embedding for {len(missing)} of the {len(wanted)} images of "
                         f"{data.path} (first: {missing[0]}); embed the same folder")
    return replace(pool, embeddings=probes.embeddings[[index[name] for name in wanted]])


def cross_pool(people: Pool, templates: Pool) -> Pool:
    """The people of one pool against the templates of another (no genuine attempts)."""
    enrolled = [Enrolled(f"{templates.name}/{e.name}", e.template, ()) for e in templates.enrolled]
    attempts = {f"{people.name}/{name}": a for name, a in people.attempts.items()}
    return Pool(f"{people.name}->{templates.name}", people.embeddings, enrolled, attempts)


def distance_scores(pool: Pool, params: "L2FEParams", k: int, probe: str) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) attempt scores of 1-user stores under `params`, in the units its limit is
    (`tools.attempts.point_scores`, `point_limit`)."""
    from latticelock.kernels.projection import load_projection

    projection = load_projection(params.projection)
    keys: dict = {}

    def index(attempts) -> np.ndarray:
        rows = [[keys.setdefault(key, len(keys)) for key in probe_keys(a, probe)] for _, a in attempts]
        return np.array(rows, dtype=np.int64) if rows else np.zeros((0, 1), np.int64)

    genuine = [(t, a) for t, e in enumerate(pool.enrolled) for a in e.genuine]
    impostor = [(owner, a) for owner, attempts in pool.attempts.items() for a in attempts]
    g_index, i_index = index(genuine), index(impostor)
    probes = scaled(params, projection, probe_vectors(pool.embeddings, list(keys)))
    templates = scaled(params, projection, np.stack([e.template for e in pool.enrolled]))
    names = np.array([e.name for e in pool.enrolled])
    owners = np.array([owner for owner, _ in impostor])
    i_scores = point_scores(params, projection, templates, probes, i_index, k)[names[:, None] != owners[None, :]]
    g_scores = np.empty(0)
    if genuine:
        g_scores = point_scores(params, projection, templates, probes, g_index, k)[[t for t, _ in genuine], np.arange(len(genuine))]
    return g_scores, i_scores


def evaluate(pools: list[Pool], points: "list[OperatingPoint]", policy: "PolicyConfig", probe: str, users: int, *, seed: int = 0, backend: str = "auto",
             progress: bool = True) -> tuple[list[Row], dict[str, dict]]:
    """The rows, and per dataset the distance model's scores per lattice family (for the DET plots)."""
    from latticelock.kernels.params import DEFAULT_FOR_PURPOSE, get_parameter_set

    rows: list[Row] = []
    models: dict[str, dict] = {}
    for pool in pools:
        models[pool.name] = {}
        for op in points:
            params = get_parameter_set(op.parameter_set)
            family = (params.m, params.scale, params.projection, params.stranger_z is not None)
            if family not in models[pool.name]:
                models[pool.name][family] = distance_scores(pool, params, policy.k, probe)
            g_scores, i_scores = models[pool.name][family]
            sim = simulate(pool, op.parameter_set, policy, probe, users, seed=seed, backend=backend, progress=progress)
            for size, c in sim.counts.items():
                agrees = None
                if size == 1:
                    limit = point_limit(params)
                    agrees = (int(np.count_nonzero(i_scores <= limit)) == c.false_accepts
                              and int(np.count_nonzero(g_scores > limit)) == c.false_rejects
                              and len(i_scores) == c.impostor and len(g_scores) == c.genuine)
                far, frr = Rate(c.false_accepts, c.impostor), Rate(c.false_rejects, c.genuine)
                rows.append(Row(
                    pool.name, op.parameter_set, op.purpose, params.radius,
                    params.threshold if params.stranger_z is None else None, params.stranger_z, size,
                    f"{policy.k}/{policy.n}", probe, far.rate, far.upper95, c.false_accepts, c.impostor,
                    frr.rate, frr.upper95, c.false_rejects, c.genuine, c.misidentified,
                    op.parameter_set == DEFAULT_FOR_PURPOSE["unlock"], op.parameter_set == DEFAULT_FOR_PURPOSE["wallet"], agrees,
                ))
    return rows, models


def _rate(rate: float | None, errors: int, trials: int) -> str:
    return "n/a" if rate is None else f"{rate:.2e} {errors:>4}/{trials:<8}"


def format_table(rows: list[Row]) -> str:
    lines = [f"{'dataset':<13} {'operating point':<29} {'users':>5}  {'FAR per attempt':<24} {'<=95%':>8}  "
             f"{'FRR per attempt':<24} {'<=95%':>8}  model"]
    for r in rows:
        tag = " [unlock]" if r.device_default else " [wallet]" if r.wallet_default else ""
        upper = lambda u: "n/a" if u is None else f"{u:.2e}"  # noqa: E731
        model = "-" if r.distance_model_agrees is None else "agrees" if r.distance_model_agrees else "DIFFERS"
        lines.append(
            f"{r.dataset:<13} {r.operating_point + tag:<29} {r.users:>5}  {_rate(r.far, r.false_accepts, r.impostor_attempts):<24} "
            f"{upper(r.far_upper95):>8}  {_rate(r.frr, r.false_rejects, r.genuine_attempts):<24} {upper(r.frr_upper95):>8}  {model}"
        )
    return "\n".join(lines)


def write_plots(folder: Path, rows: list[Row], models: dict[str, dict]) -> list[Path]:
    """One DET plot per dataset that has genuine attempts (cross-dataset pools have none)."""
    from latticelock.tools.det_plot import Curve, Point, det_plot

    written = []
    for dataset, families in models.items():
        mine = [r for r in rows if r.dataset == dataset and r.users == 1 and r.genuine_attempts]
        if not mine:
            continue
        curves = [Curve(f"m{m} lattice, {'per-record radii (stranger z)' if z else 'one radius'} (distance model, 1 user)", g, i)
                  for (m, _, _, z), (g, i) in sorted(families.items())]
        points = [Point(r.operating_point, r.far, r.far_upper95, r.frr, r.impostor_attempts, r.genuine_attempts,
                        r.device_default or r.wallet_default) for r in mine]
        path = folder / f"det-{dataset}.png"
        det_plot(path, f"{dataset}: unlock attempts, policy {mine[0].policy}, probe {mine[0].probe}, 1 enrolled user", curves, points)
        written.append(path)
    return written


def _points(names: list[str] | None, fars: list[float] | None) -> "list[OperatingPoint]":
    from latticelock.kernels.params import OPERATING_POINTS, operating_point, operating_point_for_far

    chosen = [operating_point(n) for n in names or []] + [operating_point_for_far(f) for f in fars or []]
    return list(dict.fromkeys(chosen)) or list(OPERATING_POINTS.values())


def _handler(args) -> int:
    from latticelock.device.enrol import EnrolConfig
    from latticelock.device.policy import DEFAULT_POLICY
    from latticelock.kernels.kdf import EVALUATION_COST
    from latticelock.tools.attempts import lfw_split
    from latticelock.tools.embeddings import load_embeddings
    from latticelock.tools.flags import check_json_target, write_json

    check_json_target(args.json)
    for name in ("users", "max_slices", "enrol_frames"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ToolsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not (args.embeddings or args.faces94 or args.deepface):
        raise ToolsError("give at least one dataset: --embeddings (LFW), --faces94 or --deepface")
    points = _points(args.operating_point, args.far)
    policy = parse_policy(args.policy) if args.policy else DEFAULT_POLICY
    frames = args.enrol_frames or EnrolConfig().frames
    plots = args.plots or (Path(args.json).expanduser().parent if args.json else None)
    if plots is not None and not Path(plots).is_dir():
        raise ToolsError(f"--plots {plots}: folder does not exist")
    pools: dict[str, Pool] = {}
    if args.embeddings:
        lfw = load_embeddings(args.embeddings)
        evaluated, _ = lfw_split(lfw, args.pairs, args.datasets)
        pools["lfw"] = dataset_pool("lfw", lfw, evaluated, frames, policy.n, args.max_slices)
        if args.probe_embeddings:
            pools["lfw"] = with_probes(pools["lfw"], lfw, load_embeddings(args.probe_embeddings))
    elif args.probe_embeddings:
        raise ToolsError("--probe-embeddings replaces the frames of --embeddings (LFW); give both")
    for name, path in (("faces94", args.faces94), ("deepface", args.deepface)):
        if path:
            pools[name] = dataset_pool(name, load_embeddings(path), None, frames, policy.n, args.max_slices)
    if "lfw" in pools and "faces94" in pools:
        pools["lfw->faces94"] = cross_pool(pools["lfw"], pools["faces94"])
        pools["faces94->lfw"] = cross_pool(pools["faces94"], pools["lfw"])
    kdf = f"{EVALUATION_COST.describe()}: the evaluation cost; no decision depends on the KDF"
    print(f"policy {policy.describe()}, probe {args.probe}, {frames}-frame enrolment, stores of 1 and {args.users} users; KDF {kdf}")
    rows, models = evaluate(list(pools.values()), points, policy, args.probe, args.users, seed=args.seed, backend=args.decoder_backend)
    print(format_table(rows))
    written = write_plots(Path(plots), rows, models) if plots is not None else []
    for path in written:
        print(f"DET plot: {path}")
    write_json(args.json, {
        "kdf": kdf, "policy": asdict(policy), "probe": args.probe, "enrol_frames": frames, "max_slices": args.max_slices,
        "seed": args.seed, "probe_embeddings": str(args.probe_embeddings) if args.probe_embeddings else None, "datasets": {p.name: {"enrolled": len(p.enrolled), "identities": len(p.attempts)} for p in pools.values()},
        "rows": [asdict(r) for r in rows], "plots": [str(p) for p in written],
    })
    return 0


def register(commands) -> None:
    from latticelock.tools import flags
    from latticelock.tools.attempts import far_flag, pairs_flag, probe_flag

    parser = commands.add_parser(
        "policy", help="FAR/FRR per unlock attempt of every operating point, per dataset and across datasets",
        description="Unlock attempts through the device's matcher and policy: FAR and FRR per attempt with 95% "
                    "upper bounds and counts, for stores of 1 and N users; DET plots per dataset.",
    )
    flags.embeddings(parser, required=False)
    flags.probe_embeddings(parser, "LFW attempts' frames")
    parser.add_argument("--faces94", type=Path, metavar="FILE.npz", help="faces94 embeddings (device-like captures)")
    parser.add_argument("--deepface", type=Path, metavar="FILE.npz", help="deepface photos embeddings")
    pairs_flag(parser)
    flags.datasets(parser)
    parser.add_argument("--operating-point", action="append", metavar="NAME",
                        help="a parameter set or a purpose (unlock, wallet, paper), repeatable (default: every named point)")
    far_flag(parser, "evaluate the point calibrated for it")
    parser.add_argument("--users", type=int, default=10, help="people in the larger store (default 10; 1 is always measured)")
    parser.add_argument("--policy", metavar="K/N", help="k of n frames (default: the device's default policy)")
    probe_flag(parser)
    parser.add_argument("--enrol-frames", type=int, help="images averaged into a template (default: the device's enrolment)")
    parser.add_argument("--max-slices", type=int, default=DEFAULT_MAX_SLICES,
                        help=f"attempts per identity at most (default {DEFAULT_MAX_SLICES})")
    flags.decoder_backend(parser)
    parser.add_argument("--seed", type=int, default=0, help="derives the records' coins (default 0)")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="folder for the DET plots (default: the --json folder)")
    flags.json_output(parser, "the rows")
    parser.set_defaults(func=_handler)
