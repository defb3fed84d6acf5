"""`latticelock bench pipeline`: median CPU latency of the face pipeline's stages, beside the bare models.

Frames are 640x480 RGB composed from real LFW photos when the datasets folder is present (one
face: one photo scaled to the frame height; many faces: a 4x2 grid of photos), else synthetic
noise frames (then the "faces found" column says 0 and only the cost of an empty search is measured).

Each stage is timed in the same rounds as a raw ONNX Runtime reference on the same inputs (FaceNet
on the same float32 crops; P-Net, R-Net and O-Net on exactly the feeds our detector made for the
frame), so "x raw" is the cost of our code around the models whatever else the machine is doing.
JSON names the headline figures: `detect_s`, `detect_raw_s`, `detect_ratio` (whole frame, faces
from 20 px), `detect_loop_s` / `detect_tracked_s` with their `_raw_s` and `_ratio` (the device
loop's whole-frame and near-face searches), `embed_s`, `facenet_raw_s`, `embed_ratio` (one crop).
Last, the device's frame pipeline replays a folder of frames (default faces94 `anpage`) and its
frames/s and stage medians are reported under `stream`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from latticelock.tools import flags
from latticelock.tools.errors import ToolsError

FRAME_W, FRAME_H = 640, 480
GRID = (4, 2)
SINGLE_FACE = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"


def compose_frames(dataset: Path | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(one-face frame, many-faces frame, description) at 640x480."""
    import cv2

    from latticelock.models.pipeline import load_image

    lfw = dataset / "lfw" if dataset is not None else None
    if lfw is None or not lfw.is_dir():
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 256, size=(FRAME_H, FRAME_W, 3), dtype=np.uint8)
        return noise, noise.copy(), "synthetic noise (no datasets folder)"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and any(f.is_file() for f in p.iterdir()))
    if len(people) < GRID[0] * GRID[1]:
        raise ToolsError(f"{lfw} has {len(people)} identity folders with images; the many-faces frame needs {GRID[0] * GRID[1]}")
    rng = np.random.default_rng(seed)
    picks = [people[i] for i in rng.choice(len(people), size=GRID[0] * GRID[1], replace=False)]
    # A portrait with no second face in its background (many LFW photos have one).
    single = lfw / SINGLE_FACE if (lfw / SINGLE_FACE).is_file() else sorted(picks[0].iterdir())[0]
    photos = [load_image(single)] + [load_image(sorted(p.iterdir())[0]) for p in picks]
    one = np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8)
    big = cv2.resize(photos[0], (FRAME_H, FRAME_H), interpolation=cv2.INTER_LINEAR)
    x0 = (FRAME_W - FRAME_H) // 2
    one[:, x0 : x0 + FRAME_H] = big
    cell_w, cell_h = FRAME_W // GRID[0], FRAME_H // GRID[1]
    many = np.zeros_like(one)
    for k, photo in enumerate(photos[1:]):
        r, c = divmod(k, GRID[0])
        side = min(cell_w, cell_h)
        tile = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        y, x = r * cell_h + (cell_h - side) // 2, c * cell_w + (cell_w - side) // 2
        many[y : y + side, x : x + side] = tile
    return one, many, f"LFW photos from {lfw}"


