"""`latticelock bench fe`: median Gen and Rep time per record for each L2FE-Hash set, and the KDF's share.

Gen is split into what runs at enrolment on the device: the record itself (expansion, sampling, one
Argon2id) and the one-off BKZ reduction of the record's public basis (cached afterwards). Rep is one
genuine probe against an enrolled record with the basis cached, per decoder. The KDF's share is
kdf / (kdf + the same operation timed with a negligible Argon2id cost), which stays meaningful when
the machine is shared and single timings are noisy. Probes are synthetic
unit vectors moved by half the set's radius in the projected space, so the numbers need no face data.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from latticelock.tools import flags
from latticelock.tools.eval_schemes import prepare


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench_set(set_name: str, records: int, threads: int, backend: str, basis_cache: Path, seed: int = 0) -> dict:
    """One set's row; every basis is reduced into `basis_cache` (a fresh folder, so BKZ is timed, not read)."""
    from latticelock.kernels.kdf import EVALUATION_COST
    from latticelock.kernels.hazmat.rep import derive
    from latticelock.kernels.l2fe import L2FEScheme

    base = L2FEScheme(set_name, backend=backend)
    params, projection = base.params, base.projection
    rng = np.random.default_rng(seed)
    schemes = {d: L2FEScheme(set_name, decoder=d, backend=backend) for d in ("cvp", "babai")}
    # The same work with a negligible KDF: what Gen and Rep cost besides Argon2id.
    light = L2FEScheme(set_name, kdf=EVALUATION_COST, backend=backend)
    light_decoders = {d: L2FEScheme(set_name, decoder=d, kdf=EVALUATION_COST, backend=backend) for d in schemes}
    gen, gen_light, basis, kdf = [], [], [], []
    rep = {d: [] for d in schemes}
    rep_light = {d: [] for d in schemes}
    accepted = {d: 0 for d in schemes}
    for _ in range(records):
        x = rng.standard_normal(512)
        x /= np.linalg.norm(x)
        direction = rng.standard_normal(params.m)
        direction *= 0.5 * params.threshold / np.linalg.norm(direction)
        probe = x + direction @ projection.components[: params.m].astype(np.float64)
        record, t = _timed(base.enroll, x)
        gen.append(t)
        _, t = _timed(prepare, base, record, basis_cache)
        basis.append(t)
        _, t = _timed(derive, np.zeros(params.n, dtype=np.int64), record["salt"], params.kdf)
        kdf.append(t)
        light_record, t = _timed(light.enroll, x)
        gen_light.append(t)
        prepare(light, light_record, basis_cache)
        for d, scheme in schemes.items():
            key, t = _timed(scheme.verify, record, probe)
            rep[d].append(t)
            accepted[d] += key is not None
            _, t = _timed(light_decoders[d].verify, light_record, probe)
            rep_light[d].append(t)
    med = statistics.median
    row = {"parameter_set": set_name, "records": records, "threads": threads, "kdf": params.kdf.describe(),
           "gen_seconds": med(gen), "basis_seconds": med(basis), "kdf_seconds": med(kdf),
           "gen_without_kdf_seconds": med(gen_light), "gen_kdf_share": med(kdf) / (med(kdf) + med(gen_light))}
    for d in schemes:
        row[f"rep_{d}_seconds"] = med(rep[d])
        row[f"rep_{d}_without_kdf_seconds"] = med(rep_light[d])
        row[f"rep_{d}_kdf_share"] = med(kdf) / (med(kdf) + med(rep_light[d]))
        row[f"rep_{d}_accepted"] = accepted[d]
    return row


def cmd_fe(args: argparse.Namespace) -> int:
    import numba

    flags.check_json_target(args.json)
    sets = args.sets
    threads = min(args.threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="latticelock-bench-") as cache:
        # Compile the numba decoders once before timing.
        bench_set(sets[0], 1, threads, args.decoder_backend, Path(cache), seed=1)
        for name in sets:
            rows.append(bench_set(name, args.records, threads, args.decoder_backend, Path(cache)))
    print(f"median seconds per record over {args.records} records, {threads} decoder threads, "
          f"backend {args.decoder_backend}")
    header = (f"{'parameter set':<18} {'Gen':>7} {'(KDF%)':>7} {'BKZ once':>9} {'Rep cvp':>8} {'(KDF%)':>7} "
              f"{'Rep babai':>9} {'(KDF%)':>7}  KDF")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['parameter_set']:<18} {r['gen_seconds']:>7.3f} {100 * r['gen_kdf_share']:>6.1f}% {r['basis_seconds']:>9.3f} "
              f"{r['rep_cvp_seconds']:>8.3f} {100 * r['rep_cvp_kdf_share']:>6.1f}% {r['rep_babai_seconds']:>9.3f} "
              f"{100 * r['rep_babai_kdf_share']:>6.1f}%  {r['kdf']}")
    flags.write_json(args.json, {"rows": rows})
    return 0


def register(commands) -> None:
    p = commands.add_parser("fe", help="median Gen and Rep time per L2FE-Hash record, with the KDF's share")
    flags.parameter_sets(p)
    p.add_argument("--records", type=int, default=7, help="records per set (medians over these)")
    p.add_argument("--threads", type=int, default=2, help="numba threads for the decoders")
    flags.decoder_backend(p)
    flags.json_output(p, "the rows")
    p.set_defaults(func=cmd_fe)
