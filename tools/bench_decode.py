"""`latticelock bench decode`: CPU (numba) and GPU (PyCUDA) lattice decoders, their agreement and roofline.

For each decoder (Babai, exact CVP within the parameter sets' radius), each batch shape (many
candidates against one basis; one target against each of many bases, 1:N) and each (m, n): decodes
per second on each backend (median of repeats after a warm-up call; the GPU keeps the bases of its
latest call resident, so repeated calls against the same records copy only the targets), and for the
GPU kernel the flops and bytes one decode needs and the resulting fraction of the named GPU's FP64
and memory-bandwidth limits.

`--agreement N` also decodes N targets per decoder on both backends (random, and built on rounding
boundaries) and counts the decoded vectors that differ.

Reduced bases need fpylll (BKZ); `--save-bases FILE` keeps them and `--bases FILE` reuses them, so
the command also runs where fpylll is not installed (the GPU machine).
"""

from __future__ import annotations

import platform
import statistics
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from latticelock.tools import flags
from latticelock.tools.errors import ToolsError
from latticelock.tools.npz import load_npz

Q = 65537
RADIUS_FRACTION = 0.40  # as the parameter sets: 0.4 of the Gaussian-heuristic minimum distance
POOL = 8  # distinct bases per (m, n); 1:N batches cycle through them, each record keeping its own copy
MANY_MAX = 16384  # largest 1:N batch benchmarked (a kiosk's users; each record's basis data is copied)

