"""Crash-safe file replacement: a power cut leaves the old file or the new one, never a torn one.

The new bytes go to a temporary file in the same directory, which is flushed and fsynced before
an atomic rename over the target; the directory is then fsynced so that the rename itself is on
disk. Temporary names start with `TMP_PREFIX` so readers can ignore (and openers remove) leftovers.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """Make a rename, creation or unlink inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any point leaves either the old or the new content."""
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Unlink `path` and make the removal durable."""
    path = Path(path)
    path.unlink()
    fsync_dir(path.parent)


def remove_leftovers(directory: Path) -> list[Path]:
    """Delete temporary files an interrupted writer left behind; returns what was removed."""
    removed = []
    for entry in Path(directory).iterdir():
        if entry.name.startswith(TMP_PREFIX) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        fsync_dir(Path(directory))
    return removed
