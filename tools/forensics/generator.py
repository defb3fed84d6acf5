"""PIPE step 2 in image space: a face generator from a 512-d embedding, trained on public faces only.

The weights are built into the model cache (`latticelock.models.assets.cache_dir()`) beside a JSON
manifest, like the converted FaceNet: the manifest records the weights' sha256, the architecture,
the training data (embeddings file and its sha256, the identities trained on, as a sorted list and
its sha256), the training time and the hardware, and a weights file that no longer matches it is
refused. The report refuses a generator that saw any of its victims' identities. Nothing is ever
committed: `latticelock forensics generator` rebuilds it.

PyTorch is an optional extra (`pip install -e '.[forensics]'`); the network lives in
`generator_net`, imported only here, so nothing else of ours needs torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latticelock.tools.errors import ToolsError

MANIFEST_VERSION = 1
INSTALL_HINT = "install the extra: pip install -e '.[forensics]'"


def require_torch():
    """The generator_net module; ToolsError naming the extra when PyTorch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ToolsError(f"the image-space attack needs PyTorch, which is not installed; {INSTALL_HINT}") from None
    from latticelock.tools.forensics import generator_net

    return generator_net


def default_path() -> Path:
    from latticelock.models.assets import cache_dir

    return cache_dir() / f"face-generator-{require_torch().ARCHITECTURE}.pt"


def manifest_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".manifest.json")


@dataclass(frozen=True)
class Generator:
    """A loaded generator and what its manifest says about it."""

    model: object
    manifest: dict

    @property
    def identities(self) -> frozenset[str]:
        return frozenset(self.manifest["training"]["identities"])

    def describe(self) -> str:
        m, t = self.manifest, self.manifest["training"]
        return (f"{m['architecture']} (linear, {m['parameters']:,} parameters, {m['size']}x{m['size']} RGB, ridge "
                f"penalty {t['penalty']}) fitted on {t['images']} images of {len(t['identities'])} public identities "
                f"in {t['seconds'] / 60:.1f} min on {m['hardware']}; held-out pixel RMSE {t['held_out_rmse']:.3f}; "
                f"sha256 {m['sha256'][:16]}")

    def generate(self, embeddings: np.ndarray) -> np.ndarray:
        """uint8 [N, size, size, 3] faces."""
        return require_torch().generate(self.model, embeddings)


def _sha256(path: Path) -> str:
    from latticelock.models.assets import sha256_file

    return sha256_file(path)


def hardware() -> str:
    """What trained or ran the model, in words (this build trains on the CPU only)."""
    torch = require_torch().torch
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads)"


def build(
    embeddings: np.ndarray,
    crops: np.ndarray,
    labels: np.ndarray,
    source: dict,
    out: Path,
    *,
    threads: int | None = None,
    seed: int = 0,
) -> Generator:
    """Train on (embedding, crop) pairs of public identities (`labels`), write weights and manifest
    atomically to `out`; `source` names the embeddings file (path, sha256) for the manifest."""
    from latticelock.models.assets import write_atomically

    net = require_torch()
    if len(embeddings) != len(crops) or len(crops) != len(labels) or len(crops) < 20:
        raise ToolsError(f"the generator needs at least 20 matching (embedding, crop) pairs, got {len(crops)}")
    model, run = net.train(embeddings, crops, np.asarray(labels), threads=threads, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    net.save(model, tmp)
    os.replace(tmp, out)
    identities = sorted(set(str(label) for label in labels))
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "architecture": net.ARCHITECTURE,
        "size": net.SIZE,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "file": out.name,
        "sha256": _sha256(out),
        "hardware": hardware(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training": {
            "embeddings": source,
            "images": int(len(crops)),
            "identities": identities,
            "identities_sha256": hashlib.sha256("\n".join(identities).encode()).hexdigest(),
            "loss": "squared pixel error, closed form (ridge)",
            "penalty": run.penalty,
            "seconds": round(run.seconds, 1),
            "train_rmse": run.train_rmse,
            "held_out_rmse": run.held_out_rmse,
            "seed": seed,
        },
    }
    write_atomically(manifest_path(out), (json.dumps(manifest, indent=1) + "\n").encode())
    return Generator(model, manifest)


def load(path: Path | None = None) -> Generator:
    """The generator at `path` (default: the cache), checked against its manifest's sha256."""
    net = require_torch()
    path = Path(path) if path is not None else default_path()
    mpath = manifest_path(path)
    if not path.exists() or not mpath.exists():
        raise ToolsError(f"no face generator at {path}; build it with `latticelock forensics generator --embeddings FILE`")
    try:
        manifest = json.loads(mpath.read_text())
        recorded = manifest["sha256"]
        manifest["training"]["identities"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ToolsError(f"generator manifest {mpath} is unreadable or corrupt ({exc}); rebuild the generator") from None
    actual = _sha256(path)
    if actual != recorded:
        raise ToolsError(f"{path} has sha256 {actual} but its manifest records {recorded}: rebuild the generator")
    try:
        model = net.load(path)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ToolsError(f"cannot load face generator {path}: {exc}") from None
    return Generator(model, manifest)
