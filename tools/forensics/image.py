"""A stolen-flash image: every file under a device store, as a thief copies it.

The image is a versioned container, not a tar, so that it carries a checksum per file and one over
the whole image, and so that a damaged image still yields every intact file:

    header  b"LLDUMP" | u16 version | u32 entry count
    entry   u16 path length | path (UTF-8, '/'-separated, relative) | u64 size | bytes | sha256(path || bytes)
    trailer sha256 over everything before it

No secret is involved: this is exactly what anyone holding the flash can read.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from latticelock.tools.errors import ToolsError

MAGIC = b"LLDUMP"
VERSION = 1
_HEADER = struct.Struct("<6sHI")
_PATH_LEN = struct.Struct("<H")
_SIZE = struct.Struct("<Q")
_DIGEST = 32


class ImageError(ToolsError):
    """The dump image is not one, is from another version, or is damaged beyond reading."""


@dataclass(frozen=True)
class DumpEntry:
    path: str
    data: bytes
    intact: bool  # False when the entry's own checksum does not match


@dataclass(frozen=True)
class DumpImage:
    entries: list[DumpEntry]
    image_checksum_ok: bool


def _entry_digest(path: bytes, data: bytes) -> bytes:
    return hashlib.sha256(path + b"\0" + data).digest()


def steal(store: str | Path, out: str | Path) -> DumpImage:
    """Copy every regular file under `store` into the image `out`; returns what was written."""
    root = Path(store)
    if not root.is_dir():
        raise ImageError(f"store directory not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    entries = []
    chunks = [_HEADER.pack(MAGIC, VERSION, len(files))]
    for path in files:
        rel = path.relative_to(root).as_posix().encode("utf-8")
        if len(rel) > 0xFFFF:
            raise ImageError(f"path too long for the image format: {path}")
        data = path.read_bytes()
        chunks += [_PATH_LEN.pack(len(rel)), rel, _SIZE.pack(len(data)), data, _entry_digest(rel, data)]
        entries.append(DumpEntry(rel.decode("utf-8"), data, True))
    body = b"".join(chunks)
    Path(out).write_bytes(body + hashlib.sha256(body).digest())
    return DumpImage(entries, True)


def read_image(path: str | Path) -> DumpImage:
    """Parse an image; a file whose checksum fails is returned marked, not dropped; a truncated image
    raises only when not even its header can be read."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read dump image {path}: {exc}") from exc
    if len(blob) < _HEADER.size + _DIGEST:
        raise ImageError(f"{path}: too short to be a dump image ({len(blob)} bytes)")
    magic, version, count = _HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise ImageError(f"{path}: not a latticelock dump image (magic {magic!r})")
    if version != VERSION:
        raise ImageError(f"{path}: dump image version {version} is not supported (this reader knows {VERSION})")
    body, trailer = blob[:-_DIGEST], blob[-_DIGEST:]
    checksum_ok = hashlib.sha256(body).digest() == trailer
    entries: list[DumpEntry] = []
    offset = _HEADER.size
    for index in range(count):
        try:
            (plen,) = _PATH_LEN.unpack_from(body, offset)
            offset += _PATH_LEN.size
            rel = body[offset : offset + plen]
            offset += plen
            (size,) = _SIZE.unpack_from(body, offset)
            offset += _SIZE.size
            if offset + size + _DIGEST > len(body):
                raise struct.error("entry runs past the end of the image")
            data = body[offset : offset + size]
            offset += size
            digest = body[offset : offset + _DIGEST]
            offset += _DIGEST
        except struct.error as exc:
            raise ImageError(f"{path}: truncated at entry {index} of {count}: {exc}") from exc
        try:
            name = rel.decode("utf-8")
        except UnicodeDecodeError:
            name = rel.decode("utf-8", errors="replace")
        entries.append(DumpEntry(name, data, digest == _entry_digest(rel, data)))
    return DumpImage(entries, checksum_ok)


def unpack(image: DumpImage, directory: str | Path) -> list[Path]:
    """Write the intact entries back as a directory tree (what the store's own reader expects)."""
    root = Path(directory).resolve()
    written = []
    for entry in image.entries:
        if not entry.intact:
            continue
        target = (root / entry.path).resolve()
        if root not in target.parents:
            raise ImageError(f"entry path escapes the unpack directory: {entry.path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry.data)
        written.append(target)
    return written
