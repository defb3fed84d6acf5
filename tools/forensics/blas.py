"""Keep numpy's OpenBLAS to a fixed number of threads for the attack report.

The report runs many small matrix products (128 x 512 per MRP record, ridge solves); on a loaded
2-core machine OpenBLAS's default thread pool spins against the other processes and was measured
20 to 160 times slower than one thread (R R^T for a 128 x 512 R: 0.15 s against 0.0009 s). The
environment variable OPENBLAS_NUM_THREADS only works before numpy loads, so this calls OpenBLAS's
documented `openblas_set_num_threads` on the library numpy already loaded.
"""

from __future__ import annotations

import ctypes
import glob
from pathlib import Path


def limit_blas_threads(threads: int) -> bool:
    """True when numpy's bundled OpenBLAS was found and limited to `threads` threads."""
    import numpy as np

    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(glob.glob(str(libs / "libscipy_openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            setter = getattr(lib, symbol, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                return True
    return False
