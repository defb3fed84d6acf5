"""`latticelock bench pipeline`: median CPU latency of the face pipeline's stages.

Frames are 640x480 RGB composed from real LFW photos when the datasets folder is present (one
face: one photo scaled to the frame height; many faces: a 4x2 grid of photos), else synthetic
noise frames (then the "faces found" column says 0 and only the cost of an empty search is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from latticelock.tools.errors import ToolsError

FRAME_W, FRAME_H = 640, 480
GRID = (4, 2)
SINGLE_FACE = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"


def datasets_dir() -> Path:
    """`$LATTICELOCK_DATASETS`, else the shared datasets folder beside the repository."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    return Path(os.environ.get("LATTICELOCK_DATASETS", default))


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


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `fn()` in milliseconds over `repeat` runs, after one untimed warm-up."""
    fn()  # warm-up: first ONNX Runtime calls allocate and pick kernels
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(threads: int, repeat: int, dataset: Path | None, backend: str = "onnxruntime") -> dict:
    """Median latency of detection (one face, many faces) and embedding (1 crop, 8 crops), as a JSON-ready dict."""
    from latticelock.models.facenet import Embedder
    from latticelock.models.mtcnn import Detector
    from latticelock.models.pipeline import FacePipeline

    detector = Detector(backend=backend, threads=threads)
    embedder = Embedder(backend=backend, threads=threads)
    pipeline = FacePipeline(detector=detector, embedder=embedder, flip_average=False)
    one, many, source = compose_frames(dataset)
    faces_one, faces_many = detector.detect(one), detector.detect(many)
    # With no face (synthetic frames) a plain corner crop costs FaceNet the same.
    crop = pipeline.crop(one, pipeline.choose(faces_one, one.shape)) if faces_one else one[:160, :160]
    crops8 = np.repeat(crop[None], 8, axis=0)
    rows = [
        ("detect 640x480, 1 face", median_ms(lambda: detector.detect(one), repeat), len(faces_one)),
        ("detect 640x480, many faces", median_ms(lambda: detector.detect(many), repeat), len(faces_many)),
        ("embed 1 crop", median_ms(lambda: embedder.embed(crops8[:1]), repeat), None),
        ("embed batch of 8", median_ms(lambda: embedder.embed(crops8), repeat), None),
    ]
    single = rows[2][1]
    return {
        "backend": backend,
        "threads": threads,
        "repeat": repeat,
        "frames": source,
        "results": [
            {"stage": name, "median_ms": round(ms, 2), "faces_found": faces, "ratio_to_one_embedding": round(ms / single, 2)}
            for name, ms, faces in rows
        ],
        "embed_batch8_ms_per_crop": round(rows[3][1] / 8, 2),
    }


def format_table(report: dict) -> str:
    """The `bench` report as a human table."""
    lines = [f"backend {report['backend']}, {report['threads']} threads, median of {report['repeat']}; frames: {report['frames']}"]
    lines.append(f"{'stage':<28} {'median ms':>10} {'x 1 embed':>10} {'faces':>6}")
    for row in report["results"]:
        faces = "" if row["faces_found"] is None else str(row["faces_found"])
        lines.append(f"{row['stage']:<28} {row['median_ms']:>10.1f} {row['ratio_to_one_embedding']:>10.2f} {faces:>6}")
    lines.append(f"{'batch of 8, per crop':<28} {report['embed_batch8_ms_per_crop']:>10.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or args.threads < 1:
        raise ToolsError("--repeat and --threads must be at least 1")
    dataset = args.dataset if args.dataset is not None else datasets_dir()
    report = bench(args.threads, args.repeat, dataset if dataset.is_dir() else None, args.backend)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register(commands) -> None:
    parser = commands.add_parser("pipeline", help="median latency of detection and embedding", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per stage (default 10)")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "tensorrt"))
    parser.add_argument("--dataset", type=Path, help="datasets folder holding lfw/ (default $LATTICELOCK_DATASETS or ../shared/datasets)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    parser.set_defaults(func=run)