# Peak rates from NVIDIA's datasheets (non-tensor-core FP64/FP32; HBM bandwidth), by device-name fragment.
PEAKS = [
    # (name fragment, label, FP64 TFLOP/s, FP32 TFLOP/s, memory TB/s, source)
    ("H100 80GB HBM3", "H100 SXM5 80GB", 34.0, 67.0, 3.35, "NVIDIA H100 Tensor Core GPU datasheet (SXM)"),
    ("H100 NVL", "H100 NVL", 30.0, 60.0, 3.9, "NVIDIA H100 Tensor Core GPU datasheet (NVL)"),
    ("H100 PCIe", "H100 PCIe", 26.0, 51.0, 2.0, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    ("H200", "H200 SXM 141GB", 34.0, 67.0, 4.8, "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
]


@dataclass
class Row:
    decoder: str
    mode: str  # "one": k targets, one basis; "many": target i against basis i
    backend: str
    m: int
    n: int
    batch: int
    decodes_per_s: float  # whole call (GPU: packing and copies included)
    kernel_decodes_per_s: float | None = None  # GPU kernel alone
    mean_nodes: float | None = None
    flops_per_decode: float | None = None
    bytes_per_decode: float | None = None
    fp64_fraction: float | None = None  # kernel flop rate / peak FP64
    bandwidth_fraction: float | None = None  # kernel byte rate / peak memory bandwidth


@dataclass
class Agreement:
    decoder: str
    mode: str
    m: int
    n: int
    kind: str
    cases: int
    mismatches: int
    found_mismatches: int = 0
    exhausted_mismatches: int = 0


@dataclass
class Report:
    host: str
    gpu: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    agreement: list[Agreement] = field(default_factory=list)


# ---------------------------------------------------------------- bases


def radius_for(m: int, n: int) -> float:
    from latticelock.kernels.params import gaussian_heuristic

    return RADIUS_FRACTION * gaussian_heuristic(m, n, Q)


def build_bases(shapes: list[tuple[int, int]], block: int, pool: int) -> dict[tuple[int, int], list]:
    from latticelock.kernels.hazmat.expand import expand_matrix
    from latticelock.kernels.hazmat.lattice import qary_basis, reduce_basis

    out = {}
    for m, n in shapes:
        out[(m, n)] = [
            reduce_basis(qary_basis(expand_matrix(bytes([m, n, j]) * 8 + bytes(8), m, n, Q), Q), min(block, m), Q)
            for j in range(pool)
        ]
    return out


def save_bases(path: Path, bases: dict[tuple[int, int], list]) -> None:
    arrays = {}
    for (m, n), rbs in bases.items():
        for j, rb in enumerate(rbs):
            for name in ("basis", "mu", "bstar", "bstar_sqnorm", "proj"):
                arrays[f"m{m}_n{n}_{j}_{name}"] = getattr(rb, name)
    np.savez(path, **arrays)


def load_bases(path: Path) -> dict[tuple[int, int], list]:
    """Bases written by `save_bases`; ToolsError if the file is missing, truncated or foreign."""
    from latticelock.kernels.hazmat.lattice import ReducedBasis

    out: dict[tuple[int, int], list] = {}
    try:
        with load_npz(path, "a bases file from `latticelock bench decode --save-bases`") as data:
            for key in sorted(k for k in data.files if k.endswith("_basis")):
                m, n, j = key.split("_")[:3]
                prefix = f"{m}_{n}_{j}_"
                arrays = {name: data[prefix + name] for name in ("basis", "mu", "bstar", "bstar_sqnorm", "proj")}
                for a in arrays.values():
                    a.setflags(write=False)  # as lattice.gso makes them
                out.setdefault((int(m[1:]), int(n[1:])), []).append(ReducedBasis(**arrays, q=Q))
    # np.load reads members lazily: a truncated file fails inside the loop, as BadZipFile or EOFError.
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ToolsError(f"cannot read bases file {path}: {exc or type(exc).__name__}") from None
    return out


# ---------------------------------------------------------------- targets


def lattice_points(rbs: list, k: int, rng: np.random.Generator) -> np.ndarray:
    """k lattice points (point i in basis i mod len(rbs)), centred coordinates in [-q/2, q/2)."""
    from latticelock.kernels.hazmat import babai

    m = rbs[0].m
    out = np.empty((k, m), dtype=np.int64)
    for j, rb in enumerate(rbs):
        rows = np.arange(j, k, len(rbs))
        out[rows] = babai.babai_decode(rb, rng.uniform(-Q / 2, Q / 2, size=(len(rows), m)))
    return out


def per_row(rbs: list, k: int, attr: str) -> np.ndarray:
    return np.stack([getattr(rbs[i % len(rbs)], attr) for i in range(k)])


def make_targets(kind: str, rbs: list, k: int, radius: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(targets float64[k, m] with target i meant for rbs[i % len(rbs)], the radius to decode them with).

    noisy:    lattice point + a uniformly oriented error of norm U(0, 1.2) * radius (the unlock workload).
    uniform:  uniform in [-q/2, q/2)^m.
    gs-edge:  lattice point + sum_i a_i b*_i with a_i = +-(1/2 + eps) at half the levels (eps in 0,
              +-1e-15, +-1e-12, +-1e-9, +-1e-6): Babai's and the enumeration's roundings on a boundary.
    tie:      lattice point v + (1/2 + eps) w + a component orthogonal to w (w the shortest basis row):
              (nearly) equidistant from v and v + w; decoded with a radius that holds both. The
              enumeration then runs to ~lambda_1 / 2, which costs ~10^5 nodes per target at m = 64, so
              the agreement check uses it for m <= TIE_MAX_M only.
    sphere:   lattice point + error of norm radius * (1 + eps): on the radius boundary.
    """
    m = rbs[0].m
    v = lattice_points(rbs, k, rng).astype(np.float64)
    eps_choices = np.array([0.0, 1e-15, -1e-15, 1e-12, -1e-12, 1e-9, -1e-9, 1e-6, -1e-6])
    if kind == "noisy":
        e = rng.normal(size=(k, m))
        e *= (radius * rng.uniform(0, 1.2, size=(k, 1))) / np.linalg.norm(e, axis=1, keepdims=True)
        return v + e, radius
    if kind == "uniform":
        return rng.uniform(-Q / 2, Q / 2, size=(k, m)), radius
    if kind == "gs-edge":
        a = rng.uniform(-0.45, 0.45, size=(k, m))
        edge = rng.random((k, m)) < 0.5
        sign = rng.choice([-1.0, 1.0], size=(k, m))
        a[edge] = (sign * (0.5 + rng.choice(eps_choices, size=(k, m))))[edge]
        bstar = per_row(rbs, k, "bstar")
        return v + np.einsum("ki,kij->kj", a, bstar), radius
    if kind == "tie":
        basis = per_row(rbs, k, "basis").astype(np.float64)
        w = basis[:, 0]  # the shortest row after BKZ
        perp = rng.normal(size=(k, m))
        perp -= (np.sum(perp * w, axis=1) / np.sum(w * w, axis=1))[:, None] * w
        perp *= (0.1 * np.linalg.norm(w, axis=1) / np.linalg.norm(perp, axis=1))[:, None]
        t = v + (0.5 + rng.choice(eps_choices, size=(k, 1))) * w + perp
        # |t - v| = |t - (v + w)| ~ 0.51 |w|: both inside this radius.
        return t, 0.52 * float(np.max(np.linalg.norm(w, axis=1)))
    if kind == "sphere":
        e = rng.normal(size=(k, m))
        e *= (radius * (1 + rng.choice(eps_choices, size=(k, 1)))) / np.linalg.norm(e, axis=1, keepdims=True)
        return v + e, radius
    raise ValueError(f"unknown target kind {kind!r}")


AGREEMENT_KINDS = ("noisy", "uniform", "gs-edge", "tie", "sphere")
TIE_MAX_M = 48


# ---------------------------------------------------------------- decoding on either backend


def decode(decoder: str, mode: str, backend: str, rbs: list, targets: np.ndarray, radius: float):
    """(vectors, found | None, exhausted | None) on one backend; many-mode cycles rbs over the targets."""
    from latticelock.kernels.hazmat import decode as dispatch
    from latticelock.kernels.hazmat.cvp import EnumerationBudgetError

    k = len(targets)
    if mode == "many":
        bases = [rbs[i % len(rbs)] for i in range(k)]
        if decoder == "babai":
            return dispatch.babai_decode_many(bases, targets, backend=backend), None, None
        call = lambda: dispatch.cvp_decode_many(bases, targets, radius, backend=backend)  # noqa: E731
    else:
        if decoder == "babai":
            return dispatch.babai_decode(rbs[0], targets, backend=backend), None, None
        call = lambda: dispatch.cvp_decode(rbs[0], targets, radius, backend=backend)  # noqa: E731
    try:
        vectors, found = call()
        return vectors, found, np.zeros(k, dtype=bool)
    except EnumerationBudgetError as exc:
        return exc.vectors, exc.found, exc.exhausted


def agreement(bases: dict, decoders: list[str], modes: list[str], cases: int, seed: int, progress):
    """Decode `cases` targets per decoder on both backends, spread over shapes, modes and kinds.

    Yields one Agreement per (decoder, shape, mode, kind) as soon as it is complete.
    """
    rng = np.random.default_rng(seed)
    combos = [
        (s, mode, kind)
        for s in bases
        for mode in modes
        for kind in AGREEMENT_KINDS
        if kind != "tie" or s[0] <= TIE_MAX_M
    ]
    per_combo = -(-cases // len(combos))
    chunk = 4096
    for decoder in decoders:
        for (m, n), mode, kind in combos:
            row = Agreement(decoder, mode, m, n, kind, 0, 0)
            rbs = bases[(m, n)] if mode == "many" else bases[(m, n)][:1]
            while row.cases < per_combo:
                k = min(chunk, per_combo - row.cases)
                targets, radius = make_targets(kind, rbs, k, radius_for(m, n), rng)
                cv, cf, ce = decode(decoder, mode, "cpu", rbs, targets, radius)
                gv, gf, ge = decode(decoder, mode, "gpu", rbs, targets, radius)
                row.mismatches += int(np.sum(np.any(cv != gv, axis=1)))
                if cf is not None:
                    row.found_mismatches += int(np.sum(cf != gf))
                    row.exhausted_mismatches += int(np.sum(ce != ge))
                row.cases += k
                progress(k)
            yield row


# ---------------------------------------------------------------- timing and roofline


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up: numba compilation, CUDA module load
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_info() -> dict:
    """Name, peaks (datasheet, and derived from the SM count and clock) and a measured copy bandwidth."""
    from latticelock.kernels.hazmat.gpu import runtime

    with runtime.active() as cuda:
        dev = cuda.Context.get_device()
        name = dev.name()
        attrs = dev.get_attributes()

        def attribute(name: str) -> int:
            # CUDA 13 dropped some clock attributes from its headers; 0 marks one PyCUDA cannot read.
            key = getattr(cuda.device_attribute, name, None)
            return int(attrs.get(key, 0)) if key is not None else 0

        sms = attribute("MULTIPROCESSOR_COUNT")
        clock_khz = attribute("CLOCK_RATE")
        mem_clock_khz = attribute("MEMORY_CLOCK_RATE")
        bus_bits = attribute("GLOBAL_MEMORY_BUS_WIDTH")
        nbytes = 1 << 30
        src, dst = cuda.mem_alloc(nbytes), cuda.mem_alloc(nbytes)
        cuda.memset_d8(src, 7, nbytes)
        start, stop = cuda.Event(), cuda.Event()
        copies = []
        for _ in range(6):
            start.record()
            cuda.memcpy_dtod(dst, src, nbytes)
            stop.record()
            stop.synchronize()
            copies.append(stop.time_since(start) / 1e3)
        src.free()
        dst.free()
    info = {
        "name": name,
        "sms": sms,
        "sm_clock_mhz": clock_khz / 1e3,
        # Hopper: 64 FP64 and 128 FP32 FMA lanes per SM; an FMA counts as 2 flops.
        "derived_fp64_tflops": sms * 64 * 2 * clock_khz * 1e3 / 1e12,
        "derived_fp32_tflops": sms * 128 * 2 * clock_khz * 1e3 / 1e12,
        "derived_memory_tbps": 2 * mem_clock_khz * 1e3 * bus_bits / 8 / 1e12,
        "measured_copy_tbps": 2 * nbytes / statistics.median(copies[1:]) / 1e12,
    }
    for fragment, label, fp64, fp32, mem, source in PEAKS:
        if fragment in name:
            info.update(datasheet=label, peak_fp64_tflops=fp64, peak_fp32_tflops=fp32, peak_memory_tbps=mem, source=source)
            break
    else:
        if not clock_khz or not mem_clock_khz:
            raise ToolsError(f"no datasheet peaks for {name!r} and its clocks cannot be read: no roofline")
        info.update(datasheet=None, peak_fp64_tflops=info["derived_fp64_tflops"],
                    peak_fp32_tflops=info["derived_fp32_tflops"], peak_memory_tbps=info["derived_memory_tbps"],
                    source="derived from the device's SM count, clock and memory bus (no datasheet entry)")
    return info


def cost(decoder: str, mode: str, m: int, nodes: float, centre_terms: float) -> tuple[float, float]:
    """(flops, DRAM bytes) of one decode as the GPU kernels do it.

    Babai: t @ proj (2m^2) + m roundings (2 each) + sum_i i updates (2 each) = 2m^2 + 2m + m(m-1).
    CVP: t @ proj (2m^2) + 4 flops per node + 2 per centre term (x_i - c_k mu[k, i]).
    Bytes: the target in, the vector out (8m each) + flags; for 1:N also the record's own basis data
    (proj, lower mu, basis, sqnorm), which no other decode shares.
    """
    if decoder == "babai":
        flops = 2 * m * m + 2 * m + m * (m - 1)
        per_record = 8 * (m * m + m * (m - 1) / 2 + m * m)
        io = 16 * m
    else:
        flops = 2 * m * m + 4 * nodes + 2 * centre_terms
        per_record = 8 * (m * m + m * (m - 1) / 2 + m * m + m)
        io = 16 * m + 2 + 8
    return flops, io + (per_record if mode == "many" else 0)


def bench(bases: dict, decoders, modes, backends, batches, repeat, seed, info, progress) -> list[Row]:
    from latticelock.kernels.hazmat.babai import check_targets

    rng = np.random.default_rng(seed)
    rows = []
    for (m, n), pool in bases.items():
        radius = radius_for(m, n)
        for decoder in decoders:
            for mode in modes:
                rbs = pool if mode == "many" else pool[:1]
                for batch in batches:
                    if mode == "many" and batch > MANY_MAX:
                        continue
                    targets, _ = make_targets("noisy", rbs, batch, radius, rng)
                    for backend in backends:
                        seconds = median_time(lambda: decode(decoder, mode, backend, rbs, targets, radius), repeat)
                        row = Row(decoder, mode, backend, m, n, batch, batch / seconds)
                        if backend == "gpu":
                            gpu_roofline(row, rbs, check_targets(targets, m), radius, repeat, info)
                        rows.append(row)
                        progress(1)
    return rows


def gpu_roofline(row: Row, rbs: list, targets: np.ndarray, radius: float, repeat: int, info: dict) -> None:
    from latticelock.kernels.hazmat.cvp import RADIUS_SLACK
    from latticelock.kernels.hazmat.gpu.launch import launch, upload
    from latticelock.kernels.hazmat.gpu.layout import pack_many, pack_one

    k = len(targets)
    device = upload(pack_many([rbs[i % len(rbs)] for i in range(k)]) if row.mode == "many" else pack_one(rbs[0]))
    bound = None if row.decoder == "babai" else radius * radius * (1 + RADIUS_SLACK)
    try:
        runs = [launch(device, targets, bound, 10_000_000) for _ in range(repeat + 1)][1:]
    finally:
        device.free()
    kernel_s = statistics.median(r.kernel_s for r in runs)
    nodes = terms = 0.0
    if bound is not None:
        nodes = float(np.mean(runs[0].nodes))
        terms = float(np.mean(runs[0].centre_terms))
        row.mean_nodes = nodes
    flops, nbytes = cost(row.decoder, row.mode, row.m, nodes, terms)
    row.kernel_decodes_per_s = k / kernel_s
    row.flops_per_decode = flops
    row.bytes_per_decode = nbytes
    row.fp64_fraction = flops * k / kernel_s / (info["peak_fp64_tflops"] * 1e12)
    row.bandwidth_fraction = nbytes * k / kernel_s / (info["peak_memory_tbps"] * 1e12)


# ---------------------------------------------------------------- output


def format_report(report: Report) -> str:
    lines = []
    if report.gpu:
        g = report.gpu
        lines += [
            f"GPU: {g['name']} ({g['sms']} SMs, {g['sm_clock_mhz']:.0f} MHz)",
            "peak            FP64 TFLOP/s  FP32 TFLOP/s  memory TB/s  source",
            f"datasheet       {g['peak_fp64_tflops']:>12.1f}  {g['peak_fp32_tflops']:>12.1f}  {g['peak_memory_tbps']:>11.2f}  {g['source']}",
            f"derived         {g['derived_fp64_tflops']:>12.1f}  {g['derived_fp32_tflops']:>12.1f}  {g['derived_memory_tbps']:>11.2f}  SM count x clock; memory clock x bus",
            f"measured copy   {'':>12}  {'':>12}  {g['measured_copy_tbps']:>11.2f}  1 GiB device-to-device copy, read + write",
            "",
        ]
    if report.rows:
        lines.append(
            "decoder mode backend   m   n   batch     decodes/s  kernel dec/s    nodes  flop/dec  byte/dec  %FP64  %BW"
        )
        for r in report.rows:
            def opt(value, fmt):
                return format(value, fmt) if value is not None else "-"

            lines.append(
                f"{r.decoder:<7} {r.mode:<4} {r.backend:<7} {r.m:>3} {r.n:>3} {r.batch:>7} {r.decodes_per_s:>13,.0f} "
                f"{opt(r.kernel_decodes_per_s, '>13,.0f'):>13} {opt(r.mean_nodes, '>8.0f'):>8} "
                f"{opt(r.flops_per_decode, '>9.0f'):>9} {opt(r.bytes_per_decode, '>9.0f'):>9} "
                f"{opt(r.fp64_fraction and 100 * r.fp64_fraction, '>6.2f'):>6} "
                f"{opt(r.bandwidth_fraction and 100 * r.bandwidth_fraction, '>5.2f'):>5}"
            )
        lines.append("")
    if report.agreement:
        lines.append("agreement (CPU vs GPU)   m   n  kind        cases  vector-mismatch  found-mismatch  budget-mismatch")
        for a in report.agreement:
            lines.append(
                f"{a.decoder:<7} {a.mode:<4}         {a.m:>3} {a.n:>3}  {a.kind:<8} {a.cases:>8} {a.mismatches:>16} "
                f"{a.found_mismatches:>15} {a.exhausted_mismatches:>16}"
            )
        total = sum(a.cases for a in report.agreement)
        bad = sum(a.mismatches + a.found_mismatches + a.exhausted_mismatches for a in report.agreement)
        lines.append(f"total: {total} cases, {bad} mismatches")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _words(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def register(commands) -> None:
    p = commands.add_parser(
        "decode",
        help="CPU and GPU lattice decoders: decodes/s, roofline, agreement",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--m", default="32,48,64", help="lattice dimensions, comma-separated (default 32,48,64)")
    p.add_argument("--n", default="16", help="LWE dimensions, comma-separated (default 16)")
    p.add_argument("--block", type=int, default=20, help="BKZ block size of the bases (default 20)")
    p.add_argument("--batch", default="1,64,1024,16384",
                   help=f"batch sizes (default 1,64,1024,16384; 1:N batches stop at {MANY_MAX})")
    p.add_argument("--decoders", default="babai,cvp", help="babai,cvp")
    p.add_argument("--modes", default="one,many", help="one (k targets, one basis), many (1:N)")
    p.add_argument("--decoder-backends", default=None,
                   help="decoder backends to compare: cpu,gpu (default: gpu too when available)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats per cell; the median is reported")
    p.add_argument("--agreement", type=int, default=0, metavar="N", help="also check N targets per decoder on both backends")
    p.add_argument("--no-bench", action="store_true", help="only the agreement check")
    p.add_argument("--bases", type=Path, help="load reduced bases from this .npz (written by --save-bases)")
    p.add_argument("--save-bases", type=Path, help="save the reduced bases to this .npz")
    p.add_argument("--seed", type=int, default=1)
    flags.json_output(p, "the results")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from tqdm import tqdm

    from latticelock.kernels.hazmat import gpu
    from latticelock.kernels.recipe import DECODER_BACKENDS

    flags.check_json_target(args.json)
    shapes = [(m, n) for m in _ints(args.m) for n in _ints(args.n) if n < m]
    decoders, modes = _words(args.decoders), _words(args.modes)
    if not shapes or not set(decoders) <= {"babai", "cvp"} or not set(modes) <= {"one", "many"}:
        raise ToolsError("need at least one (m, n) with n < m, decoders from babai,cvp and modes from one,many")
    backends = _words(args.decoder_backends) if args.decoder_backends else (["cpu", "gpu"] if gpu.available() else ["cpu"])
    named = [b for b in DECODER_BACKENDS if b != "auto"]  # "auto" only picks one of these
    if not backends or not set(backends) <= set(named):
        raise ToolsError(f"--decoder-backends takes a comma-separated list from {','.join(named)}")
    if "gpu" in backends and not gpu.available():
        raise ToolsError(f"GPU backend unavailable: {gpu.unavailable_reason()}")
    if args.agreement and not gpu.available():
        raise ToolsError(f"the agreement check needs the GPU backend: {gpu.unavailable_reason()}")
    if args.bases:
        bases = load_bases(args.bases)
        missing = [s for s in shapes if s not in bases]
        if missing:
            raise ToolsError(f"{args.bases} has no bases for (m, n) = {missing}")
        bases = {s: bases[s] for s in shapes}
    else:
        bases = build_bases(shapes, args.block, POOL)
    if args.save_bases:
        save_bases(args.save_bases, bases)
    report = Report(host=f"{platform.node()} ({platform.processor() or platform.machine()})")
    if "gpu" in backends:
        report.gpu = gpu_info()
    if not args.no_bench:
        batches = _ints(args.batch)
        cells = sum(1 for mode in modes for b in batches if mode == "one" or b <= MANY_MAX)
        total = len(shapes) * len(decoders) * cells * len(backends)
        with tqdm(total=total, desc="bench", unit="cell") as bar:
            report.rows = bench(bases, decoders, modes, backends, batches, args.repeat, args.seed, report.gpu, bar.update)
    if args.agreement:
        with tqdm(total=args.agreement * len(decoders), desc="agreement", unit="case") as bar:
            for row in agreement(bases, decoders, modes, args.agreement, args.seed + 1, bar.update):
                report.agreement.append(row)
                bar.write(f"{row.decoder} {row.mode} m={row.m} n={row.n} {row.kind}: {row.cases} cases, "
                          f"{row.mismatches}/{row.found_mismatches}/{row.exhausted_mismatches} mismatches")
                flags.write_json(args.json, asdict(report))  # kept current: an interrupted run leaves its rows
    print(format_report(report))
    flags.write_json(args.json, asdict(report))
    bad = sum(a.mismatches + a.found_mismatches + a.exhausted_mismatches for a in report.agreement)
    return 1 if bad else 0
