"""Face crops of the attacker's public images: the training targets of the face generator.

Each crop is the face the embeddings file's FaceNet saw (MTCNN box, the file's alignment and
minimum face size, from its `config`), shrunk to the generator's resolution. Detection is the slow
part (about 0.08 s an LFW image here), so crops are kept in a resumable cache file written like an
embeddings file (atomically, owner-only: they are faces, if of public identities). Only images the
caller names are ever cropped: the generator's builder names public identities only.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from latticelock.tools.errors import ToolsError
from latticelock.tools.npz import load_npz

CHECKPOINT_EVERY = 500


def _read_cache(path: Path, size: int) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with load_npz(path, "a crops cache of the face generator; delete it to start over") as data:
            files = [str(f) for f in data["files"]]
            crops = np.asarray(data["crops"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ToolsError(f"cannot read crops cache {path}: {exc or type(exc).__name__}; delete it to start over") from None
    if crops.shape[1:] != (size, size, 3) or len(crops) != len(files) or crops.dtype != np.uint8:
        raise ToolsError(f"crops cache {path} holds {crops.dtype} {crops.shape}, not {size}x{size} RGB crops; delete it")
    return dict(zip(files, crops))


def _write_cache(path: Path, crops: dict[str, np.ndarray], size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(crops)
    stacked = np.stack([crops[n] for n in names]) if names else np.zeros((0, size, size, 3), np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, files=np.asarray(names, dtype=str), crops=stacked)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pipeline(config: dict):
    from latticelock.models.mtcnn import Detector
    from latticelock.models.pipeline import FacePipeline

    detector = Detector(min_face_size=int(config.get("min_face_size", 20)))
    return FacePipeline(detector=detector, alignment=config.get("alignment", "margin"))


def _crop(pipeline, path: Path, size: int) -> np.ndarray | None:
    import cv2

    from latticelock.models.errors import ImageError
    from latticelock.models.pipeline import load_image

    try:
        image = load_image(path)
    except ImageError:
        return None
    face = pipeline.choose(pipeline.faces(image), image.shape)
    if face is None:
        return None
    return cv2.resize(pipeline.crop(image, face), (size, size), interpolation=cv2.INTER_AREA)


def face_crops(
    dataset: Path, files: Sequence[str], config: dict, size: int, cache: Path, progress: bool = True
) -> dict[str, np.ndarray]:
    """uint8 [size, size, 3] RGB crop per file (relative to `dataset`) where a face is found; images
    already in `cache` are not detected again, and the cache is saved every few hundred images."""
    from tqdm import tqdm

    crops = _read_cache(cache, size)
    todo = [f for f in files if f not in crops]
    if todo:
        pipeline = _pipeline(config)
        for done, name in enumerate(tqdm(todo, desc="public face crops", disable=not progress, mininterval=5.0), 1):
            crop = _crop(pipeline, dataset / name, size)
            if crop is not None:
                crops[name] = crop
            if done % CHECKPOINT_EVERY == 0:
                _write_cache(cache, crops, size)
        _write_cache(cache, crops, size)
    return {f: crops[f] for f in files if f in crops}


def photos(dataset: Path, files: Sequence[str], config: dict, size: int) -> list[np.ndarray | None]:
    """The same crops for a few victims' photos (the face grids), in memory only: never cached."""
    pipeline = _pipeline(config)
    return [_crop(pipeline, dataset / name, size) for name in files]
