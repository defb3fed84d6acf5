"""`latticelock bench mcu`: what one match costs the microcontroller, counted, and its time on a Cortex-M33.

Every probe of an embeddings file is decoded by the firmware's integer decoder
(`firmware_bridge.lattice_match`) against a template enrolled from each identity's first image, for
each parameter set that shares the device lattice (the operating points give each record its own
radius: the template's, as enrolment computes it; the paper's set one radius for all). The
firmware counts search nodes and 64-bit multiply-accumulates; a real part pads every decode to the
node budget so its duration says nothing about the target. The time on a Cortex-M33 is estimated on
paper from those counts with the cycle costs below (printed with the arithmetic), not measured: no
microcontroller is attached here. The simulator's own wall time per decode is printed as well.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from latticelock.tools import flags

# Cycle costs on a Cortex-M33 (single-cycle 32x32 multiply, 64-bit operations taking 2-4 cycles):
# one search node is ~25 instructions (two 64-bit shifts and subtractions, a 32x32->64 and a 64x32
# multiply for the partial distance, a compare, the zig-zag update), one multiply-accumulate 4 cycles.
CYCLES_PER_NODE = 40
CYCLES_PER_MAC = 4
CLOCK_HZ = 160e6  # e.g. STM32U5 at 160 MHz


def _percentile(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench(path, people: int | None = None, seed: bytes | None = None) -> dict:
    from latticelock.firmware_bridge.lattice_match import (
        MAC_BUDGET, NODE_BUDGET, LatticeTables, OpCounts, expand_matrix, match, validate,
    )
    from latticelock.kernels.params import DEFAULT_SET, PARAMETER_SETS
    from latticelock.kernels.recipe import device_lattice, probe_vector, record_radii_sq, shares_lattice
    from latticelock.tools.embeddings import load_embeddings

    data = load_embeddings(path)
    lattice = device_lattice(seed or os.urandom(32), DEFAULT_SET)
    tables = LatticeTables.from_float(lattice.q, lattice.n, lattice.basis, lattice.mu, lattice.proj, lattice.bstar_sqnorm)
    A = expand_matrix(lattice.seed, lattice.m, lattice.n, lattice.q)
    rows = validate(tables, A)
    vectors = np.stack([probe_vector(x, DEFAULT_SET) for x in data.embeddings])
    names = sorted(set(data.labels))[:people]
    rng = np.random.default_rng(0)
    results = []
    for parameter_set in (p for p in PARAMETER_SETS if shares_lattice(p, DEFAULT_SET)):
        genuine: list[OpCounts] = []
        impostor: list[OpCounts] = []
        wall: list[float] = []
        radii = []
        for name in names:
            own = np.flatnonzero(data.labels == name)
            r2 = record_radii_sq(data.embeddings[own[0]], parameter_set)[0]
            radii.append(float(np.sqrt(r2)))
            s = rng.integers(0, lattice.q, lattice.n)
            c = (A @ s + vectors[own[0]]) % lattice.q
            for j in range(len(vectors)):
                counts = OpCounts()
                t0 = time.perf_counter()
                match(tables, A, rows, c, vectors[j], r2, counts)
                wall.append(time.perf_counter() - t0)
                (genuine if data.labels[j] == name else impostor).append(counts)
        worst_macs = max(c.macs for c in genuine + impostor)
        recovery = lattice.n * lattice.n + lattice.m * lattice.n
        cycles = NODE_BUDGET * CYCLES_PER_NODE + (MAC_BUDGET + recovery) * CYCLES_PER_MAC
        results.append({
            "parameter_set": parameter_set, "radius": statistics.median(radii), "radius_max": max(radii),
            "genuine_decodes": len(genuine), "impostor_decodes": len(impostor),
            "genuine_nodes_median": statistics.median(c.nodes for c in genuine),
            "genuine_nodes_max": max(c.nodes for c in genuine),
            "impostor_nodes_median": statistics.median(c.nodes for c in impostor),
            "impostor_nodes_p99": _percentile([c.nodes for c in impostor], 99),
            "impostor_nodes_max": max(c.nodes for c in impostor),
            "macs_median": statistics.median(c.macs for c in genuine + impostor), "macs_max": worst_macs,
            "node_budget": NODE_BUDGET, "mac_budget": MAC_BUDGET, "recovery_macs": recovery,
            "macs_over_budget": sum(c.macs - recovery > MAC_BUDGET for c in genuine + impostor), "budget_exceeded": sum(c.nodes >= NODE_BUDGET for c in impostor + genuine),
            "m33_cycles_per_decode": cycles, "m33_ms_per_decode": 1000 * cycles / CLOCK_HZ,
            "simulator_ms_per_decode_median": 1000 * statistics.median(wall),
        })
    return {"embeddings": str(path), "people": len(names), "probes": len(vectors), "tables_bytes": len(tables.to_bytes()),
            "cycles_per_node": CYCLES_PER_NODE, "cycles_per_mac": CYCLES_PER_MAC, "clock_hz": CLOCK_HZ, "sets": results}


def format_report(report: dict) -> str:
    lines = [f"{report['embeddings']}: {report['people']} templates x {report['probes']} probes; tables {report['tables_bytes']} B",
             f"{'parameter set':<24} {'radius':>7} {'max':>7} {'gen nodes':>10} {'imp nodes med/p99/max':>22} {'MACs max':>9} "
             f"{'M33 ms':>7} {'sim ms':>7}"]
    for r in report["sets"]:
        lines.append(f"{r['parameter_set']:<24} {r['radius']:7.1f} {r['radius_max']:7.1f} {r['genuine_nodes_max']:>10} "
                     f"{r['impostor_nodes_median']:>8.0f}/{r['impostor_nodes_p99']:.0f}/{r['impostor_nodes_max']:<6} "
                     f"{r['macs_max']:>9} {r['m33_ms_per_decode']:7.2f} {r['simulator_ms_per_decode_median']:7.2f}")
    r = max(report["sets"], key=lambda r: r["m33_cycles_per_decode"])
    lines.append(f"Cortex-M33 estimate (every decode padded to its budgets): {r['node_budget']} nodes x "
                 f"{report['cycles_per_node']} + ({r['mac_budget']} + {r['recovery_macs']}) MACs x {report['cycles_per_mac']} = "
                 f"{r['m33_cycles_per_decode']:,} cycles = {r['m33_ms_per_decode']:.1f} ms at {report['clock_hz'] / 1e6:.0f} MHz "
                 f"per user per probe (on paper, from the counts; no microcontroller was measured)")
    return "\n".join(lines)


def register(commands) -> None:
    parser = commands.add_parser("mcu", help="the microcontroller's match: operation counts and a Cortex-M33 estimate",
                                 description=__doc__.split("\n\n")[0])
    flags.embeddings(parser)
    parser.add_argument("--people", type=int, help="templates to enrol (default: every identity)")
    flags.json_output(parser, "the counts")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from latticelock.tools.errors import ToolsError

    flags.check_json_target(args.json)
    if args.people is not None and args.people < 1:
        raise ToolsError("--people must be at least 1")
    report = bench(args.embeddings, args.people)
    print(format_report(report))
    flags.write_json(args.json, report)
    return 0
