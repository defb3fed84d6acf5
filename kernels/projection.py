"""PCA projection of FaceNet embeddings, fitted on public identities and shipped with the parameter sets.

A projection file (`kernels/projections/<name>.npz`) holds `mean` float32[512], `components`
float32[k,512] (orthonormal rows, largest variance first; a set of dimension m uses the first m) and
`provenance`, a JSON string naming the source embeddings file, its sha256, the identities and images
used, and the command that regenerates it. Rows are orthonormal, so L2 distances in the projected
space are those of the embeddings' components along the kept directions.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latticelock.kernels.errors import ParameterSetError, SchemeError

PROJECTIONS_DIR = Path(__file__).resolve().parent / "projections"
EMBEDDING_DIM = 512


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # float32[512]
    components: np.ndarray  # float32[k,512]
    provenance: dict

    @property
    def max_dim(self) -> int:
        return int(self.components.shape[0])

    def project(self, embeddings: np.ndarray, m: int) -> np.ndarray:
        """float64[..., m]: the L2-normalised embeddings, centred on the public mean, on the first m components."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.shape[-1] != EMBEDDING_DIM:
            raise SchemeError(f"expected {EMBEDDING_DIM}-d embeddings, got shape {x.shape}")
        if m > self.max_dim:
            raise ParameterSetError(f"projection holds {self.max_dim} components, {m} requested")
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        if not np.all(np.isfinite(x)) or np.any(norms == 0):
            raise SchemeError("embeddings must be finite and non-zero")
        x = x / norms
        return (x - self.mean.astype(np.float64)) @ self.components[:m].astype(np.float64).T


def fit_projection(embeddings: np.ndarray, dims: int, provenance: dict) -> Projection:
    """PCA of L2-normalised embeddings: the mean and the top `dims` principal directions."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != EMBEDDING_DIM or x.shape[0] <= dims:
        raise ParameterSetError(f"need more than {dims} embeddings of dimension {EMBEDDING_DIM}, got shape {x.shape}")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    variance = singular**2 / (len(x) - 1)
    provenance = dict(provenance, dims=dims, explained_variance=[float(v) for v in variance[:dims]],
                      total_variance=float(variance.sum()))
    return Projection(mean.astype(np.float32), vt[:dims].astype(np.float32), provenance)


def save_projection(projection: Projection, path: Path) -> None:
    np.savez(
        path,
        mean=projection.mean.astype(np.float32),
        components=projection.components.astype(np.float32),
        provenance=np.array(json.dumps(projection.provenance, sort_keys=True)),
    )


def read_projection(path: Path) -> Projection:
    """Read and check a projection file; raises ParameterSetError for a missing or malformed one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            mean, components, provenance = data["mean"], data["components"], json.loads(str(data["provenance"]))
    except FileNotFoundError:
        raise ParameterSetError(f"projection file {path} is missing; regenerate it with `latticelock eval projection`") from None
    except (OSError, KeyError, ValueError) as exc:
        raise ParameterSetError(f"projection file {path} is unreadable: {exc}") from None
    if mean.shape != (EMBEDDING_DIM,) or components.ndim != 2 or components.shape[1] != EMBEDDING_DIM:
        raise ParameterSetError(f"projection file {path} has mean {mean.shape} and components {components.shape}")
    gram = components.astype(np.float64) @ components.astype(np.float64).T
    if not np.allclose(gram, np.eye(len(components)), atol=1e-4):
        raise ParameterSetError(f"projection file {path}: components are not orthonormal")
    return Projection(mean.astype(np.float32), components.astype(np.float32), provenance)


@functools.lru_cache(maxsize=8)
def load_projection(name: str) -> Projection:
    """The shipped projection `kernels/projections/<name>.npz`."""
    return read_projection(PROJECTIONS_DIR / f"{name}.npz")