def interleaved_medians(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each `fn()` in seconds over `repeat` rounds, after one untimed warm-up each.

    Each round runs every function once, so a load change on a shared machine hits all of them alike
    and their ratios stay meaningful even when the absolute figures drift.
    """
    for fn in fns.values():
        fn()  # warm-up: first ONNX Runtime calls allocate and pick kernels
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class _Recorder:
    """Stands in for a backend and keeps every feed it is given, to replay them on a raw session."""

    def __init__(self, name: str, backend, feeds: list) -> None:
        self.name, self.backend, self.feeds = name, backend, feeds
        self.input_names, self.output_names = backend.input_names, backend.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append((self.name, feeds))
        return self.backend.run(feeds)


def recorded_feeds(detector, call: Callable[[], object]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(net, feeds) of every network call that `call()` makes through `detector`, in order."""
    feeds: list = []
    nets = dict(detector.nets)
    detector.nets = {name: _Recorder(name, net, feeds) for name, net in nets.items()}
    try:
        call()
    finally:
        detector.nets = nets
    return feeds


def raw_sessions(threads: int) -> dict:
    """Plain ONNX Runtime sessions of the four networks, with the options our backends use."""
    import onnxruntime as ort

    from latticelock.models.assets import facenet_onnx_path, mtcnn_onnx_paths
    from latticelock.models.backends import session_options

    paths = {**mtcnn_onnx_paths(), "facenet": facenet_onnx_path()}
    return {name: ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
            for name, path in paths.items()}


def stream_fps(pipeline, replay: Path, passes: int) -> dict:
    """Frames/s of the device's frame pipeline over a replayed folder (median of `passes`), and its stage medians."""
    from latticelock.device.frames import FramePipeline
    from latticelock.device.sources import open_source

    frames = FramePipeline(pipeline)
    fps, stages = [], {}
    for _ in range(passes):
        with open_source(f"dir://{replay}") as source, frames.run(source) as results:
            count, start = 0, time.perf_counter()
            for result in results:
                count += 1
                for stage, seconds in result.seconds.items():
                    stages.setdefault(stage, []).append(seconds)
            fps.append(count / (time.perf_counter() - start))
    return {"replay": str(replay), "frames": count, "passes": passes, "flip_average": frames.flip_average,
            "fps": statistics.median(fps), "stage_median_ms": {k: 1000 * statistics.median(v) for k, v in stages.items()}}


def bench(threads: int, repeat: int, dataset: Path | None, backend: str = "onnxruntime", replay: Path | None = None,
          passes: int = 3) -> dict:
    """Medians of detection and embedding beside raw ONNX Runtime calls on the same inputs, as a JSON-ready dict.

    The raw references are the networks alone: FaceNet's session on one float32 crop, and MTCNN's
    three sessions replaying exactly the feeds our detector produced for the frame. A stage's ratio
    to its reference is the cost of our code around the models (resizing, NMS, crops, copies).
    """
    from latticelock.device.frames import SEARCH_MARGIN
    from latticelock.device.quality import QualityConfig
    from latticelock.models.facenet import Embedder
    from latticelock.models.mtcnn import Detector
    from latticelock.models.pipeline import FacePipeline
    from latticelock.models.tracker import FaceTracker, TrackerConfig

    detector = Detector(backend=backend, threads=threads)
    embedder = Embedder(backend=backend, threads=threads)
    pipeline = FacePipeline(detector=detector, embedder=embedder, flip_average=False)
    one, many, source = compose_frames(dataset)
    faces_one, faces_many = detector.detect(one), detector.detect(many)
    # With no face (synthetic frames) a plain corner crop costs FaceNet the same.
    crop = pipeline.crop(one, pipeline.choose(faces_one, one.shape)) if faces_one else one[:160, :160]
    crops8 = np.repeat(crop[None], 8, axis=0)
    # The loop's searches: the whole frame for faces the quality gate could accept, and near a tracked face.
    loop_sizes = (SEARCH_MARGIN * QualityConfig().min_face_px, math.inf)
    tracker = FaceTracker(pipeline, TrackerConfig(min_face_px=loop_sizes[0]))
    tracker.track(one, 0.0)
    near = tracker.tracker.plan(0.0)
    stages = {
        "detect 640x480, 1 face": (lambda: detector.detect(one), len(faces_one)),
        "detect 640x480, many faces": (lambda: detector.detect(many), len(faces_many)),
        f"detect 1 face, loop: faces >= {loop_sizes[0]:g} px": (lambda: detector.detect(one, face_sizes=loop_sizes), None),
        "detect 1 face, loop: near tracked face": (lambda: detector.detect(one, near.region, near.face_sizes), None),
        "embed 1 crop": (lambda: embedder.embed(crops8[:1]), None),
        "embed 1 crop + mirror": (lambda: pipeline.embed_crops(crops8[:1], flip_average=True), None),
        "embed batch of 8": (lambda: embedder.embed(crops8), None),
    }
    fns = {name: fn for name, (fn, _) in stages.items()}
    if backend == "onnxruntime":
        sessions = raw_sessions(threads)
        # The same float32 arrays our code hands ONNX Runtime; preparing them is not part of the reference.
        embed_feeds = {"embed 1 crop": crops8[:1], "embed 1 crop + mirror": np.concatenate([crops8[:1], crops8[:1, :, ::-1]]),
                       "embed batch of 8": crops8}
        for name, fn in list(fns.items()):
            if name in embed_feeds:
                feed = {"image": embed_feeds[name].astype(np.float32)}
                fns[f"raw {name}"] = lambda feed=feed: sessions["facenet"].run(None, feed)
            else:
                calls = recorded_feeds(detector, fn)
                fns[f"raw {name}"] = lambda calls=calls: [sessions[net].run(None, feeds) for net, feeds in calls]
    medians = interleaved_medians(fns, repeat)
    single = medians["embed 1 crop"]
    rows = []
    for name, (_, faces) in stages.items():
        raw = medians.get(f"raw {name}")
        rows.append({"stage": name, "median_ms": round(1000 * medians[name], 2), "faces_found": faces,
                     "raw_ms": None if raw is None else round(1000 * raw, 2),
                     "ratio_to_raw": None if raw is None else round(medians[name] / raw, 2),
                     "ratio_to_one_embedding": round(medians[name] / single, 2)})
    report = {
        "backend": backend, "threads": threads, "repeat": repeat, "frames": source, "results": rows,
        "embed_batch8_ms_per_crop": round(1000 * medians["embed batch of 8"] / 8, 2),
    }
    # The headline figures, by name: ours, the raw reference measured in the same rounds, and their ratio.
    for key, name in (("detect", "detect 640x480, 1 face"), ("detect_loop", f"detect 1 face, loop: faces >= {loop_sizes[0]:g} px"),
                      ("detect_tracked", "detect 1 face, loop: near tracked face"), ("embed", "embed 1 crop")):
        raw = medians.get(f"raw {name}")
        report[f"{key}_s"] = medians[name]
        report["facenet_raw_s" if key == "embed" else f"{key}_raw_s"] = raw
        report[f"{key}_ratio"] = None if raw is None else medians[name] / raw
    report["stream"] = stream_fps(pipeline, replay, passes) if replay is not None else None
    return report


def format_table(report: dict) -> str:
    """The `bench` report as a human table."""
    lines = [f"backend {report['backend']}, {report['threads']} threads, median of {report['repeat']}; frames: {report['frames']}"]
    lines.append(f"{'stage':<42} {'median ms':>10} {'raw ms':>8} {'x raw':>6} {'x 1 embed':>10} {'faces':>6}")
    for row in report["results"]:
        faces = "" if row["faces_found"] is None else str(row["faces_found"])
        raw = ("", "") if row["raw_ms"] is None else (f"{row['raw_ms']:.1f}", f"{row['ratio_to_raw']:.2f}")
        lines.append(f"{row['stage']:<42} {row['median_ms']:>10.1f} {raw[0]:>8} {raw[1]:>6} {row['ratio_to_one_embedding']:>10.2f} {faces:>6}")
    lines.append(f"{'batch of 8, per crop':<42} {report['embed_batch8_ms_per_crop']:>10.1f}")
    stream = report["stream"]
    if stream is not None:
        lines.append(
            f"frame pipeline on {stream['replay']} ({stream['frames']} frames, median of {stream['passes']} passes, "
            f"mirror averaging {'on' if stream['flip_average'] else 'off'}): {stream['fps']:.1f} frames/s; stage medians "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in stream["stage_median_ms"].items())
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from latticelock.tools.datasets import find_datasets

    flags.check_json_target(args.json)
    if args.repeat < 1 or args.threads < 1 or args.passes < 1:
        raise ToolsError("--repeat, --threads and --passes must be at least 1")
    if args.datasets is not None and find_datasets(args.datasets) is None:
        raise ToolsError(f"--datasets {args.datasets} is not a folder")
    dataset = find_datasets(args.datasets)
    replay = args.replay if args.replay is not None else (dataset / "faces94_subset" / "anpage" if dataset else None)
    if args.replay is not None and not replay.is_dir():
        raise ToolsError(f"--replay {replay} is not a folder")
    report = bench(args.threads, args.repeat, dataset, args.inference_backend,
                   replay if replay is not None and replay.is_dir() else None, args.passes)
    print(format_table(report))
    flags.write_json(args.json, report)
    return 0


def register(commands) -> None:
    parser = commands.add_parser("pipeline", help="median latency of detection and embedding, beside raw ONNX Runtime calls",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    parser.add_argument("--repeat", type=int, default=10, help="timed rounds per stage (default 10)")
    flags.inference_backend(parser)
    flags.datasets(parser)
    parser.add_argument("--replay", type=Path, metavar="DIR",
                        help="folder of frames for the frame pipeline's frames/s (default faces94_subset/anpage in the datasets)")
    parser.add_argument("--passes", type=int, default=3, help="replays of that folder (default 3)")
    flags.json_output(parser, "the figures")
    parser.set_defaults(func=run)
