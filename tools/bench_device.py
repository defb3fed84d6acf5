"""`latticelock bench device`: frames per second of the unlock loop and unlock latency, on N cores.

A replay of one person's images (dir://, from the datasets) stands in for the camera. The first
`--enrol-frames` images enrol the person into a temporary store (device KDF cost, real pipeline);
then:

- throughput: every other image of the replay goes through the loop's per-frame work (detect,
  choose, quality gate, embed, check against the record) as one long attempt, and the frames per
  second are reported with the median of each stage (the Argon2id check of a secret runs once per
  attempt, so in this steady state "verify" is the lattice decoding);
- latency: `--attempts` unlock attempts, each on a replay of the next `--policy-n` images (cycling),
  timed from the attempt's first frame to the decision (including, with `--mcu-sim`, the signed
  challenge-response with the simulated microcontroller over a local socket).

The process is pinned to the first `--cores` CPUs (default 2) and inference uses as many threads.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from latticelock.kernels.params import DEFAULT_SET


def _pin(cores: int) -> list[int]:
    from latticelock.tools.errors import ToolsError

    if cores < 1:
        raise ToolsError(f"--cores must be at least 1, got {cores}")
    available = sorted(os.sched_getaffinity(0))
    chosen = available[:cores]
    os.sched_setaffinity(0, chosen)
    return chosen


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_bench(person_dir: Path, *, cores: int, enrol_frames: int, attempts: int, policy, mcu_sim: bool, parameter_set: str,
              recipe_options: dict | None = None, pipeline=None, progress: bool = True) -> dict:
    """Enrol from the replay, then measure loop throughput and unlock latency pinned to `cores` CPUs (restored after)."""
    previous = os.sched_getaffinity(0)
    try:
        return _measure(person_dir, _pin(cores), enrol_frames=enrol_frames, attempts=attempts, policy=policy, mcu_sim=mcu_sim,
                        parameter_set=parameter_set, recipe_options=recipe_options, pipeline=pipeline, progress=progress)
    finally:
        os.sched_setaffinity(0, previous)


def _measure(person_dir: Path, pinned: list[int], *, enrol_frames: int, attempts: int, policy, mcu_sim: bool, parameter_set: str,
             recipe_options: dict | None, pipeline, progress: bool) -> dict:
    from tqdm import tqdm

    from latticelock.device.enrol import EnrolConfig, enrol
    from latticelock.device.lockout import Lockout, LockoutPolicy
    from latticelock.device.loop import Authenticator
    from latticelock.device.sources import open_source
    from latticelock.device.store import FlashStore
    from latticelock.models.pipeline import FacePipeline
    from latticelock.tools.errors import ToolsError

    recipe_options = dict(recipe_options or {})
    images = sorted(p for p in Path(person_dir).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if len(images) <= enrol_frames:
        raise ToolsError(f"{person_dir} has {len(images)} images; need more than --enrol-frames {enrol_frames}")
    probe_count = len(images) - enrol_frames
    pipeline = pipeline or FacePipeline(threads=len(pinned))
    with tempfile.TemporaryDirectory(prefix="latticelock-bench-") as tmp:
        store = FlashStore(Path(tmp) / "store")
        mcu = sim = None
        if mcu_sim:
            from latticelock.firmware_bridge.client import McuClient
            from latticelock.firmware_bridge.link import open_link
            from latticelock.firmware_bridge.simulator import McuSimulator

            sim = McuSimulator("listen://127.0.0.1:0", Path(tmp) / "mcu", provisioning=True).start()
            mcu = McuClient(open_link(sim.address, timeout=5))
        try:
            t0 = time.perf_counter()
            with open_source(f"dir://{person_dir}?count={enrol_frames}") as source:
                enrol("bench", source, pipeline, store, parameter_set, EnrolConfig(frames=enrol_frames, max_spread=2.0),
                      recipe_options=recipe_options)
            enrol_s = time.perf_counter() - t0
            # Rejected attempts are a result to report, not a reason to lock the benchmark out half-way.
            lockout = Lockout(store, LockoutPolicy(free_attempts=attempts + 1))
            auth = Authenticator(store, pipeline, policy=policy, lockout=lockout, recipe_options=recipe_options)
            stages: dict[str, list[float]] = {}
            outcomes: dict[str, int] = {}
            t0 = time.perf_counter()
            frames = 0
            with open_source(f"dir://{person_dir}?start={enrol_frames}") as source:
                for frame in tqdm(source, total=probe_count, desc="throughput", unit="frame", disable=not progress):
                    report, _ = auth.check_frame(frame)
                    frames += 1
                    kind = report.outcome.split(":")[0]
                    outcomes[kind] = outcomes.get(kind, 0) + 1
                    for stage, seconds in report.seconds.items():
                        stages.setdefault(stage, []).append(seconds)
            loop_s = time.perf_counter() - t0
            latencies, accepted = [], 0
            probes = images[enrol_frames:]
            for i in tqdm(range(attempts), desc="attempts", unit="attempt", disable=not progress):
                replay = Path(tmp) / f"attempt{i}"
                replay.mkdir()
                for j in range(policy.n):
                    image = probes[(i * policy.n + j) % probe_count]
                    (replay / f"{j:03d}{image.suffix}").symlink_to(image.resolve())
                with open_source(f"dir://{replay}") as source:
                    result = auth.unlock(source)
                latencies.append(result.latency_s)
                accepted += result.accepted
        finally:
            if mcu is not None:
                mcu.close()
                sim.stop()
    return {
        "person_dir": str(person_dir), "cores": pinned, "parameter_set": parameter_set, "policy": policy.describe(),
        "mcu": "simulated, local socket" if mcu_sim else None,
        "enrol_seconds": enrol_s, "frames": frames, "fps": frames / loop_s,
        "stage_median_ms": {k: 1000 * statistics.median(v) for k, v in stages.items()},
        "frame_outcomes": outcomes, "attempts": attempts, "accepted": accepted,
        "latency_median_s": statistics.median(latencies) if latencies else None,
        "latency_p90_s": _percentile(latencies, 0.9) if latencies else None,
    }


def format_report(r: dict) -> str:
    lines = [
        f"device loop on cores {r['cores']}: {r['person_dir']} ({r['parameter_set']}, {r['policy']}"
        + (f", MCU {r['mcu']})" if r["mcu"] else ")"),
        f"  enrolment (capture + Gen + store): {r['enrol_seconds']:.2f} s",
        f"  throughput: {r['frames']} frames, {r['fps']:.2f} frames/s; outcomes {r['frame_outcomes']}",
        "  stage medians: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["stage_median_ms"].items()),
    ]
    if r["latency_median_s"] is not None:
        lines.append(
            f"  unlock: {r['accepted']}/{r['attempts']} accepted, latency median {r['latency_median_s']:.2f} s, p90 {r['latency_p90_s']:.2f} s"
        )
    return "\n".join(lines)


def _handler(args) -> int:
    from latticelock.device.policy import PolicyConfig
    from latticelock.tools.bench_pipeline import datasets_dir

    person = Path(args.person) if args.person else datasets_dir() / "faces94_subset" / "anpage"
    policy = PolicyConfig(k=args.policy_k, n=args.policy_n, window_s=args.policy_window)
    report = run_bench(person, cores=args.cores, enrol_frames=args.enrol_frames, attempts=args.attempts, policy=policy,
                       mcu_sim=args.mcu_sim, parameter_set=args.parameter_set, recipe_options={"backend": args.decoder_backend})
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register(commands) -> None:
    parser = commands.add_parser("device", help="unlock loop frames/s and unlock latency on N cores",
                                 description="Frames per second of the device loop and unlock latency, replaying one person's images.")
    parser.add_argument("--person", help="folder of one person's images (default: faces94_subset/anpage in the datasets)")
    parser.add_argument("--cores", type=int, default=2, help="CPUs to pin to and inference threads (default 2)")
    parser.add_argument("--enrol-frames", type=int, default=5, help="images used to enrol (default 5)")
    parser.add_argument("--attempts", type=int, default=5, help="timed unlock attempts (default 5)")
    parser.add_argument("--policy-k", type=int, default=2)
    parser.add_argument("--policy-n", type=int, default=3)
    parser.add_argument("--policy-window", type=float, default=30.0, help="seconds (default 30, so slow machines are not cut off)")
    parser.add_argument("--parameter-set", default=DEFAULT_SET, help=f"L2FE-Hash parameter set (default {DEFAULT_SET})")
    parser.add_argument("--decoder-backend", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--mcu-sim", action="store_true", help="include the simulated microcontroller (hardened mode, signed unlock)")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.set_defaults(func=_handler)
