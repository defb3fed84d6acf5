"""`latticelock eval embed`: embed every face image of an identity-folder dataset into one .npz file.

Output arrays: `embeddings` float32 [N, 512], `labels` (identity = folder name), `files` (paths relative
to the dataset folder), `failures` (relative paths with no face or an unreadable image) and
`failure_reasons` beside them. The run is resumable: every `--checkpoint-every` images the results so
far go atomically to `OUT.partial.npz`; a rerun with the same options continues from there, and the
final file is written atomically, after which the side file is removed. Both are created readable
by their owner only: embeddings are biometric data.

Each face is embedded once, as the unlock loop embeds its frames (`device.frames.LOOP_FLIP_AVERAGE`).
`--mirror-average` also embeds the mirror image and averages the two, as enrolment builds templates, at
twice FaceNet's work. The device's own case, a mirror-averaged template against single-pass frames,
takes one file of each: `eval lfw` and `eval policy` read frames from `--probe-embeddings`.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latticelock.tools import flags
from latticelock.tools.embeddings import EmbeddingsWriter, load_embeddings, option_differences
from latticelock.tools.errors import ToolsError

if TYPE_CHECKING:
    from latticelock.models.pipeline import FacePipeline

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}

# Worker processes, one inference thread each, beat one process with many threads: MTCNN is many
# small network calls with Python between them, which threads of one process cannot overlap. Each
# worker holds its own models (about 0.55 GB resident, measured here), so their number is capped
# and cores beyond the cap become inference threads.
MAX_WORKERS = 8

# Faces below 40 px are no use to FaceNet's 160 px input, and searching for them costs: MTCNN took
# 30.3 ms an LFW image from 20 px, 19.4 ms from 40 px (200 images, one thread, quiet). Every LFW,
# faces94 and deepface figure in the README was embedded from 40 px.
DEFAULT_MIN_FACE_SIZE = 40


def parallelism(workers: int | None, threads: int | None, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, inference threads per worker): what was asked, the rest filled in from the usable cores."""
    cores = cores or len(os.sched_getaffinity(0))
    if workers is not None and workers < 1:
        raise ToolsError("--workers must be at least 1")
    if threads is not None and threads < 1:
        raise ToolsError("--threads must be at least 1")
    if workers is None:
        workers = max(1, min(MAX_WORKERS, cores // (threads or 1)))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def list_images(root: Path) -> list[str]:
    """Image paths relative to `root`, one level of identity folders, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ToolsError(f"dataset folder {root} {'is not a folder' if root.exists() else 'does not exist'}")
    files = [
        f"{folder.name}/{image.name}"
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        for image in sorted(folder.iterdir())
        if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise ToolsError(f"no images found in identity folders under {root}")
    return files


def partial_path(out: Path) -> Path:
    """The checkpoint file beside `out`."""
    return out.with_name(out.name + ".partial.npz")


def build_pipeline(
    alignment: str, flip_average: bool, backend: str, threads: int | None, min_face_size: int
) -> FacePipeline:
    """A FacePipeline from plain options (picklable, so worker processes can build their own)."""
    from latticelock.models.mtcnn import Detector
    from latticelock.models.pipeline import FacePipeline

    detector = Detector(backend=backend, threads=threads, min_face_size=min_face_size)
    return FacePipeline(detector=detector, alignment=alignment, flip_average=flip_average, backend=backend, threads=threads)


Outcome = tuple[str, "np.ndarray | None", str]  # (file, embedding or None, failure reason)

_worker_pipeline: FacePipeline | None = None


def embed_files(root: Path, names: list[str], pipeline: FacePipeline) -> list[Outcome]:
    """Embed a chunk of files with one FaceNet batch; unreadable files and faceless images become failures."""
    from latticelock.models.errors import ImageError
    from latticelock.models.pipeline import load_image

    outcomes: list[Outcome] = []
    crops, cropped = [], []
    for name in names:
        try:
            image = load_image(root / name)
            face = pipeline.choose(pipeline.faces(image), image.shape)
        except ImageError as exc:
            outcomes.append((name, None, str(exc)))
            continue
        if face is None:
            outcomes.append((name, None, "no face detected"))
        else:
            cropped.append(len(outcomes))
            outcomes.append((name, None, ""))
            crops.append(pipeline.crop(image, face))
    if crops:
        for index, embedding in zip(cropped, pipeline.embed_crops(np.stack(crops)), strict=True):
            outcomes[index] = (outcomes[index][0], embedding, "")
    return outcomes


def _worker_init(factory: Callable[[], FacePipeline]) -> None:
    global _worker_pipeline
    _worker_pipeline = factory()


def _worker_embed(job: tuple[Path, list[str]]) -> list[Outcome]:
    return embed_files(job[0], job[1], _worker_pipeline)


def embed_dataset(
    root: Path,
    files: list[str],
    factory: Callable[[], FacePipeline],
    out: Path,
    config: dict,
    checkpoint_every: int = 200,
    chunk: int = 16,
    workers: int = 1,
    progress: bool = True,
) -> EmbeddingsWriter:
    """Embed `files` (relative to `root`) with pipelines from `factory`, resuming from and checkpointing to OUT.partial.npz.

    With `workers` > 1 each worker process builds its own pipeline (best with one inference thread
    each: ONNX Runtime's spinning thread pool wastes CPU on a busy machine) and chunks come back in order.
    """
    from tqdm import tqdm

    side = partial_path(out)
    result = EmbeddingsWriter(config=config)
    if side.exists():
        result = EmbeddingsWriter.resume(side)
        if result.config != config:
            raise ToolsError(f"{side} was made with other options ({option_differences(result.config, config)}); "
                             "rerun with those or delete it to start over")
    done = result.done()
    todo = [f for f in files if f not in done]
    jobs = [(root, todo[i : i + chunk]) for i in range(0, len(todo), chunk)]
    bar = tqdm(total=len(files), initial=len(files) - len(todo), unit="img", disable=not progress, mininterval=2.0,
               desc=f"embed {root.name}")
    pool = None
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_worker_init, initargs=(factory,))
        results = pool.imap(_worker_embed, jobs)
    else:
        pipeline = factory()
        results = (embed_files(r, names, pipeline) for r, names in jobs)
    try:
        since_checkpoint = 0
        for outcomes in results:
            for name, embedding, reason in outcomes:
                if embedding is None:
                    result.failures.append(name)
                    result.failure_reasons.append(reason)
                else:
                    result.files.append(name)
                    result.embeddings.append(embedding)
            bar.update(len(outcomes))
            since_checkpoint += len(outcomes)
            if since_checkpoint >= checkpoint_every:
                result.save(side)
                since_checkpoint = 0
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    result.save(out)
    side.unlink(missing_ok=True)
    return result


def check_out(out: Path, config: dict) -> None:
    """Before any work: OUT must name a file that can be written, and an existing one is replaced only by a rerun
    with its options."""
    if not out.name or out.is_dir():
        raise ToolsError(f"--out {str(out)!r}: give a file name for the embeddings, not a folder")
    if out.exists() or out.is_symlink():
        if not out.is_file():
            raise ToolsError(f"--out {out} exists and is not a regular file; choose another --out")
        try:
            made = load_embeddings(out).config
        except ToolsError as exc:
            raise ToolsError(f"--out {out} exists and is no embeddings file to continue ({exc}); choose another --out or delete it") from None
        if made != config:
            raise ToolsError(f"--out {out} exists, made with other options ({option_differences(made, config)}); "
                             "choose another --out or delete it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        longest = len(partial_path(out).name) + 16  # the checkpoint's temporary name while it is written
        if longest > os.pathconf(out.parent, "PC_NAME_MAX"):
            raise ToolsError(f"--out {out}: the file name is too long for its checkpoint beside it; choose a shorter one")
    except OSError as exc:
        raise ToolsError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    from latticelock.models.mtcnn import PNET_CELL

    flags.check_json_target(args.json)
    if args.min_face_size < PNET_CELL:
        raise ToolsError(f"--min-face-size must be at least {PNET_CELL} px (MTCNN's smallest window), got {args.min_face_size}")
    if args.limit is not None and args.limit < 1:
        raise ToolsError("--limit must be at least 1")
    if args.folds is not None and args.folds < 1:
        raise ToolsError("--folds must be at least 1")
    if args.folds is not None and args.pairs is None:
        raise ToolsError("--folds chooses folds of --pairs; give both")
    root = args.dataset.resolve()
    files = list_images(root)
    if args.pairs is not None:
        from latticelock.tools.pairs import read_pairs

        pairs = [p for p in read_pairs(args.pairs) if args.folds is None or p.fold < args.folds]
        wanted = {p.first for p in pairs} | {p.second for p in pairs}
        files = [f for f in files if f in wanted]
    if args.limit is not None:
        files = files[: args.limit]
    config = {
        "dataset": str(root),
        "alignment": args.alignment,
        "flip_average": args.mirror_average,
        "backend": args.inference_backend,
        "pairs": str(args.pairs.resolve()) if args.pairs else None,
        "folds": args.folds,
        "limit": args.limit,
        "min_face_size": args.min_face_size,
    }
    check_out(args.out, config)
    workers, threads = parallelism(args.workers, args.threads)
    factory = functools.partial(build_pipeline, args.alignment, args.mirror_average, args.inference_backend, threads, args.min_face_size)
    start = time.perf_counter()
    result = embed_dataset(root, files, factory, args.out, config, args.checkpoint_every, workers=workers,
                           progress=not args.quiet)
    seconds = time.perf_counter() - start
    summary = {
        "images": len(files),
        "embedded": len(result.files),
        "failures": len(result.failures),
        "identities": len({f.split("/")[0] for f in result.files}),
        "workers": workers,
        "threads": threads,
        "seconds_this_run": round(seconds, 1),
        "out": str(args.out),
        **config,
    }
    width = max(len(k) for k in summary)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in summary.items()))
    flags.write_json(args.json, summary)
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "embed",
        help="embed every face of an identity-folder dataset into an .npz (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="folder of <identity>/<image> files")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.npz", help="where to write the embeddings")
    parser.add_argument("--alignment", choices=("margin", "landmarks"), default="margin",
                        help="facenet's margin crop (default; better on LFW) or a 5-point similarity warp")
    parser.add_argument("--mirror-average", action="store_true",
                        help="also embed each face's mirror image and average the two, as enrolment builds templates "
                             "(twice FaceNet's work; default: one pass, as the unlock loop embeds frames)")
    flags.inference_backend(parser)
    parser.add_argument("--workers", type=int,
                        help=f"worker processes (default: one per usable core, at most {MAX_WORKERS})")
    parser.add_argument("--threads", type=int, help="inference threads per worker (default: the usable cores left per worker, at least 1)")
    parser.add_argument("--min-face-size", type=int, default=DEFAULT_MIN_FACE_SIZE, metavar="PX",
                        help=f"smallest face MTCNN looks for, in pixels, at least 12 (default {DEFAULT_MIN_FACE_SIZE}; smaller is slower)")
    parser.add_argument("--limit", type=int, help="embed only the first N images (sorted order)")
    parser.add_argument("--pairs", type=Path, help="embed only the images an LFW pairs file names")
    parser.add_argument("--folds", type=int, help="with --pairs: only the first K folds")
    parser.add_argument("--checkpoint-every", type=int, default=200, metavar="N", help="save progress every N images")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    flags.json_output(parser, "the run summary")
    parser.set_defaults(func=run)
