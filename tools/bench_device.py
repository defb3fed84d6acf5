"""`latticelock bench device`: the unlock loop as the device runs it, on N cores, beside the costs it cannot avoid.

A replay of one person's images (dir://, from the datasets) stands in for the camera. The first
`--enrol-frames` images enrol the person into a temporary store (hardened by default: a simulated
microcontroller in this process, over a real socket, which seals the record and decides every face);
the loop is built and warmed up (models, decoders, numba) before anything is timed. Then:

- throughput: the remaining images, `--passes` times, through the loop's frame pipeline (tracked
  detection, quality gate and FaceNet overlapped in threads): frames per second and stage medians;
- latency: `--attempts` unlock attempts, each a replay of the next `policy.n` images (cycling), timed
  from the moment the first usable frame enters the pipeline to the decision (with the chip's answer
  and its signature, hardened);
- references measured in the same run: one Argon2id at the device cost (what a KDF-based decision
  costs at least) and one raw ONNX Runtime FaceNet inference on one crop; `latency_ratio` = unlock
  latency / (Argon2id + raw FaceNet). Peak resident memory of the process is reported.

The process is pinned to the first `--cores` CPUs (default 2) and inference uses as many threads.
The chip's daily budget is lifted for the run; every other limit is the device's.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from latticelock.tools import flags

PASSCODE = "bench-passcode"


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


def run_bench(person_dir: Path, *, cores: int = 2, enrol_frames: int = 5, attempts: int = 10, passes: int = 3,
              mode: str = "hardened", parameter_set: str | None = None, recipe_options: dict | None = None,
              pipeline=None, references: bool = True, progress: bool = True) -> dict:
    """Enrol from the replay, then measure the loop pinned to `cores` CPUs (the affinity is restored after)."""
    previous = os.sched_getaffinity(0)
    try:
        pinned = _pin(cores)
        return _measure(Path(person_dir), pinned, enrol_frames, attempts, passes, mode, parameter_set, recipe_options or {},
                        pipeline, references, progress)
    finally:
        os.sched_setaffinity(0, previous)


def _references(threads: int, repeat: int = 5) -> dict:
    """One Argon2id at the device cost and one raw FaceNet inference, medians over `repeat` runs."""
    import numpy as np

    from latticelock.kernels.kdf import DEVICE_COST, argon2id
    from latticelock.tools.bench_pipeline import raw_sessions

    session = raw_sessions(threads)["facenet"]
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).uniform(0, 255, (1, 160, 160, 3)).astype(np.float32)}
    kdf, facenet = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        argon2id(bytes(64), bytes(16), DEVICE_COST)
        t1 = time.perf_counter()
        session.run(None, feed)
        facenet.append(time.perf_counter() - t1)
        kdf.append(t1 - t0)
    return {"argon2id_s": statistics.median(kdf), "facenet_raw_s": statistics.median(facenet), "kdf": DEVICE_COST.describe()}


def _measure(person_dir: Path, pinned: list[int], enrol_frames: int, attempts: int, passes: int, mode: str,
             parameter_set: str | None, recipe_options: dict, pipeline, references: bool, progress: bool) -> dict:
    import contextlib

    from tqdm import tqdm

    from latticelock.device.enrol import EnrolConfig, enrol
    from latticelock.device.lockout import Lockout, LockoutPolicy
    from latticelock.device.loop import Authenticator
    from latticelock.device.policy import DEFAULT_POLICY
    from latticelock.device.sources import SourceOptions, open_source
    from latticelock.device.store import FlashStore
    from latticelock.firmware_bridge.simulator import embedded
    from latticelock.kernels.params import DEFAULT_SET
    from latticelock.models.pipeline import FacePipeline
    from latticelock.tools.errors import ToolsError

    parameter_set = parameter_set or DEFAULT_SET
    images = sorted(p for p in person_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if len(images) <= enrol_frames:
        raise ToolsError(f"{person_dir} has {len(images)} images; need more than --enrol-frames {enrol_frames}")
    probes = images[enrol_frames:]
    policy = DEFAULT_POLICY
    pipeline = pipeline or FacePipeline(threads=len(pinned))
    with tempfile.TemporaryDirectory(prefix="latticelock-bench-") as tmp, contextlib.ExitStack() as stack:
        store = FlashStore(Path(tmp) / "store", mode=mode)
        mcu = None
        if mode == "hardened":
            mcu, _ = stack.enter_context(embedded(Path(tmp) / "mcu", provisioning=True, daily_attempts=100_000))
            mcu.set_passcode(PASSCODE)
        t0 = time.perf_counter()
        with open_source(f"dir://{person_dir}?count={enrol_frames}") as source:
            enrol("bench", source, pipeline, store, parameter_set, EnrolConfig(frames=enrol_frames, max_spread=2.0),
                  mcu=mcu, recipe_options=recipe_options)
        enrol_s = time.perf_counter() - t0
        # Rejected attempts are a result to report, not a reason to lock the benchmark out half-way.
        lockout = Lockout(store, LockoutPolicy(free_attempts=attempts + 1))
        t0 = time.perf_counter()
        auth = Authenticator(store, pipeline, mcu=mcu, lockout=lockout, recipe_options=recipe_options)
        warm_up_s = time.perf_counter() - t0

        stages: dict[str, list[float]] = {}
        outcomes: dict[str, int] = {}
        frames = 0
        options = SourceOptions(loop=max(passes - 1, 0))
        t0 = time.perf_counter()
        with open_source(f"dir://{person_dir}?start={enrol_frames}", options) as source, auth.frames.run(source) as results:
            for r in tqdm(results, total=len(probes) * passes, desc="throughput", unit="frame", disable=not progress):
                frames += 1
                outcome = "usable" if r.usable else r.reason.split(":")[0]
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                for stage, seconds in r.seconds.items():
                    stages.setdefault(stage, []).append(seconds)
        loop_s = time.perf_counter() - t0

        latencies, accepted = [], 0
        for i in tqdm(range(attempts), desc="attempts", unit="attempt", disable=not progress):
            replay = Path(tmp) / f"attempt{i}"
            replay.mkdir()
            for j in range(policy.n):
                image = probes[(i * policy.n + j) % len(probes)]
                (replay / f"{j:03d}{image.suffix}").symlink_to(image.resolve())
            with open_source(f"dir://{replay}") as source:
                result = auth.unlock(source)
            latencies.append(result.latency_s)
            accepted += result.accepted
        refs = _references(len(pinned)) if references else {"argon2id_s": None, "facenet_raw_s": None}
    latency = statistics.median(latencies) if latencies else None
    denominator = (refs["argon2id_s"] or 0) + (refs["facenet_raw_s"] or 0)
    return {
        "person_dir": str(person_dir), "cores": pinned, "mode": mode, "parameter_set": parameter_set,
        "policy": policy.describe(), "enrol_s": enrol_s, "warm_up_s": warm_up_s,
        "frames": frames, "fps": frames / loop_s, "stage_median_ms": {k: 1000 * statistics.median(v) for k, v in stages.items()},
        "frame_outcomes": outcomes, "attempts": attempts, "accepted": accepted,
        "unlock_latency_median_s": latency,
        "unlock_latency_p90_s": _percentile(latencies, 0.9) if latencies else None,
        **refs,
        "latency_ratio": latency / denominator if latency is not None and denominator else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_report(r: dict) -> str:
    lines = [
        f"device loop on cores {r['cores']}: {r['person_dir']} ({r['mode']}, {r['parameter_set']}, {r['policy']})",
        f"  enrolment {r['enrol_s']:.2f} s; start-up with warm-up {r['warm_up_s']:.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB",
        f"  throughput: {r['frames']} frames, {r['fps']:.2f} frames/s; outcomes {r['frame_outcomes']}",
        "  stage medians: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["stage_median_ms"].items()),
    ]
    if r["unlock_latency_median_s"] is not None:
        lines.append(f"  unlock: {r['accepted']}/{r['attempts']} accepted, latency median {r['unlock_latency_median_s']:.3f} s, "
                     f"p90 {r['unlock_latency_p90_s']:.3f} s")
    if r["argon2id_s"] is not None:
        lines.append(f"  references in this run: Argon2id ({r['kdf']}) {r['argon2id_s']:.3f} s, raw FaceNet on one crop "
                     f"{r['facenet_raw_s'] * 1000:.1f} ms; latency / (Argon2id + FaceNet) = {r['latency_ratio']:.2f}")
    return "\n".join(lines)


def _handler(args) -> int:
    from latticelock.tools.datasets import dataset_path
    from latticelock.tools.errors import ToolsError

    flags.check_json_target(args.json)
    if args.attempts < 1 or args.passes < 1 or args.enrol_frames < 1:
        raise ToolsError("--attempts, --passes and --enrol-frames must be at least 1")
    person = Path(args.person) if args.person else dataset_path("faces94_subset/anpage", args.datasets)
    report = run_bench(person, cores=args.cores, enrol_frames=args.enrol_frames, attempts=args.attempts, passes=args.passes,
                       mode=args.mode, parameter_set=args.parameter_set, recipe_options={"backend": args.decoder_backend})
    print(format_report(report))
    flags.write_json(args.json, report)
    return 0


def register(commands) -> None:
    from latticelock.kernels.params import DEFAULT_SET

    parser = commands.add_parser("device", help="unlock loop frames/s and unlock latency on N cores, beside Argon2id and raw FaceNet",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("--person", help="folder of one person's images (default: faces94_subset/anpage in the datasets)")
    flags.datasets(parser)
    parser.add_argument("--cores", type=int, default=2, help="CPUs to pin to and inference threads (default 2)")
    parser.add_argument("--enrol-frames", type=int, default=5, help="images used to enrol (default 5)")
    parser.add_argument("--attempts", type=int, default=10, help="timed unlock attempts (default 10)")
    parser.add_argument("--passes", type=int, default=3, help="passes over the replay for the throughput (default 3)")
    parser.add_argument("--mode", choices=("hardened", "plain"), default="hardened",
                        help="hardened (simulated microcontroller, the default) or plain")
    parser.add_argument("--parameter-set", default=DEFAULT_SET, help=f"operating point (default {DEFAULT_SET})")
    flags.decoder_backend(parser)
    flags.json_output(parser, "the report")
    parser.set_defaults(func=_handler)
