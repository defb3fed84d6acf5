"""Opening the .npz files the tools write and read back: embeddings, decoder-benchmark bases, face crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latticelock.tools.errors import ToolsError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive, or an empty one


def load_npz(path: Path, what: str) -> "np.lib.npyio.NpzFile":
    """`np.load` of an .npz, pickles refused; a ToolsError saying that `path` is not `what` when its
    bytes are no zip archive (np.load would take them for a pickle and say so, which misleads about a
    photo or a log). Missing files, truncated archives and members are the caller's to report."""
    with open(path, "rb") as f:
        if f.read(4) not in ZIP_MAGIC:
            raise ToolsError(f"{path} is not {what} (not a .npz archive)")
    return np.load(path, allow_pickle=False)
