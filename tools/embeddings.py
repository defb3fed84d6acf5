"""The one reader (and writer) of embeddings files: what `latticelock eval embed` writes.

Arrays in the .npz: `embeddings` float32 [N, 512], `labels` (identity = folder name), `files` (paths
relative to the dataset folder), `failures` (files with no face or an unreadable image) and
`failure_reasons` beside them, and `config` (JSON of the options that made it, so a resumed run
cannot mix two). Files are written atomically and readable by their owner only: embeddings are
biometric data. Every command that reads embeddings goes through `load_embeddings`, which turns a
missing, truncated or foreign file into one clear `ToolsError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latticelock.tools.errors import ToolsError
from latticelock.tools.npz import load_npz

DIM = 512


@dataclass(frozen=True)
class EmbeddingsFile:
    embeddings: np.ndarray  # float32 [N, 512], L2-normalised rows
    labels: np.ndarray  # str [N]
    files: np.ndarray  # str [N]
    failures: tuple[str, ...]
    failure_reasons: tuple[str, ...]
    config: dict
    path: Path
    sha256: str

    def __len__(self) -> int:
        return len(self.embeddings)

    def index(self) -> dict[str, int]:
        """'Name/Name_0001.jpg' -> row."""
        return {"/".join(Path(str(f)).parts[-2:]): i for i, f in enumerate(self.files)}

    def by_file(self) -> dict[str, np.ndarray]:
        return {str(f): e for f, e in zip(self.files, self.embeddings, strict=True)}

    def subset(self, identities: set[str] | frozenset[str]) -> "EmbeddingsFile":
        """Only the rows of these identities (same order)."""
        keep = np.isin(self.labels, sorted(identities))
        return EmbeddingsFile(
            self.embeddings[keep], self.labels[keep], self.files[keep], self.failures, self.failure_reasons,
            self.config, self.path, self.sha256,
        )


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def load_embeddings(path: str | Path) -> EmbeddingsFile:
    """Read an embeddings file (rows L2-normalised); ToolsError if it is missing, truncated, foreign or inconsistent."""
    raw = _read(Path(path))
    return EmbeddingsFile(normalise(raw.embeddings), *dataclasses.astuple(raw)[1:])


def _read(path: Path) -> EmbeddingsFile:
    """The file's arrays as stored (a resumed run appends to them unchanged)."""
    try:
        raw = path.read_bytes()
        with load_npz(path, "an embeddings file from `latticelock eval embed`") as data:
            names = set(data.files)
            missing = {"embeddings", "labels", "files"} - names
            if missing:
                raise ToolsError(
                    f"{path} is not an embeddings file from `latticelock eval embed` (no {', '.join(sorted(missing))})"
                )
            emb = np.asarray(data["embeddings"])
            labels = np.asarray(data["labels"]).astype(str)
            files = np.asarray(data["files"]).astype(str)
            failures = tuple(str(f) for f in data["failures"]) if "failures" in names else ()
            reasons = tuple(str(r) for r in data["failure_reasons"]) if "failure_reasons" in names else ()
            config = json.loads(str(data["config"])) if "config" in names else {}
    except FileNotFoundError:
        raise ToolsError(f"embeddings file {path} not found (write it with `latticelock eval embed`)") from None
    # A truncated .npz is a BadZipFile or EOFError, not an OSError; a foreign one a ValueError.
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ToolsError(f"cannot read embeddings file {path}: {exc or type(exc).__name__}") from None
    if emb.ndim != 2 or emb.shape[1] != DIM or not np.issubdtype(emb.dtype, np.floating):
        raise ToolsError(f"{path}: expected float embeddings of shape [N, {DIM}], got {emb.dtype} {emb.shape}")
    if len(labels) != len(emb) or len(files) != len(emb) or len(failures) != len(reasons):
        raise ToolsError(f"{path}: {len(emb)} embeddings, {len(labels)} labels and {len(files)} files disagree")
    if not np.all(np.isfinite(emb)):
        raise ToolsError(f"{path}: embeddings hold non-finite values")
    if not isinstance(config, dict):
        raise ToolsError(f"{path}: its stored options are {type(config).__name__}, not a JSON object")
    return EmbeddingsFile(emb.astype(np.float32), labels, files, failures, reasons, config, path, hashlib.sha256(raw).hexdigest())


# How `eval embed` spells each stored option on its command line.
OPTION_FLAGS = {
    "dataset": "DATASET_DIR", "alignment": "--alignment", "flip_average": "--mirror-average",
    "backend": "--inference-backend", "pairs": "--pairs", "folds": "--folds", "limit": "--limit",
    "min_face_size": "--min-face-size",
}


def option_differences(made: dict, wanted: dict, keys: tuple[str, ...] | None = None) -> str:
    """The `eval embed` options on which two configs differ, as flags: "--mirror-average: on, not off; ..." ('' if none)."""
    def shown(value: object) -> str:
        return "on" if value is True else "off" if value is False else "none" if value is None else str(value)

    if not made:
        return "it records none: an older version wrote it"
    keys = keys or tuple(sorted(set(made) | set(wanted)))
    return "; ".join(f"{OPTION_FLAGS.get(k, k)}: {shown(made.get(k))}, not {shown(wanted.get(k))}"
                     for k in keys if made.get(k) != wanted.get(k))


def check_same_embedding(first: EmbeddingsFile, second: EmbeddingsFile) -> None:
    """ToolsError unless both files embed the same dataset's faces the same way up to the mirror (which may differ:
    mirror-averaged templates against one-pass frames is the device's own case). A file that records no options
    (written by an older version) is taken as it is."""
    if not first.config or not second.config:
        return  # an older version recorded no options: nothing to compare them by
    a, b = dict(first.config), dict(second.config)
    for config in (a, b):
        if "dataset" in config:
            config["dataset"] = Path(str(config["dataset"])).name  # the same folder, perhaps moved
    different = option_differences(b, a, ("dataset", "alignment", "min_face_size"))
    if different:
        raise ToolsError(f"{second.path} was embedded unlike {first.path} ({different}); embed the same folder the same way")


@dataclass
class EmbeddingsWriter:
    """Accumulates `eval embed` results; `save` writes them atomically in the format above."""

    config: dict
    files: list[str] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failure_reasons: list[str] = field(default_factory=list)

    def done(self) -> set[str]:
        """Every file already handled, embedded or failed."""
        return set(self.files) | set(self.failures)

    def save(self, path: Path) -> None:
        arrays = {
            "embeddings": np.asarray(self.embeddings, dtype=np.float32).reshape(-1, DIM),
            "labels": np.asarray([f.split("/")[0] for f in self.files], dtype=str),
            "files": np.asarray(self.files, dtype=str),
            "failures": np.asarray(self.failures, dtype=str),
            "failure_reasons": np.asarray(self.failure_reasons, dtype=str),
            "config": np.asarray(json.dumps(self.config, sort_keys=True)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file 0600: embeddings are biometric data.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def resume(cls, path: Path) -> "EmbeddingsWriter":
        """Continue from a checkpoint written by `save` (ToolsError if it is unreadable: delete it to start over)."""
        try:
            loaded = _read(Path(path))
        except ToolsError as exc:
            raise ToolsError(f"checkpoint: {exc}; delete it to start over") from None
        return cls(
            config=loaded.config, files=[str(f) for f in loaded.files], embeddings=list(loaded.embeddings),
            failures=list(loaded.failures), failure_reasons=list(loaded.failure_reasons),
        )
